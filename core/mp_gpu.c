/* mp_gpu — CUDA device discovery, the GPU a rank uses and GPU sharing (see mp_gpu.h). */
#include "mp_gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mp_alloc.h"

static int g_local_rank = -1;
void mp_gpu_set_local(int rank) { g_local_rank = rank; }

int mp_gpu_pick(int ndev) {
  int r = g_local_rank;
  if (r < 0) {
    const char *e = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (!e) e = getenv("SLURM_LOCALID");
    if (!e) e = getenv("MPI_LOCALRANKID");
    r = e ? atoi(e) : 0;
    if (r < 0) r = 0;
  }
  return ndev > 0 ? r % ndev : 0;
}

int mp_gpu_key_same(const mp_gpu_key *a, const mp_gpu_key *b) {
  if (!a->present || !b->present) return 0;
  return !memcmp(a->uuid, b->uuid, sizeof a->uuid) ||
         (!strcmp(a->host, b->host) && !memcmp(a->pci, b->pci, sizeof a->pci));
}

int mp_gpu_sharing(const mp_gpu_key *key, const int *group, int n, int *gpus, int *shared, int *none) {
  int g = 0, s = 0, z = 0, within = 0;
  for (int i = 0; i < n; i++) {
    if (!key[i].present) {
      z++;
      continue;
    }
    int first = 1, other = 0; /* first: no earlier rank has this GPU; other: some rank besides i has it */
    for (int j = 0; j < n; j++) {
      if (j == i || !mp_gpu_key_same(&key[i], &key[j])) continue;
      other = 1;
      if (j < i) first = 0;
      if (j > i && (!group || group[i] == group[j])) within = 1;
    }
    g += first;
    s += other;
  }
  *gpus = g, *shared = s, *none = z;
  return within;
}

#if MP_HAVE_CUDA
_Noreturn void mp_fatal_cuda(int rc, const char *stmt, const char *file, int line) {
  mp_fatal_at(MP_EXIT_CUDA, file, line, "MP_CHECK_CUDA(%s) failed: %s (%s)", stmt,
              cudaGetErrorString((cudaError_t)rc), cudaGetErrorName((cudaError_t)rc));
}

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

void mp_gpu_key_of(int dev, mp_gpu_key *key) {
  memset(key, 0, sizeof *key);
  struct cudaDeviceProp p;
  MP_CHECK_CUDA(cudaGetDeviceProperties(&p, dev));
  _Static_assert(sizeof key->uuid == sizeof p.uuid.bytes, "a CUDA UUID is 16 bytes");
  memcpy(key->uuid, p.uuid.bytes, sizeof key->uuid);
  key->pci[0] = p.pciDomainID, key->pci[1] = p.pciBusID, key->pci[2] = p.pciDeviceID;
  FILE *bf = fopen("/proc/sys/kernel/random/boot_id", "r");
  if (!bf || !fgets(key->host, sizeof key->host, bf) || !key->host[0]) {
    memset(key->host, 0, sizeof key->host);
    if (gethostname(key->host, sizeof key->host - 1) != 0) key->host[0] = 0;
  }
  if (bf) fclose(bf);
  key->present = 1;
}
#else
int mp_gpu_count(void) { return 0; }
#endif
