/* cuda_emu.h — an emulated GPU for the host tests of the cuda backend's device code
 * (test_cuda_conv_emu, test_cuda_kernels_emu): just enough of CUDA's device-side language to
 * compile nn/mp_cuda_*.cuh with a C++20 host compiler and run their kernels, so that their
 * logic is checked where no GPU is present (CI).
 *
 * Every CUDA thread of a block is a std::thread, which runs the grid's blocks one after another
 * (grid x fastest, then y, then z); __shfl_down_sync exchanges through a per-warp buffer between
 * two barriers of that warp's 32 threads (a warp that returns early returns whole, as in the
 * kernels); __syncthreads is a barrier of the block; __shared__ arrays are static (one block at
 * a time); atomicAdd is an atomic on the host.  __fadd_rn, __fsub_rn, __fmul_rn, __fdiv_rn,
 * __dmul_rn and __dsub_rn are the host's IEEE operations: build with -ffp-contract=off, so that
 * no multiply-add is fused, as on the device where the kernels ask for explicit roundings.  Blocks must be a whole number of warps. */
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

/* the host's idea of CUDA's launch coordinates */
struct u3 {
  unsigned x, y, z;
};
inline thread_local u3 threadIdx, blockIdx;
inline u3 blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __ldg(p) (*(p))
#define __shared__ static

enum { EMU_MAX_WARPS = 32 };
inline std::barrier<> *emu_warp_bar[EMU_MAX_WARPS];
inline double emu_shfl_buf[EMU_MAX_WARPS][32];
inline std::barrier<> *emu_block_bar;

template <typename T>
static T __shfl_down_sync(unsigned, T v, int off) {
  const int lane = threadIdx.x & 31, w = (int)((threadIdx.x + threadIdx.y * blockDim.x) >> 5);
  emu_shfl_buf[w][lane] = (double)v;
  emu_warp_bar[w]->arrive_and_wait();
  T r = lane + off < 32 ? (T)emu_shfl_buf[w][lane + off] : v;
  emu_warp_bar[w]->arrive_and_wait();
  return r;
}
#define __syncthreads() emu_block_bar->arrive_and_wait()

/* the vector types and intrinsics the kernels use */
struct uint4 {
  unsigned x, y, z, w;
};
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
struct alignas(16) float4 {
  float x, y, z, w;
};
static inline unsigned __float_as_uint(float f) {
  unsigned u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
  return std::atomic_ref<unsigned long long>(*p).fetch_add(v);
}

/* kernel() on a grid of blocks of `block` threads (x fastest); the warps of a block are its
 * threads in order x + y blockDim.x, 32 at a time.  One std::thread per thread of a block,
 * which runs the blocks one after another (a barrier of the whole block between two). */
static inline void launch(u3 grid, u3 block, const std::function<void()> &kernel) {
  blockDim = block, gridDim = grid;
  const int nt = (int)(block.x * block.y * (block.z ? block.z : 1));
  std::barrier<> bb(nt), next(nt);
  emu_block_bar = &bb;
  std::vector<std::unique_ptr<std::barrier<>>> wb;
  for (int w = 0; w < nt / 32; w++) wb.emplace_back(new std::barrier<>(32)), emu_warp_bar[w] = wb.back().get();
  std::vector<std::thread> th;
  for (int t = 0; t < nt; t++)
    th.emplace_back([&, t] {
      threadIdx = {(unsigned)t % block.x, (unsigned)t / block.x % block.y, (unsigned)t / (block.x * block.y)};
      for (unsigned bz = 0; bz < (grid.z ? grid.z : 1); bz++)
        for (unsigned by = 0; by < grid.y; by++)
          for (unsigned bx = 0; bx < grid.x; bx++) {
            blockIdx = {bx, by, bz};
            kernel();
            next.arrive_and_wait();
          }
    });
  for (auto &t : th) t.join();
}
