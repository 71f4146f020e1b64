/* Every backend against ref (ggml's test-backend-ops): each op on fresh random inputs,
 * outputs poisoned with NaN before every run, compared by normalised mean squared error
 * with a per-op tolerance.  Convolution shapes: the SPEC's three (small batches) and an
 * odd one; then activations, batch norm, max-pool, linear, dropout and Adam.  Prints
 * which convolution kernel each backend used. */
#include <math.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_backend.h"
#include "mp_ref.h"
#include "mp_rng.h"
#include "mp_test.h"

static void fill(float *a, size_t n, mp_rng *r) {
  for (size_t i = 0; i < n; i++) a[i] = (float)(2.0 * mp_rng_uniform_f64(r) - 1.0);
}
static void poison(float *a, size_t n) {
  for (size_t i = 0; i < n; i++) a[i] = NAN;
}
static double nmse(const float *a, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double e = (double)a[i] - ref[i];
    num += e * e;
    den += (double)ref[i] * ref[i];
  }
  return isfinite(num) ? num / (den > 0 ? den : 1) : INFINITY;
}

#define CHECK_NMSE(what, a, b, n, tol)                                                            \
  do {                                                                                            \
    double e_ = nmse(a, b, n);                                                                    \
    printf("  %-4s %-34s nmse %.1e\n", name, what, e_);                                           \
    if (!(e_ < (tol))) fail_msg("%s: %s differs from ref (nmse %.2e, tolerance %.0e)", name, what, e_, (double)(tol)); \
  } while (0)

/* Batch norm (train, eval, backward), max-pool, linear, dropout and Adam: every output
 * and every saved statistic poisoned before the run and compared with ref. */
static void check_other_ops(const char *name, mp_backend *be, mp_backend *ref, mp_rng *r) {
  const mp_backend_i *f = be->iface, *g = ref->iface;
  /* batch norm: n 3, c 5, 7x6 (odd sizes), inputs with an offset and scale per channel */
  {
    mp_bn_desc d = {3, 5, 42, 1e-5f, 0.1f};
    size_t n = (size_t)d.n * d.c * d.hw;
    float *x = mp_malloc(n * 4), *dy = mp_malloc(n * 4), *y1 = mp_malloc(n * 4), *y2 = mp_malloc(n * 4);
    float *dx1 = mp_malloc(n * 4), *dx2 = mp_malloc(n * 4);
    float gm[5], bt[5], sm1[5], sm2[5], si1[5], si2[5], rm1[5], rm2[5], rv1[5], rv2[5], dg1[5], dg2[5], db1[5], db2[5];
    fill(x, n, r);
    for (size_t i = 0; i < n; i++) x[i] = x[i] * (1.0f + (float)((i / d.hw) % d.c)) + 0.5f * (float)((i / d.hw) % d.c);
    fill(dy, n, r);
    fill(gm, 5, r);
    fill(bt, 5, r);
    fill(rm1, 5, r);
    for (int i = 0; i < 5; i++) rv1[i] = 0.5f + (float)i, rm2[i] = rm1[i], rv2[i] = rv1[i];
    poison(y1, n), poison(sm1, 5), poison(si1, 5), poison(dx1, n), poison(dg1, 5), poison(db1, 5);
    f->bn_forward_train(be, &d, x, gm, bt, y1, sm1, si1, rm1, rv1);
    g->bn_forward_train(ref, &d, x, gm, bt, y2, sm2, si2, rm2, rv2);
    CHECK_NMSE("batch norm train: y", y1, y2, n, 1e-10);
    CHECK_NMSE("batch norm train: saved mean", sm1, sm2, 5, 1e-10);
    CHECK_NMSE("batch norm train: saved 1/std", si1, si2, 5, 1e-10);
    CHECK_NMSE("batch norm train: running mean", rm1, rm2, 5, 1e-10);
    CHECK_NMSE("batch norm train: running var", rv1, rv2, 5, 1e-10);
    f->bn_backward(be, &d, x, dy, gm, sm2, si2, dx1, dg1, db1);
    g->bn_backward(ref, &d, x, dy, gm, sm2, si2, dx2, dg2, db2);
    CHECK_NMSE("batch norm backward: dx", dx1, dx2, n, 1e-9);
    CHECK_NMSE("batch norm backward: dgamma", dg1, dg2, 5, 1e-10);
    CHECK_NMSE("batch norm backward: dbeta", db1, db2, 5, 1e-10);
    if (f->bn_relu_forward_train) { /* the fused pass against ref's batch norm then ReLU */
      float *t2 = mp_malloc(n * 4), *g2 = mp_malloc(n * 4);
      poison(y1, n), poison(sm1, 5), poison(si1, 5), poison(dx1, n), poison(dg1, 5), poison(db1, 5);
      f->bn_relu_forward_train(be, &d, x, gm, bt, y1, sm1, si1, rm1, rv1);
      g->bn_forward_train(ref, &d, x, gm, bt, t2, sm2, si2, rm2, rv2);
      mp_ref_relu_forward(t2, y2, n);
      CHECK_NMSE("batch norm + relu train: y", y1, y2, n, 1e-10);
      CHECK_NMSE("batch norm + relu train: saved 1/std", si1, si2, 5, 1e-10);
      CHECK_NMSE("batch norm + relu train: running var", rv1, rv2, 5, 1e-10);
      f->bn_relu_backward(be, &d, x, y1, dy, gm, sm2, si2, dx1, dg1, db1);
      mp_ref_relu_backward(t2, dy, g2, n);
      g->bn_backward(ref, &d, x, g2, gm, sm2, si2, dx2, dg2, db2);
      CHECK_NMSE("batch norm + relu backward: dx", dx1, dx2, n, 1e-9);
      CHECK_NMSE("batch norm + relu backward: dgamma", dg1, dg2, 5, 1e-10);
      CHECK_NMSE("batch norm + relu backward: dbeta", db1, db2, 5, 1e-10);
      mp_free(t2), mp_free(g2);
    }
    poison(y1, n);
    f->bn_forward_eval(be, &d, x, gm, bt, rm2, rv2, y1);
    g->bn_forward_eval(ref, &d, x, gm, bt, rm2, rv2, y2);
    CHECK_NMSE("batch norm eval", y1, y2, n, 1e-10);
    mp_free(x), mp_free(dy), mp_free(y1), mp_free(y2), mp_free(dx1), mp_free(dx2);
  }
  /* max-pool 2x2 with ties (quantised inputs) */
  {
    enum { PN = 2, PC = 3, PH = 6, PW = 8, NX = PN * PC * PH * PW, NY = NX / 4 };
    float x[NX], y1[NY], y2[NY], dy[NY], dx1[NX], dx2[NX];
    unsigned char a1[NY], a2[NY];
    fill(x, NX, r);
    for (int i = 0; i < NX; i++) x[i] = roundf(x[i] * 3.0f); /* many ties: the first maximum wins */
    fill(dy, NY, r);
    poison(y1, NY), poison(dx1, NX);
    memset(a1, 0xff, sizeof a1);
    f->maxpool2_forward(be, x, y1, a1, PN, PC, PH, PW);
    g->maxpool2_forward(ref, x, y2, a2, PN, PC, PH, PW);
    CHECK_NMSE("max-pool forward", y1, y2, NY, 1e-30);
    assert_memory_equal(a1, a2, sizeof a1);
    f->maxpool2_backward(be, dy, a1, dx1, PN, PC, PH, PW);
    g->maxpool2_backward(ref, dy, a2, dx2, PN, PC, PH, PW);
    CHECK_NMSE("max-pool backward", dx1, dx2, NX, 1e-30);
  }
  /* linear: n 5, in 37, out 11 */
  {
    enum { LN = 5, LI = 37, LO = 11 };
    float x[LN * LI], w[LO * LI], b[LO], dy[LN * LO], y1[LN * LO], y2[LN * LO], dx1[LN * LI], dx2[LN * LI];
    float dw1[LO * LI], dw2[LO * LI], db1[LO], db2[LO];
    fill(x, LN * LI, r), fill(w, LO * LI, r), fill(b, LO, r), fill(dy, LN * LO, r);
    poison(y1, LN * LO), poison(dx1, LN * LI), poison(dw1, LO * LI), poison(db1, LO);
    f->linear_forward(be, x, w, b, y1, LN, LI, LO);
    g->linear_forward(ref, x, w, b, y2, LN, LI, LO);
    CHECK_NMSE("linear forward", y1, y2, LN * LO, 1e-10);
    f->linear_backward(be, x, w, dy, dx1, dw1, db1, LN, LI, LO);
    g->linear_backward(ref, x, w, dy, dx2, dw2, db2, LN, LI, LO);
    CHECK_NMSE("linear backward: dx", dx1, dx2, LN * LI, 1e-10);
    CHECK_NMSE("linear backward: dW", dw1, dw2, LO * LI, 1e-10);
    CHECK_NMSE("linear backward: db", db1, db2, LO, 1e-10);
  }
  /* dropout (the same mask from the counter-based RNG) and Adam */
  {
    enum { DN = 999 };
    float x[DN], y1[DN], y2[DN], dy[DN], dx1[DN], dx2[DN];
    unsigned char m1[DN], m2[DN];
    fill(x, DN, r), fill(dy, DN, r);
    poison(y1, DN), poison(dx1, DN);
    f->dropout_forward(be, x, y1, m1, DN, 0.5f, 7, 3, 0);
    g->dropout_forward(ref, x, y2, m2, DN, 0.5f, 7, 3, 0);
    assert_memory_equal(m1, m2, DN);
    CHECK_NMSE("dropout forward", y1, y2, DN, 1e-30);
    f->dropout_backward(be, dy, m1, dx1, DN, 0.5f);
    g->dropout_backward(ref, dy, m2, dx2, DN, 0.5f);
    CHECK_NMSE("dropout backward", dx1, dx2, DN, 1e-30);
    float p1[DN], p2[DN], m_1[DN] = {0}, m_2[DN] = {0}, v1[DN] = {0}, v2[DN] = {0};
    fill(p1, DN, r);
    memcpy(p2, p1, sizeof p1);
    for (long t = 1; t <= 3; t++) {
      f->adam_step(be, p1, dy, m_1, v1, DN, 1e-3f, 0.5f, 0.999f, 1e-8f, t);
      g->adam_step(ref, p2, dy, m_2, v2, DN, 1e-3f, 0.5f, 0.999f, 1e-8f, t);
    }
    CHECK_NMSE("adam, three steps", p1, p2, DN, 1e-14);
  }
}

static void check_backend(const char *name) {
  char err[256];
  mp_backend *be = mp_backend_create(name, err, sizeof err), *ref = mp_backend_create("ref", err, sizeof err);
  if (!be) fail_msg("%s", err);
  /* n c h w k r s stride pad_h pad_w */
  static const int shapes[][10] = {
      {2, 3, 16, 16, 8, 3, 3, 1, 1, 1},  /* classifier 3x3 pad 1 */
      {2, 4, 16, 16, 8, 4, 4, 2, 1, 1},  /* GAN 4x4 stride 2 pad 1 */
      {3, 16, 4, 4, 1, 4, 4, 1, 0, 0},   /* D's 4x4 valid */
      {1, 5, 9, 7, 6, 3, 3, 2, 1, 1},    /* odd sizes */
      {2, 6, 9, 11, 5, 1, 7, 1, 0, 3},   /* Inception-v3's 1x7 pad (0, 3) */
      {2, 6, 11, 9, 5, 7, 1, 1, 3, 0},   /* ... 7x1 pad (3, 0) */
      {1, 4, 10, 10, 3, 3, 1, 1, 1, 0},  /* ... 3x1 pad (1, 0) */
      {1, 3, 15, 15, 4, 3, 3, 2, 0, 0},  /* ... 3x3 stride 2 valid */
  };
  mp_rng r;
  mp_rng_init(&r, 51, MP_RNG_TEST, 0);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int *q = shapes[s];
    mp_conv_desc d;
    assert_int_equal(mp_conv_desc_init_hw(&d, q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8], q[9]), 0);
    size_t nx = mp_conv_x_count(&d), nw = mp_conv_w_count(&d), ny = mp_conv_y_count(&d);
    float *x = mp_malloc(nx * 4), *w = mp_malloc(nw * 4), *b = mp_malloc((size_t)d.k * 4), *dy = mp_malloc(ny * 4);
    float *y1 = mp_malloc(ny * 4), *y2 = mp_malloc(ny * 4), *dx1 = mp_malloc(nx * 4), *dx2 = mp_malloc(nx * 4);
    float *dw1 = mp_malloc(nw * 4), *dw2 = mp_malloc(nw * 4), *db1 = mp_malloc((size_t)d.k * 4), *db2 = mp_malloc((size_t)d.k * 4);
    for (int bias = 0; bias < 2; bias++) {
      fill(x, nx, &r);
      fill(w, nw, &r);
      fill(b, (size_t)d.k, &r);
      fill(dy, ny, &r);
      poison(y1, ny), poison(y2, ny), poison(dx1, nx), poison(dx2, nx);
      poison(dw1, nw), poison(dw2, nw), poison(db1, (size_t)d.k), poison(db2, (size_t)d.k);
      mp_conv2d_forward(be, &d, x, w, bias ? b : NULL, y1);
      mp_conv2d_forward(ref, &d, x, w, bias ? b : NULL, y2);
      mp_conv2d_backward_data(be, &d, dy, w, dx1);
      mp_conv2d_backward_data(ref, &d, dy, w, dx2);
      mp_conv2d_backward_weights(be, &d, x, dy, dw1, bias ? db1 : NULL);
      mp_conv2d_backward_weights(ref, &d, x, dy, dw2, bias ? db2 : NULL);
      double e1 = nmse(y1, y2, ny), e2 = nmse(dx1, dx2, nx), e3 = nmse(dw1, dw2, nw), e4 = bias ? nmse(db1, db2, (size_t)d.k) : 0;
      printf("  %-4s conv %dx%d s%d p%d,%d %2dx%-2d c%-2d k%-2d bias %d: nmse fwd %.1e data %.1e weights %.1e bias %.1e  [%s]\n",
             name, d.r, d.s, d.stride, d.pad, d.pad_w, d.h, d.w, d.c, d.k, bias, e1, e2, e3, e4,
             be->iface->describe(be, "conv2d_forward", &d));
      const double tol = 1e-10; /* fp32 with another summation order: ~1e-13 observed */
      if (!(e1 < tol && e2 < tol && e3 < tol && e4 < tol)) fail_msg("%s differs from ref (shape %zu, bias %d)", name, s, bias);
    }
    mp_free(x), mp_free(w), mp_free(b), mp_free(dy), mp_free(y1), mp_free(y2), mp_free(dx1), mp_free(dx2);
    mp_free(dw1), mp_free(dw2), mp_free(db1), mp_free(db2);
  }
  /* element-wise activations, forward and backward */
  static const char *anames[] = {"relu", "lrelu", "tanh", "sigmoid"};
  enum { NE = 1000 };
  float x[NE], y1[NE], y2[NE], g[NE], d1[NE], d2[NE];
  for (int kind = 0; kind < 4; kind++) {
    fill(x, NE, &r);
    fill(g, NE, &r);
    x[0] = 0.0f; /* the kink itself: both sides take the negative branch */
    poison(y1, NE), poison(d1, NE);
    be->iface->act_forward(be, kind, 0.2f, x, y1, NE);
    ref->iface->act_forward(ref, kind, 0.2f, x, y2, NE);
    be->iface->act_backward(be, kind, 0.2f, x, y1, g, d1, NE);
    ref->iface->act_backward(ref, kind, 0.2f, x, y2, g, d2, NE);
    double ef = nmse(y1, y2, NE), eb = nmse(d1, d2, NE);
    printf("  %-4s %-8s nmse fwd %.1e bwd %.1e\n", name, anames[kind], ef, eb);
    if (!(ef < 1e-10 && eb < 1e-10)) fail_msg("%s %s differs from ref", name, anames[kind]);
  }
  check_other_ops(name, be, ref, &r);
  mp_backend_free(be);
  mp_backend_free(ref);
}

static void test_backends(void **state) {
  (void)state;
  char list[64];
  snprintf(list, sizeof list, "%s", mp_backend_list());
  for (char *save = NULL, *n = strtok_r(list, " ", &save); n; n = strtok_r(NULL, " ", &save)) check_backend(n);
  char err[256];
  assert_null(mp_backend_create("tpu", err, sizeof err));
  assert_non_null(strstr(err, "not in this build"));
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_backends)};
  return cmocka_run_group_tests_name("backend", tests, NULL, NULL);
}
