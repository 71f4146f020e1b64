/* mp_cuda_kernels.cuh — the cuda backend's own element-wise and reduction kernels (everything
 * mp_backend_cuda.cu launches that is not a library call, a convolution algorithm of
 * mp_cuda_conv.cuh or a few-channel cast of mp_cuda_layout.cuh), with the launch geometry they
 * assume and the host helpers that choose it:
 *   memory entries      k_axpy, k_scale (the host's roundings: explicit, no FMA)
 *   graph trials        k_ndiff16 (words in which two bf16 results differ)
 *   bf16 staging        k_transpose (32 x 32 tiles, grid (ceil(S/TT), ceil(R/TT), Z), block
 *                       (TT, TROWS)), k_convert
 *   batch norm          k_bn_partial (grid (S slices, C), block BN_TPB), k_bn_stats, k_bn_bstats
 *                       (one thread a channel), k_bn_apply, k_bn_dx; bn_vec, bn_slices (host)
 *   convolution bias    k_chan_partial (grid as k_bn_partial), k_chan_final, k_bias_add
 *   activations, max-pool, Inception's resize and pooling (k_resize_u8, k_pool2d), linear bias, dropout (mp_rng_at: the
 *                       CPU's masks), Adam
 *   reductions          block_sum (block TPB), k_dot_partial, k_sum_partials
 *   gradient penalty    k_sample_norms (one block of TPB a sample), k_penalty_scale
 *   WGAN-GP interpolates  k_mix_rows (grid y = a row, weights in the launch parameters)
 *   spectral norm       k_normalize, k_div_sigma, k_sn_bwd
 *   kNN l1 scores       k_l1_nt (grid (ceil(n / 64), ceil(m / 64)), block (16, 16))
 *   patch input         k_patches on the staging layout of patch_stage_fill (host)
 * Kernels without a stated geometry take any 1-D grid (grid-stride loops); those that use
 * block_sum / block_sum2 need blocks of exactly TPB / BN_TPB threads.
 *
 * Kept apart so that tests/test_cuda_kernels_emu.cpp compiles these very kernels for the host,
 * runs them on an emulated GPU and holds them to the ref backend (mp_ref.c, mp_backend.c) where
 * no GPU is present; on a GPU test_backend holds the compiled backend to ref.  Include after
 * mp_backend.h (mp_bn_desc, MP_ACT_*) and mp_rng.h. */
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mp_cuda_layout.cuh" /* bf16_rn */

/* ---- launch geometry --------------------------------------------------------------------- */
static inline unsigned grid_for(size_t n, int threads) {
  size_t g = (n + (size_t)threads - 1) / (size_t)threads;
  return (unsigned)(g > 65535u * 16u ? 65535u * 16u : (g ? g : 1)); /* grid-stride loops cover the rest */
}
#define GS_LOOP(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)
enum { TPB = 256 };

/* ---- memory entries ---------------------------------------------------------------------- */
/* rounded multiply then add, as the host's y += a x (no fused multiply-add: the ref's
 * rounding, which the tests compare exactly) */
__global__ void k_axpy(float a, const float *x, float *y, size_t n) {
  GS_LOOP(i, n) y[i] = __fadd_rn(y[i], __fmul_rn(a, x[i]));
}
__global__ void k_scale(float a, float *x, size_t n) {
  GS_LOOP(i, n) x[i] *= a;
}

/* ---- the graph trials' bit-for-bit comparison -------------------------------------------- */
/* the number of 16-bit words in which a and b differ, into *cnt (zeroed by the caller) */
__global__ void k_ndiff16(const uint16_t *a, const uint16_t *b, size_t n, unsigned long long *cnt) {
  unsigned long long k = 0;
  GS_LOOP(i, n) k += a[i] != b[i];
  if (k) atomicAdd(cnt, k);
}

/* ---- bf16 staging: the general tiled transpose and the plain conversion ------------------ */
__device__ __forceinline__ float ld_f(const float *p) { return *p; }
__device__ __forceinline__ float ld_f(const uint16_t *p) { return __uint_as_float((uint32_t)*p << 16); }
__device__ __forceinline__ void st_f(float *p, float v) { *p = v; }
__device__ __forceinline__ void st_f(uint16_t *p, float v) { *p = bf16_rn(v); }

/* out[z][s][r] = in[z][r][s] for z < Z (grid z), converting element types on the way: a
 * 32x32 tile through shared memory, so reads and writes are both coalesced.  Grid x covers S in
 * tiles; grid y walks R's tiles with a stride (R may need more than grid y's 65535 tiles).
 * bias (NULL: none): out[z][s][r] = in[z][r][s] + bias[s], a convolution's bias added to its bf16
 * result on the way back to fp32 channels-first (one fp32 addition: k_bias_add's bits). */
enum { TT = 32, TROWS = 8 };
template <typename Tin, typename Tout>
__global__ void k_transpose(const Tin *in, Tout *out, int R, int S, const float *bias) {
  __shared__ float tile[TT][TT + 1];
  size_t base = (size_t)blockIdx.z * R * S;
  int s0 = blockIdx.x * TT;
  for (int r0 = blockIdx.y * TT; r0 < R; r0 += gridDim.y * TT) {
    for (int j = threadIdx.y; j < TT; j += TROWS) {
      int r = r0 + j, sc = s0 + threadIdx.x;
      if (r < R && sc < S) tile[j][threadIdx.x] = ld_f(in + base + (size_t)r * S + sc);
    }
    __syncthreads();
    for (int j = threadIdx.y; j < TT; j += TROWS) {
      int sc = s0 + j, r = r0 + threadIdx.x;
      if (r < R && sc < S) {
        float v = tile[threadIdx.x][j];
        if (bias) v += bias[sc];
        st_f(out + base + (size_t)sc * R + r, v);
      }
    }
    __syncthreads(); /* the tile is read before the next one is written */
  }
}
/* a transpose with R or S = 1 is a plain conversion (a single-channel input, a one-output
 * filter): one element a thread instead of 32x32 tiles with one row filled */
template <typename Tin, typename Tout>
__global__ void k_convert(const Tin *in, Tout *out, size_t n) {
  GS_LOOP(i, n) st_f(out + i, ld_f(in + i));
}

/* ---- batch norm in training -------------------------------------------------------------- */
enum { BN_TPB = 256, BN_MAX_SLICES = 256 };

/* sum of two doubles over the block; every thread gets the totals */
__device__ void block_sum2(double &a, double &b) {
  __shared__ double sa[BN_TPB / 32], sb[BN_TPB / 32];
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_down_sync(0xffffffffu, a, o);
    b += __shfl_down_sync(0xffffffffu, b, o);
  }
  int w = threadIdx.x / 32, l = threadIdx.x % 32;
  if (l == 0) sa[w] = a, sb[w] = b;
  __syncthreads();
  if (threadIdx.x == 0) {
    a = 0, b = 0;
    for (int i = 0; i < BN_TPB / 32; i++) a += sa[i], b += sb[i];
    sa[0] = a, sb[0] = b;
  }
  __syncthreads();
  a = sa[0], b = sb[0];
  __syncthreads();
}

template <int V> struct vec_of;
template <> struct vec_of<1> { typedef float t; };
template <> struct vec_of<4> { typedef float4 t; };
__device__ __forceinline__ float lane(const float &v, int) { return v; }
__device__ __forceinline__ float lane(const float4 &v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }
__device__ __forceinline__ void set_lane(float &v, int, float f) { v = f; }
__device__ __forceinline__ void set_lane(float4 &v, int i, float f) {
  if (i == 0) v.x = f; else if (i == 1) v.y = f; else if (i == 2) v.z = f; else v.w = f;
}

/* Partial sums of channel blockIdx.y over slice blockIdx.x of its n x hwv units (V floats
 * each; unit u is sample u / hwv, position u % hwv).  Forward (dy NULL): sum(x - K) and
 * sum((x - K)^2), K = the channel's first value (a shift against cancellation).  Backward:
 * sum(g) and sum(g (x - mean)), g = dy, zero where y <= 0 when y is given (the fused ReLU). */
template <int V>
__global__ void k_bn_partial(const float *x, const float *y, const float *dy, const float *mean, int n, int C, int hwv,
                             double *partial) {
  typedef typename vec_of<V>::t vt;
  const int c = blockIdx.y, S = gridDim.x, s = blockIdx.x;
  const unsigned U = (unsigned)n * (unsigned)hwv, u0 = (unsigned)((unsigned long long)U * s / S),
                 u1 = (unsigned)((unsigned long long)U * (s + 1) / S), hv = (unsigned)hwv;
  const vt *X = (const vt *)x, *Y = (const vt *)y, *D = (const vt *)dy;
  const double K = dy ? (double)mean[c] : (double)x[(size_t)c * hwv * V];
  double a = 0, b = 0;
  for (unsigned u = u0 + threadIdx.x; u < u1; u += blockDim.x) {
    unsigned q = u / hv, p = u - q * hv;
    size_t at = ((size_t)q * C + c) * hv + p;
    vt xv = X[at];
    if (!dy) {
      for (int i = 0; i < V; i++) {
        double t = (double)lane(xv, i) - K;
        a += t, b += t * t;
      }
    } else {
      vt gv = D[at];
      if (y) {
        vt yv = Y[at];
        for (int i = 0; i < V; i++)
          if (!(lane(yv, i) > 0.0f)) set_lane(gv, i, 0.0f);
      }
      for (int i = 0; i < V; i++) {
        double g = lane(gv, i);
        a += g, b += g * ((double)lane(xv, i) - K);
      }
    }
  }
  block_sum2(a, b);
  if (threadIdx.x == 0) partial[2 * ((size_t)c * S + s)] = a, partial[2 * ((size_t)c * S + s) + 1] = b;
}

/* Forward statistics, one thread per channel: the slices' partials in order -> mean, 1/std
 * (saved as float), the running statistics (unbiased variance), and coef[c] = (mean, gamma
 * invstd, beta) for the element-wise pass. */
__global__ void k_bn_stats(const double *partial, int S, int C, const float *x, int hw, double M, float eps, float mom,
                           const float *gamma, const float *beta, float *save_mean, float *save_invstd, float *rm,
                           float *rv, double *coef) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double a = 0, b = 0;
  for (int s = 0; s < S; s++) a += partial[2 * ((size_t)c * S + s)], b += partial[2 * ((size_t)c * S + s) + 1];
  double K = x[(size_t)c * hw], d = a / M, var = b / M - d * d;
  if (var < 0) var = 0;
  double mean = K + d, invstd = 1.0 / sqrt(var + (double)eps);
  save_mean[c] = (float)mean;
  save_invstd[c] = (float)invstd;
  double unbiased = M > 1 ? var * M / (M - 1) : var;
  rm[c] = (float)((1 - (double)mom) * rm[c] + (double)mom * mean);
  rv[c] = (float)((1 - (double)mom) * rv[c] + (double)mom * unbiased);
  coef[3 * c] = mean, coef[3 * c + 1] = invstd * gamma[c], coef[3 * c + 2] = beta[c];
}

/* Backward coefficients, one thread per channel: dgamma = invstd sum(g (x - mean)), dbeta =
 * sum(g) (overwritten), coef[c] = (mean, a = gamma invstd, sum(g)/M, a invstd dgamma/M). */
__global__ void k_bn_bstats(const double *partial, int S, int C, double M, const float *gamma, const float *mean,
                            const float *invstd, float *dgamma, float *dbeta, double *coef) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double a = 0, b = 0;
  for (int s = 0; s < S; s++) a += partial[2 * ((size_t)c * S + s)], b += partial[2 * ((size_t)c * S + s) + 1];
  double is = invstd[c], dg = b * is, A = (double)gamma[c] * is;
  dgamma[c] = (float)dg;
  dbeta[c] = (float)a;
  coef[4 * c] = mean[c], coef[4 * c + 1] = A, coef[4 * c + 2] = a / M, coef[4 * c + 3] = A * is * dg / M;
}

/* y = (x - mean) gamma invstd + beta, then max(0, .) when relu */
template <int V, bool RELU>
__global__ void k_bn_apply(const float *x, float *y, const double *coef, unsigned C, unsigned hwv, unsigned units) {
  typedef typename vec_of<V>::t vt;
  const vt *X = (const vt *)x;
  vt *Y = (vt *)y;
  for (unsigned u = blockIdx.x * blockDim.x + threadIdx.x; u < units; u += gridDim.x * blockDim.x) {
    unsigned c = u / hwv % C;
    double m = coef[3 * c], a = coef[3 * c + 1], bb = coef[3 * c + 2];
    vt xv = X[u], out;
    for (int i = 0; i < V; i++) {
      float v = (float)(((double)lane(xv, i) - m) * a + bb);
      set_lane(out, i, RELU ? (v > 0.0f ? v : 0.0f) : v);
    }
    Y[u] = out;
  }
}

/* dx = a (g - sum(g)/M) - (x - mean) a invstd dgamma / M, g = dy (masked by y > 0 when y) */
template <int V>
__global__ void k_bn_dx(const float *x, const float *y, const float *dy, float *dx, const double *coef, unsigned C,
                        unsigned hwv, unsigned units) {
  typedef typename vec_of<V>::t vt;
  const vt *X = (const vt *)x, *Y = (const vt *)y, *D = (const vt *)dy;
  vt *O = (vt *)dx;
  for (unsigned u = blockIdx.x * blockDim.x + threadIdx.x; u < units; u += gridDim.x * blockDim.x) {
    unsigned c = u / hwv % C;
    double m = coef[4 * c], a = coef[4 * c + 1], k1 = coef[4 * c + 2], k2 = coef[4 * c + 3];
    vt xv = X[u], gv = D[u], out;
    if (y) {
      vt yv = Y[u];
      for (int i = 0; i < V; i++)
        if (!(lane(yv, i) > 0.0f)) set_lane(gv, i, 0.0f);
    }
    for (int i = 0; i < V; i++) set_lane(out, i, (float)(a * ((double)lane(gv, i) - k1) - ((double)lane(xv, i) - m) * k2));
    O[u] = out;
  }
}

/* ---- batch norm's vector width and slices (host) ----------------------------------------- */
/* float4 units when every plane is a whole number of them and every pointer is aligned */
static inline int bn_vec(const mp_bn_desc *d, const void *a, const void *b, const void *e, const void *f) {
  uintptr_t m = (uintptr_t)a | (uintptr_t)b | (uintptr_t)e | (uintptr_t)f;
  return d->hw % 4 == 0 && (m & 15) == 0 ? 4 : 1;
}

/* slices per channel: about 1024 blocks in all, each with at least one unit per thread */
static inline int bn_slices(const mp_bn_desc *d, int V) {
  long long units = (long long)d->n * (d->hw / V);
  long long S = 1024 / (d->c > 0 ? d->c : 1), most = units / BN_TPB;
  if (S > most) S = most;
  if (S > BN_MAX_SLICES) S = BN_MAX_SLICES;
  return S < 1 ? 1 : (int)S;
}

/* ---- a convolution's bias ---------------------------------------------------------------- */
/* partial[c][s] = sum of channel c's values in slice s (grid as k_bn_partial) */
template <int V>
__global__ void k_chan_partial(const float *x, int n, int C, int hwv, double *partial) {
  typedef typename vec_of<V>::t vt;
  const int c = blockIdx.y, S = gridDim.x, s = blockIdx.x;
  const unsigned U = (unsigned)n * (unsigned)hwv, u0 = (unsigned)((unsigned long long)U * s / S),
                 u1 = (unsigned)((unsigned long long)U * (s + 1) / S), hv = (unsigned)hwv;
  const vt *X = (const vt *)x;
  double a = 0, b = 0;
  for (unsigned u = u0 + threadIdx.x; u < u1; u += blockDim.x) {
    unsigned q = u / hv, p = u - q * hv;
    vt xv = X[((size_t)q * C + c) * hv + p];
    for (int i = 0; i < V; i++) a += lane(xv, i);
  }
  block_sum2(a, b);
  if (threadIdx.x == 0) partial[(size_t)c * S + s] = a;
}
/* out[c] = the S partials of channel c added in order */
__global__ void k_chan_final(const double *partial, int S, int C, float *out) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double a = 0;
  for (int s = 0; s < S; s++) a += partial[(size_t)c * S + s];
  out[c] = (float)a;
}
template <int V>
__global__ void k_bias_add(float *y, const float *bias, unsigned C, unsigned hwv, unsigned units) {
  typedef typename vec_of<V>::t vt;
  vt *Y = (vt *)y;
  for (unsigned u = blockIdx.x * blockDim.x + threadIdx.x; u < units; u += gridDim.x * blockDim.x) {
    float bc = bias[u / hwv % C];
    vt v = Y[u];
    for (int i = 0; i < V; i++) set_lane(v, i, lane(v, i) + bc);
    Y[u] = v;
  }
}

/* ---- activations ------------------------------------------------------------------------- */
__global__ void k_act_fwd(int kind, float slope, const float *x, float *y, size_t n) {
  GS_LOOP(i, n) {
    float v = x[i];
    switch (kind) {
    case MP_ACT_RELU: y[i] = v > 0 ? v : 0.0f; break;
    case MP_ACT_LRELU: y[i] = v > 0 ? v : slope * v; break;
    case MP_ACT_TANH: y[i] = (float)tanh((double)v); break;
    default: y[i] = (float)(1.0 / (1.0 + exp(-(double)v))); break;
    }
  }
}
__global__ void k_act_bwd(int kind, float slope, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  GS_LOOP(i, n) {
    switch (kind) {
    case MP_ACT_RELU: dx[i] = x[i] > 0 ? dy[i] : 0.0f; break;
    case MP_ACT_LRELU: dx[i] = x[i] > 0 ? dy[i] : slope * dy[i]; break;
    case MP_ACT_TANH: dx[i] = (float)(dy[i] * (1.0 - (double)y[i] * y[i])); break;
    default: dx[i] = (float)(dy[i] * (double)y[i] * (1.0 - y[i])); break;
    }
  }
}

/* ---- 2x2 max-pool with the argmax -------------------------------------------------------- */
/* output element o's window: the offset of its top-left input element (planes of h x w, even) */
__device__ __forceinline__ size_t pool_window(size_t o, int h, int w) {
  const int ho = h / 2, wo = w / 2;
  const size_t plane = o / ((size_t)ho * wo);
  const int r = (int)(o % ((size_t)ho * wo)), i = r / wo, j = r % wo;
  return plane * (size_t)h * w + (size_t)(2 * i) * w + 2 * j;
}
/* the maximum of each window and its offset 0..3 (first maximum wins, NaN propagates: the ref's
 * rule) */
__global__ void k_pool_fwd(const float *x, float *y, unsigned char *am, size_t planes, int h, int w) {
  GS_LOOP(o, planes * (size_t)(h / 2) * (w / 2)) {
    const float *xp = x + pool_window(o, h, w);
    int best = 0;
    float bv = xp[0];
    for (int k = 1; k < 4; k++) {
      float v = xp[(k / 2) * w + k % 2];
      if (v > bv || (isnan(v) && !isnan(bv))) {
        bv = v;
        best = k;
      }
    }
    y[o] = bv;
    am[o] = (unsigned char)best;
  }
}
/* every input element written once: the pooled gradient where it was the argmax, else 0 */
__global__ void k_pool_bwd(const float *dy, const unsigned char *am, float *dx, size_t planes, int h, int w) {
  GS_LOOP(o, planes * (size_t)(h / 2) * (w / 2)) {
    float *xp = dx + pool_window(o, h, w);
    int k = am[o];
    for (int q = 0; q < 4; q++) xp[(q / 2) * w + q % 2] = q == k ? dy[o] : 0.0f;
  }
}
/* Inception-v3's input (mp_ref_resize_u8's arithmetic, every rounding explicit: nvcc would
 * otherwise fuse the multiply-adds): one thread an output pixel of n S x S images */
__device__ inline void rz_coef(int o, int side, float scale, int *i0, int *i1, float *l0, float *l1) {
  double src = __dsub_rn(__dmul_rn((double)scale, o + 0.5), 0.5);
  if (src < 0) src = 0;
  const int i = (int)src;
  *i0 = i, *i1 = i < side - 1 ? i + 1 : i;
  *l1 = (float)__dsub_rn(src, (double)i), *l0 = __fsub_rn(1.0f, *l1);
}
__device__ inline float rz_row(const uint8_t *row, int c0, int c1, float l0, float l1) {
  return __fadd_rn(__fmul_rn(l0, __fdiv_rn((float)row[c0], 255.0f)), __fmul_rn(l1, __fdiv_rn((float)row[c1], 255.0f)));
}
__global__ void k_resize_u8(const uint8_t *px, int n, int side, int S, float *out) {
  const float scale = __fdiv_rn((float)side, (float)S);
  GS_LOOP(e, (size_t)n * S * S) {
    const size_t img = e / ((size_t)S * S);
    const int rc = (int)(e % ((size_t)S * S)), r = rc / S, c = rc % S;
    int r0, r1, c0, c1;
    float lr0, lr1, lc0, lc1;
    rz_coef(r, side, scale, &r0, &r1, &lr0, &lr1);
    rz_coef(c, side, scale, &c0, &c1, &lc0, &lc1);
    const uint8_t *p = px + img * side * side;
    const float a = rz_row(p + (size_t)r0 * side, c0, c1, lc0, lc1), bb = rz_row(p + (size_t)r1 * side, c0, c1, lc0, lc1);
    out[e] = __fsub_rn(__fmul_rn(__fadd_rn(__fmul_rn(lr0, a), __fmul_rn(lr1, bb)), 2.0f), 1.0f);
  }
}

/* Inference pooling (Inception-v3; mp_ref_pool2d_forward's arithmetic: window order, sums in
 * double): one thread an output element, planes = n c */
__global__ void k_pool2d(int kind, const float *x, float *y, size_t planes, int h, int w, int k, int stride, int pad,
                         int oh, int ow) {
  GS_LOOP(o, planes * (size_t)oh * ow) {
    const size_t plane = o / ((size_t)oh * ow);
    const int rr = (int)(o % ((size_t)oh * ow)), i = rr / ow, j = rr % ow;
    const float *xp = x + plane * (size_t)h * w;
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
    y[o] = kind == MP_POOL_MAX ? mx : (float)(s / (kind == MP_POOL_AVG ? k * k : cnt));
  }
}

/* ---- linear layers' bias ----------------------------------------------------------------- */
/* ---- the kNN's l1 score blocks: C[i][j] = sum_e |A[i][e] - B[j][e]| (l1_nt) ---------------
 * A GEMM's tiling with |a - b| for a * b: a block of L1_TPB = 256 threads makes a 64 x 64 tile
 * of C, each thread 4 x 4 entries (rows ty + 16 p, columns tx + 16 q: the shared-memory reads of
 * a warp are broadcasts or 16 consecutive words); the operands pass through shared memory in
 * runs of L1_KT = 32 of the k terms (loaded coalesced along the rows, zero past k and past the
 * last row: |0 - 0| adds nothing).  Each entry sums a run in float and adds the run to a double
 * total, rounded once at the end.  Grid (ceil(n / 64), ceil(m / 64)), block (16, 16). */
enum { L1_TILE = 64, L1_KT = 32, L1_TPB = 256 };
__global__ void k_l1_nt(int m, int n, int k, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
  __shared__ float As[L1_KT][L1_TILE + 1], Bs[L1_KT][L1_TILE + 1];
  const int tx = threadIdx.x, ty = threadIdx.y, t = ty * 16 + tx;
  const int i0 = blockIdx.y * L1_TILE, j0 = blockIdx.x * L1_TILE;
  double acc[4][4];
  for (int p = 0; p < 4; p++)
    for (int q = 0; q < 4; q++) acc[p][q] = 0;
  for (int e0 = 0; e0 < k; e0 += L1_KT) {
    /* 64 rows x 32 terms of each operand: thread t loads term t % 32 of rows t / 32 + 8 r */
    const int e = e0 + t % L1_KT;
    for (int r = t / L1_KT; r < L1_TILE; r += L1_TPB / L1_KT) {
      const int ia = i0 + r, jb = j0 + r;
      As[t % L1_KT][r] = ia < m && e < k ? A[(size_t)ia * lda + e] : 0.0f;
      Bs[t % L1_KT][r] = jb < n && e < k ? B[(size_t)jb * ldb + e] : 0.0f;
    }
    __syncthreads();
    float run[4][4];
    for (int p = 0; p < 4; p++)
      for (int q = 0; q < 4; q++) run[p][q] = 0;
#pragma unroll 8
    for (int u = 0; u < L1_KT; u++) {
      float a[4], b[4];
      for (int p = 0; p < 4; p++) a[p] = As[u][ty + 16 * p];
      for (int q = 0; q < 4; q++) b[q] = Bs[u][tx + 16 * q];
      for (int p = 0; p < 4; p++)
        for (int q = 0; q < 4; q++) run[p][q] += fabsf(a[p] - b[q]);
    }
    for (int p = 0; p < 4; p++)
      for (int q = 0; q < 4; q++) acc[p][q] += run[p][q];
    __syncthreads(); /* the tiles are read before the next run is loaded */
  }
  for (int p = 0; p < 4; p++)
    for (int q = 0; q < 4; q++) {
      const int i = i0 + ty + 16 * p, j = j0 + tx + 16 * q;
      if (i < m && j < n) C[(size_t)i * ldc + j] = (float)acc[p][q];
    }
}

__global__ void k_add_bias_rows(float *y, const float *bias, int n, int out) {
  GS_LOOP(i, (size_t)n * out) y[i] += bias[i % (size_t)out];
}
__global__ void k_sum_rows(const float *dy, float *db, int n, int out) {
  GS_LOOP(o, (size_t)out) {
    double acc = 0;
    for (int r = 0; r < n; r++) acc += dy[(size_t)r * out + o];
    db[o] = (float)acc;
  }
}

/* ---- dropout ----------------------------------------------------------------------------- */
__global__ void k_drop_fwd(const float *x, float *y, unsigned char *mask, size_t n, float p, float scale, uint64_t seed,
                           uint64_t index, uint64_t e0) {
  GS_LOOP(e, n) {
    float u = (float)(mp_rng_at(seed, MP_RNG_DROPOUT, index, e0 + e) >> 8) * 0x1.0p-24f;
    unsigned char m = u >= p;
    mask[e] = m;
    y[e] = m ? x[e] * scale : 0.0f;
  }
}
__global__ void k_drop_bwd(const float *dy, const unsigned char *mask, float *dx, size_t n, float scale) {
  GS_LOOP(e, n) dx[e] = mask[e] ? dy[e] * scale : 0.0f;
}

/* ---- Adam -------------------------------------------------------------------------------- */
/* k_adam's step_size = lr / (1 - b1^step) and sbc2 = sqrt(1 - b2^step), on the host, as the
 * ref computes them (mp_ref_adam_step) */
static inline void adam_consts(float lr, float b1, float b2, long step, double *step_size, double *sbc2) {
  double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
  *step_size = lr / bc1;
  *sbc2 = sqrt(bc2);
}
/* the ref's arithmetic: the moments in float, every operation rounded (no FMA), the update in
 * double */
__global__ void k_adam(float *param, const float *grad, float *m, float *v, size_t n, float beta1, float beta2,
                       double step_size, double sbc2, float eps) {
  GS_LOOP(i, n) {
    float g = grad[i];
    float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(1.0f - beta1, g));
    float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(__fmul_rn(1.0f - beta2, g), g));
    m[i] = mi;
    v[i] = vi;
    double denom = sqrt((double)vi) / sbc2 + eps;
    param[i] = (float)(param[i] - step_size * mi / denom);
  }
}

/* ---- deterministic double reductions ----------------------------------------------------- */
__device__ double block_sum(double v) {
  __shared__ double sh[TPB];
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = TPB / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  double r = sh[0];
  __syncthreads();
  return r;
}
/* partial[block] = sum over the block's grid-stride share of a[i] * b[i] (b NULL: a[i]^2) */
/* DIST: sum (a - b)^2 instead of sum a b */
template <bool DIST>
__global__ void k_dot_partial(const float *a, const float *bb, size_t n, double *partial) {
  double acc = 0;
  if (DIST)
    GS_LOOP(i, n) {
      double e = (double)a[i] - bb[i];
      acc += e * e;
    }
  else
    GS_LOOP(i, n) acc += (double)a[i] * (bb ? bb[i] : a[i]);
  double s = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
__global__ void k_sum_partials(const double *partial, int nb, double *out) {
  double acc = 0;
  for (int i = threadIdx.x; i < nb; i += blockDim.x) acc += partial[i];
  double s = block_sum(acc);
  if (threadIdx.x == 0) *out = s;
}

/* ---- the gradient penalty's per-sample part ---------------------------------------------- */
__global__ void k_sample_norms(const float *g, size_t m, double *norms) {
  const float *gj = g + (size_t)blockIdx.x * m;
  double acc = 0;
  for (size_t e = threadIdx.x; e < m; e += blockDim.x) acc += (double)gj[e] * gj[e];
  double s = block_sum(acc);
  if (threadIdx.x == 0) norms[blockIdx.x] = sqrt(s);
}
__global__ void k_penalty_scale(const float *g, int n, size_t m, float lambda, const double *norms, float *v) {
  GS_LOOP(i, (size_t)n * m) {
    double norm = norms[i / m];
    double coef = norm > 0 ? lambda * 2.0 * (norm - 1) / (n * norm) : 0.0;
    v[i] = (float)(coef * g[i]);
  }
}

/* ---- the WGAN-GP interpolates ------------------------------------------------------------ */
enum { MIX_ROWS = 256 };
typedef struct {
  float e[MIX_ROWS];
} mix_weights;
__global__ void k_mix_rows(const float *a, const float *b, const mix_weights w, size_t m, float *out) {
  const size_t off = (size_t)blockIdx.y * m;
  const float e = w.e[blockIdx.y], f = 1.0f - e;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < m; i += (size_t)gridDim.x * blockDim.x)
    out[off + i] = __fadd_rn(__fmul_rn(e, a[off + i]), __fmul_rn(f, b[off + i]));
}

/* ---- spectral norm ----------------------------------------------------------------------- */
/* a /= max(sqrt(*ss), 1e-12) (F.normalize's eps) */
__global__ void k_normalize(float *a, int n, const double *ss) {
  double nrm = sqrt(*ss), den = nrm > 1e-12 ? nrm : 1e-12;
  GS_LOOP(i, (size_t)n) a[i] = (float)(a[i] / den);
}
__global__ void k_div_sigma(const float *w, float *w_sn, size_t n, const double *sigma) {
  double s = *sigma;
  GS_LOOP(i, n) w_sn[i] = (float)(w[i] / s);
}
__global__ void k_sn_bwd(const float *dw_sn, const float *u, const float *v, int cols, size_t n,
                         const double *sigma_p, const double *inner, float *dw) {
  const double sigma = *sigma_p, a = *inner / (sigma * sigma);
  GS_LOOP(k, n) {
    int i = (int)(k / (size_t)cols), j = (int)(k % (size_t)cols);
    dw[k] = (float)(dw_sn[k] / sigma - a * u[i] * v[j]);
  }
}

/* ---- patch input ------------------------------------------------------------------------- */
/* A batch's staging buffer (pinned on the host, copied whole to the device): the n augmentation
 * words first (the buffers are 256-byte aligned, so the words stay 4-byte aligned whatever
 * n x P x P is), then the n patches' P x P bytes, then n present flags (absent: zeros). */
static inline size_t patch_stage_bytes(int n, int P) { return (size_t)n * ((size_t)P * P + sizeof(uint32_t) + 1); }
static inline void patch_stage_fill(void *stage, const uint8_t *const *src, const uint32_t *bits, int n, int P) {
  const size_t px = (size_t)P * P;
  uint32_t *hb = (uint32_t *)stage;
  uint8_t *u8 = (uint8_t *)(hb + n);
  unsigned char *pres = u8 + (size_t)n * px;
  for (int q = 0; q < n; q++) {
    pres[q] = src[q] != NULL;
    if (src[q]) memcpy(u8 + (size_t)q * px, src[q], px);
    hb[q] = bits ? bits[q] : 0;
  }
}
/* k_patches' operands within a staging buffer (either copy) */
static inline void patch_stage_parts(const void *stage, int n, int P, const uint32_t **bits, const uint8_t **u8,
                                     const unsigned char **present) {
  *bits = (const uint32_t *)stage;
  *u8 = (const uint8_t *)(*bits + n);
  *present = *u8 + (size_t)n * P * P;
}
/* dst (n, P, P) = u8 / 127.5 - 1, flipped (bit 1: rows, bit 0: columns) then turned a quarter
 * (bits 2-3, when rot90) as the ref's mp_ref_patches_to_input; any 1-D grid */
__global__ void k_patches(const uint8_t *u8, const uint32_t *bits, const unsigned char *present, int n, int P,
                          int rot90, float *dst) {
  size_t px = (size_t)P * P;
  GS_LOOP(e, (size_t)n * px) {
    int q = (int)(e / px), r = (int)(e % px), i = r / P, j = r % P;
    if (!present[q]) {
      dst[e] = 0.0f;
      continue;
    }
    uint32_t b = bits ? bits[q] : 0;
    int ri = (b & 2) ? P - 1 - i : i, rj = (b & 1) ? P - 1 - j : j;
    int rot = rot90 ? (int)((b >> 2) & 3) : 0;
    for (int k = 0; k < rot; k++) { /* (i, j) -> (j, P-1-i) */
      int tmp = ri;
      ri = rj;
      rj = P - 1 - tmp;
    }
    dst[e] = (float)u8[(size_t)q * px + (size_t)ri * P + rj] / 127.5f - 1.0f;
  }
}
