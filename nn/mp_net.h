/* mp_net — a sequential network on a backend: the layers of SPEC §6 and §7 (conv,
 * transposed conv, batch norm, activations, 2x2 max-pool, flatten, linear, dropout),
 * parameters, gradients and Adam state each in ONE contiguous buffer (one allreduce
 * moves every gradient), activations allocated once for the largest batch.
 *
 * Initialisation follows PyTorch's defaults (uniform +-1/sqrt(fan_in) for weights and
 * biases; batch norm gamma 1, beta 0, running mean 0, variance 1), drawn from the
 * counter-based RNG keyed by (seed, MP_RNG_INIT, parameter tensor), so a network is the
 * same whatever the number of ranks.
 *
 * The critic's gradient penalty (a derivative of a gradient) runs through the same
 * kernels in reverse order: mp_net_gradient_penalty.
 */
#ifndef MP_NET_H
#define MP_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_backend.h"

typedef struct mp_net mp_net;

mp_net *mp_net_new(mp_backend *be, int c, int h, int w, int max_batch, uint64_t seed);
void mp_net_free(mp_net *net);

/* Layers, in order.  Square kernels. */
void mp_net_conv(mp_net *net, int out_channels, int kernel, int stride, int pad, bool bias);
/* A convolution whose weight is spectrally normalised (one power iteration per training
 * forward, persistent u; eval uses the stored u and v, as PyTorch). */
void mp_net_conv_sn(mp_net *net, int out_channels, int kernel, int stride, int pad, bool bias);
void mp_net_convt(mp_net *net, int out_channels, int kernel, int stride, int pad); /* no bias (DCGAN) */
void mp_net_bn(mp_net *net);
void mp_net_act(mp_net *net, int kind, float slope); /* MP_ACT_* */
void mp_net_maxpool2(mp_net *net);
void mp_net_flatten(mp_net *net);
void mp_net_linear(mp_net *net, int out, bool bias);
void mp_net_dropout(mp_net *net, float p);

/* Shapes, buffers and initial weights.  Fatal on an impossible shape (a model bug). */
void mp_net_build(mp_net *net);

/* Forward n <= max_batch samples (n x c x h x w).  train: batch statistics and running
 * averages for batch norm, dropout on (masks keyed by (seed, step, layer)).  Returns the
 * output (n x output size), valid until the next forward. */
const float *mp_net_forward(mp_net *net, const float *x, int n, bool train, uint64_t step);
/* The net's input buffer (max_batch x c x h x w, backend memory): a caller may write the
 * next batch there (e.g. with the backend's patches_to_input) and pass it as x to
 * mp_net_forward, which then copies nothing. */
float *mp_net_input(mp_net *net);
mp_backend *mp_net_backend(const mp_net *net);
/* Backward from dL/doutput (n x output size) of the last forward: writes every
 * parameter gradient (overwrites) and, when dx is non-NULL, dL/dinput. */
void mp_net_backward(mp_net *net, const float *dy, float *dx);
/* mp_net_backward that keeps dL/dinput in the backend's memory: returns it (n x input
 * size, valid until the next backward), for the backward of a net feeding this one (no
 * round trip through host memory on a device backend). */
const float *mp_net_backward_keep_dx(mp_net *net, const float *dy);
/* Batch-norm statistics in training over groups of `samples` consecutive samples of the
 * batch (0, the default: the whole batch).  With K ranks each normalising its own B/K
 * samples (SPEC §6: statistics per rank), one rank with group B/K computes the same
 * function of the same global batch.  The batch must be a multiple of the group; the
 * running statistics take one update a forward, the mean of the updates each group alone
 * would make (what K ranks hold once they average theirs), so the model in eval mode is
 * K ranks' too. */
void mp_net_set_bn_group(mp_net *net, int samples);
/* The global position of the first sample of the next forwards (default 0): rank r of a
 * data-parallel batch passes r * B/K so dropout masks do not depend on K. */
void mp_net_set_sample_offset(mp_net *net, uint64_t first);
/* Backward for dL/dinput only (dx required): no parameter gradient is computed or
 * touched (the generator step's pass through the critic). */
void mp_net_backward_input(mp_net *net, const float *dy, float *dx);
/* mp_net_backward_input for samples [first, first + count) of the last forward alone
 * (0 <= first, 1 <= count, first + count <= that forward's batch: fatal otherwise): dy
 * holds those samples' output gradients (count x output size), dx receives their input
 * gradients (count x input size).  For nets whose layers treat the samples independently
 * (convolutions, activations, pooling, flatten, dropout; not batch norm in training):
 * each sample's gradient is then the one the whole batch's pass gives it, for that
 * part's work only (the relativistic generator step needs the fakes' half of the pair). */
void mp_net_backward_input_part(mp_net *net, int first, int count, const float *dy, float *dx);
/* Accumulation: when on, mp_net_backward and mp_net_gradient_penalty ADD their parameter
 * gradients into the gradient buffer instead of overwriting it (a loss made of several
 * passes, e.g. the critic loss plus its gradient penalty).  Off by default. */
void mp_net_set_accumulate(mp_net *net, bool on);
void mp_net_zero_grads(mp_net *net);
/* The WGAN-GP penalty P = lambda * mean_j (||grad_x C(xhat_j)|| - 1)^2 (SPEC §7) of a
 * piecewise-linear critic (conv, optional spectral norm, ReLU / leaky ReLU, flatten; one
 * output per sample): runs a training forward on xhat (n samples; for SN layers one
 * power iteration, as PyTorch's D(xhat)), the backward chain for the input gradients,
 * and the derivative of P through that chain.  Writes (or with accumulation adds) dP/dW
 * into the gradients (biases: 0); gnorm (n, may be NULL) gets ||grad_x C(xhat_j)||.
 * Returns P.  Afterwards the net's activations are those of xhat. */
double mp_net_gradient_penalty(mp_net *net, const float *xhat, int n, float lambda, uint64_t step, float *gnorm);
/* One Adam step over all parameters (batch-norm running statistics are not parameters). */
void mp_net_adam(mp_net *net, float lr, float beta1, float beta2, float eps);

size_t mp_net_param_count(const mp_net *net);
float *mp_net_params(mp_net *net); /* the contiguous buffers */
float *mp_net_grads(mp_net *net);
size_t mp_net_output_size(const mp_net *net); /* per sample */
/* The input of layer i (i = layers: the output) of the last forward, n x *per_sample
 * floats in the backend's memory (e.g. the classifier's penultimate 512-d features for
 * the FID "domain" extractor).  Fatal for the BN output of a fused BN+ReLU (never
 * materialised). */
const float *mp_net_activation(const mp_net *net, int i, size_t *per_sample);
int mp_net_layers(const mp_net *net);
/* Offset and length (floats) of layer i's weight and bias in the flat buffer (len 0 if none). */
void mp_net_param_slice(const mp_net *net, int layer, size_t *w_off, size_t *w_len, size_t *b_off, size_t *b_len);
/* Checkpoint (HDF5, format 1): one dataset per tensor, named by layer ("03_conv/weight",
 * "04_bn/running_mean", "00_conv/sn_u"), Adam's m and v beside the parameters
 * ("adam_m/03_conv/weight"), attributes format_version, adam_step, seed, software
 * version and `step` (the caller's RNG counter: batches drawn so far).  Written to a
 * temporary file and renamed, so a crash never leaves a half checkpoint.  Load checks
 * that every tensor exists with the expected size.  0, or -1 with err. */
int mp_net_save(const mp_net *net, const char *path, uint64_t step, char *err, size_t errlen);
int mp_net_load(mp_net *net, const char *path, uint64_t *step, char *err, size_t errlen);

/* Running mean and variance of a batch-norm layer (c floats each), NULL otherwise. */
float *mp_net_running_stats(mp_net *net, int layer, float **var);

#endif
