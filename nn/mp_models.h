/* mp_models — the networks SPEC §6 and §7 name, built on mp_net.
 *
 * Classifier "VGG16/4-BN" (input 1x128x128, pixels in [-1, 1]), split in two so SMOTE
 * (SPEC §9) can run block 1 alone and train the rest on its embeddings:
 *   block1: conv3x3(16)-BN-ReLU x2, maxpool                         -> 16x64x64
 *   rest:   conv3x3(32)-BN-ReLU x2, maxpool; (64) x3; (128) x3; (128) x3 (each + maxpool)
 *           -> 128x4x4 -> flatten 2048 -> FC512-ReLU-dropout -> FC512-ReLU-dropout -> FC1
 * DCGAN critic/discriminator for f filters (no batch norm; spectral norm optional):
 *   conv4x4 s2 (1->f) LReLU0.2, (f->2f), (2f->4f), (4f->8f), (8f->8f) each LReLU0.2
 *   -> 8f x4x4 -> conv4x4 valid (8f->1)
 * DCGAN generator (z = latent size):
 *   z x1x1 -> convT4x4 valid (z->8f) -> convT s2 (8f->8f), (8f->4f), (4f->2f), (2f->f), each BN-ReLU
 *   -> convT4x4 s2 (f->1) -> tanh -> 1x128x128
 */
#ifndef MP_MODELS_H
#define MP_MODELS_H

#include "mp_net.h"
#include "mp_ref.h"

void mp_model_classifier(mp_backend *be, int max_batch, uint64_t seed, float dropout, mp_net **block1, mp_net **rest);
/* One classifier gradient computation on n samples (block 1 then the rest, BCE with
 * logits against t, backward through both): returns the loss; *logits (may be NULL)
 * points at the n logits.  dy (n floats) is the caller's scratch; d1 (n x 16 x 64 x 64), when
 * not NULL, receives block 1's output gradient in host memory (NULL: it goes from one net
 * to the other in the backend's memory, which on a device saves two PCIe copies). */
double mp_model_classifier_gradients(mp_net *block1, mp_net *rest, const float *x, const float *t, int n,
                                     uint64_t step, float *dy, float *d1, const float **logits);

/* The critic is built for 2 x the GAN batch: the steps below run real and fake samples
 * through it in one forward. */
mp_net *mp_model_dcgan_d(mp_backend *be, int f, bool spectral_norm, int max_batch, uint64_t seed);
mp_net *mp_model_dcgan_g(mp_backend *be, int z, int f, int max_batch, uint64_t seed);

/* One GAN step's gradients (SPEC §7).  The critic sees the real and the fake batch in ONE
 * forward of 2n samples ([real; fake]): it has no batch norm, so every sample is the
 * same function as in two separate calls; with spectral norm this makes one power
 * iteration for the pair where the reference implementation's D(xr), D(xf) make two
 * (u converges either way; the parity test runs PyTorch the same way).
 * xr, xf: n x 1 x 128 x 128, in host memory or in the critic backend's (e.g. the generator's
 * output, with no copy through the host); the critic's max batch must be >= 2n. */
typedef struct mp_gan_work mp_gan_work;
mp_gan_work *mp_gan_work_new(mp_net *d, mp_net *g, mp_gan_loss loss, float gp_lambda, int n, uint64_t seed);
void mp_gan_work_free(mp_gan_work *w);
/* Data parallel: this rank's n samples are samples offset .. offset + n - 1 of a global
 * batch of `global` (default 0 and n: one process), so that every sample of the global batch
 * draws its own eps, the same for any number of ranks. */
void mp_gan_work_set_sample_offset(mp_gan_work *w, uint64_t offset, uint64_t global);
/* The loss over groups of `group` samples (0 or >= n: one group, the default; else a divisor
 * of n): the mean of each group's loss, whose relativistic batch means E C(xr), E C(xf) are
 * the group's.  With the generator's batch-norm group the same (mp_net_set_bn_group), a
 * data-parallel step on K ranks computes what one rank computes with the whole global batch in
 * such groups (up to rounding): the GAN's counterpart of train.bn_group. */
void mp_gan_work_set_group(mp_gan_work *w, int group);
/* Critic gradients (overwritten) for detached fakes xf: the loss's D form; for wgan-gp
 * plus the penalty at xhat_j = eps_j xr_j + (1 - eps_j) xf_j, eps_j ~ U(0,1) keyed by
 * (seed, MP_RNG_GP_EPS, step * global + offset + j).  Returns the total loss; *penalty (may be
 * NULL) the penalty alone (0 for other losses). */
double mp_gan_critic_gradients(mp_gan_work *w, const float *xr, const float *xf, uint64_t step, double *penalty);
/* Generator gradients (overwritten): xf = G(z) (training mode), the critic on
 * [xr; xf] (a fresh real batch, C(xr) recomputed; WGAN-GP, whose G loss has no real
 * term: on xf alone, xr unused), the loss's G form, the gradient through the critic's
 * input only (its parameter gradients are untouched), G's backward.
 * Returns the loss; *xf_out (may be NULL) points at the n generated samples. */
double mp_gan_generator_gradients(mp_gan_work *w, const float *xr, const float *z, uint64_t step,
                                  const float **xf_out);
/* The critic input buffer of the last step ([xr; xf], 2n samples) and, after a
 * wgan-gp critic step, xhat (n samples): for tests; both in the critic backend's memory
 * (read them after mp_backend_sync). */
const float *mp_gan_work_pair(const mp_gan_work *w);
const float *mp_gan_work_xhat(const mp_gan_work *w);

#endif
