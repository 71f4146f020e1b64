/* mp_gpu — CUDA device discovery, which GPU a rank uses, whether ranks share GPUs, and the
 * CUDA check macro.  Built in every configuration: without the CUDA toolkit (MP_HAVE_CUDA 0)
 * mp_gpu_count() returns 0 and the device queries are absent.  The cuDNN, cuBLAS and NCCL
 * check macros join this header with the cuda backend. */
#ifndef MP_GPU_H
#define MP_GPU_H

#include "mp_build_config.h"
#include "mp_check.h"

/* Number of CUDA devices this process sees (0 when none, no driver, or no CUDA build). */
int mp_gpu_count(void);
/* The process's rank on its node, recorded once by mp_mpi_init (which computes it
 * collectively), so a device backend created later by a rank group picks its GPU without a
 * collective (mp_gpu_pick); -1: not recorded. */
void mp_gpu_set_local(int rank);
/* The device this rank's cuda backend uses among the ndev (> 0) it sees: its node-local
 * rank mod ndev.  The node-local rank is mp_gpu_set_local's, else the launcher's
 * (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, MPI_LOCALRANKID), else 0.  Where the launcher
 * gives each rank a GPU of its own (srun --gpus-per-task=1, CUDA_VISIBLE_DEVICES per rank)
 * every rank sees one device and uses it. */
int mp_gpu_pick(int ndev);

/* What identifies a GPU across a job: its UUID (unique across nodes, unlike host names, which
 * containers on two nodes may repeat), and its PCI address on its host (MIG slices of one GPU
 * have UUIDs of their own but one PCI address; NCCL refuses them as duplicate GPUs).  The host
 * is the kernel's boot id (unique per machine and boot, the same in every container on it),
 * else the host name.  present 0: the rank sees no GPU. */
typedef struct {
  unsigned char uuid[16];
  char host[64];
  int pci[3]; /* domain, bus, device */
  int present;
} mp_gpu_key;
/* 1 when a and b (both present) are one GPU: the same UUID, or the same PCI device on one host. */
int mp_gpu_key_same(const mp_gpu_key *a, const mp_gpu_key *b);
/* How n ranks (key[i] of rank i; group[i] its rank group, group NULL: one group) map onto GPUs:
 * *gpus the distinct GPUs used, *shared the ranks whose GPU another rank uses too, *none the
 * ranks without a GPU.  Returns 1 when two ranks of one group share a GPU (that group's NCCL
 * refuses: its gradients go through MPI), else 0. */
int mp_gpu_sharing(const mp_gpu_key *key, const int *group, int n, int *gpus, int *shared, int *none);

#if MP_HAVE_CUDA
#include <cuda_runtime_api.h>
/* Name and memory of device i into buf ("NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90"). */
void mp_gpu_describe(int i, char *buf, int len);
/* The key of device dev (< mp_gpu_count()). */
void mp_gpu_key_of(int dev, mp_gpu_key *key);
_Noreturn void mp_fatal_cuda(int rc, const char *stmt, const char *file, int line);
#define MP_CHECK_CUDA(stmt)                                                         \
  do {                                                                              \
    cudaError_t mp_check_rc_ = (stmt);                                              \
    if (mp_check_rc_ != cudaSuccess) mp_fatal_cuda((int)mp_check_rc_, #stmt, __FILE__, __LINE__); \
  } while (0)
#endif

#endif
