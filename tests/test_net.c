/* Sequential networks: whole-network gradients of a small classifier (conv, batch norm,
 * ReLU, max-pool, flatten, linear, dropout, BCE) and a small DCGAN generator (transposed
 * convolutions, batch norm, tanh) against finite differences; the same network on every
 * backend gives the same outputs and gradients; Adam moves the flat parameter buffer. */
#include <math.h>

#include "mp_alloc.h"
#include "mp_models.h"
#include "mp_net.h"
#include "mp_rng.h"
#include "mp_test.h"

enum { B = 4 };

static mp_net *classifier(mp_backend *be) {
  mp_net *n = mp_net_new(be, 1, 8, 8, B, 99);
  mp_net_conv(n, 4, 3, 1, 1, true);
  mp_net_bn(n);
  mp_net_act(n, MP_ACT_RELU, 0);
  mp_net_conv(n, 4, 3, 1, 1, true);
  mp_net_bn(n);
  mp_net_act(n, MP_ACT_RELU, 0);
  mp_net_maxpool2(n);
  mp_net_flatten(n);
  mp_net_linear(n, 8, true);
  mp_net_act(n, MP_ACT_RELU, 0);
  mp_net_dropout(n, 0.5f);
  mp_net_linear(n, 1, true);
  mp_net_build(n);
  return n;
}

static mp_net *generator(mp_backend *be) {
  mp_net *n = mp_net_new(be, 6, 1, 1, B, 98);
  mp_net_convt(n, 8, 4, 1, 0); /* 1x1 -> 4x4 */
  mp_net_bn(n);
  mp_net_act(n, MP_ACT_RELU, 0);
  mp_net_convt(n, 4, 4, 2, 1); /* -> 8x8 */
  mp_net_bn(n);
  mp_net_act(n, MP_ACT_RELU, 0);
  mp_net_convt(n, 1, 4, 2, 1); /* -> 16x16 */
  mp_net_act(n, MP_ACT_TANH, 0);
  mp_net_build(n);
  return n;
}

/* Backend `name` of mp_backend_list(), or NULL (said so) when it is a device backend whose
 * device is absent; one that cannot be created fails the test. */
static mp_backend *open_backend(const char *name) {
  char err[128];
  if (mp_backend_device_absent(name)) {
    printf("  %s: skipped (no device)\n", name);
    return NULL;
  }
  mp_backend *be = mp_backend_create(name, err, sizeof err);
  if (!be) fail_msg("%s", err);
  return be;
}

typedef struct {
  mp_net *n;
  const float *x, *t, *g;
  bool bce, eval;
} ctx;

/* L: BCE of the logits against t (classifier) or <output, g> (generator) */
static double loss(ctx *c, float *dy) {
  const float *y = mp_net_forward(c->n, c->x, B, !c->eval, 7);
  size_t m = mp_net_output_size(c->n) * B;
  if (c->bce) return mp_ref_bce_logits(y, c->t, dy, m);
  double L = 0;
  for (size_t i = 0; i < m; i++) {
    L += (double)y[i] * c->g[i];
    if (dy) dy[i] = c->g[i];
  }
  return L;
}

static void check_grads(ctx *c, const char *what) {
  size_t m = mp_net_output_size(c->n) * B;
  float *dy = mp_malloc(m * 4);
  loss(c, dy);
  mp_net_backward(c->n, dy, NULL);
  size_t np = mp_net_param_count(c->n);
  float *an = mp_malloc(np * 4), *p = mp_net_params(c->n);
  memcpy(an, mp_net_grads(c->n), np * 4);
  mp_rng r;
  mp_rng_init(&r, 61, MP_RNG_TEST, np);
  int checked = 0;
  for (int t = 0; t < 60 && checked < 25; t++) {
    size_t i = mp_rng_below(&r, (uint32_t)np);
    float keep = p[i];
    const float eps = 2e-3f;
    double l0 = loss(c, NULL);
    p[i] = keep + eps;
    double lp = loss(c, NULL);
    p[i] = keep - eps;
    double lm = loss(c, NULL);
    p[i] = keep;
    /* a ReLU kink within the step makes the one-sided differences disagree: skip those
     * (smooth pieces agree to O(eps)) */
    double fwd = (lp - l0) / eps, bwd = (l0 - lm) / eps, f[2] = {fwd, (lp - lm) / (2.0 * eps)};
    if (fabs(fwd - bwd) > 0.02 * (fabs(fwd) + fabs(bwd)) + 1e-3) continue;
    if (fabs(f[1] - an[i]) > 0.03 * (fabs(f[1]) + fabs(an[i])) + 2e-3)
      fail_msg("%s: parameter %zu: finite difference %.6g, backward %.6g", what, i, f[1], an[i]);
    checked++;
  }
  if (checked < 15) fail_msg("%s: only %d parameters checked", what, checked);
  mp_free(dy);
  mp_free(an);
}

static void test_classifier_grads(void **state) {
  (void)state;
  char err[128];
  mp_backend *be = mp_backend_create("ref", err, sizeof err);
  mp_net *n = classifier(be);
  float x[B * 64], t[B] = {1, 0, 0, 1};
  mp_rng r;
  mp_rng_init(&r, 62, MP_RNG_TEST, 0);
  for (int i = 0; i < B * 64; i++) x[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  ctx c = {n, x, t, NULL, true, false};
  check_grads(&c, "classifier");
  /* Adam moves every parameter that has a gradient */
  float *p0 = mp_malloc(mp_net_param_count(n) * 4);
  memcpy(p0, mp_net_params(n), mp_net_param_count(n) * 4);
  mp_net_adam(n, 1e-3f, 0.5f, 0.999f, 1e-8f);
  size_t moved = 0;
  for (size_t i = 0; i < mp_net_param_count(n); i++) moved += mp_net_params(n)[i] != p0[i];
  assert_true(moved > mp_net_param_count(n) / 2);
  /* eval mode uses the running statistics: deterministic, no dropout */
  float y1[B], y2[B];
  memcpy(y1, mp_net_forward(n, x, B, false, 0), sizeof y1);
  memcpy(y2, mp_net_forward(n, x, B, false, 1), sizeof y2);
  assert_memory_equal(y1, y2, sizeof y1);
  mp_free(p0);
  mp_net_free(n);
  mp_backend_free(be);
}

static void test_generator_grads(void **state) {
  (void)state;
  char err[128];
  mp_backend *be = mp_backend_create("ref", err, sizeof err);
  mp_net *n = generator(be);
  assert_int_equal(mp_net_output_size(n), 256);
  float z[B * 6], g[B * 256];
  mp_rng r;
  mp_rng_init(&r, 63, MP_RNG_TEST, 0);
  for (int i = 0; i < B * 6; i++) z[i] = (float)mp_rng_normal(&r);
  for (int i = 0; i < B * 256; i++) g[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  ctx c = {n, z, NULL, g, false, false};
  check_grads(&c, "generator");
  mp_net_free(n);
  mp_backend_free(be);
}

static void test_backends_agree(void **state) {
  (void)state;
  char list[64], err[128];
  snprintf(list, sizeof list, "%s", mp_backend_list());
  mp_backend *ref = mp_backend_create("ref", err, sizeof err);
  mp_net *a = classifier(ref);
  float x[B * 64], t[B] = {0, 1, 1, 0}, dy[B];
  mp_rng r;
  mp_rng_init(&r, 64, MP_RNG_TEST, 0);
  for (int i = 0; i < B * 64; i++) x[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  const float *ya = mp_net_forward(a, x, B, true, 3);
  mp_ref_bce_logits(ya, t, dy, B);
  mp_net_backward(a, dy, NULL);
  for (char *save = NULL, *name = strtok_r(list, " ", &save); name; name = strtok_r(NULL, " ", &save)) {
    mp_backend *be = open_backend(name);
    if (!be) continue;
    mp_net *b = classifier(be);
    const float *yb = mp_net_forward(b, x, B, true, 3);
    for (int i = 0; i < B; i++) assert_true(fabsf(yb[i] - ya[i]) < 1e-5f * (1 + fabsf(ya[i])));
    mp_net_backward(b, dy, NULL);
    double num = 0, den = 0;
    for (size_t i = 0; i < mp_net_param_count(a); i++) {
      double e = (double)mp_net_grads(b)[i] - mp_net_grads(a)[i];
      num += e * e;
      den += (double)mp_net_grads(a)[i] * mp_net_grads(a)[i];
    }
    printf("  %s: gradient nmse vs ref %.2e over %zu parameters\n", name, num / den, mp_net_param_count(a));
    assert_true(num / den < 1e-10);
    mp_net_free(b);
    mp_backend_free(be);
  }
  mp_net_free(a);
  mp_backend_free(ref);
}

/* A spectrally normalised critic: after a training forward has set u and v, the
 * gradient (u, v constant, as PyTorch) is checked in eval mode, where no power iteration
 * runs between the evaluations of the difference quotient. */
static void test_spectral_norm_net(void **state) {
  (void)state;
  char err[128];
  mp_backend *be = mp_backend_create("ref", err, sizeof err);
  mp_net *n = mp_net_new(be, 1, 8, 8, B, 97);
  mp_net_conv_sn(n, 4, 4, 2, 1, false);
  mp_net_act(n, MP_ACT_LRELU, 0.2f);
  mp_net_conv_sn(n, 1, 4, 1, 0, false);
  mp_net_build(n);
  float x[B * 64], g[B];
  mp_rng r;
  mp_rng_init(&r, 65, MP_RNG_TEST, 0);
  for (int i = 0; i < B * 64; i++) x[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  for (int i = 0; i < B; i++) g[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  for (int it = 0; it < 5; it++) mp_net_forward(n, x, B, true, 0); /* power iterations */
  ctx c = {n, x, NULL, g, false, true};
  check_grads(&c, "spectral-norm critic");
  mp_net_free(n);
  mp_backend_free(be);
}

/* The gradient penalty through a net (conv with bias, leaky ReLU, flatten) on every
 * backend equals the reference critic's mp_ref_gradient_penalty (itself checked against
 * finite differences in test_nn_ref); bias gradients are 0; with accumulation on, a
 * backward plus the penalty gives the sum of the two. */
static void test_gradient_penalty_net(void **state) {
  (void)state;
  char list[64];
  snprintf(list, sizeof list, "%s", mp_backend_list());
  float x[B * 64], dy[B];
  mp_rng r;
  mp_rng_init(&r, 67, MP_RNG_TEST, 0);
  for (int i = 0; i < B * 64; i++) x[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  for (int i = 0; i < B; i++) dy[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  for (char *save = NULL, *name = strtok_r(list, " ", &save); name; name = strtok_r(NULL, " ", &save)) {
    mp_backend *be = open_backend(name);
    if (!be) continue;
    mp_net *n = mp_net_new(be, 1, 8, 8, B, 96);
    mp_net_conv(n, 4, 4, 2, 1, true); /* 4x4x4 */
    mp_net_act(n, MP_ACT_LRELU, 0.2f);
    mp_net_conv(n, 6, 4, 2, 1, true); /* 6x2x2 */
    mp_net_act(n, MP_ACT_LRELU, 0.2f);
    mp_net_conv(n, 1, 2, 1, 0, true); /* 1x1x1 */
    mp_net_flatten(n);
    mp_net_build(n);
    /* the same critic as mp_ref_critic */
    mp_conv_desc d[3];
    mp_conv_desc_init(&d[0], B, 1, 8, 8, 4, 4, 4, 2, 1);
    mp_conv_desc_init(&d[1], B, 4, 4, 4, 6, 4, 4, 2, 1);
    mp_conv_desc_init(&d[2], B, 6, 2, 2, 1, 2, 2, 1, 0);
    float *w[3], *bias[3], *dw[3];
    const int layer_of[3] = {0, 2, 4};
    for (int l = 0; l < 3; l++) {
      size_t wo, wl, bo, bl;
      mp_net_param_slice(n, layer_of[l], &wo, &wl, &bo, &bl);
      w[l] = mp_net_params(n) + wo;
      bias[l] = mp_net_params(n) + bo;
      dw[l] = mp_malloc(wl * 4);
    }
    mp_ref_critic D = {3, d, w, bias, 0.2f};
    float gn_ref[B], gn[B];
    double Pref = mp_ref_gradient_penalty(&D, x, 10.0f, dw, gn_ref);
    double P = mp_net_gradient_penalty(n, x, B, 10.0f, 0, gn);
    printf("  %s: penalty %.6f (ref %.6f)\n", name, P, Pref);
    assert_true(fabs(P - Pref) < 1e-5 * fabs(Pref));
    for (int j = 0; j < B; j++) assert_true(fabsf(gn[j] - gn_ref[j]) < 1e-5f * gn_ref[j]);
    size_t np = mp_net_param_count(n);
    float *gp = mp_malloc(np * 4);
    memcpy(gp, mp_net_grads(n), np * 4);
    for (int l = 0; l < 3; l++) {
      size_t wo, wl, bo, bl;
      mp_net_param_slice(n, layer_of[l], &wo, &wl, &bo, &bl);
      double num = 0, den = 0;
      for (size_t i = 0; i < wl; i++) {
        double e = (double)gp[wo + i] - dw[l][i];
        num += e * e;
        den += (double)dw[l][i] * dw[l][i];
      }
      if (!(num / den < 1e-10)) fail_msg("%s layer %d: penalty weight gradient nmse %.2e", name, l, num / den);
      for (size_t i = 0; i < bl; i++) assert_true(gp[bo + i] == 0.0f);
      mp_free(dw[l]);
    }
    /* accumulation: backward (overwrite) then penalty (add) */
    mp_net_forward(n, x, B, true, 0);
    mp_net_backward(n, dy, NULL);
    float *gl = mp_malloc(np * 4);
    memcpy(gl, mp_net_grads(n), np * 4);
    mp_net_set_accumulate(n, true);
    mp_net_gradient_penalty(n, x, B, 10.0f, 0, NULL);
    mp_net_set_accumulate(n, false);
    for (size_t i = 0; i < np; i++) assert_true(fabsf(mp_net_grads(n)[i] - (gl[i] + gp[i])) <= 1e-6f * (1 + fabsf(gp[i])));
    mp_free(gp);
    mp_free(gl);
    mp_net_free(n);
    mp_backend_free(be);
  }
}

/* Batch-norm groups: one net on 4 samples with groups of 2 computes what the same net
 * computes on the two halves separately (outputs; gradients of a summed loss add up),
 * on every backend, fused BN+ReLU included. */
static mp_net *bn_net(mp_backend *be) {
  mp_net *n = mp_net_new(be, 1, 8, 8, B, 93);
  mp_net_conv(n, 4, 3, 1, 1, true);
  mp_net_bn(n);
  mp_net_act(n, MP_ACT_RELU, 0);
  mp_net_conv(n, 3, 3, 1, 1, true);
  mp_net_bn(n);
  mp_net_maxpool2(n);
  mp_net_flatten(n);
  mp_net_linear(n, 1, true);
  mp_net_build(n);
  return n;
}

static void test_bn_groups(void **state) {
  (void)state;
  char list[64];
  snprintf(list, sizeof list, "%s", mp_backend_list());
  float x[B * 64], dy[B];
  mp_rng r;
  mp_rng_init(&r, 68, MP_RNG_TEST, 0);
  for (int i = 0; i < B * 64; i++) x[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  for (int i = 0; i < B; i++) dy[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  for (char *save = NULL, *name = strtok_r(list, " ", &save); name; name = strtok_r(NULL, " ", &save)) {
    mp_backend *be = open_backend(name);
    if (!be) continue;
    mp_net *a = bn_net(be), *h = bn_net(be);
    size_t np = mp_net_param_count(a);
    mp_net_set_bn_group(a, B / 2);
    float ya[B], yh[B];
    memcpy(ya, mp_net_forward(a, x, B, true, 0), sizeof ya);
    mp_net_backward(a, dy, NULL);
    float *gh = mp_calloc(np, 4);
    for (int half = 0; half < 2; half++) {
      memcpy(yh + half * (B / 2), mp_net_forward(h, x + half * (B / 2) * 64, B / 2, true, 0), sizeof yh / 2);
      mp_net_backward(h, dy + half * (B / 2), NULL);
      for (size_t i = 0; i < np; i++) gh[i] += mp_net_grads(h)[i];
    }
    for (int i = 0; i < B; i++) assert_true(fabsf(ya[i] - yh[i]) < 1e-5f * (1 + fabsf(yh[i])));
    double num = 0, den = 0;
    for (size_t i = 0; i < np; i++) {
      double e = (double)mp_net_grads(a)[i] - gh[i];
      num += e * e, den += (double)gh[i] * gh[i];
    }
    printf("  %s: grouped vs split gradient nmse %.2e\n", name, num / den);
    assert_true(num / den < 1e-10);
    /* running statistics: two grouped forwards hold the mean of what two nets, each fed one
     * half twice, hold (two ranks after train's average), not two momentum steps a batch */
    mp_net *h0 = bn_net(be), *h1 = bn_net(be);
    mp_net_forward(a, x, B, true, 1);
    for (int k = 0; k < 2; k++) {
      mp_net_forward(h0, x, B / 2, true, (uint64_t)k);
      mp_net_forward(h1, x + (B / 2) * 64, B / 2, true, (uint64_t)k);
    }
    mp_backend_sync(be);
    int nbn = 0;
    double worst = 0;
    for (int i = 0; i < mp_net_layers(a); i++) {
      float *va, *v0, *v1, *ma = mp_net_running_stats(a, i, &va);
      if (!ma) continue;
      float *m0 = mp_net_running_stats(h0, i, &v0), *m1 = mp_net_running_stats(h1, i, &v1);
      size_t wo, wl, bo, bl; /* wl: the layer's channels */
      mp_net_param_slice(a, i, &wo, &wl, &bo, &bl);
      nbn++;
      for (size_t c = 0; c < wl; c++) {
        double em = 0.5 * ((double)m0[c] + m1[c]), ev = 0.5 * ((double)v0[c] + v1[c]);
        worst = fmax(worst, fmax(fabs(ma[c] - em) / (1e-3 + fabs(em)), fabs(va[c] - ev) / fabs(ev)));
      }
    }
    printf("  %s: grouped running statistics vs the halves' mean: worst relative %.2e (%d layers)\n", name, worst, nbn);
    assert_int_equal(nbn, 2);
    assert_true(worst < 1e-5);
    mp_net_free(h0);
    mp_net_free(h1);
    mp_free(gh);
    mp_net_free(a);
    mp_net_free(h);
    mp_backend_free(be);
  }
}

/* An input-only backward over part of the batch (mp_net_backward_input_part, the
 * relativistic generator step's pass through the critic's fake half) gives each of the
 * part's samples the input gradient the whole batch's pass gives it: a critic-like net
 * whose saved inputs and outputs, pool argmaxes and dropout masks are all read at the
 * part's offset, on every backend. */
static mp_net *part_net(mp_backend *be) {
  mp_net *n = mp_net_new(be, 1, 8, 8, B, 96);
  mp_net_conv_sn(n, 4, 4, 2, 1, true); /* 8x8 -> 4x4 */
  mp_net_act(n, MP_ACT_LRELU, 0.2f);
  mp_net_maxpool2(n); /* -> 2x2 */
  mp_net_dropout(n, 0.3f);
  mp_net_conv(n, 1, 2, 1, 0, true); /* -> 1x1 */
  mp_net_act(n, MP_ACT_TANH, 0);     /* its backward reads the saved output */
  mp_net_flatten(n);
  mp_net_build(n);
  return n;
}

static void test_backward_input_part(void **state) {
  (void)state;
  char list[64];
  snprintf(list, sizeof list, "%s", mp_backend_list());
  float x[B * 64], dy[B], whole[B * 64], part[B * 64];
  mp_rng r;
  mp_rng_init(&r, 69, MP_RNG_TEST, 0);
  for (int i = 0; i < B * 64; i++) x[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  for (int i = 0; i < B; i++) dy[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  static const int parts[3][2] = {{2, 2}, {1, 2}, {3, 1}}; /* (first, count) */
  for (char *save = NULL, *name = strtok_r(list, " ", &save); name; name = strtok_r(NULL, " ", &save)) {
    mp_backend *be = open_backend(name);
    if (!be) continue;
    mp_net *n = part_net(be);
    mp_net_forward(n, x, B, true, 5);
    mp_net_backward_input(n, dy, whole);
    double worst = 0;
    for (int k = 0; k < 3; k++) {
      const int first = parts[k][0], count = parts[k][1];
      mp_net_backward_input_part(n, first, count, dy + first, part);
      double num = 0, den = 0;
      for (int i = 0; i < count * 64; i++) {
        double e = (double)part[i] - whole[first * 64 + i];
        num += e * e, den += (double)whole[first * 64 + i] * whole[first * 64 + i];
      }
      assert_true(den > 0);
      if (num / den > worst) worst = num / den;
    }
    printf("  %s: part vs whole-batch input gradient, worst nmse %.2e\n", name, worst);
    assert_true(worst < 1e-12);
    mp_net_free(n);
    mp_backend_free(be);
  }
}

/* The SPEC's networks have exactly the parameter counts of their PyTorch definitions
 * (torch.nn Sequential of the same layers: counted once with Debian's torch 1.13). */
static void test_models(void **state) {
  (void)state;
  char err[128];
  mp_backend *be = mp_backend_create("ref", err, sizeof err);
  mp_net *b1, *rest;
  mp_model_classifier(be, 1, 5, 0.5f, &b1, &rest);
  assert_int_equal(mp_net_param_count(b1), 2544);
  assert_int_equal(mp_net_param_count(rest), 2232321);
  assert_int_equal(mp_net_output_size(b1), 16 * 64 * 64);
  assert_int_equal(mp_net_output_size(rest), 1);
  float *x = mp_calloc(128 * 128, 4);
  const float *f1 = mp_net_forward(b1, x, 1, false, 0);
  const float *y = mp_net_forward(rest, f1, 1, false, 0);
  assert_true(isfinite(y[0]));
  mp_free(x);
  mp_net_free(b1);
  mp_net_free(rest);
  static const size_t dcount[2] = {6956032, 27805696}, gcount[2] = {7475072, 29892352};
  for (int k = 0; k < 2; k++) {
    int f = 64 << k;
    mp_net *d = mp_model_dcgan_d(be, f, k == 1, 1, 7), *gn = mp_model_dcgan_g(be, f, f, 1, 8);
    assert_int_equal(mp_net_param_count(d), dcount[k]);
    assert_int_equal(mp_net_param_count(gn), gcount[k]);
    assert_int_equal(mp_net_output_size(d), 1);
    assert_int_equal(mp_net_output_size(gn), 128 * 128);
    mp_net_free(d);
    mp_net_free(gn);
  }
  mp_backend_free(be);
}

/* WGAN-GP's eps is drawn per sample of the global batch: two "ranks" with 2 samples each
 * (offsets 0 and 2 of 4) mix exactly the interpolates one process mixes for all 4. */
static void test_gp_eps_global(void **state) {
  (void)state;
  char err[128];
  mp_backend *be = mp_backend_create("ref", err, sizeof err);
  mp_net *d = mp_model_dcgan_d(be, 2, false, 8, 7), *gn = mp_model_dcgan_g(be, 2, 2, 4, 8);
  const size_t px = 128 * 128;
  float *xr = mp_malloc(4 * px * 4), *xf = mp_malloc(4 * px * 4), *full = mp_malloc(4 * px * 4);
  mp_rng r;
  mp_rng_init(&r, 5, MP_RNG_TEST, 0);
  for (size_t i = 0; i < 4 * px; i++) xr[i] = (float)mp_rng_uniform_f64(&r), xf[i] = -(float)mp_rng_uniform_f64(&r);
  mp_gan_work *w = mp_gan_work_new(d, gn, MP_GAN_WGAN_GP, 10.0f, 4, 13);
  mp_gan_critic_gradients(w, xr, xf, 3, NULL);
  memcpy(full, mp_gan_work_xhat(w), 4 * px * 4);
  mp_gan_work_free(w);
  int differ = 0;
  for (int k = 0; k < 2; k++) {
    w = mp_gan_work_new(d, gn, MP_GAN_WGAN_GP, 10.0f, 2, 13);
    mp_gan_work_set_sample_offset(w, 2 * (uint64_t)k, 4);
    mp_gan_critic_gradients(w, xr + 2 * k * px, xf + 2 * k * px, 3, NULL);
    differ |= memcmp(mp_gan_work_xhat(w), full + 2 * k * px, 2 * px * 4) != 0;
    mp_gan_work_free(w);
  }
  assert_false(differ);
  /* and a sample's eps is not its rank's neighbour's: the halves are not mixed alike */
  w = mp_gan_work_new(d, gn, MP_GAN_WGAN_GP, 10.0f, 2, 13);
  mp_gan_critic_gradients(w, xr + 2 * px, xf + 2 * px, 3, NULL);
  assert_true(memcmp(mp_gan_work_xhat(w), full + 2 * px, 2 * px * 4) != 0);
  mp_gan_work_free(w);
  mp_free(xr), mp_free(xf), mp_free(full);
  mp_net_free(d), mp_net_free(gn);
  mp_backend_free(be);
}

/* Checkpoints: save, keep training, load, continue: bit-identical to never stopping. */
static void test_checkpoint(void **state) {
  (void)state;
  char err[256], path[256];
  snprintf(path, sizeof path, "%s/net.h5", mp_test_tmpdir());
  mp_backend *be = mp_backend_create("ref", err, sizeof err);
  mp_net *a = classifier(be), *b = classifier(be);
  float x[B * 64], t[B] = {1, 0, 1, 0}, dy[B];
  mp_rng r;
  mp_rng_init(&r, 66, MP_RNG_TEST, 0);
  for (int i = 0; i < B * 64; i++) x[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  for (uint64_t s = 0; s < 6; s++) {
    if (s == 3) assert_int_equal(mp_net_save(a, path, s, err, sizeof err), 0);
    mp_ref_bce_logits(mp_net_forward(a, x, B, true, s), t, dy, B);
    mp_net_backward(a, dy, NULL);
    mp_net_adam(a, 1e-2f, 0.5f, 0.999f, 1e-8f);
  }
  uint64_t step = 0;
  if (mp_net_load(b, path, &step, err, sizeof err)) fail_msg("%s", err);
  assert_int_equal(step, 3);
  for (uint64_t s = step; s < 6; s++) {
    mp_ref_bce_logits(mp_net_forward(b, x, B, true, s), t, dy, B);
    mp_net_backward(b, dy, NULL);
    mp_net_adam(b, 1e-2f, 0.5f, 0.999f, 1e-8f);
  }
  assert_memory_equal(mp_net_params(a), mp_net_params(b), mp_net_param_count(a) * 4);
  float *va, *vb;
  float *ma = mp_net_running_stats(a, 1, &va), *mb = mp_net_running_stats(b, 1, &vb);
  assert_memory_equal(ma, mb, 4 * 4);
  assert_memory_equal(va, vb, 4 * 4);
  /* a network of another shape is refused, naming the tensor */
  mp_net *g = generator(be);
  assert_int_equal(mp_net_load(g, path, NULL, err, sizeof err), -1);
  assert_non_null(strstr(err, "00_convt/weight"));
  assert_int_equal(mp_net_load(a, "/nonexistent.h5", NULL, err, sizeof err), -1);
  mp_net_free(a);
  mp_net_free(b);
  mp_net_free(g);
  mp_backend_free(be);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_classifier_grads),
      cmocka_unit_test(test_generator_grads),
      cmocka_unit_test(test_backends_agree),
      cmocka_unit_test(test_spectral_norm_net),
      cmocka_unit_test(test_gradient_penalty_net),
      cmocka_unit_test(test_bn_groups),
      cmocka_unit_test(test_backward_input_part),
      cmocka_unit_test(test_models),
      cmocka_unit_test(test_gp_eps_global),
      cmocka_unit_test(test_checkpoint),
  };
  return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
