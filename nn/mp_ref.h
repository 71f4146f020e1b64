/* mp_ref — reference kernels of the nn library: plain C, loops written to be obviously
 * right, accumulation in double.  They are the oracle the fast backends (oneDNN, CUDA)
 * are held to, and the `ref` backend runs them.  Layouts: activations NCHW, convolution
 * weights KCRS (out channels, in channels, kernel rows, kernel cols), all float32.
 *
 * Work in progress (issue 5): the convolution family is here; batch norm, pooling,
 * activations, linear, dropout, losses, Adam and spectral norm follow, then the backend
 * vtable over them.
 */
#ifndef MP_REF_H
#define MP_REF_H

#include <stddef.h>

/* A 2-D convolution: input n x c x h x w, k filters of c x r x s, stride, zero padding.
 * Output n x k x p x q with p = (h + 2 pad - r) / stride + 1 (likewise q). */
typedef struct {
  int n, c, h, w;
  int k, r, s;
  int stride, pad;
  int p, q;
} mp_conv_desc;

/* Fill d and derive p, q.  Returns 0, or -1 when the shape is impossible (no output,
 * non-positive sizes or stride, or a padding as large as the kernel). */
int mp_conv_desc_init(mp_conv_desc *d, int n, int c, int h, int w, int k, int r, int s, int stride, int pad);

size_t mp_conv_x_count(const mp_conv_desc *d); /* n*c*h*w */
size_t mp_conv_w_count(const mp_conv_desc *d); /* k*c*r*s */
size_t mp_conv_y_count(const mp_conv_desc *d); /* n*k*p*q */

/* y = conv(x, wt) + bias (bias may be NULL). */
void mp_ref_conv2d_forward(const mp_conv_desc *d, const float *x, const float *wt, const float *bias, float *y);
/* dx = the adjoint of the convolution applied to dy (overwrites dx).  This is also the
 * forward pass of the transposed convolution with the same weights. */
void mp_ref_conv2d_backward_data(const mp_conv_desc *d, const float *dy, const float *wt, float *dx);
/* dw = sum over the batch of x (*) dy, db = sum of dy (overwrite; db may be NULL). */
void mp_ref_conv2d_backward_weights(const mp_conv_desc *d, const float *x, const float *dy, float *dw, float *db);

#endif
