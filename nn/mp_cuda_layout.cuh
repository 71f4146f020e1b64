/* mp_cuda_layout.cuh — device code of the cuda backend's bf16 staging for few channels: the casts
 * between its fp32 channels-first tensors and the bf16 channels-last copies cuDNN's bf16
 * tensor-core convolutions take (mp_backend_cuda.cu, "bf16 staging").
 *
 * Why own kernels for C = 8, 16, 32: the general 32 x 32 shared-memory tile transpose leaves
 * half of each tile (and of each warp's stores) idle when one side is 16 channels wide, and the
 * classifier's largest tensors (block 1: 16 channels of 128 x 128, block 2: 32 of 64 x 64) are
 * exactly those; their casts move most of the staging's bytes.  Here one thread takes one
 * position's C channels: the fp32 side is read or written one channel plane at a time,
 * coalesced across the warp's consecutive positions, and the bf16 side as C x 2 contiguous bytes
 * in 16-byte vectors.
 *
 *   k_to_nhwc_bf16<C>    in (Z, C, S) fp32 -> out (Z, S, C) bf16, rounded to nearest even
 *   k_from_nhwc_bf16<C>  in (Z, S, C) bf16 -> out (Z, C, S) fp32 (exact), plus bias[c] when bias
 *                        is not NULL: a convolution's bias added in the same pass (the bits of a
 *                        separate k_bias_add after it: one fp32 addition of the same operands)
 * Any 1-D grid (grid-stride over the Z x S positions); the bf16 side 16-byte aligned.  Kept
 * apart so that tests/test_cuda_conv_emu.cpp runs these very kernels on an emulated GPU. */
#pragma once
#include <stdint.h>

/* fp32 -> bf16, round to nearest even; a NaN stays a (quiet) NaN */
__device__ __forceinline__ uint16_t bf16_rn(float v) {
  uint32_t u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ float bf16_f(uint32_t h) { return __uint_as_float(h << 16); }

template <int C>
__global__ void k_to_nhwc_bf16(const float *__restrict__ in, uint16_t *__restrict__ out, unsigned S, size_t total) {
  static_assert(C % 8 == 0 && C <= 64, "C: a multiple of 8, at most 64");
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const size_t z = i / S, s = i - z * S;
    const float *src = in + z * C * S + s;
    uint4 *dst = (uint4 *)(out + i * C);
#pragma unroll
    for (int v = 0; v < C / 8; v++) {
      uint32_t w[4];
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int c = v * 8 + j * 2;
        w[j] = (uint32_t)bf16_rn(src[(size_t)c * S]) | (uint32_t)bf16_rn(src[(size_t)(c + 1) * S]) << 16;
      }
      dst[v] = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

template <int C>
__global__ void k_from_nhwc_bf16(const uint16_t *__restrict__ in, float *__restrict__ out, unsigned S, size_t total,
                                 const float *__restrict__ bias) {
  static_assert(C % 8 == 0 && C <= 64, "C: a multiple of 8, at most 64");
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const size_t z = i / S, s = i - z * S;
    const uint4 *src = (const uint4 *)(in + i * C);
    float *dst = out + z * C * S + s;
#pragma unroll
    for (int v = 0; v < C / 8; v++) {
      const uint4 q = src[v];
      const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int c = v * 8 + j * 2;
        float lo = bf16_f(w[j] & 0xffffu), hi = bf16_f(w[j] >> 16);
        if (bias) lo += bias[c], hi += bias[c + 1];
        dst[(size_t)c * S] = lo;
        dst[(size_t)(c + 1) * S] = hi;
      }
    }
  }
}
