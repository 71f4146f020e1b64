/* mp_gpu — CUDA device discovery (see mp_gpu.h). */
#include "mp_gpu.h"

#include <stdio.h>

#include "mp_alloc.h"

_Noreturn void mp_fatal_cuda(int rc, const char *stmt, const char *file, int line) {
  mp_fatal_at(MP_EXIT_CUDA, file, line, "MP_CHECK_CUDA(%s) failed: %s (%s)", stmt,
              cudaGetErrorString((cudaError_t)rc), cudaGetErrorName((cudaError_t)rc));
}

static int g_local_rank = -1, g_local_size = -1;
void mp_gpu_set_local(int rank, int size) { g_local_rank = rank, g_local_size = size; }
int mp_gpu_local_rank(void) { return g_local_rank; }
int mp_gpu_local_size(void) { return g_local_size; }

int mp_gpu_count(void) {
  int n = 0;
  /* no device or no driver is not an error here: the caller falls back to the CPU */
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

void mp_gpu_describe(int i, char *buf, int len) {
  struct cudaDeviceProp p;
  MP_CHECK_CUDA(cudaGetDeviceProperties(&p, i));
  char mem[32];
  snprintf(buf, (size_t)len, "%s, %s, sm_%d%d", p.name, mp_format_bytes(p.totalGlobalMem, mem, sizeof mem),
           p.major, p.minor);
}
