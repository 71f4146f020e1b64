/* mp_ref — reference kernels (see mp_ref.h). */
#include "mp_ref.h"

#include <string.h>

#include "mp_alloc.h"

int mp_conv_desc_init(mp_conv_desc *d, int n, int c, int h, int w, int k, int r, int s, int stride, int pad) {
  memset(d, 0, sizeof *d);
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || k <= 0 || r <= 0 || s <= 0 || stride <= 0 || pad < 0) return -1;
  if (pad >= r || pad >= s) return -1;
  int hp = h + 2 * pad - r, wp = w + 2 * pad - s;
  if (hp < 0 || wp < 0) return -1;
  *d = (mp_conv_desc){n, c, h, w, k, r, s, stride, pad, hp / stride + 1, wp / stride + 1};
  return 0;
}

size_t mp_conv_x_count(const mp_conv_desc *d) { return (size_t)d->n * d->c * d->h * d->w; }
size_t mp_conv_w_count(const mp_conv_desc *d) { return (size_t)d->k * d->c * d->r * d->s; }
size_t mp_conv_y_count(const mp_conv_desc *d) { return (size_t)d->n * d->k * d->p * d->q; }

/* Element (n, ch, i, j) of an n x C x H x W tensor. */
#define AT4(C_, H_, W_, n_, ch_, i_, j_) ((((size_t)(n_) * (C_) + (ch_)) * (H_) + (i_)) * (W_) + (j_))

void mp_ref_conv2d_forward(const mp_conv_desc *d, const float *x, const float *wt, const float *bias, float *y) {
  for (int n = 0; n < d->n; n++)
    for (int k = 0; k < d->k; k++)
      for (int p = 0; p < d->p; p++)
        for (int q = 0; q < d->q; q++) {
          double acc = bias ? bias[k] : 0.0;
          for (int c = 0; c < d->c; c++)
            for (int r = 0; r < d->r; r++) {
              int i = p * d->stride - d->pad + r;
              if (i < 0 || i >= d->h) continue;
              for (int s = 0; s < d->s; s++) {
                int j = q * d->stride - d->pad + s;
                if (j < 0 || j >= d->w) continue;
                acc += (double)x[AT4(d->c, d->h, d->w, n, c, i, j)] * wt[AT4(d->c, d->r, d->s, k, c, r, s)];
              }
            }
          y[AT4(d->k, d->p, d->q, n, k, p, q)] = (float)acc;
        }
}

void mp_ref_conv2d_backward_data(const mp_conv_desc *d, const float *dy, const float *wt, float *dx) {
  /* gather form: each input element sums the outputs it contributed to */
  for (int n = 0; n < d->n; n++)
    for (int c = 0; c < d->c; c++)
      for (int i = 0; i < d->h; i++)
        for (int j = 0; j < d->w; j++) {
          double acc = 0.0;
          for (int k = 0; k < d->k; k++)
            for (int r = 0; r < d->r; r++) {
              int pn = i + d->pad - r; /* p * stride */
              if (pn < 0 || pn % d->stride) continue;
              int p = pn / d->stride;
              if (p >= d->p) continue;
              for (int s = 0; s < d->s; s++) {
                int qn = j + d->pad - s;
                if (qn < 0 || qn % d->stride) continue;
                int q = qn / d->stride;
                if (q >= d->q) continue;
                acc += (double)dy[AT4(d->k, d->p, d->q, n, k, p, q)] * wt[AT4(d->c, d->r, d->s, k, c, r, s)];
              }
            }
          dx[AT4(d->c, d->h, d->w, n, c, i, j)] = (float)acc;
        }
}

void mp_ref_conv2d_backward_weights(const mp_conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
  for (int k = 0; k < d->k; k++) {
    for (int c = 0; c < d->c; c++)
      for (int r = 0; r < d->r; r++)
        for (int s = 0; s < d->s; s++) {
          double acc = 0.0;
          for (int n = 0; n < d->n; n++)
            for (int p = 0; p < d->p; p++) {
              int i = p * d->stride - d->pad + r;
              if (i < 0 || i >= d->h) continue;
              for (int q = 0; q < d->q; q++) {
                int j = q * d->stride - d->pad + s;
                if (j < 0 || j >= d->w) continue;
                acc += (double)x[AT4(d->c, d->h, d->w, n, c, i, j)] * dy[AT4(d->k, d->p, d->q, n, k, p, q)];
              }
            }
          dw[AT4(d->c, d->r, d->s, k, c, r, s)] = (float)acc;
        }
    if (db) {
      double acc = 0.0;
      for (int n = 0; n < d->n; n++)
        for (int p = 0; p < d->p; p++)
          for (int q = 0; q < d->q; q++) acc += dy[AT4(d->k, d->p, d->q, n, k, p, q)];
      db[k] = (float)acc;
    }
  }
}
