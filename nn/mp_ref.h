/* mp_ref — reference kernels of the nn library: plain C, loops written to be obviously
 * right, accumulation in double.  They are the oracle the fast backends (oneDNN, CUDA)
 * are held to, and the `ref` backend runs them.  The convolutions alone run their loops in
 * a faster order, with each output element's terms still added in the order its definition
 * names (given with each below): tests/test_nn_ref.c holds them bit for bit to the
 * definitions written as one loop nest per element.  Layouts: activations NCHW, convolution
 * weights KCRS (out channels, in channels, kernel rows, kernel cols), all float32.
 *
 * Convolutions, batch norm, activations, max-pool, linear, concat, dropout,
 * BCE-with-logits, Adam, spectral norm, the GAN losses and the WGAN-GP penalty of a
 * reference critic.  Conventions follow PyTorch so parity tests can compare tensor for tensor (linear weights out x in, batch-norm running variance
 * unbiased, Adam's bias correction in PyTorch's arithmetic order).
 */
#ifndef MP_REF_H
#define MP_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A 2-D convolution: input n x c x h x w, k filters of c x r x s, stride, zero padding
 * `pad` rows and `pad_w` columns on each side.  Output n x k x p x q with
 * p = (h + 2 pad - r) / stride + 1, q = (w + 2 pad_w - s) / stride + 1. */
typedef struct {
  int n, c, h, w;
  int k, r, s;
  int stride, pad;
  int p, q;
  int pad_w; /* = pad for square kernels (Inception-v3's 1x7 / 7x1 kernels pad one axis only) */
} mp_conv_desc;

/* Fill d and derive p, q.  Returns 0, or -1 when the shape is impossible (no output,
 * non-positive sizes or stride, or a padding as large as the kernel). */
int mp_conv_desc_init(mp_conv_desc *d, int n, int c, int h, int w, int k, int r, int s, int stride, int pad);
/* The same with separate row and column padding (each below its kernel side). */
int mp_conv_desc_init_hw(mp_conv_desc *d, int n, int c, int h, int w, int k, int r, int s, int stride, int pad_h,
                         int pad_w);

size_t mp_conv_x_count(const mp_conv_desc *d); /* n*c*h*w */
size_t mp_conv_w_count(const mp_conv_desc *d); /* k*c*r*s */
size_t mp_conv_y_count(const mp_conv_desc *d); /* n*k*p*q */

/* y = conv(x, wt) + bias (bias may be NULL): y[n][k][p][q] = bias[k] + the sum over c, r, s
 * (in that order) of x[n][c][p stride - pad + r][q stride - pad_w + s] wt[k][c][r][s]. */
void mp_ref_conv2d_forward(const mp_conv_desc *d, const float *x, const float *wt, const float *bias, float *y);
/* dx = the adjoint of the convolution applied to dy (overwrites dx): dx[n][c][i][j] = the sum
 * over k, r, s (in that order) of dy[n][k][p][q] wt[k][c][r][s] where p stride - pad + r = i and
 * q stride - pad_w + s = j.  This is also the forward pass of the transposed convolution with
 * the same weights. */
void mp_ref_conv2d_backward_data(const mp_conv_desc *d, const float *dy, const float *wt, float *dx);
/* dw = sum over the batch of x (*) dy, db = sum of dy (overwrite; db may be NULL):
 * dw[k][c][r][s] = the sum over n, p, q (in that order) of x[n][c][p stride - pad + r]
 * [q stride - pad_w + s] dy[n][k][p][q]. */
void mp_ref_conv2d_backward_weights(const mp_conv_desc *d, const float *x, const float *dy, float *dw, float *db);

/* ---- batch norm over N, H, W per channel (NCHW) ------------------------------------- */
typedef struct {
  int n, c, hw;      /* hw = H * W */
  float eps;         /* 1e-5 */
  float momentum;    /* 0.1: running = (1 - m) running + m batch */
} mp_bn_desc;

/* Training forward: batch mean/variance (biased, for normalising), saves mean and
 * inverse std (c each) for the backward, updates the running mean and the running
 * variance (unbiased, as PyTorch). */
void mp_ref_bn_forward_train(const mp_bn_desc *d, const float *x, const float *gamma, const float *beta, float *y,
                             float *save_mean, float *save_invstd, float *run_mean, float *run_var);
/* Inference forward with the running statistics. */
void mp_ref_bn_forward_eval(const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                            const float *run_mean, const float *run_var, float *y);
/* Training backward: dx, dgamma, dbeta (overwrite) from dy and the saved statistics. */
void mp_ref_bn_backward(const mp_bn_desc *d, const float *x, const float *dy, const float *gamma,
                        const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta);

/* ---- element-wise activations (n elements; backward takes the forward's input x or
 * output y as the formula needs; dx may alias dy) ------------------------------------------ */
void mp_ref_relu_forward(const float *x, float *y, size_t n);
void mp_ref_relu_backward(const float *x, const float *dy, float *dx, size_t n);
void mp_ref_lrelu_forward(const float *x, float *y, size_t n, float slope);
void mp_ref_lrelu_backward(const float *x, const float *dy, float *dx, size_t n, float slope);
void mp_ref_tanh_forward(const float *x, float *y, size_t n);
void mp_ref_tanh_backward(const float *y, const float *dy, float *dx, size_t n);
void mp_ref_sigmoid_forward(const float *x, float *y, size_t n);
void mp_ref_sigmoid_backward(const float *y, const float *dy, float *dx, size_t n);

/* ---- max-pool 2x2 stride 2 (H, W even) --------------------------------------------------- */
/* argmax (n*c*(h/2)*(w/2)) records the winning offset 0..3 within each window (first
 * maximum in row-major order, as PyTorch). */
void mp_ref_maxpool2_forward(const float *x, float *y, unsigned char *argmax, int n, int c, int h, int w);
void mp_ref_maxpool2_backward(const float *dy, const unsigned char *argmax, float *dx, int n, int c, int h, int w);
/* Inference pooling (Inception-v3): x (n, c, h, w) -> y (n, c, oh, ow), oh = (h + 2 pad - k) /
 * stride + 1 (ow alike), a k x k window at `stride` with `pad` on each side.  kind
 * MP_POOL_MAX: the window's maximum, padding ignored (comparisons in window
 * order, row by row; NaNs never win); MP_POOL_AVG: the window's sum
 * divided by k*k (count_include_pad); MP_POOL_AVG_IN: divided by the window's pixels inside the
 * image.  Sums in double in window order, the quotient in double, rounded once to float. */
enum { MP_POOL_MAX, MP_POOL_AVG, MP_POOL_AVG_IN };
void mp_ref_pool2d_forward(int kind, const float *x, float *y, int n, int c, int h, int w, int k, int stride, int pad);
/* n uint8 side x side images -> n x S x S floats in [-1, 1], as pytorch-fid feeds Inception-v3:
 * bilinear (align_corners = false) of u8/255, then 2x - 1, with PyTorch 1.13's CPU arithmetic
 * (the scale side/S in float, each source position in double from it, clamped at 0, the weights
 * rounded to float, the interpolation in float: a' = l0c a[c0]/255 + l1c a[c1]/255 per source
 * row, v = l0r a'(r0) + l1r a'(r1), each product and sum rounded, no fused multiply-add). */
void mp_ref_resize_u8(const uint8_t *px, int n, int side, int S, float *out);
/* rows x width floats: dst[r * dpitch + e] = src[r * spitch + e] (pitches in floats) */
void mp_ref_copy2d(float *dst, size_t dpitch, const float *src, size_t spitch, size_t width, size_t rows);

/* ---- linear: y[n][o] = sum_i x[n][i] w[o][i] + b[o] ------------------------------------- */
void mp_ref_linear_forward(const float *x, const float *w, const float *b, float *y, int n, int in, int out);
void mp_ref_linear_backward(const float *x, const float *w, const float *dy, float *dx, float *dw, float *db, int n,
                            int in, int out);

/* ---- dropout: element e of call `index` is kept when the counter-based draw
 * u(seed, MP_RNG_DROPOUT, index, e0 + e) >= p, and scaled by 1/(1-p).  e0 is the global
 * position of the call's first element (a rank's slice of a data-parallel batch starts
 * at its first sample's), so the mask is the same on every backend and any number of
 * ranks.  mask (n bytes) is written for the backward. ------------------------------------- */
void mp_ref_dropout_forward(const float *x, float *y, unsigned char *mask, size_t n, float p, uint64_t seed,
                            uint64_t index, uint64_t e0);
void mp_ref_dropout_backward(const float *dy, const unsigned char *mask, float *dx, size_t n, float p);

/* ---- patch input: n uint8 patches (P x P; src[i] NULL = an all-zero input) -> floats in
 * [-1, 1] (v / 127.5 - 1) into dst (n x P x P), patch i augmented by bits[i] (bits may
 * be NULL = none): bit 0 horizontal flip, bit 1 vertical flip, then with rot90 bits 2-3
 * quarter turns, (i, j) -> (j, P-1-i) each. ---- */
void mp_ref_patches_to_input(const uint8_t *const *src, const uint32_t *bits, int n, int P, int rot90, float *dst);

/* ---- concat along channels: y (n x (ca+cb) x hw) = [a (n x ca x hw); b (n x cb x hw)];
 * the backward splits dy back (either part may be NULL) ------------------------------------ */
void mp_ref_concat_forward(const float *a, const float *b, float *y, int n, int ca, int cb, int hw);
void mp_ref_concat_backward(const float *dy, float *da, float *db, int n, int ca, int cb, int hw);

/* ---- BCE with logits, mean over n: returns the loss, writes dL/dz (may be NULL) -------- */
double mp_ref_bce_logits(const float *z, const float *t, float *dz, size_t n);

/* ---- Adam (PyTorch's update; step counts from 1) ------------------------------------------ */
void mp_ref_adam_step(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                      float beta2, float eps, long step);

/* ---- spectral norm (Miyato et al. 2018, as torch.nn.utils.spectral_norm) ----------------
 * W seen as rows x cols (rows = out channels, cols = the rest).  One power iteration
 * per call with the persistent u (rows): v = normalize(W^T u), u = normalize(W v),
 * sigma = u . W v; w_sn = W / sigma.  u and v are constants for the gradient, as in
 * PyTorch.  v (cols) is scratch and output.  Returns sigma. */
double mp_ref_spectral_norm_forward(const float *w, int rows, int cols, float *u, float *v, float *w_sn);
/* Eval mode (PyTorch's): sigma = u . W v from the stored u, v; w_sn = W / sigma. */
double mp_ref_spectral_norm_eval(const float *w, int rows, int cols, const float *u, const float *v, float *w_sn);
/* dW from dW_sn: dW_sn / sigma - (<dW_sn, W> / sigma^2) u v^T (overwrites dw). */
void mp_ref_spectral_norm_backward(const float *w, const float *dw_sn, int rows, int cols, const float *u,
                                   const float *v, double sigma, float *dw);

/* ---- the GAN losses of SPEC §7 on critic outputs cr = C(x_real), cf = C(x_fake), n each --
 * Returns the loss and writes its gradients with respect to cr and cf (either may be
 * NULL).  `generator` selects the G-step form.  For wgan-gp this is the E C(xf) - E C(xr)
 * part only; the penalty is mp_ref_gradient_penalty. */
typedef enum { MP_GAN_WGAN_GP, MP_GAN_RSGAN, MP_GAN_RASGAN, MP_GAN_RALSGAN, MP_GAN_RAHINGE } mp_gan_loss;
double mp_ref_gan_loss(mp_gan_loss kind, bool generator, const float *cr, const float *cf, int n, float *dcr,
                       float *dcf);

/* ---- the WGAN-GP penalty through a piecewise-linear critic (SPEC §7) ----------------------
 * The critic: convolutions 1..L, leaky ReLU after every one but the last, output one
 * value per sample (n x 1 x 1 x 1), no batch norm, so samples are independent and the
 * per-sample input gradients come from one backward pass.  g_n = grad_x C(xhat_n) is a
 * linear function of the weights once the leaky-ReLU slopes are fixed by the forward
 * pass; the penalty P = lambda * mean_n (||g_n|| - 1)^2 is differentiated through that
 * backward pass with the same three convolution kernels in reverse order:
 *   u_L = 1;  t_l = s_l * u_l (s_L = 1);  u_{l-1} = conv^T(W_l, t_l);  g = u_0
 *   v_0 = dP/dg;  dW_l = dW(v_{l-1}, t_l);  v_l = s_l * conv(v_{l-1}, W_l)
 * (the slopes are piecewise constant, so they contribute nothing; biases get no gradient
 * from the penalty). */
typedef struct {
  int layers;
  const mp_conv_desc *d; /* layers descriptors, d[l].n = batch */
  float *const *w;       /* per layer weights (KCRS) */
  float *const *b;       /* per layer biases (k each; NULL entries allowed) */
  float slope;           /* leaky ReLU slope, 0.2 */
} mp_ref_critic;

/* out[n] = C(x_n). */
void mp_ref_critic_forward(const mp_ref_critic *D, const float *x, float *out);
/* Returns P; dw[l] (overwritten) = dP/dW_l; gnorm (n, may be NULL) = ||g_n||. */
double mp_ref_gradient_penalty(const mp_ref_critic *D, const float *xhat, float lambda, float *const *dw,
                               float *gnorm);

#endif
