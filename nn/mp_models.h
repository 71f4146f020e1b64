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

void mp_model_classifier(mp_backend *be, int max_batch, uint64_t seed, float dropout, mp_net **block1, mp_net **rest);
/* One classifier gradient computation on n samples (block 1 then the rest, BCE with
 * logits against t, backward through both): returns the loss; *logits (may be NULL)
 * points at the n logits.  dy (n floats) and d1 (n x 16 x 64 x 64) are the caller's
 * scratch. */
double mp_model_classifier_gradients(mp_net *block1, mp_net *rest, const float *x, const float *t, int n,
                                     uint64_t step, float *dy, float *d1, const float **logits);

mp_net *mp_model_dcgan_d(mp_backend *be, int f, bool spectral_norm, int max_batch, uint64_t seed);
mp_net *mp_model_dcgan_g(mp_backend *be, int z, int f, int max_batch, uint64_t seed);

#endif
