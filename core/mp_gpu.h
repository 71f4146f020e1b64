/* mp_gpu — CUDA device discovery and the CUDA check macro.  Compiled only when the
 * CUDA toolkit is found (MP_HAVE_CUDA); mp_gpu_count() returns 0 elsewhere.  The
 * cuDNN, cuBLAS and NCCL check macros join this header with the cuda backend. */
#ifndef MP_GPU_H
#define MP_GPU_H

#include "mp_build_config.h"
#include "mp_check.h"

/* Number of CUDA devices this process sees (0 when none or no driver). */
int mp_gpu_count(void);
/* Name and memory of device i into buf ("NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90"). */
void mp_gpu_describe(int i, char *buf, int len);
/* The process's rank on its node and the node's number of ranks, recorded once by
 * mp_mpi_init (which computes them collectively), so a device backend created later by a
 * rank group picks its GPU without a collective (and says when ranks share GPUs); -1
 * before.  Compiled with CUDA only. */
void mp_gpu_set_local(int rank, int size);
int mp_gpu_local_rank(void);
int mp_gpu_local_size(void);

#if MP_HAVE_CUDA
#include <cuda_runtime_api.h>
_Noreturn void mp_fatal_cuda(int rc, const char *stmt, const char *file, int line);
#define MP_CHECK_CUDA(stmt)                                                         \
  do {                                                                              \
    cudaError_t mp_check_rc_ = (stmt);                                              \
    if (mp_check_rc_ != cudaSuccess) mp_fatal_cuda((int)mp_check_rc_, #stmt, __FILE__, __LINE__); \
  } while (0)
#endif

#endif
