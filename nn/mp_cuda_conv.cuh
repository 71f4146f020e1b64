/* mp_cuda_conv.cuh — device code of the cuda backend's own convolution algorithms, which
 * choose() in mp_backend_cuda.cu runs beside cuDNN's pick on a shape's first call and keeps only
 * where they agree with cuDNN's result and are faster:
 *   wgrad3   the weight gradient of 3x3 stride-1 convolutions (deterministic, no atomics);
 *   gemm     any convolution op as im2col / col2im around one cuBLAS GEMM per chunk of samples.
 * Kept apart so that tests/test_cuda_conv_emu.cpp can compile these very kernels and the gemm
 * path's orchestration on the host (one std::thread per CUDA thread, shuffles and barriers
 * emulated, a naive GEMM in cuBLAS's place) and hold them to naive convolutions where no GPU
 * is present.  No state, no launch configuration beyond what each kernel's comment states.
 *
 *   k_wgrad3       x (n, c, h, w), dy (n, k, p, q) fp32 NCHW -> part[(n, strip)][k][c][3][3]
 *                  grid (strips x ceil(kp cp / WG_WARPS), n), block 32 x WG_WARPS, where
 *                  strips = ceil(q / 32), kp = ceil(k / 2), cp = ceil(c / 2)
 *   k_wgrad3_sum   part (np x m) -> dw (m = k c 9): grid ceil(m / 32), block (32, 32)
 *   k_im2col, k_col2im   element-wise: rows / planes over grid y, elements over grid x (any
 *                  sizes: grid-stride loops); k_swap01 any 1-D grid
 *   conv_gemm_plan the gemm path's steps for one op, through an Ops policy (launches, GEMM) */
#pragma once

enum { WG_WARPS = 8 };

__device__ __forceinline__ float wg_ld(const float *p, bool ok, int iy, int ix, int H, int W) {
  return (ok && iy >= 0 && iy < H && ix >= 0 && ix < W) ? __ldg(p + (size_t)iy * W + ix) : 0.0f;
}

/* grid (strips x ceil(groups / WG_WARPS), n), block 32 x WG_WARPS; groups = kp x cp pairs */
__global__ void __launch_bounds__(32 * WG_WARPS)
    k_wgrad3(const float *__restrict__ x, const float *__restrict__ dy, float *__restrict__ part, int C, int H, int W,
             int K, int P, int Q, int pad_h, int pad_w, int kp, int cp) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int groups = kp * cp, gblocks = (groups + WG_WARPS - 1) / WG_WARPS;
  const int strip = blockIdx.x / gblocks, g = (blockIdx.x % gblocks) * WG_WARPS + warp;
  if (g >= groups) return; /* the whole warp: shuffles below stay within live warps */
  const int n = blockIdx.y, strips = (Q + 31) / 32;
  const int k0 = (g / cp) * 2, c0 = (g % cp) * 2;
  const bool k1 = k0 + 1 < K, c1 = c0 + 1 < C;
  const int xo = strip * 32 + lane;
  const bool col = xo < Q;
  const float *xs[2];
  xs[0] = x + ((size_t)n * C + c0) * H * W;
  xs[1] = c1 ? xs[0] + (size_t)H * W : xs[0];
  const float *g0 = dy + ((size_t)n * K + k0) * P * Q + xo, *g1 = k1 ? g0 + (size_t)P * Q : g0;
  const bool cok[2] = {col, col && c1};
  float acc[2][2][9] = {}; /* [k0 + a][c0 + b][r * 3 + s] */
  /* win[c][r][s] = x[c][y + r - pad_h][xo + s - pad_w] for the current output row y; the next
   * row's loads (nx, nd*) are issued before the current row's FMAs, so their latency overlaps
   * the arithmetic (a register double buffer) */
  float win[2][3][3], nx[2][3];
#pragma unroll
  for (int b = 0; b < 2; b++)
#pragma unroll
    for (int s = 0; s < 3; s++) {
#pragma unroll
      for (int r = 1; r < 3; r++) win[b][r][s] = wg_ld(xs[b], cok[b], r - 1 - pad_h, xo + s - pad_w, H, W);
      nx[b][s] = wg_ld(xs[b], cok[b], 2 - pad_h, xo + s - pad_w, H, W);
    }
  float nd0 = (col && P > 0) ? __ldg(g0) : 0.0f, nd1 = (col && k1 && P > 0) ? __ldg(g1) : 0.0f;
  for (int y = 0; y < P; y++) {
#pragma unroll
    for (int b = 0; b < 2; b++)
#pragma unroll
      for (int s = 0; s < 3; s++) {
        win[b][0][s] = win[b][1][s];
        win[b][1][s] = win[b][2][s];
        win[b][2][s] = nx[b][s];
        nx[b][s] = wg_ld(xs[b], cok[b], y + 3 - pad_h, xo + s - pad_w, H, W); /* row y + 1's new row */
      }
    const float d0 = nd0, d1 = nd1;
    const bool more = y + 1 < P;
    nd0 = (col && more) ? __ldg(g0 + (size_t)(y + 1) * Q) : 0.0f;
    nd1 = (col && k1 && more) ? __ldg(g1 + (size_t)(y + 1) * Q) : 0.0f;
#pragma unroll
    for (int b = 0; b < 2; b++)
#pragma unroll
      for (int r = 0; r < 3; r++)
#pragma unroll
        for (int s = 0; s < 3; s++) {
          acc[0][b][r * 3 + s] = fmaf(d0, win[b][r][s], acc[0][b][r * 3 + s]);
          acc[1][b][r * 3 + s] = fmaf(d1, win[b][r][s], acc[1][b][r * 3 + s]);
        }
  }
  float *o = part + ((size_t)n * strips + strip) * ((size_t)K * C * 9);
#pragma unroll
  for (int a = 0; a < 2; a++)
#pragma unroll
    for (int b = 0; b < 2; b++)
#pragma unroll
      for (int i = 0; i < 9; i++) {
        float v = acc[a][b][i];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
        if (lane == 0 && (a == 0 || k1) && (b == 0 || c1)) o[((size_t)(k0 + a) * C + (c0 + b)) * 9 + i] = v;
      }
}

/* grid ceil(m / 32), block 32 x 32: thread (tx, ty) adds partials j = ty, ty + 32, ... of weight
 * i = 32 blockIdx.x + tx (a warp reads 32 consecutive floats), then row ty = 0 adds the 32
 * column sums in order */
__global__ void k_wgrad3_sum(const float *__restrict__ part, float *__restrict__ dw, size_t m, int np) {
  __shared__ double acc[32][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const size_t i = (size_t)blockIdx.x * 32 + tx;
  double s = 0.0;
  if (i < m)
    for (int j = ty; j < np; j += 32) s += (double)__ldg(part + (size_t)j * m + i);
  acc[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && i < m) {
    double t = 0.0;
    for (int j = 0; j < 32; j++) t += acc[j][tx];
    dw[i] = (float)t;
  }
}

/* ---- the gemm path ---------------------------------------------------------------------------
 * A chunk of nb samples at a time, in a "stacked" layout whose GEMMs span the whole chunk
 * (one GEMM of nb x P x Q columns, not nb small ones; R S C x P Q x K shapes with a few output
 * pixels, as in the GANs' 4x4 layers, stay efficient):
 *   col (C R S x nb P Q)   col[(c R + r) S + s][j P Q + p Q + q] = x[j][c][p st + r - ph][q st + s - pw]
 *   sw  (K x nb P Q)       sw[k][j P Q + pq] = y or dy [j][k][pq]   (k_swap01 of (nb, K, PQ))
 *   forward          sw = W (K x CRS) . col,          y = swap(sw)
 *   backward data    sw = swap(dy), col = W^T . sw,   dx = col2im(col)   (a gather: no atomics)
 *   backward filter  col = im2col(x), sw = swap(dy),  dW (K x CRS) (+)= sw . col^T (first chunk
 *                    overwrites, later ones add: a fixed order, deterministic) */
struct conv_dims {
  int n, c, h, w, k, r, s, p, q, st, ph, pw;
};

/* Index arithmetic in 32 bits (gemm_chunk keeps every chunk's buffers below 2^31 elements):
 * the element-wise kernels are memory-bound only if their per-element integer work is a few
 * 32-bit divisions, not 64-bit ones; rows / planes go over grid y (grid-stride), elements of a
 * row over grid x (grid-stride), so the per-row decomposition is done once per block row. */

/* col of nb samples starting at x (their first sample): row (c r s) over y, column (j p q) over x */
__global__ void k_im2col(const float *__restrict__ x, float *__restrict__ col, conv_dims d, int nb) {
  const unsigned pq = (unsigned)(d.p * d.q), cols = (unsigned)nb * pq, crs = (unsigned)(d.c * d.r * d.s);
  const size_t plane = (size_t)d.h * d.w, sample = (size_t)d.c * plane;
  for (unsigned row = blockIdx.y; row < crs; row += gridDim.y) {
    const int s = (int)(row % (unsigned)d.s), r = (int)(row / (unsigned)d.s % (unsigned)d.r),
              c = (int)(row / (unsigned)(d.r * d.s));
    const float *xc = x + (size_t)c * plane;
    float *o = col + (size_t)row * cols;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < cols; i += gridDim.x * blockDim.x) {
      const unsigned j = i / pq, t = i - j * pq;
      const int p = (int)(t / (unsigned)d.q), q = (int)t - p * d.q;
      const int iy = p * d.st + r - d.ph, ix = q * d.st + s - d.pw;
      o[i] = (iy >= 0 && iy < d.h && ix >= 0 && ix < d.w) ? __ldg(xc + j * sample + (size_t)iy * d.w + ix) : 0.0f;
    }
  }
}

/* dx of nb samples (starting at dx) from col: plane (j c) over y, pixel over x; each pixel gathers
 * the (r, s) terms that reach it (r = (iy + ph) mod st, + st, ...; likewise s), in ascending order */
__global__ void k_col2im(const float *__restrict__ col, float *__restrict__ dx, conv_dims d, int nb) {
  const unsigned hw = (unsigned)(d.h * d.w), planes = (unsigned)(nb * d.c);
  const size_t cols = (size_t)nb * d.p * d.q;
  for (unsigned pl = blockIdx.y; pl < planes; pl += gridDim.y) {
    const int j = (int)(pl / (unsigned)d.c), c = (int)pl - j * d.c;
    for (unsigned t = blockIdx.x * blockDim.x + threadIdx.x; t < hw; t += gridDim.x * blockDim.x) {
      const int iy = (int)(t / (unsigned)d.w), ix = (int)t - iy * d.w, ty = iy + d.ph, tx = ix + d.pw;
      float acc = 0.0f;
      for (int r = ty % d.st; r < d.r; r += d.st) {
        const int p = (ty - r) / d.st; /* falls as r rises */
        if (p < 0) break;
        if (p >= d.p) continue;
        for (int s = tx % d.st; s < d.s; s += d.st) {
          const int q = (tx - s) / d.st;
          if (q < 0) break;
          if (q >= d.q) continue;
          acc += __ldg(col + ((size_t)(c * d.r + r) * d.s + s) * cols + ((size_t)j * d.p + p) * d.q + q);
        }
      }
      dx[(size_t)pl * hw + t] = acc;
    }
  }
}

/* out (B, A, L) = in (A, B, L) with the first two axes swapped; total = A B L < 2^31; 1-D grid */
__global__ void k_swap01(const float *__restrict__ in, float *__restrict__ out, unsigned A, unsigned B, unsigned L,
                         unsigned total) {
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const unsigned pl = i / L, l = i - pl * L, a = pl % A, b = pl / A;
    out[i] = __ldg(in + ((size_t)a * B + b) * L + l);
  }
}

/* One op of the gemm path over every chunk.  Ops provides
 *   im2col(x, col, d, nb), col2im(col, dx, d, nb), swap01(in, out, A, B, L)
 *   gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, beta): row-major C (M x N) = op(A) op(B) + beta C
 * op 0 forward (a = x, b = w, out = y); 1 backward data (a = dy, b = w, out = dx); 2 backward
 * filter (a = x, b = dy, out = dw).  col holds C R S x nb P Q floats, sw K x nb P Q. */
template <class Ops>
void conv_gemm_plan(Ops &o, int op, const conv_dims &d, const float *a, const float *b, float *out, float *col, float *sw,
                    int nb) {
  const size_t pq = (size_t)d.p * d.q, hw = (size_t)d.h * d.w;
  const int crs = d.c * d.r * d.s;
  for (int n0 = 0; n0 < d.n; n0 += nb) {
    const int m = d.n - n0 < nb ? d.n - n0 : nb, cols = (int)(m * pq);
    if (op == 0) {
      o.im2col(a + (size_t)n0 * d.c * hw, col, d, m);
      o.gemm(false, false, d.k, cols, crs, b, crs, col, cols, sw, cols, 0.0f);
      o.swap01(sw, out + (size_t)n0 * d.k * pq, d.k, m, pq);
    } else if (op == 1) {
      o.swap01(a + (size_t)n0 * d.k * pq, sw, m, d.k, pq);
      o.gemm(true, false, crs, cols, d.k, b, crs, sw, cols, col, cols, 0.0f);
      o.col2im(col, out + (size_t)n0 * d.c * hw, d, m);
    } else {
      o.im2col(a + (size_t)n0 * d.c * hw, col, d, m);
      o.swap01(b + (size_t)n0 * d.k * pq, sw, m, d.k, pq);
      o.gemm(false, true, d.k, crs, cols, sw, cols, col, cols, out, crs, n0 ? 1.0f : 0.0f);
    }
  }
}
