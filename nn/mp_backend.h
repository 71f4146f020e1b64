/* mp_backend — the nn backend interface (after ggml's ggml_backend_i): model code calls
 * these entry points and runs unchanged on any backend.
 *
 *   ref   plain C (mp_ref): the oracle every other backend is held to
 *   cpu   oneDNN's C API, primitives created once per shape and reused
 *   cuda  cuDNN, cuBLAS and own kernels on CUDA managed memory (mp_backend_cuda.cu)
 *
 * Memory: tensors live where the backend computes (host memory for ref and cpu, CUDA
 * managed memory for cuda); alloc/upload/download move data in and out (their host side
 * may also be the backend's own memory: a copy within it), and host code touches a
 * device backend's memory only after `sync`.
 *
 * Every op of the nets is an entry; a backend that has not specialised one gets the ref
 * kernel (mp_backend_fill_ref_ops) when it computes in host memory.  Concat and the GAN
 * losses are host-side mp_ref functions (no model of the SPEC concatenates tensors).
 */
#ifndef MP_BACKEND_H
#define MP_BACKEND_H

#include <cjson/cJSON.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mp_ref.h"

typedef struct mp_backend mp_backend;

typedef struct {
  const char *name;
  void (*destroy)(mp_backend *b);
  void *(*alloc)(mp_backend *b, size_t bytes);
  void (*release)(mp_backend *b, void *p);
  void (*upload)(mp_backend *b, void *dst, const void *host, size_t bytes);
  void (*download)(mp_backend *b, void *host, const void *src, size_t bytes);
  /* y = conv(x, w) + bias (bias may be NULL) */
  void (*conv2d_forward)(mp_backend *b, const mp_conv_desc *d, const float *x, const float *w, const float *bias,
                         float *y);
  /* dx = conv^T(dy, w) (overwrite); also the transposed convolution's forward */
  void (*conv2d_backward_data)(mp_backend *b, const mp_conv_desc *d, const float *dy, const float *w, float *dx);
  /* dw, db (db may be NULL), overwrite */
  void (*conv2d_backward_weights)(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, float *dw,
                                  float *db);
  /* both gradients of one convolution: dw, db (may be NULL) and, when dx is non-NULL,
   * dx; lets a backend convert dy once (default: the two calls above) */
  void (*conv2d_backward)(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, const float *w,
                          float *dx, float *dw, float *db);
  /* batch norm (mp_ref.h semantics) */
  void (*bn_forward_train)(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                           float *y, float *save_mean, float *save_invstd, float *run_mean, float *run_var);
  void (*bn_forward_eval)(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                          const float *run_mean, const float *run_var, float *y);
  void (*bn_backward)(mp_backend *b, const mp_bn_desc *d, const float *x, const float *dy, const float *gamma,
                      const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta);
  /* Optional (NULL when a backend has none): batch norm followed by ReLU as one pass,
   * y = max(0, bn(x)).  The backward takes the fused output y (its sign is ReLU's mask)
   * and dL/dy.  A net fuses a BN layer with the ReLU after it when both are present. */
  void (*bn_relu_forward_train)(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma,
                                const float *beta, float *y, float *save_mean, float *save_invstd, float *run_mean,
                                float *run_var);
  void (*bn_relu_backward)(mp_backend *b, const mp_bn_desc *d, const float *x, const float *y, const float *dy,
                           const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                           float *dgamma, float *dbeta);
  /* element-wise activations: kind MP_ACT_*, slope for leaky ReLU; backward gets the
   * forward's input x and output y */
  void (*act_forward)(mp_backend *b, int kind, float slope, const float *x, float *y, size_t n);
  void (*act_backward)(mp_backend *b, int kind, float slope, const float *x, const float *y, const float *dy, float *dx,
                       size_t n);
  void (*maxpool2_forward)(mp_backend *b, const float *x, float *y, unsigned char *argmax, int n, int c, int h, int w);
  void (*maxpool2_backward)(mp_backend *b, const float *dy, const unsigned char *argmax, float *dx, int n, int c, int h,
                            int w);
  void (*linear_forward)(mp_backend *b, const float *x, const float *w, const float *bias, float *y, int n, int in,
                         int out);
  void (*linear_backward)(mp_backend *b, const float *x, const float *w, const float *dy, float *dx, float *dw,
                          float *db, int n, int in, int out);
  void (*dropout_forward)(mp_backend *b, const float *x, float *y, unsigned char *mask, size_t n, float p,
                          uint64_t seed, uint64_t index, uint64_t e0);
  void (*dropout_backward)(mp_backend *b, const float *dy, const unsigned char *mask, float *dx, size_t n, float p);
  void (*adam_step)(mp_backend *b, float *param, const float *grad, float *m, float *v, size_t n, float lr,
                    float beta1, float beta2, float eps, long step);
  /* a short description of what computes an op (e.g. oneDNN's kernel name); op and d NULL:
   * the backend as a whole on one line, for a run's record (mp_backend_compute_json): its
   * engine, the device and library versions, the precision and any setting that changes
   * results (e.g. "cpu: oneDNN 3.0.0 (avx2), AMD EPYC 7B13") */
  const char *(*describe)(mp_backend *b, const char *op, const mp_conv_desc *d);

  /* ---- memory-level entries (host defaults from mp_backend_fill_ref_ops) ----
   * Optional: wait until every queued op has finished, so host code may read and write
   * the backend's memory (cuda: managed memory, kernels are asynchronous).  NULL for
   * backends whose ops return finished. */
  void (*sync)(mp_backend *b);
  void (*copy)(mp_backend *b, float *dst, const float *src, size_t n); /* n floats, no overlap */
  void (*zero)(mp_backend *b, void *dst, size_t bytes);
  void (*axpy)(mp_backend *b, float a, const float *x, float *y, size_t n); /* y += a x */
  void (*scale)(mp_backend *b, float a, float *x, size_t n);               /* x *= a */
  /* spectral norm (mp_ref.h): train = one power iteration updating u, v; eval = sigma
   * from the stored u, v.  Writes w_sn = w / sigma, and sigma into *sigma: one double in this
   * backend's memory, where sn_backward reads it.  Like every other op, queued on a device
   * backend: nothing waits for sigma (a wait per spectrally normalised layer would drain the
   * device's queue that often in each critic forward). */
  void (*sn_forward)(mp_backend *b, const float *w, int rows, int cols, float *u, float *v, float *w_sn, int train,
                     double *sigma);
  void (*sn_backward)(mp_backend *b, const float *w, const float *dw_sn, int rows, int cols, const float *u,
                      const float *v, const double *sigma, float *dw);

  /* The WGAN-GP penalty's per-sample part (SPEC §7): g (n x m) holds the critic's input
   * gradients; norms[j] = ||g_j|| (host, double); v (n x m) = coef_j g_j with coef_j =
   * lambda 2 (||g_j|| - 1) / (n ||g_j||) (0 where the norm is 0).  Returns
   * sum_j (||g_j|| - 1)^2. */
  double (*penalty_grad)(mp_backend *b, const float *g, int n, size_t m, float lambda, float *v, double *norms);
  /* The WGAN-GP interpolates (SPEC §7): out_j = e_j a_j + (1 - e_j) b_j for the n rows of m
   * floats, in float (each product rounded, then their sum).  a, b, out in the backend's
   * memory (out overlaps neither), e (n weights) in host memory. */
  void (*mix_rows)(mp_backend *b, const float *a, const float *bb, const float *e, int n, size_t m, float *out);
  /* Optional (device backends): C = A B^T, row-major, A m x k (lda), B n x k (ldb), C m x n
   * (ldc), all in the backend's memory (the kNN's score blocks, SPEC §9); full fp32 whatever
   * the backend's precision mode. */
  void (*gemm_nt)(mp_backend *b, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float *C,
                  int ldc);
  /* Optional (device backends): C[i][j] = sum_e |A[i][e] - B[j][e]|, the same operands as
   * gemm_nt (the kNN's l1 score blocks, SPEC §9: "l1 needs its own blocked kernel"); each
   * entry summed in float over runs of at most 32 terms, the runs added in double and the
   * total rounded once to float. */
  void (*l1_nt)(mp_backend *b, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float *C, int ldc);
  /* Optional (device backends: Inception-v3 inference on them, nn/mp_inception.c; host
   * backends leave the three NULL and mp_inception runs its own OpenMP loops):
   * resize_u8: mp_ref_resize_u8 from n patches in host memory into dst (n x S x S) in the
   * backend's memory; pool2d_forward: mp_ref_pool2d_forward's pooling (kind MP_POOL_*), x and
   * y in the backend's memory; copy2d: mp_ref_copy2d (rows of width floats between pitches),
   * e.g. a channel concatenation. */
  void (*resize_u8)(mp_backend *b, const uint8_t *px, int n, int side, int S, float *dst);
  void (*pool2d_forward)(mp_backend *b, int kind, const float *x, float *y, int n, int c, int h, int w, int k,
                         int stride, int pad);
  void (*copy2d)(mp_backend *b, float *dst, size_t dpitch, const float *src, size_t spitch, size_t width, size_t rows);
  /* n uint8 patches in host memory -> the float input (mp_ref_patches_to_input) */
  void (*patches_to_input)(mp_backend *b, const uint8_t *const *src, const uint32_t *bits, int n, int P, int rot90,
                           float *dst);

  /* ---- data parallelism (optional: NULL where the backend has no collective of its own;
   * callers then reduce in host memory with MPI) ----
   * attach: collective over the MPI communicator (an MPI_Comm passed by address); 0 when
   * the backend will reduce over it, -1 with the reason in err when it cannot (callers
   * fall back to MPI; every rank of the communicator returns the same).  A library failure
   * inside a collective setup that has begun (cuda: ncclCommInitRank) is fatal instead: the
   * ranks could not agree on falling back without risking a hang.  allreduce_sum: in place
   * over the attached communicator. */
  int (*comm_attach)(mp_backend *b, const void *mpi_comm, char *err, size_t errlen);
  void (*allreduce_sum)(mp_backend *b, float *buf, size_t n);
  /* Optional: the peak of the device memory this backend has held (bytes): the high-water
   * mark of its own allocations together (buffers, scratch, workspace, staging; not the
   * libraries' internal ones); NULL for host backends (their memory is counted by mp_alloc). */
  size_t (*device_peak)(mp_backend *b);
} mp_backend_i;

struct mp_backend {
  const mp_backend_i *iface;
  void *ctx;
};

/* "ref", "cpu" (when built with oneDNN) or "cuda" (built with CUDA, cuDNN and cuBLAS,
 * and a device present); "cuda:tf32" lets cuDNN and cuBLAS use TF32 tensor cores,
 * "cuda:bf16" runs convolutions and linear layers in bf16 with fp32 accumulation and fp32
 * master weights ("cuda" = "cuda:fp32", full fp32).  NULL with the reason in err otherwise. */
mp_backend *mp_backend_create(const char *name, char *err, size_t errlen);
/* The backend of a configuration: train.backend, with train.precision for cuda.  A cuda
 * backend under MPI picks its device from the node-local rank. */
typedef struct mp_config mp_config;
mp_backend *mp_backend_create_cfg(const mp_config *cfg, char *err, size_t errlen);
/* The name mp_backend_create takes for backend `name` under a configuration: "cuda" ->
 * "cuda:<train.precision>", others unchanged (into out, len bytes). */
void mp_backend_name_cfg(const mp_config *cfg, const char *name, char *out, size_t len);
void mp_backend_free(mp_backend *b);
/* Where train.backend is cuda: the GPU every rank of comm uses (mp_gpu_pick: its node-local
 * rank mod the GPUs it sees, which is its own GPU where the launcher binds one per rank),
 * gathered at rank 0, which says how K ranks sit on the GPUs: one each, or how many share
 * one (they take turns on it; two ranks of one rank group on one GPU also reduce their
 * gradients through MPI), and ranks that see none.  group: this rank's rank group (a sweep's,
 * an experiment's).  Collective over comm; nothing on other backends. */
void mp_backend_gpu_plan(const mp_config *cfg, MPI_Comm comm, int group);
/* Names of the backends this build has, e.g. "ref cpu cuda". */
const char *mp_backend_list(void);
/* 1 when `name` is a device backend of this build whose device this process cannot see
 * (cuda without a GPU): tests skip it with a message instead of failing. */
int mp_backend_device_absent(const char *name);

static inline void mp_conv2d_forward(mp_backend *b, const mp_conv_desc *d, const float *x, const float *w,
                                     const float *bias, float *y) {
  b->iface->conv2d_forward(b, d, x, w, bias, y);
}
static inline void mp_conv2d_backward_data(mp_backend *b, const mp_conv_desc *d, const float *dy, const float *w,
                                           float *dx) {
  b->iface->conv2d_backward_data(b, d, dy, w, dx);
}
static inline void mp_conv2d_backward_weights(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy,
                                              float *dw, float *db) {
  b->iface->conv2d_backward_weights(b, d, x, dy, dw, db);
}

enum { MP_ACT_RELU, MP_ACT_LRELU, MP_ACT_TANH, MP_ACT_SIGMOID };

/* Host code may touch the backend's memory after this (see sync above). */
static inline void mp_backend_sync(mp_backend *b) {
  if (b->iface->sync) b->iface->sync(b);
}
/* Copies `bytes` of the backend's memory (e.g. a net's output) into host memory: a device
 * backend's DMA copy, rather than the host reading managed memory in place (which moves
 * its pages to the host and back at the next kernel that writes them). */
static inline void mp_backend_download(mp_backend *b, void *host, const void *src, size_t bytes) {
  b->iface->download(b, host, src, bytes);
}
/* Rows of m floats gathered in the backend's memory: dst row j := a row j where sel[j] < 0,
 * else rows row sel[j] (j < n; sel in host memory); runs of a's rows move in one copy.  dst
 * must not overlap a or rows.  (The SMOTE variant's batch: block 1's embeddings with the
 * synthetic vectors in their places, without a round trip through host memory.) */
void mp_backend_gather_rows(mp_backend *b, float *dst, const float *a, const float *rows, const int64_t *sel, int n,
                            size_t m);
/* Whether the backend computes in device memory (it has a `sync`): host code then reaches its
 * buffers only through upload / download or after a sync (mp_inception keeps its activations
 * there when the backend offers resize_u8, pool2d_forward and copy2d). */
static inline int mp_backend_is_device(const mp_backend *b) { return b->iface->sync != 0; }
/* Whether the backend reduces gradients itself over an attached communicator. */
static inline int mp_backend_has_allreduce(const mp_backend *b) { return b->iface->allreduce_sum != 0; }

/* The ref implementations of every entry, for backends that compute in host memory and
 * have not specialised an op yet (mp_backend.c). */
void mp_backend_fill_ref_ops(mp_backend_i *iface);

/* Data-parallel gradient means of the trainers: the backend's own collective over the
 * communicator where it has one and can use it (cuda + NCCL, one GPU per rank), else
 * MPI_Allreduce in host memory (the backend's memory is host-visible after a sync). */
typedef struct {
  mp_backend *be;
  MPI_Comm comm;
  int K;
  int device; /* 1: the backend reduces (NCCL) */
} mp_dp;
/* Collective over comm.  Rank 0 logs which path reduces the gradients and why. */
void mp_dp_init(mp_dp *dp, mp_backend *be, MPI_Comm comm);
/* buf (n floats of the backend's memory) := its mean over the ranks; no-op for one rank.  On a
 * device backend the result may still be on its way when this returns (the backend's next op
 * follows it in order): sync before host code reads buf. */
void mp_dp_mean(const mp_dp *dp, float *buf, size_t n);

/* What computed a run, for the JSON it writes (train.json, gan.json, eval.json, ...; the
 * process that wrote the file — a resumed run records its last session, as its provenance
 * does).  Collective over comm.  Rank 0 gets
 *   {"backend": "cuda", "ranks": K, "gradient_mean": "NCCL allreduce on the devices" | "MPI
 *    allreduce in host memory" | "none (one rank)" (with dp only),
 *    "engines": [{"engine": describe(be, NULL, NULL), "ranks": [r, ...]}, ...]}
 * (ranks with the same line grouped, the groups in the order of their first rank); other
 * ranks NULL.  dp NULL where nothing is trained (evaluation, features, prediction). */
cJSON *mp_backend_compute_json(mp_backend *be, const mp_dp *dp, MPI_Comm comm);
/* The host's CPU model ("model name" of /proc/cpuinfo; "unknown CPU" without it), for the
 * host backends' descriptions. */
const char *mp_host_cpu_model(void);

/* Backend constructors (mp_backend_create dispatches to them). */
mp_backend *mp_backend_ref_create(void);
/* "strict" (collective 1) and "strict:mpi" (0): a host backend's arithmetic (cpu where built,
 * else ref; the same bits) under the cuda backend's memory contract, enforced: a host access to
 * backend memory that an asynchronous op left pending, without a sync, faults and names the op
 * (mp_backend_strict.c; a checking backend for the tests, not in mp_backend_list).  collective:
 * whether comm_attach takes the communicator (as cuda with NCCL; the trainers' device path of
 * mp_dp) or declines (gradients through MPI in host memory).  NULL with the reason in err. */
mp_backend *mp_backend_strict_create(int collective, char *err, size_t errlen);
#if MP_HAVE_DNNL
mp_backend *mp_backend_dnnl_create(char *err, size_t errlen);
#endif
#if MP_HAVE_CUDA_BACKEND
/* precision 0 fp32, 1 TF32 tensor cores, 2 bf16 mixed precision (mp_backend_cuda.cu, built
 * as a module: mp_backend_create loads it on first use, $MP_CUDA_BACKEND_MODULE or the
 * build's path). */
typedef mp_backend *(*mp_backend_cuda_create_fn)(int precision, char *err, size_t errlen);
#endif

#endif
