/* test_cuda_wgrad3_emu — the cuda backend's own 3x3 weight-gradient kernels
 * (nn/mp_cuda_wgrad3.cuh) compiled for the host and run on an emulated GPU, against a naive
 * weight gradient in double.  Where no GPU is present (CI) this is what holds the kernels'
 * indexing, edge handling, warp-shuffle reduction and partial-sum layout to the definition
 *   dw[k][c][r][s] = sum_n sum_y sum_x dy[n][k][y][x] x[n][c][y + r - pad_h][x + s - pad_w];
 * on a GPU, test_backend holds the compiled kernels to ref (MP_CUDA_OWN_WGRAD=1) and the backend
 * compares them with cuDNN's result before using them.
 *
 * The emulation: every CUDA thread of a block is a std::thread (blocks one after another);
 * __shfl_down_sync exchanges through a per-warp buffer between two barriers of that warp's 32
 * threads (a warp that returns early returns whole, as in the kernel); __syncthreads is a
 * barrier of the block; __shared__ arrays are static (one block at a time).  Buffers start as
 * NaN so that an element left unwritten fails the comparison. */
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

struct u3 {
  unsigned x, y, z;
};
thread_local u3 threadIdx, blockIdx;
static u3 blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __ldg(p) (*(p))
#define __shared__ static

enum { MAX_WARPS = 32 };
static std::barrier<> *warp_bar[MAX_WARPS];
static double shfl_buf[MAX_WARPS][32];
static std::barrier<> *block_bar;

template <typename T>
static T __shfl_down_sync(unsigned, T v, int off) {
  const int lane = threadIdx.x & 31, w = (int)((threadIdx.x + threadIdx.y * blockDim.x) >> 5);
  shfl_buf[w][lane] = (double)v;
  warp_bar[w]->arrive_and_wait();
  T r = lane + off < 32 ? (T)shfl_buf[w][lane + off] : v;
  warp_bar[w]->arrive_and_wait();
  return r;
}
#define __syncthreads() block_bar->arrive_and_wait()

#include "mp_cuda_wgrad3.cuh"

static void launch(u3 grid, u3 block, const std::function<void()> &kernel) {
  blockDim = block;
  const int nt = (int)(block.x * block.y);
  for (unsigned by = 0; by < grid.y; by++)
    for (unsigned bx = 0; bx < grid.x; bx++) {
      std::barrier<> bb(nt);
      block_bar = &bb;
      std::vector<std::unique_ptr<std::barrier<>>> wb;
      for (int w = 0; w < nt / 32; w++) wb.emplace_back(new std::barrier<>(32)), warp_bar[w] = wb.back().get();
      std::vector<std::thread> th;
      for (int t = 0; t < nt; t++)
        th.emplace_back([&, t, bx, by] {
          threadIdx = {(unsigned)t % block.x, (unsigned)t / block.x, 0};
          blockIdx = {bx, by, 0};
          kernel();
        });
      for (auto &t : th) t.join();
    }
}

int main() {
  /* n c h w k pad_h pad_w: the classifier's 3x3 pad 1; odd channel counts (a lone last k or c
   * pair); one input channel; valid (pad 0) and pad 2; rows longer than a 32-column strip with a
   * partial last strip; more (k, c) pairs than one block's warps; unequal pads; more partials
   * (samples x strips) than the sum's 32 threads per weight */
  static const int shapes[][7] = {{2, 3, 16, 16, 8, 1, 1}, {3, 2, 40, 64, 4, 1, 1}, {2, 5, 9, 37, 3, 0, 0},
                                  {1, 1, 33, 40, 16, 1, 1}, {3, 4, 7, 5, 5, 2, 2}, {1, 16, 6, 70, 16, 1, 1},
                                  {2, 3, 8, 9, 2, 0, 1},   {40, 2, 5, 6, 3, 1, 1}};
  std::mt19937 rng(20261127);
  std::uniform_real_distribution<float> U(-1.0f, 1.0f);
  int bad = 0;
  for (const auto &q : shapes) {
    const int N = q[0], C = q[1], H = q[2], W = q[3], K = q[4], ph = q[5], pw = q[6];
    const int P = H + 2 * ph - 2, Q = W + 2 * pw - 2;
    std::vector<float> x((size_t)N * C * H * W), dy((size_t)N * K * P * Q), dw((size_t)K * C * 9, NAN);
    for (auto &v : x) v = U(rng);
    for (auto &v : dy) v = U(rng);
    const int strips = (Q + 31) / 32, kp = (K + 1) / 2, cp = (C + 1) / 2;
    std::vector<float> part((size_t)N * strips * K * C * 9, NAN);
    const unsigned gx = (unsigned)(strips * ((kp * cp + WG_WARPS - 1) / WG_WARPS));
    const float *xp = x.data(), *dp = dy.data();
    float *pp = part.data(), *wp = dw.data();
    launch({gx, (unsigned)N, 1}, {32 * WG_WARPS, 1, 1}, [=] { k_wgrad3(xp, dp, pp, C, H, W, K, P, Q, ph, pw, kp, cp); });
    const size_t m = (size_t)K * C * 9;
    launch({(unsigned)((m + 31) / 32), 1, 1}, {32, 32, 1}, [=] { k_wgrad3_sum(pp, wp, m, N * strips); });
    double num = 0, den = 0;
    for (int k = 0; k < K; k++)
      for (int c = 0; c < C; c++)
        for (int r = 0; r < 3; r++)
          for (int s = 0; s < 3; s++) {
            double a = 0;
            for (int n = 0; n < N; n++)
              for (int y = 0; y < P; y++)
                for (int xo = 0; xo < Q; xo++) {
                  const int iy = y + r - ph, ix = xo + s - pw;
                  if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                  a += (double)dy[(((size_t)n * K + k) * P + y) * Q + xo] * x[(((size_t)n * C + c) * H + iy) * W + ix];
                }
            const double e = dw[((size_t)k * C + c) * 9 + r * 3 + s] - a;
            num += e * e, den += a * a;
          }
    const double nmse = num / den; /* NaN (an unwritten weight) fails */
    const bool ok = nmse < 1e-12;  /* fp32 products and lane sums, double across partials: ~1e-14 */
    printf("n%d c%d %dx%d k%d pad %d,%d -> %dx%d (%d strips, %d pairs): nmse %.2e %s\n", N, C, H, W, K, ph, pw, P, Q,
           strips, kp * cp, nmse, ok ? "ok" : "FAILED");
    bad += !ok;
  }
  return bad ? 1 : 0;
}
