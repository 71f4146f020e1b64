/* Every backend against ref (ggml's test-backend-ops): each op on fresh random inputs,
 * outputs poisoned with NaN before every run, compared by normalised mean squared error
 * with a per-op tolerance.  Shapes: the SPEC's three convolutions (small batches) and an
 * odd one.  Prints which kernel each backend used. */
#include <math.h>

#include "mp_alloc.h"
#include "mp_backend.h"
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

static void check_backend(const char *name) {
  char err[256];
  mp_backend *be = mp_backend_create(name, err, sizeof err), *ref = mp_backend_create("ref", err, sizeof err);
  if (!be) fail_msg("%s", err);
  static const int shapes[][9] = {
      {2, 3, 16, 16, 8, 3, 3, 1, 1},  /* classifier 3x3 pad 1 */
      {2, 4, 16, 16, 8, 4, 4, 2, 1},  /* GAN 4x4 stride 2 pad 1 */
      {3, 16, 4, 4, 1, 4, 4, 1, 0},   /* D's 4x4 valid */
      {1, 5, 9, 7, 6, 3, 3, 2, 1},    /* odd sizes */
  };
  mp_rng r;
  mp_rng_init(&r, 51, MP_RNG_TEST, 0);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int *q = shapes[s];
    mp_conv_desc d;
    assert_int_equal(mp_conv_desc_init(&d, q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8]), 0);
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
      printf("  %-4s conv %dx%d s%d p%d %2dx%-2d c%-2d k%-2d bias %d: nmse fwd %.1e data %.1e weights %.1e bias %.1e  [%s]\n",
             name, d.r, d.s, d.stride, d.pad, d.h, d.w, d.c, d.k, bias, e1, e2, e3, e4,
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
