/* mp_ref — reference kernels (see mp_ref.h). */
#include "mp_ref.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_rng.h"

int mp_conv_desc_init_hw(mp_conv_desc *d, int n, int c, int h, int w, int k, int r, int s, int stride, int pad_h,
                         int pad_w) {
  memset(d, 0, sizeof *d); /* (the oneDNN backend caches primitives by the descriptor's bytes) */
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || k <= 0 || r <= 0 || s <= 0 || stride <= 0 || pad_h < 0 || pad_w < 0)
    return -1;
  if (pad_h >= r || pad_w >= s) return -1;
  int hp = h + 2 * pad_h - r, wp = w + 2 * pad_w - s;
  if (hp < 0 || wp < 0) return -1;
  d->n = n, d->c = c, d->h = h, d->w = w, d->k = k, d->r = r, d->s = s, d->stride = stride;
  d->pad = pad_h, d->pad_w = pad_w, d->p = hp / stride + 1, d->q = wp / stride + 1;
  return 0;
}

int mp_conv_desc_init(mp_conv_desc *d, int n, int c, int h, int w, int k, int r, int s, int stride, int pad) {
  if (pad >= r || pad >= s) return memset(d, 0, sizeof *d), -1;
  return mp_conv_desc_init_hw(d, n, c, h, w, k, r, s, stride, pad, pad);
}

size_t mp_conv_x_count(const mp_conv_desc *d) { return (size_t)d->n * d->c * d->h * d->w; }
size_t mp_conv_w_count(const mp_conv_desc *d) { return (size_t)d->k * d->c * d->r * d->s; }
size_t mp_conv_y_count(const mp_conv_desc *d) { return (size_t)d->n * d->k * d->p * d->q; }

/* Element (n, ch, i, j) of an n x C x H x W tensor. */
#define AT4(C_, H_, W_, n_, ch_, i_, j_) ((((size_t)(n_) * (C_) + (ch_)) * (H_) + (i_)) * (W_) + (j_))

/* The three convolution kernels below compute, for every output element, exactly the sum of
 * the definition (see the per-element formula above each), adding its terms in the order the
 * formula names them, in double (a product of two floats is exact in double, so fused or not the
 * result is the same).  The loops are arranged so that the innermost one runs across independent
 * accumulators (a row of outputs) instead of along one dependency chain: the same bits as the
 * per-element loops (tests/test_nn_ref.c holds them to those literally), several times faster,
 * which the ref-backend tests (PyTorch parity, whole nets) spend most of their time in. */

/* The outputs q of a row that tap s of a stride-`st` window touches: those with
 * 0 <= q st - pad + s < w, as [*lo, *hi) clipped to [0, nq). */
static void tap_range(int s, int st, int pad, int w, int nq, int *lo, int *hi) {
  int a = pad - s, b = w - 1 + pad - s; /* q st in [a, b] */
  int l = a <= 0 ? 0 : (a + st - 1) / st, h = b < 0 ? -1 : b / st;
  *lo = l, *hi = (h + 1 < nq ? h + 1 : nq);
  if (*hi < *lo) *hi = *lo;
}

/* y[n][k][p][q] = bias[k] + sum over c, r, s (in that order) of
 *                 x[n][c][p st - pad + r][q st - pad_w + s] w[k][c][r][s]  (taps inside x) */
void mp_ref_conv2d_forward(const mp_conv_desc *d, const float *x, const float *wt, const float *bias, float *y) {
  const int st = d->stride;
  double *acc = mp_malloc((size_t)d->p * d->q * sizeof *acc); /* one output plane */
  for (int n = 0; n < d->n; n++)
    for (int k = 0; k < d->k; k++) {
      for (size_t e = 0; e < (size_t)d->p * d->q; e++) acc[e] = bias ? bias[k] : 0.0;
      for (int c = 0; c < d->c; c++)
        for (int r = 0; r < d->r; r++)
          for (int p = 0; p < d->p; p++) {
            int i = p * st - d->pad + r;
            if (i < 0 || i >= d->h) continue;
            const float *xr = x + AT4(d->c, d->h, d->w, n, c, i, 0);
            double *ar = acc + (size_t)p * d->q;
            for (int s = 0; s < d->s; s++) {
              const double wv = wt[AT4(d->c, d->r, d->s, k, c, r, s)];
              int lo, hi;
              tap_range(s, st, d->pad_w, d->w, d->q, &lo, &hi);
              for (int q = lo; q < hi; q++) ar[q] += (double)xr[q * st - d->pad_w + s] * wv;
            }
          }
      float *yp = y + AT4(d->k, d->p, d->q, n, k, 0, 0);
      for (size_t e = 0; e < (size_t)d->p * d->q; e++) yp[e] = (float)acc[e];
    }
  mp_free(acc);
}

/* dx[n][c][i][j] = sum over k, r, s (in that order) of dy[n][k][p][q] w[k][c][r][s] for the
 *                  outputs (p, q) with p st - pad + r = i, q st - pad_w + s = j
 * (the gather form of the adjoint: each input element sums the outputs it contributed to) */
void mp_ref_conv2d_backward_data(const mp_conv_desc *d, const float *dy, const float *wt, float *dx) {
  const int st = d->stride;
  double *acc = mp_malloc((size_t)d->h * d->w * sizeof *acc); /* one input plane */
  for (int n = 0; n < d->n; n++)
    for (int c = 0; c < d->c; c++) {
      for (size_t e = 0; e < (size_t)d->h * d->w; e++) acc[e] = 0.0;
      for (int k = 0; k < d->k; k++)
        for (int r = 0; r < d->r; r++)
          for (int p = 0; p < d->p; p++) {
            int i = p * st - d->pad + r;
            if (i < 0 || i >= d->h) continue;
            const float *gr = dy + AT4(d->k, d->p, d->q, n, k, p, 0);
            double *ar = acc + (size_t)i * d->w;
            for (int s = 0; s < d->s; s++) {
              const double wv = wt[AT4(d->c, d->r, d->s, k, c, r, s)];
              int lo, hi;
              tap_range(s, st, d->pad_w, d->w, d->q, &lo, &hi);
              for (int q = lo; q < hi; q++) ar[q * st - d->pad_w + s] += (double)gr[q] * wv;
            }
          }
      float *xp = dx + AT4(d->c, d->h, d->w, n, c, 0, 0);
      for (size_t e = 0; e < (size_t)d->h * d->w; e++) xp[e] = (float)acc[e];
    }
  mp_free(acc);
}

/* dw[k][c][r][s] = sum over n, p, q (in that order) of x[n][c][p st - pad + r][q st - pad_w + s]
 *                  dy[n][k][p][q]  (taps inside x);  db[k] = sum over n, p, q of dy[n][k][p][q] */
void mp_ref_conv2d_backward_weights(const mp_conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
  const int st = d->stride, rs = d->r * d->s;
  double *acc = mp_malloc((size_t)rs * sizeof *acc); /* one filter's taps */
  for (int k = 0; k < d->k; k++) {
    for (int c = 0; c < d->c; c++) {
      for (int e = 0; e < rs; e++) acc[e] = 0.0;
      for (int n = 0; n < d->n; n++)
        for (int p = 0; p < d->p; p++) {
          const float *gr = dy + AT4(d->k, d->p, d->q, n, k, p, 0);
          for (int q = 0; q < d->q; q++) {
            const double g = gr[q];
            for (int r = 0; r < d->r; r++) {
              int i = p * st - d->pad + r;
              if (i < 0 || i >= d->h) continue;
              const float *xr = x + AT4(d->c, d->h, d->w, n, c, i, 0);
              for (int s = 0; s < d->s; s++) {
                int j = q * st - d->pad_w + s;
                if (j >= 0 && j < d->w) acc[r * d->s + s] += (double)xr[j] * g;
              }
            }
          }
        }
      float *wp = dw + AT4(d->c, d->r, d->s, k, c, 0, 0);
      for (int e = 0; e < rs; e++) wp[e] = (float)acc[e];
    }
    if (db) {
      double a = 0.0;
      for (int n = 0; n < d->n; n++)
        for (int p = 0; p < d->p; p++)
          for (int q = 0; q < d->q; q++) a += dy[AT4(d->k, d->p, d->q, n, k, p, q)];
      db[k] = (float)a;
    }
  }
  mp_free(acc);
}

/* ---- batch norm --------------------------------------------------------------------------- */
#define BN_AT(d_, n_, c_, i_) (((size_t)(n_) * (d_)->c + (c_)) * (size_t)(d_)->hw + (i_))

void mp_ref_bn_forward_train(const mp_bn_desc *d, const float *x, const float *gamma, const float *beta, float *y,
                             float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
  double m = (double)d->n * d->hw;
  for (int c = 0; c < d->c; c++) {
    double s = 0;
    for (int n = 0; n < d->n; n++)
      for (int i = 0; i < d->hw; i++) s += x[BN_AT(d, n, c, i)];
    double mean = s / m, ss = 0;
    for (int n = 0; n < d->n; n++)
      for (int i = 0; i < d->hw; i++) {
        double t = x[BN_AT(d, n, c, i)] - mean;
        ss += t * t;
      }
    double var = ss / m, invstd = 1.0 / sqrt(var + d->eps);
    for (int n = 0; n < d->n; n++)
      for (int i = 0; i < d->hw; i++)
        y[BN_AT(d, n, c, i)] = (float)((x[BN_AT(d, n, c, i)] - mean) * invstd * gamma[c] + beta[c]);
    save_mean[c] = (float)mean;
    save_invstd[c] = (float)invstd;
    double unbiased = m > 1 ? ss / (m - 1) : var;
    run_mean[c] = (float)((1 - d->momentum) * run_mean[c] + d->momentum * mean);
    run_var[c] = (float)((1 - d->momentum) * run_var[c] + d->momentum * unbiased);
  }
}

void mp_ref_bn_forward_eval(const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                            const float *run_mean, const float *run_var, float *y) {
  for (int c = 0; c < d->c; c++) {
    double invstd = 1.0 / sqrt((double)run_var[c] + d->eps);
    for (int n = 0; n < d->n; n++)
      for (int i = 0; i < d->hw; i++)
        y[BN_AT(d, n, c, i)] = (float)((x[BN_AT(d, n, c, i)] - run_mean[c]) * invstd * gamma[c] + beta[c]);
  }
}

void mp_ref_bn_backward(const mp_bn_desc *d, const float *x, const float *dy, const float *gamma,
                        const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta) {
  double m = (double)d->n * d->hw;
  for (int c = 0; c < d->c; c++) {
    double sdy = 0, sdyx = 0, mean = save_mean[c], is = save_invstd[c];
    for (int n = 0; n < d->n; n++)
      for (int i = 0; i < d->hw; i++) {
        double g = dy[BN_AT(d, n, c, i)];
        sdy += g;
        sdyx += g * (x[BN_AT(d, n, c, i)] - mean) * is;
      }
    dgamma[c] = (float)sdyx;
    dbeta[c] = (float)sdy;
    /* dx = gamma * invstd / m * (m dy - sum dy - xhat sum(dy xhat)) */
    for (int n = 0; n < d->n; n++)
      for (int i = 0; i < d->hw; i++) {
        double xh = (x[BN_AT(d, n, c, i)] - mean) * is;
        dx[BN_AT(d, n, c, i)] = (float)(gamma[c] * is / m * (m * dy[BN_AT(d, n, c, i)] - sdy - xh * sdyx));
      }
  }
}

/* ---- activations ---------------------------------------------------------------------------- */
void mp_ref_relu_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0f;
}
void mp_ref_relu_backward(const float *x, const float *dy, float *dx, size_t n) {
  for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : 0.0f;
}
void mp_ref_lrelu_forward(const float *x, float *y, size_t n, float slope) {
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : slope * x[i];
}
void mp_ref_lrelu_backward(const float *x, const float *dy, float *dx, size_t n, float slope) {
  for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : slope * dy[i];
}
void mp_ref_tanh_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = (float)tanh((double)x[i]);
}
void mp_ref_tanh_backward(const float *y, const float *dy, float *dx, size_t n) {
  for (size_t i = 0; i < n; i++) dx[i] = (float)(dy[i] * (1.0 - (double)y[i] * y[i]));
}
void mp_ref_sigmoid_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = (float)(1.0 / (1.0 + exp(-(double)x[i])));
}
void mp_ref_sigmoid_backward(const float *y, const float *dy, float *dx, size_t n) {
  for (size_t i = 0; i < n; i++) dx[i] = (float)(dy[i] * (double)y[i] * (1.0 - y[i]));
}

/* ---- max-pool ---------------------------------------------------------------------------------- */
void mp_ref_maxpool2_forward(const float *x, float *y, unsigned char *argmax, int n, int c, int h, int w) {
  int ho = h / 2, wo = w / 2;
  for (size_t plane = 0; plane < (size_t)n * c; plane++) {
    const float *xp = x + plane * h * w;
    for (int i = 0; i < ho; i++)
      for (int j = 0; j < wo; j++) {
        int best = 0;
        float bv = xp[(2 * i) * w + 2 * j];
        for (int k = 1; k < 4; k++) {
          float v = xp[(2 * i + k / 2) * w + 2 * j + k % 2];
          if (v > bv || (isnan(v) && !isnan(bv))) {
            bv = v;
            best = k;
          }
        }
        y[plane * ho * wo + (size_t)i * wo + j] = bv;
        argmax[plane * ho * wo + (size_t)i * wo + j] = (unsigned char)best;
      }
  }
}

void mp_ref_pool2d_forward(int kind, const float *x, float *y, int n, int c, int h, int w, int k, int stride, int pad) {
  const int oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
  for (size_t plane = 0; plane < (size_t)n * c; plane++) {
    const float *xp = x + plane * h * w;
    float *yp = y + plane * oh * ow;
    for (int i = 0; i < oh; i++)
      for (int j = 0; j < ow; j++) {
        float mx = -INFINITY;
        double s = 0;
        int cnt = 0;
        for (int a = 0; a < k; a++) {
          int r = i * stride - pad + a;
          if (r < 0 || r >= h) continue;
          for (int b = 0; b < k; b++) {
            int q = j * stride - pad + b;
            if (q < 0 || q >= w) continue;
            float v = xp[(size_t)r * w + q];
            if (v > mx) mx = v;
            s += v, cnt++;
          }
        }
        yp[(size_t)i * ow + j] = kind == MP_POOL_MAX ? mx : (float)(s / (kind == MP_POOL_AVG ? k * k : cnt));
      }
  }
}

void mp_ref_resize_u8(const uint8_t *px, int n, int side, int S, float *out) {
  int *i0 = mp_malloc(2 * (size_t)S * sizeof *i0), *i1 = i0 + S;
  float *l0 = mp_malloc(2 * (size_t)S * sizeof *l0), *l1 = l0 + S;
  const float scale = (float)side / (float)S;
  for (int o = 0; o < S; o++) {
    double src = (double)scale * (o + 0.5) - 0.5;
    if (src < 0) src = 0;
    int i = (int)src;
    i0[o] = i, i1[o] = i < side - 1 ? i + 1 : i;
    l1[o] = (float)(src - i), l0[o] = 1.0f - l1[o];
  }
  for (int m = 0; m < n; m++) {
    const uint8_t *img = px + (size_t)m * side * side;
    float *dst = out + (size_t)m * S * S;
    for (int r = 0; r < S; r++) {
      const uint8_t *a = img + (size_t)i0[r] * side, *b = img + (size_t)i1[r] * side;
      for (int c = 0; c < S; c++) {
        float v = l0[r] * (l0[c] * ((float)a[i0[c]] / 255.0f) + l1[c] * ((float)a[i1[c]] / 255.0f)) +
                  l1[r] * (l0[c] * ((float)b[i0[c]] / 255.0f) + l1[c] * ((float)b[i1[c]] / 255.0f));
        dst[(size_t)r * S + c] = v * 2.0f - 1.0f;
      }
    }
  }
  mp_free(i0), mp_free(l0);
}

void mp_ref_copy2d(float *dst, size_t dpitch, const float *src, size_t spitch, size_t width, size_t rows) {
  for (size_t r = 0; r < rows; r++) memcpy(dst + r * dpitch, src + r * spitch, width * sizeof *dst);
}

void mp_ref_maxpool2_backward(const float *dy, const unsigned char *argmax, float *dx, int n, int c, int h, int w) {
  int ho = h / 2, wo = w / 2;
  memset(dx, 0, (size_t)n * c * h * w * sizeof *dx);
  for (size_t plane = 0; plane < (size_t)n * c; plane++)
    for (int i = 0; i < ho; i++)
      for (int j = 0; j < wo; j++) {
        size_t o = plane * ho * wo + (size_t)i * wo + j;
        int k = argmax[o];
        dx[plane * h * w + (size_t)(2 * i + k / 2) * w + 2 * j + k % 2] = dy[o];
      }
}

/* ---- linear --------------------------------------------------------------------------------------- */
void mp_ref_linear_forward(const float *x, const float *w, const float *b, float *y, int n, int in, int out) {
  for (int r = 0; r < n; r++)
    for (int o = 0; o < out; o++) {
      double acc = b ? b[o] : 0.0;
      for (int i = 0; i < in; i++) acc += (double)x[(size_t)r * in + i] * w[(size_t)o * in + i];
      y[(size_t)r * out + o] = (float)acc;
    }
}

void mp_ref_linear_backward(const float *x, const float *w, const float *dy, float *dx, float *dw, float *db, int n,
                            int in, int out) {
  if (dx)
    for (int r = 0; r < n; r++)
      for (int i = 0; i < in; i++) {
        double acc = 0;
        for (int o = 0; o < out; o++) acc += (double)dy[(size_t)r * out + o] * w[(size_t)o * in + i];
        dx[(size_t)r * in + i] = (float)acc;
      }
  for (int o = 0; o < out; o++) {
    for (int i = 0; i < in; i++) {
      double acc = 0;
      for (int r = 0; r < n; r++) acc += (double)dy[(size_t)r * out + o] * x[(size_t)r * in + i];
      dw[(size_t)o * in + i] = (float)acc;
    }
    if (db) {
      double acc = 0;
      for (int r = 0; r < n; r++) acc += dy[(size_t)r * out + o];
      db[o] = (float)acc;
    }
  }
}

/* ---- dropout ------------------------------------------------------------------------------------------ */
void mp_ref_dropout_forward(const float *x, float *y, unsigned char *mask, size_t n, float p, uint64_t seed,
                            uint64_t index, uint64_t e0) {
  float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  for (size_t e = 0; e < n; e++) {
    float u = (float)(mp_rng_at(seed, MP_RNG_DROPOUT, index, e0 + e) >> 8) * 0x1.0p-24f;
    mask[e] = u >= p;
    y[e] = mask[e] ? x[e] * scale : 0.0f;
  }
}

void mp_ref_concat_forward(const float *a, const float *b, float *y, int n, int ca, int cb, int hw) {
  size_t sa = (size_t)ca * hw, sb = (size_t)cb * hw;
  for (int i = 0; i < n; i++) {
    memcpy(y + (size_t)i * (sa + sb), a + (size_t)i * sa, sa * sizeof *y);
    memcpy(y + (size_t)i * (sa + sb) + sa, b + (size_t)i * sb, sb * sizeof *y);
  }
}

void mp_ref_concat_backward(const float *dy, float *da, float *db, int n, int ca, int cb, int hw) {
  size_t sa = (size_t)ca * hw, sb = (size_t)cb * hw;
  for (int i = 0; i < n; i++) {
    if (da) memcpy(da + (size_t)i * sa, dy + (size_t)i * (sa + sb), sa * sizeof *da);
    if (db) memcpy(db + (size_t)i * sb, dy + (size_t)i * (sa + sb) + sa, sb * sizeof *db);
  }
}

void mp_ref_patches_to_input(const uint8_t *const *src, const uint32_t *bits, int n, int P, int rot90, float *dst) {
  size_t px = (size_t)P * P;
  for (int q = 0; q < n; q++) {
    float *d = dst + (size_t)q * px;
    if (!src[q]) {
      memset(d, 0, px * sizeof *d);
      continue;
    }
    uint32_t b = bits ? bits[q] : 0;
    bool hf = b & 1, vf = b & 2;
    int rot = rot90 ? (int)((b >> 2) & 3) : 0;
    for (int i = 0; i < P; i++)
      for (int j = 0; j < P; j++) {
        int ri = vf ? P - 1 - i : i, rj = hf ? P - 1 - j : j;
        for (int k = 0; k < rot; k++) { /* (i, j) -> (j, P-1-i) */
          int tmp = ri;
          ri = rj;
          rj = P - 1 - tmp;
        }
        d[(size_t)i * P + j] = (float)src[q][(size_t)ri * P + rj] / 127.5f - 1.0f;
      }
  }
}

void mp_ref_dropout_backward(const float *dy, const unsigned char *mask, float *dx, size_t n, float p) {
  float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  for (size_t e = 0; e < n; e++) dx[e] = mask[e] ? dy[e] * scale : 0.0f;
}

/* ---- BCE with logits ------------------------------------------------------------------------------------- */
double mp_ref_bce_logits(const float *z, const float *t, float *dz, size_t n) {
  double loss = 0;
  for (size_t i = 0; i < n; i++) {
    double zi = z[i], ti = t[i];
    loss += (zi > 0 ? zi : 0) - zi * ti + log1p(exp(-fabs(zi))); /* stable form */
    if (dz) dz[i] = (float)((1.0 / (1.0 + exp(-zi)) - ti) / (double)n);
  }
  return n ? loss / (double)n : 0.0;
}

/* ---- Adam ---------------------------------------------------------------------------------------------------- */
void mp_ref_adam_step(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                      float beta2, float eps, long step) {
  double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
  double step_size = lr / bc1, sbc2 = sqrt(bc2);
  for (size_t i = 0; i < n; i++) {
    m[i] = beta1 * m[i] + (1.0f - beta1) * grad[i];
    v[i] = beta2 * v[i] + (1.0f - beta2) * grad[i] * grad[i];
    double denom = sqrt((double)v[i]) / sbc2 + eps;
    param[i] = (float)(param[i] - step_size * m[i] / denom);
  }
}

/* ---- the gradient penalty ------------------------------------------------------------------------------- */

/* Forward through the critic keeping every layer's input (acts[l], layer l's input;
 * acts[L] = output) and slope masks (slopes[l] for l < L-1 in 0-based layers). */
static void critic_run(const mp_ref_critic *D, const float *x, float **acts, float **slopes) {
  const int L = D->layers;
  memcpy(acts[0], x, mp_conv_x_count(&D->d[0]) * sizeof(float));
  for (int l = 0; l < L; l++) {
    size_t ny = mp_conv_y_count(&D->d[l]);
    mp_ref_conv2d_forward(&D->d[l], acts[l], D->w[l], D->b[l], acts[l + 1]);
    if (l < L - 1)
      for (size_t i = 0; i < ny; i++) {
        float z = acts[l + 1][i];
        slopes[l][i] = z > 0 ? 1.0f : D->slope;
        acts[l + 1][i] = z > 0 ? z : D->slope * z;
      }
  }
}

static float **alloc_per_layer(const mp_ref_critic *D, bool outputs) {
  float **a = mp_calloc((size_t)D->layers + 1, sizeof *a);
  for (int l = 0; l <= D->layers; l++) {
    size_t n = l < D->layers ? mp_conv_x_count(&D->d[l]) : mp_conv_y_count(&D->d[D->layers - 1]);
    if (outputs && l < D->layers) n = mp_conv_y_count(&D->d[l]);
    a[l] = mp_malloc((n ? n : 1) * sizeof(float));
  }
  return a;
}

static void free_per_layer(const mp_ref_critic *D, float **a) {
  for (int l = 0; l <= D->layers; l++) mp_free(a[l]);
  mp_free(a);
}

void mp_ref_critic_forward(const mp_ref_critic *D, const float *x, float *out) {
  float **acts = alloc_per_layer(D, false), **slopes = alloc_per_layer(D, true);
  critic_run(D, x, acts, slopes);
  memcpy(out, acts[D->layers], (size_t)D->d[0].n * sizeof(float));
  free_per_layer(D, acts);
  free_per_layer(D, slopes);
}

double mp_ref_gradient_penalty(const mp_ref_critic *D, const float *xhat, float lambda, float *const *dw,
                               float *gnorm) {
  const int L = D->layers, N = D->d[0].n;
  float **acts = alloc_per_layer(D, false), **slopes = alloc_per_layer(D, true);
  critic_run(D, xhat, acts, slopes);
  /* backward chain: t[l] (layer l's output gradient), u[l] (layer l's input gradient) */
  float **t = alloc_per_layer(D, true), **u = alloc_per_layer(D, false);
  for (int i = 0; i < N; i++) t[L - 1][i] = 1.0f; /* dC/dC, one value per sample */
  for (int l = L - 1; l >= 0; l--) {
    if (l < L - 1) {
      size_t ny = mp_conv_y_count(&D->d[l]);
      for (size_t i = 0; i < ny; i++) t[l][i] = slopes[l][i] * u[l + 1][i];
    }
    mp_ref_conv2d_backward_data(&D->d[l], t[l], D->w[l], u[l]);
  }
  /* P and dP/dg per sample */
  size_t per = mp_conv_x_count(&D->d[0]) / (size_t)N;
  float *v = mp_malloc(mp_conv_x_count(&D->d[0]) * sizeof *v);
  double P = 0;
  for (int n = 0; n < N; n++) {
    const float *g = u[0] + (size_t)n * per;
    double ss = 0;
    for (size_t i = 0; i < per; i++) ss += (double)g[i] * g[i];
    double norm = sqrt(ss);
    if (gnorm) gnorm[n] = (float)norm;
    P += (norm - 1) * (norm - 1);
    double coef = norm > 0 ? lambda * 2.0 * (norm - 1) / (N * norm) : 0.0;
    for (size_t i = 0; i < per; i++) v[(size_t)n * per + i] = (float)(coef * g[i]);
  }
  P *= (double)lambda / N;
  /* reverse through the chain: u_{l} = conv^T(W_l, t_l) */
  float *cur = v;
  for (int l = 0; l < L; l++) {
    mp_ref_conv2d_backward_weights(&D->d[l], cur, t[l], dw[l], NULL);
    if (l == L - 1) break;
    size_t ny = mp_conv_y_count(&D->d[l]);
    float *next = mp_malloc(ny * sizeof *next);
    mp_ref_conv2d_forward(&D->d[l], cur, D->w[l], NULL, next); /* d<v, conv^T(W,t)>/dt = conv(v, W) */
    for (size_t i = 0; i < ny; i++) next[i] *= slopes[l][i]; /* through t_l = s_l * u_{l+1} */
    if (cur != v) mp_free(cur);
    cur = next;
  }
  if (cur != v) mp_free(cur);
  mp_free(v);
  free_per_layer(D, acts);
  free_per_layer(D, slopes);
  free_per_layer(D, t);
  free_per_layer(D, u);
  return P;
}

/* ---- spectral norm --------------------------------------------------------------------------------- */
static void normalize(float *a, int n) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (double)a[i] * a[i];
  double nrm = sqrt(ss);
  double den = nrm > 1e-12 ? nrm : 1e-12; /* F.normalize's eps */
  for (int i = 0; i < n; i++) a[i] = (float)(a[i] / den);
}

double mp_ref_spectral_norm_forward(const float *w, int rows, int cols, float *u, float *v, float *w_sn) {
  for (int j = 0; j < cols; j++) {
    double acc = 0;
    for (int i = 0; i < rows; i++) acc += (double)w[(size_t)i * cols + j] * u[i];
    v[j] = (float)acc;
  }
  normalize(v, cols);
  for (int i = 0; i < rows; i++) {
    double acc = 0;
    for (int j = 0; j < cols; j++) acc += (double)w[(size_t)i * cols + j] * v[j];
    u[i] = (float)acc;
  }
  normalize(u, rows);
  return mp_ref_spectral_norm_eval(w, rows, cols, u, v, w_sn);
}

double mp_ref_spectral_norm_eval(const float *w, int rows, int cols, const float *u, const float *v, float *w_sn) {
  double sigma = 0;
  for (int i = 0; i < rows; i++) {
    double acc = 0;
    for (int j = 0; j < cols; j++) acc += (double)w[(size_t)i * cols + j] * v[j];
    sigma += u[i] * acc;
  }
  for (size_t k = 0; k < (size_t)rows * cols; k++) w_sn[k] = (float)(w[k] / sigma);
  return sigma;
}

void mp_ref_spectral_norm_backward(const float *w, const float *dw_sn, int rows, int cols, const float *u,
                                   const float *v, double sigma, float *dw) {
  double inner = 0;
  for (size_t k = 0; k < (size_t)rows * cols; k++) inner += (double)dw_sn[k] * w[k];
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) {
      size_t k = (size_t)i * cols + j;
      dw[k] = (float)(dw_sn[k] / sigma - inner / (sigma * sigma) * u[i] * v[j]);
    }
}

/* ---- GAN losses ------------------------------------------------------------------------------------ */
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

double mp_ref_gan_loss(mp_gan_loss kind, bool generator, const float *cr, const float *cf, int n, float *dcr,
                       float *dcf) {
  double mr = 0, mf = 0;
  for (int i = 0; i < n; i++) {
    mr += cr[i];
    mf += cf[i];
  }
  mr /= n;
  mf /= n;
  /* The relativistic losses are symmetric: the G step swaps the roles of real and fake.
   * Write them for (a, b) = (real, fake) in the D step and (fake, real) in the G step. */
  const float *a = generator ? cf : cr, *b = generator ? cr : cf;
  float *da = generator ? dcf : dcr, *db = generator ? dcr : dcf;
  double ma = generator ? mf : mr, mb = generator ? mr : mf;
  double L = 0, sa = 0, sb = 0; /* sums of dL/d(inner) over a's and b's terms */
  double *ga = mp_calloc((size_t)n, sizeof *ga), *gb = mp_calloc((size_t)n, sizeof *gb);
  switch (kind) {
  case MP_GAN_WGAN_GP: /* D: E C(xf) - E C(xr);  G: -E C(xf) */
    if (!generator) {
      L = mf - mr;
      for (int i = 0; i < n; i++) ga[i] = -1.0 / n, gb[i] = 1.0 / n; /* a = real, b = fake */
    } else {
      L = -mf;
      for (int i = 0; i < n; i++) ga[i] = -1.0 / n, gb[i] = 0; /* a = fake */
    }
    break;
  case MP_GAN_RSGAN: /* E softplus(-(a_i - b_i)), paired by index */
    for (int i = 0; i < n; i++) {
      double z = (double)a[i] - b[i];
      L += softplus(-z) / n;
      double gz = -sigm(-z) / n;
      ga[i] = gz;
      gb[i] = -gz;
    }
    break;
  case MP_GAN_RASGAN: /* 1/2 [E softplus(-(a - E b)) + E softplus(b - E a)] */
    for (int i = 0; i < n; i++) {
      double z1 = (double)a[i] - mb, z2 = (double)b[i] - ma;
      L += 0.5 * (softplus(-z1) + softplus(z2)) / n;
      double g1 = -0.5 * sigm(-z1) / n, g2 = 0.5 * sigm(z2) / n;
      ga[i] += g1;
      sb += g1; /* d z1 / d b_j = -1/n for every j */
      gb[i] += g2;
      sa += g2;
    }
    for (int i = 0; i < n; i++) ga[i] -= sa / n, gb[i] -= sb / n;
    break;
  case MP_GAN_RALSGAN: /* 1/2 [E (a - E b - 1)^2 + E (b - E a + 1)^2] */
    for (int i = 0; i < n; i++) {
      double z1 = (double)a[i] - mb - 1, z2 = (double)b[i] - ma + 1;
      L += 0.5 * (z1 * z1 + z2 * z2) / n;
      double g1 = z1 / n, g2 = z2 / n;
      ga[i] += g1;
      sb += g1;
      gb[i] += g2;
      sa += g2;
    }
    for (int i = 0; i < n; i++) ga[i] -= sa / n, gb[i] -= sb / n;
    break;
  case MP_GAN_RAHINGE: /* 1/2 [E relu(1 - (a - E b)) + E relu(1 + (b - E a))] */
    for (int i = 0; i < n; i++) {
      double z1 = 1 - ((double)a[i] - mb), z2 = 1 + ((double)b[i] - ma);
      L += 0.5 * ((z1 > 0 ? z1 : 0) + (z2 > 0 ? z2 : 0)) / n;
      double g1 = z1 > 0 ? -0.5 / n : 0, g2 = z2 > 0 ? 0.5 / n : 0;
      ga[i] += g1;
      sb += g1;
      gb[i] += g2;
      sa += g2;
    }
    for (int i = 0; i < n; i++) ga[i] -= sa / n, gb[i] -= sb / n;
    break;
  }
  for (int i = 0; i < n; i++) {
    if (da) da[i] = (float)ga[i];
    if (db) db[i] = (float)gb[i];
  }
  mp_free(ga);
  mp_free(gb);
  return L;
}
