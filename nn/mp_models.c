/* mp_models — the SPEC's networks (see mp_models.h). */
#include "mp_models.h"

#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_rng.h"

static void conv_bn_relu(mp_net *n, int k) {
  mp_net_conv(n, k, 3, 1, 1, true);
  mp_net_bn(n);
  mp_net_act(n, MP_ACT_RELU, 0);
}

void mp_model_classifier(mp_backend *be, int max_batch, uint64_t seed, float dropout, mp_net **block1, mp_net **rest) {
  mp_net *b1 = mp_net_new(be, 1, 128, 128, max_batch, seed);
  conv_bn_relu(b1, 16);
  conv_bn_relu(b1, 16);
  mp_net_maxpool2(b1);
  mp_net_build(b1);
  mp_net *r = mp_net_new(be, 16, 64, 64, max_batch, seed + 1);
  static const int widths[4] = {32, 64, 128, 128}, reps[4] = {2, 3, 3, 3};
  for (int b = 0; b < 4; b++) {
    for (int i = 0; i < reps[b]; i++) conv_bn_relu(r, widths[b]);
    mp_net_maxpool2(r);
  }
  mp_net_flatten(r);
  mp_net_linear(r, 512, true);
  mp_net_act(r, MP_ACT_RELU, 0);
  mp_net_dropout(r, dropout);
  mp_net_linear(r, 512, true);
  mp_net_act(r, MP_ACT_RELU, 0);
  mp_net_dropout(r, dropout);
  mp_net_linear(r, 1, true);
  mp_net_build(r);
  *block1 = b1;
  *rest = r;
}

double mp_model_classifier_gradients(mp_net *b1, mp_net *rest, const float *x, const float *t, int n,
                                     uint64_t step, float *dy, float *d1, const float **logits) {
  const float *f1 = mp_net_forward(b1, x, n, true, step);
  const float *y = mp_net_forward(rest, f1, n, true, step);
  double loss = mp_ref_bce_logits(y, t, dy, (size_t)n);
  if (logits) *logits = y;
  if (d1) {
    mp_net_backward(rest, dy, d1);
    mp_net_backward(b1, d1, NULL);
  } else { /* block 1's output gradient stays in backend memory */
    mp_net_backward(b1, mp_net_backward_keep_dx(rest, dy), NULL);
  }
  return loss;
}

mp_net *mp_model_dcgan_d(mp_backend *be, int f, bool sn, int max_batch, uint64_t seed) {
  mp_net *n = mp_net_new(be, 1, 128, 128, max_batch, seed);
  static const int mult[5] = {1, 2, 4, 8, 8};
  for (int i = 0; i < 5; i++) {
    if (sn)
      mp_net_conv_sn(n, f * mult[i], 4, 2, 1, false);
    else
      mp_net_conv(n, f * mult[i], 4, 2, 1, false);
    mp_net_act(n, MP_ACT_LRELU, 0.2f);
  }
  if (sn)
    mp_net_conv_sn(n, 1, 4, 1, 0, false);
  else
    mp_net_conv(n, 1, 4, 1, 0, false);
  mp_net_build(n);
  return n;
}

mp_net *mp_model_dcgan_g(mp_backend *be, int z, int f, int max_batch, uint64_t seed) {
  mp_net *n = mp_net_new(be, z, 1, 1, max_batch, seed);
  mp_net_convt(n, 8 * f, 4, 1, 0);
  mp_net_bn(n);
  mp_net_act(n, MP_ACT_RELU, 0);
  static const int mult[4] = {8, 4, 2, 1};
  for (int i = 0; i < 4; i++) {
    mp_net_convt(n, f * mult[i], 4, 2, 1);
    mp_net_bn(n);
    mp_net_act(n, MP_ACT_RELU, 0);
  }
  mp_net_convt(n, 1, 4, 2, 1);
  mp_net_act(n, MP_ACT_TANH, 0);
  mp_net_build(n);
  return n;
}

/* ---- GAN steps ---------------------------------------------------------------------------- */
struct mp_gan_work {
  mp_net *d, *g;
  mp_gan_loss loss;
  float lambda;
  int n;
  int group; /* samples per loss group (the relativistic means): n unless set */
  uint64_t seed;
  uint64_t offset, global; /* this rank's samples within the global batch (eps keys) */
  size_t px;         /* floats per image */
  mp_backend *be;    /* the critic's: pair and dfake live in its memory (a device backend
                      * moves the images between the nets without the host) */
  float *pair;       /* 2n images: [real; fake] */
  float *xhat;       /* n images: the penalty's interpolates, mixed from pair by the backend */
  float *eps;        /* n interpolation weights (host) */
  float *dfake;      /* n images: dL/dxf (the generator step's gradient through the critic) */
  float *dc;         /* 2n critic output gradients */
};

mp_gan_work *mp_gan_work_new(mp_net *d, mp_net *g, mp_gan_loss loss, float gp_lambda, int n, uint64_t seed) {
  MP_CHECK(mp_net_output_size(d) == 1, "the critic must give one value per sample");
  mp_gan_work *w = mp_calloc(1, sizeof *w);
  w->d = d, w->g = g, w->loss = loss, w->lambda = gp_lambda, w->n = n, w->group = n, w->seed = seed;
  w->offset = 0, w->global = (uint64_t)n;
  w->px = mp_net_output_size(g);
  w->be = mp_net_backend(d);
  w->pair = w->be->iface->alloc(w->be, 2 * (size_t)n * w->px * sizeof(float));
  w->dfake = w->be->iface->alloc(w->be, (size_t)n * w->px * sizeof(float));
  w->xhat = w->be->iface->alloc(w->be, (size_t)n * w->px * sizeof(float));
  w->eps = mp_malloc((size_t)n * sizeof(float));
  w->dc = mp_malloc(2 * (size_t)n * sizeof(float));
  return w;
}

void mp_gan_work_set_sample_offset(mp_gan_work *w, uint64_t offset, uint64_t global) {
  MP_CHECK(offset + (uint64_t)w->n <= global, "GAN samples %llu..%llu beyond a global batch of %llu",
           (unsigned long long)offset, (unsigned long long)(offset + (uint64_t)w->n), (unsigned long long)global);
  w->offset = offset, w->global = global;
}

void mp_gan_work_set_group(mp_gan_work *w, int group) {
  if (group <= 0 || group >= w->n) group = w->n;
  MP_CHECK(w->n % group == 0, "a GAN batch of %d is not a multiple of the loss group %d", w->n, group);
  w->group = group;
}

/* The loss's D or G form on critic outputs (cr, cf: n each) with its gradients into dc
 * (dL/dcr) and dc + n (dL/dcf): the mean of the loss over groups of w->group pairs, group q
 * pairing real and fake samples q*group .. (q+1)*group - 1 (their batch means inside the
 * relativistic losses are the group's).  One group: mp_ref_gan_loss itself. */
static double group_loss(mp_gan_work *w, bool generator, const float *cr, const float *cf) {
  const int n = w->n, g = w->group, G = n / g;
  if (G == 1) return mp_ref_gan_loss(w->loss, generator, cr, cf, n, w->dc, w->dc + n);
  double L = 0;
  for (int q = 0; q < G; q++)
    L += mp_ref_gan_loss(w->loss, generator, cr + q * g, cf + q * g, g, w->dc + q * g, w->dc + n + q * g);
  for (int i = 0; i < 2 * n; i++) w->dc[i] = (float)(w->dc[i] / (double)G);
  return L / G;
}

void mp_gan_work_free(mp_gan_work *w) {
  if (!w) return;
  w->be->iface->release(w->be, w->pair);
  w->be->iface->release(w->be, w->dfake);
  w->be->iface->release(w->be, w->xhat);
  mp_free(w->eps);
  mp_free(w->dc);
  mp_free(w);
}

const float *mp_gan_work_pair(const mp_gan_work *w) { return w->pair; }
const float *mp_gan_work_xhat(const mp_gan_work *w) { return w->xhat; }

double mp_gan_critic_gradients(mp_gan_work *w, const float *xr, const float *xf, uint64_t step, double *penalty) {
  const int n = w->n;
  const size_t img = w->px * (size_t)n;
  /* upload: from host or the backend's own memory (a device backend's copy handles both) */
  w->be->iface->upload(w->be, w->pair, xr, img * sizeof(float));
  w->be->iface->upload(w->be, w->pair + img, xf, img * sizeof(float));
  const float *c = mp_net_forward(w->d, w->pair, 2 * n, true, step);
  double L = group_loss(w, false, c, c + n);
  mp_net_backward(w->d, w->dc, NULL);
  double P = 0;
  if (w->loss == MP_GAN_WGAN_GP) {
    for (int j = 0; j < n; j++) {
      mp_rng r;
      mp_rng_init(&r, w->seed, MP_RNG_GP_EPS, step * w->global + w->offset + (uint64_t)j);
      w->eps[j] = (float)mp_rng_uniform_f64(&r);
    }
    /* from the pair's copies of xr and xf, where the critic's backend holds them (a device
     * backend: no transfer, nothing on the host) */
    w->be->iface->mix_rows(w->be, w->pair, w->pair + img, w->eps, n, w->px, w->xhat);
    mp_net_set_accumulate(w->d, true);
    P = mp_net_gradient_penalty(w->d, w->xhat, n, w->lambda, step, NULL);
    mp_net_set_accumulate(w->d, false);
  }
  if (penalty) *penalty = P;
  return L + P;
}

double mp_gan_generator_gradients(mp_gan_work *w, const float *xr, const float *z, uint64_t step,
                                  const float **xf_out) {
  const int n = w->n;
  const size_t img = w->px * (size_t)n;
  const float *xf = mp_net_forward(w->g, z, n, true, step);
  if (xf_out) *xf_out = xf;
  if (w->loss == MP_GAN_WGAN_GP) {
    /* -E C(G(z)): the real batch plays no part, so the critic sees the n fakes alone.  A
     * WGAN-GP critic has no batch norm (mp_net_gradient_penalty allows conv, ReLU / leaky
     * ReLU and flatten only), so each sample's output and input gradient are the same as
     * in the pair, for half the work. */
    const float *cf = mp_net_forward(w->d, xf, n, true, step);
    double L = group_loss(w, true, cf, cf);
    mp_net_backward_input(w->d, w->dc + n, w->dfake);
    mp_net_backward(w->g, w->dfake, NULL);
    return L;
  }
  w->be->iface->upload(w->be, w->pair, xr, img * sizeof(float));
  w->be->iface->upload(w->be, w->pair + img, xf, img * sizeof(float));
  const float *c = mp_net_forward(w->d, w->pair, 2 * n, true, step);
  double L = group_loss(w, true, c, c + n);
  /* The loss reaches G through the fakes alone: the critic treats samples independently (no
   * batch norm), so its backward runs over the pair's fake half only, half the work of the
   * whole pair's (dL/dxr, which nothing needs, is not computed). */
  mp_net_backward_input_part(w->d, n, n, w->dc + n, w->dfake);
  mp_net_backward(w->g, w->dfake, NULL);
  return L;
}
