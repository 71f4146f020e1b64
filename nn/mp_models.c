/* mp_models — the SPEC's networks (see mp_models.h). */
#include "mp_models.h"

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
  mp_net_backward(rest, dy, d1);
  mp_net_backward(b1, d1, NULL);
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
