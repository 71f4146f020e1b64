/* mp_cuda_wgrad3.cuh — the device code of the cuda backend's own weight gradient for 3x3
 * stride-1 convolutions (see "own weight gradient" in mp_backend_cuda.cu for why and how it is
 * chosen).  Kept apart so that tests/test_cuda_wgrad3_emu.cpp can compile these very kernels
 * on the host (one std::thread per CUDA thread, shuffles and barriers emulated) and hold them
 * to a naive weight gradient where no GPU is present.  Device code only: no state, no launch.
 *
 *   k_wgrad3       x (n, c, h, w), dy (n, k, p, q) fp32 NCHW -> part[(n, strip)][k][c][3][3]
 *                  grid (strips x ceil(kp cp / WG_WARPS), n), block 32 x WG_WARPS, where
 *                  strips = ceil(q / 32), kp = ceil(k / 2), cp = ceil(c / 2)
 *   k_wgrad3_sum   part (np x m) -> dw (m = k c 9): grid ceil(m / 32), block (32, 32) */
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
  float acc[2][2][9];
#pragma unroll
  for (int a = 0; a < 2; a++)
#pragma unroll
    for (int b = 0; b < 2; b++)
#pragma unroll
      for (int i = 0; i < 9; i++) acc[a][b][i] = 0.0f;
  /* win[c][r][s] = x[c][y + r - pad_h][xo + s - pad_w] for the current output row y */
  float win[2][3][3];
#pragma unroll
  for (int b = 0; b < 2; b++)
#pragma unroll
    for (int r = 1; r < 3; r++)
#pragma unroll
      for (int s = 0; s < 3; s++) win[b][r][s] = wg_ld(xs[b], cok[b], r - 1 - pad_h, xo + s - pad_w, H, W);
  for (int y = 0; y < P; y++) {
#pragma unroll
    for (int b = 0; b < 2; b++)
#pragma unroll
      for (int s = 0; s < 3; s++) {
        win[b][0][s] = win[b][1][s];
        win[b][1][s] = win[b][2][s];
        win[b][2][s] = wg_ld(xs[b], cok[b], y + 2 - pad_h, xo + s - pad_w, H, W);
      }
    const float d0 = col ? __ldg(g0 + (size_t)y * Q) : 0.0f, d1 = (col && k1) ? __ldg(g1 + (size_t)y * Q) : 0.0f;
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
