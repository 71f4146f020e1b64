/* mp_inception — Inception-v3 (Szegedy et al. 2016) for inference: the `inception` FID
 * extractor and the Inception Score of SPEC §8.
 *
 * The network is torchvision's Inception3 without the auxiliary classifier, in one of two
 * variants named by the weights file:
 *   torchvision  its own blocks (3x3 average pools in the branches count the padding);
 *   fid          the network of the standard FID weights (pt_inception-2015-12-05, the
 *                TensorFlow graph ported by pytorch-fid): the branch average pools of
 *                Mixed_5b..5d, 6b..6e and 7b divide by the valid pixels only, Mixed_7c's
 *                branch pool is a 3x3 max pool; 1008 classes.
 * Weights come from tools/convert_inception_weights.py (one HDF5 dataset per state_dict
 * tensor, named as in PyTorch); nothing is downloaded.
 *
 * Input: n grayscale uint8 patches (side x side).  As pytorch-fid: x = u8 / 255,
 * replicated to 3 channels, bilinear resize to 299 x 299 (align_corners = false), then
 * 2x - 1.  Output: pool3 (the 2048-d global average pool, the FID features) and the
 * logits (fc).
 *
 * Convolutions run on the given backend (cpu: oneDNN; ref: the plain-C oracle), each
 * conv + batch norm (eval, eps 1e-3) + ReLU as one convolution with the batch norm folded
 * into its weights and bias (w' = w g / sqrt(v + eps), b' = beta - m g / sqrt(v + eps),
 * computed in double) followed by the backend's ReLU; and the first convolution sums its
 * three input channels' weights, since the three channels are the same gray image
 * (exact in real arithmetic; saves two thirds of that layer).  On a host-memory backend
 * (ref, cpu) pools, concatenation and the resize are plain C on OpenMP threads; on a device
 * backend (cuda, strict: it must offer pool2d_forward and copy2d) the activations stay in its
 * memory, pools and concatenation are its ops and only the resize runs on the host (one
 * upload a batch).  Both give the same arithmetic (the pools are mp_ref_pool2d_forward's).
 * The caller chooses the precision: the FID's extractor belongs on an fp32 backend.
 */
#ifndef MP_INCEPTION_H
#define MP_INCEPTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mp_backend.h"

typedef struct mp_inception mp_inception;

enum { MP_INCEPTION_POOL3 = 2048, MP_INCEPTION_SIDE = 299 };

/* Whether the extractor can run on backend be: every host backend; a device backend only
 * when it offers the optional resize_u8, pool2d_forward and copy2d entries. */
bool mp_inception_runs_on(const mp_backend *be);
/* Load a converted weights file for batches of up to max_batch images.  NULL with the
 * reason (a missing or misshaped tensor named, a wrong format_version, a backend where
 * mp_inception_runs_on is false) in err. */
mp_inception *mp_inception_load(mp_backend *be, const char *path, int max_batch, char *err, size_t errlen);
void mp_inception_free(mp_inception *m);
int mp_inception_classes(const mp_inception *m);
const char *mp_inception_variant(const mp_inception *m); /* "fid" or "torchvision" */

/* n (any number; run in batches of max_batch) uint8 patches of side x side, row-major,
 * -> pool3 (n x 2048) and logits (n x classes; may be NULL). */
void mp_inception_forward_u8(mp_inception *m, const uint8_t *px, int n, int side, float *pool3, float *logits);

/* The Inception Score (Salimans et al. 2016) of n samples' logits in `splits` splits
 * (split i = samples [i n / splits, (i + 1) n / splits)): IS_i = exp(mean_x KL(p(y|x) ||
 * p_i(y))) with p_i(y) the split's mean of the softmax, in double; *mean and *std (the
 * population std over splits, as the reference implementation) — NaN when n < splits. */
void mp_inception_score(const float *logits, int n, int classes, int splits, double *mean, double *std);

#endif
