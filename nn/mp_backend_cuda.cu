/* mp_backend_cuda — the `cuda` nn backend (see mp_backend.h): cuDNN for convolutions
 * (forward, backward data = the transposed convolution, backward filter, bias) and batch
 * norm, cuBLAS for linear layers and spectral norm's matrix-vector products, own kernels
 * for activations, max-pool with argmax, dropout (the same counter-based RNG as the CPU,
 * so masks are identical), Adam, the spectral-norm reductions and the memory-level
 * entries; NCCL for the gradient allreduce.
 *
 * Memory: CUDA managed memory (cudaMallocManaged, preferred location and prefetch on the
 * device).  Kernels and library calls run asynchronously on one stream; host code that
 * touches the memory (the GAN losses on a few outputs, the gradient penalty's per-sample
 * norms, checkpoints, MPI reductions when NCCL cannot run) calls `sync` first, which
 * mp_net does at the end of every public entry point.  Managed memory is what lets the
 * nets, the trainers and their checkpoints run unchanged on this backend; the hot path
 * (every layer, the gradient accumulation, Adam, spectral norm and, with NCCL, the
 * allreduce) stays on the device.
 *
 * Precision: "cuda" computes in fp32 (cuDNN CUDNN_FMA_MATH, cuBLAS default math: no TF32,
 * the precision the ref oracle is held to); "cuda:tf32" lets both use TF32 tensor cores;
 * "cuda:bf16" is mixed precision as PyTorch's bf16 autocast: convolutions take bf16
 * copies of their operands (cast by a kernel) and produce bf16 results with fp32
 * accumulation (cuDNN PSEUDO_BFLOAT16), linear layers run cuBLAS with
 * CUBLAS_COMPUTE_32F_FAST_16BF; parameters (the fp32 master weights), gradients as
 * stored, batch norm, activations, losses and Adam stay fp32.
 *
 * Algorithms: one cudnnFind…Ex per (op, shape) on the real buffers, with a workspace cap
 * (MP_CUDA_WORKSPACE_MB, default 512), cached for the life of the backend; the fastest
 * DETERMINISTIC algorithm is kept, so a rerun gives the same numbers (a checkpoint
 * resume stays bit-identical on one GPU); see choose() for a shape with none within the cap,
 * and MP_CUDA_DETERMINISTIC=0 for the fastest algorithm whatever its determinism.
 *
 * Every CUDA, cuDNN, cuBLAS and NCCL call is checked (MP_CHECK_CUDA/CUDNN/CUBLAS/NCCL:
 * the statement, file:line and rank, then MPI_Abort); every kernel launch is followed by
 * cudaGetLastError (MP_LAUNCHED). */
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <hdf5.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#if MP_HAVE_NCCL_LIB
#include <nccl.h>
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the project's headers are C11; their _Noreturn is C++'s [[noreturn]] */
#define _Noreturn [[noreturn]]
extern "C" {
#include "mp_build_config.h"
#include "mp_alloc.h"
#include "mp_backend.h"
#include "mp_check.h"
#include "mp_gpu.h"
#include "mp_log.h"
#include "mp_rng.h"
}

/* ---- checks ------------------------------------------------------------------------------ */
#define MP_CHECK_CUDNN(stmt)                                                                           \
  do {                                                                                                 \
    cudnnStatus_t rc_ = (stmt);                                                                        \
    if (rc_ != CUDNN_STATUS_SUCCESS)                                                                   \
      mp_fatal_at(MP_EXIT_CUDNN, __FILE__, __LINE__, "MP_CHECK_CUDNN(%s) failed: %s", #stmt, cudnnGetErrorString(rc_)); \
  } while (0)
#define MP_CHECK_CUBLAS(stmt)                                                                          \
  do {                                                                                                 \
    cublasStatus_t rc_ = (stmt);                                                                       \
    if (rc_ != CUBLAS_STATUS_SUCCESS)                                                                  \
      mp_fatal_at(MP_EXIT_CUBLAS, __FILE__, __LINE__, "MP_CHECK_CUBLAS(%s) failed: %s (%s)", #stmt,    \
                  cublasGetStatusName(rc_), cublasGetStatusString(rc_));                               \
  } while (0)
#if MP_HAVE_NCCL_LIB
#define MP_CHECK_NCCL(stmt)                                                                            \
  do {                                                                                                 \
    ncclResult_t rc_ = (stmt);                                                                         \
    if (rc_ != ncclSuccess)                                                                            \
      mp_fatal_at(MP_EXIT_NCCL, __FILE__, __LINE__, "MP_CHECK_NCCL(%s) failed: %s", #stmt, ncclGetErrorString(rc_)); \
  } while (0)
#endif
/* after every kernel launch */
#define MP_LAUNCHED() MP_CHECK_CUDA(cudaGetLastError())

/* ---- the backend's state ------------------------------------------------------------------- */
enum { OP_FWD, OP_BWD_DATA, OP_BWD_FILTER };

typedef struct {
  int op;
  mp_conv_desc d;
  int algo;
  cudnnMathType_t math;
  size_t ws;
  char what[96];
} algo_entry;

typedef struct {
  void *p;
  size_t bytes;
} blk_t;

typedef struct {
  int dev, tf32, bf16; /* tf32: TF32 tensor cores; bf16: mixed precision (tf32 also set) */
  bool deterministic;  /* only deterministic cuDNN algorithms (MP_CUDA_DETERMINISTIC, default 1) */
  uint16_t *bfb[3];    /* bf16 scratch: two operands and the result of one convolution */
  size_t bfn[3];
  cudaStream_t st, comm_st;
  cudaEvent_t ev_ready, ev_done;
  cudnnHandle_t dnn;
  cublasHandle_t blas;
  cudnnTensorDescriptor_t xd, yd, bd, bnd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  void *ws;
  size_t ws_size, ws_cap;
  double *dsc;  /* device scratch: [0] a dot product / norm, [1] sigma, then partial sums */
  double *hsc;  /* pinned host copy of dsc[0..1] */
  algo_entry *cache;
  int ncache, capcache;
  size_t bytes, peak; /* managed memory held / its peak */
  blk_t *blk;         /* the allocations, for the bookkeeping */
  void *stage, *dstage; /* patch upload: pinned host and device staging */
  double *gp_norms;     /* the gradient penalty's per-sample norms (device) */
  int gp_cap;
  size_t stage_size;
  int nblk, capblk;
#if MP_HAVE_NCCL_LIB
  ncclComm_t nccl;
#endif
  int has_nccl;
  char desc[160];
} ctx_t;

enum { PARTIALS = 1024 }; /* blocks of the two-pass deterministic reductions */

static ctx_t *C(mp_backend *b) { return (ctx_t *)b->ctx; }

static unsigned grid_for(size_t n, int threads) {
  size_t g = (n + (size_t)threads - 1) / (size_t)threads;
  return (unsigned)(g > 65535u * 16u ? 65535u * 16u : (g ? g : 1)); /* grid-stride loops cover the rest */
}
#define GS_LOOP(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)
enum { TPB = 256 };

/* ---- memory ------------------------------------------------------------------------------- */
static void *cu_alloc(mp_backend *b, size_t bytes) {
  ctx_t *c = C(b);
  void *p = NULL;
  if (!bytes) bytes = 1;
  cudaError_t rc = cudaMallocManaged(&p, bytes, cudaMemAttachGlobal);
  if (rc != cudaSuccess) {
    char m[32];
    mp_fatal_at(MP_EXIT_ALLOC, __FILE__, __LINE__, "cudaMallocManaged of %s failed: %s", mp_format_bytes(bytes, m, sizeof m),
                cudaGetErrorString(rc));
  }
#if CUDART_VERSION >= 13000
  cudaMemLocation loc;
  loc.type = cudaMemLocationTypeDevice;
  loc.id = c->dev;
  MP_CHECK_CUDA(cudaMemAdvise(p, bytes, cudaMemAdviseSetPreferredLocation, loc));
  MP_CHECK_CUDA(cudaMemPrefetchAsync(p, bytes, loc, 0, c->st));
#else
  MP_CHECK_CUDA(cudaMemAdvise(p, bytes, cudaMemAdviseSetPreferredLocation, c->dev));
  MP_CHECK_CUDA(cudaMemPrefetchAsync(p, bytes, c->dev, c->st));
#endif
  c->bytes += bytes;
  if (c->bytes > c->peak) c->peak = c->bytes;
  if (c->nblk == c->capblk)
    c->blk = (blk_t *)mp_realloc(c->blk, (size_t)(c->capblk = c->capblk ? 2 * c->capblk : 64) * sizeof *c->blk);
  c->blk[c->nblk].p = p;
  c->blk[c->nblk++].bytes = bytes;
  return p;
}

static void cu_release(mp_backend *b, void *p) {
  if (!p) return;
  ctx_t *c = C(b);
  for (int i = 0; i < c->nblk; i++)
    if (c->blk[i].p == p) {
      c->bytes -= c->blk[i].bytes;
      c->blk[i] = c->blk[--c->nblk];
      break;
    }
  MP_CHECK_CUDA(cudaStreamSynchronize(c->st));
  MP_CHECK_CUDA(cudaFree(p));
}

static void cu_sync(mp_backend *b) { MP_CHECK_CUDA(cudaStreamSynchronize(C(b)->st)); }

static void cu_upload(mp_backend *b, void *dst, const void *host, size_t bytes) {
  MP_CHECK_CUDA(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyDefault, C(b)->st));
  MP_CHECK_CUDA(cudaStreamSynchronize(C(b)->st)); /* the host buffer may be reused at once */
}
static void cu_download(mp_backend *b, void *host, const void *src, size_t bytes) {
  MP_CHECK_CUDA(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDefault, C(b)->st));
  MP_CHECK_CUDA(cudaStreamSynchronize(C(b)->st));
}
static void cu_copy(mp_backend *b, float *dst, const float *src, size_t n) {
  if (n) MP_CHECK_CUDA(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDefault, C(b)->st));
}
static void cu_zero(mp_backend *b, void *dst, size_t bytes) {
  if (bytes) MP_CHECK_CUDA(cudaMemsetAsync(dst, 0, bytes, C(b)->st));
}

/* rounded multiply then add, as the host's y += a x (no fused multiply-add: the ref's
 * rounding, which the tests compare exactly) */
__global__ void k_axpy(float a, const float *x, float *y, size_t n) {
  GS_LOOP(i, n) y[i] = __fadd_rn(y[i], __fmul_rn(a, x[i]));
}
__global__ void k_scale(float a, float *x, size_t n) {
  GS_LOOP(i, n) x[i] *= a;
}
static void cu_axpy(mp_backend *b, float a, const float *x, float *y, size_t n) {
  if (!n) return;
  k_axpy<<<grid_for(n, TPB), TPB, 0, C(b)->st>>>(a, x, y, n);
  MP_LAUNCHED();
}
static void cu_scale(mp_backend *b, float a, float *x, size_t n) {
  if (!n) return;
  k_scale<<<grid_for(n, TPB), TPB, 0, C(b)->st>>>(a, x, n);
  MP_LAUNCHED();
}

/* ---- convolutions (cuDNN) ---------------------------------------------------------------------- */
static void set_conv(ctx_t *c, const mp_conv_desc *d) {
  /* bf16: channels-last operands (see run_conv), accumulation stays fp32 */
  cudnnDataType_t t = c->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t fmt = c->bf16 ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  MP_CHECK_CUDNN(cudnnSetTensor4dDescriptor(c->xd, fmt, t, d->n, d->c, d->h, d->w));
  MP_CHECK_CUDNN(cudnnSetTensor4dDescriptor(c->yd, fmt, t, d->n, d->k, d->p, d->q));
  MP_CHECK_CUDNN(cudnnSetFilter4dDescriptor(c->wd, t, fmt, d->k, d->c, d->r, d->s));
  MP_CHECK_CUDNN(cudnnSetConvolution2dDescriptor(c->cd, d->pad, d->pad_w, d->stride, d->stride, 1, 1,
                                                 CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  MP_CHECK_CUDNN(cudnnSetConvolutionMathType(c->cd, c->tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
}

static bool same_shape(const mp_conv_desc *a, const mp_conv_desc *b) {
  return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w && a->k == b->k && a->r == b->r && a->s == b->s &&
         a->stride == b->stride && a->pad == b->pad && a->pad_w == b->pad_w;
}

static algo_entry *cached(ctx_t *c, int op, const mp_conv_desc *d) {
  for (int i = 0; i < c->ncache; i++)
    if (c->cache[i].op == op && same_shape(&c->cache[i].d, d)) return &c->cache[i];
  return NULL;
}

static void ensure_ws(ctx_t *c, size_t bytes) {
  if (bytes <= c->ws_size) return;
  MP_CHECK_CUDA(cudaStreamSynchronize(c->st));
  if (c->ws) MP_CHECK_CUDA(cudaFree(c->ws));
  MP_CHECK_CUDA(cudaMalloc(&c->ws, bytes));
  c->ws_size = bytes;
}

/* One cudnnFind…Ex result, whatever the op */
typedef struct {
  int algo;
  cudnnStatus_t st;
  cudnnDeterminism_t det;
  size_t mem;
  cudnnMathType_t math;
  float ms;
} perf_t;
enum { NPERF = 16 };

#define MP_COPY_PERF(dst, src, n)                                                                      \
  for (int i_ = 0; i_ < (n); i_++)                                                                     \
    (dst)[i_] = perf_t{(int)(src)[i_].algo, (src)[i_].status, (src)[i_].determinism, (src)[i_].memory, \
                       (src)[i_].mathType, (src)[i_].time};

/* Every algorithm cuDNN can run for (op, the descriptors set) on the call's own buffers with
 * the current workspace (Find…Ex writes the output, which the caller then overwrites),
 * fastest first.  Operand order: forward (x, w) -> y; backward data (dy, w) -> dx; backward
 * filter (x, dy) -> dw. */
static int find_all(ctx_t *c, int op, const void *x, const void *w, const void *y, perf_t *out) {
  int got = 0;
  if (op == OP_FWD) {
    cudnnConvolutionFwdAlgoPerf_t perf[NPERF];
    MP_CHECK_CUDNN(cudnnFindConvolutionForwardAlgorithmEx(c->dnn, c->xd, x, c->wd, w, c->cd, c->yd, (void *)y, NPERF,
                                                          &got, perf, c->ws, c->ws_size));
    MP_COPY_PERF(out, perf, got);
  } else if (op == OP_BWD_DATA) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[NPERF];
    MP_CHECK_CUDNN(cudnnFindConvolutionBackwardDataAlgorithmEx(c->dnn, c->wd, w, c->yd, x, c->cd, c->xd, (void *)y,
                                                               NPERF, &got, perf, c->ws, c->ws_size));
    MP_COPY_PERF(out, perf, got);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[NPERF];
    MP_CHECK_CUDNN(cudnnFindConvolutionBackwardFilterAlgorithmEx(c->dnn, c->xd, x, c->yd, w, c->cd, c->wd, (void *)y,
                                                                 NPERF, &got, perf, c->ws, c->ws_size));
    MP_COPY_PERF(out, perf, got);
  }
  return got;
}

/* The first (fastest) usable result: succeeded, within `cap` bytes of workspace,
 * deterministic when asked, and in fp32 mode no tensor-core math. */
static int pick_perf(const ctx_t *c, const perf_t *p, int got, size_t cap, bool need_det) {
  for (int i = 0; i < got; i++) {
    if (p[i].st != CUDNN_STATUS_SUCCESS || p[i].mem > cap) continue;
    if (need_det && p[i].det != CUDNN_DETERMINISTIC) continue;
    if (!c->tf32 && (p[i].math == CUDNN_TENSOR_OP_MATH || p[i].math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)) continue;
    return i;
  }
  return -1;
}

/* The algorithm for (op, shape), found once and cached.  The fastest deterministic one
 * within the workspace cap; when there is none (cuDNN 9's deterministic backward-filter
 * kernels for large batches want more), the search is repeated with a workspace of up to
 * half the free device memory (at most 8 GiB); only then is a nondeterministic algorithm
 * taken, with a warning.  MP_CUDA_DETERMINISTIC=0 takes the fastest algorithm whatever its
 * determinism (PyTorch's cudnn.benchmark choice). */
static algo_entry *choose(ctx_t *c, int op, const mp_conv_desc *d, const void *x, const void *w, const void *y) {
  algo_entry *e = cached(c, op, d);
  if (e) return e;
  static const char *names[3] = {"forward", "backward-data", "backward-filter"};
  ensure_ws(c, c->ws_cap);
  perf_t p[NPERF];
  int got = find_all(c, op, x, w, y, p);
  size_t cap = c->ws_cap;
  int pick = pick_perf(c, p, got, cap, c->deterministic);
  if (pick < 0) {
    size_t fr = 0, tot = 0;
    MP_CHECK_CUDA(cudaMemGetInfo(&fr, &tot));
    size_t big = fr / 2 < ((size_t)8 << 30) ? fr / 2 : ((size_t)8 << 30);
    if (big > c->ws_size) {
      ensure_ws(c, big);
      got = find_all(c, op, x, w, y, p);
    }
    cap = c->ws_size;
    pick = pick_perf(c, p, got, cap, c->deterministic);
    if (pick < 0 && c->deterministic) {
      pick = pick_perf(c, p, got, cap, false);
      if (pick >= 0)
        MP_WARN("cuda: no deterministic %s algorithm for conv n%d c%d %dx%d k%d %dx%d stride %d: cuDNN algo %d "
                "(nondeterministic) is used",
                names[op], d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride, p[pick].algo);
    }
    /* keep the workspace that the chosen algorithms need, not the search's */
    size_t keep = c->ws_cap;
    if (pick >= 0 && p[pick].mem > keep) keep = p[pick].mem;
    for (int i = 0; i < c->ncache; i++)
      if (c->cache[i].ws > keep) keep = c->cache[i].ws;
    if (keep < c->ws_size) {
      MP_CHECK_CUDA(cudaStreamSynchronize(c->st));
      MP_CHECK_CUDA(cudaFree(c->ws));
      c->ws = NULL, c->ws_size = 0;
      ensure_ws(c, keep);
    }
  }
  MP_CHECK(pick >= 0, "cuDNN offers no %s algorithm for conv n%d c%d %dx%d k%d %dx%d stride %d within %zu MiB of workspace",
           names[op], d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride, cap >> 20);
  algo_entry ne;
  memset(&ne, 0, sizeof ne);
  ne.op = op;
  ne.d = *d;
  ne.algo = p[pick].algo, ne.math = p[pick].math, ne.ws = p[pick].mem;
  snprintf(ne.what, sizeof ne.what, "cudnn %s algo %d%s, %.3f ms%s", names[op], p[pick].algo,
           p[pick].det == CUDNN_DETERMINISTIC ? "" : " (nondeterministic)", (double)p[pick].ms,
           p[pick].mem > c->ws_cap ? ", workspace beyond the cap" : "");
  if (c->ncache == c->capcache)
    c->cache = (algo_entry *)mp_realloc(c->cache, (size_t)(c->capcache = c->capcache ? 2 * c->capcache : 32) * sizeof *c->cache);
  c->cache[c->ncache] = ne;
  return &c->cache[c->ncache++];
}

/* ---- bf16 staging: fp32 NCHW <-> bf16 NHWC (round to nearest even) into growable scratch.
 * cuDNN's bf16 tensor-core kernels want channels-last: NCHW bf16 operands cost it a layout
 * conversion of its own on every call (bench/gpu: 0.15x PyTorch's channels-last bf16 at batch
 * 512), so the cast also transposes: activations (n, c, h*w) -> (n, h*w, c), filters
 * (k, c, r*s) -> (k, r*s, c), and the result back. ------------------------------------------- */
__device__ __forceinline__ uint16_t bf16_rn(float v) {
  uint32_t u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ float ld_f(const float *p) { return *p; }
__device__ __forceinline__ float ld_f(const uint16_t *p) { return __uint_as_float((uint32_t)*p << 16); }
__device__ __forceinline__ void st_f(float *p, float v) { *p = v; }
__device__ __forceinline__ void st_f(uint16_t *p, float v) { *p = bf16_rn(v); }

/* out[z][s][r] = in[z][r][s] for z < Z (grid z), converting element types on the way: a
 * 32x32 tile through shared memory, so reads and writes are both coalesced */
enum { TT = 32, TROWS = 8 };
template <typename Tin, typename Tout>
__global__ void k_transpose(const Tin *in, Tout *out, int R, int S) {
  __shared__ float tile[TT][TT + 1];
  size_t base = (size_t)blockIdx.z * R * S;
  int s0 = blockIdx.x * TT, r0 = blockIdx.y * TT;
  for (int j = threadIdx.y; j < TT; j += TROWS) {
    int r = r0 + j, sc = s0 + threadIdx.x;
    if (r < R && sc < S) tile[j][threadIdx.x] = ld_f(in + base + (size_t)r * S + sc);
  }
  __syncthreads();
  for (int j = threadIdx.y; j < TT; j += TROWS) {
    int sc = s0 + j, r = r0 + threadIdx.x;
    if (r < R && sc < S) st_f(out + base + (size_t)sc * R + r, tile[threadIdx.x][j]);
  }
}
template <typename Tin, typename Tout>
static void transpose(ctx_t *c, const Tin *in, Tout *out, int Z, int R, int S) {
  if (!Z || !R || !S) return;
  MP_CHECK(Z <= 65535 && (R + TT - 1) / TT <= 65535, "bf16 staging: a %d x %d x %d operand is beyond one launch", Z, R, S);
  dim3 grid((unsigned)((S + TT - 1) / TT), (unsigned)((R + TT - 1) / TT), (unsigned)Z), block(TT, TROWS);
  k_transpose<Tin, Tout><<<grid, block, 0, c->st>>>(in, out, R, S);
  MP_LAUNCHED();
}

static uint16_t *bf_buf(ctx_t *c, int slot, size_t n) {
  if (n > c->bfn[slot]) {
    MP_CHECK_CUDA(cudaStreamSynchronize(c->st));
    if (c->bfb[slot]) MP_CHECK_CUDA(cudaFree(c->bfb[slot]));
    MP_CHECK_CUDA(cudaMalloc((void **)&c->bfb[slot], n * sizeof(uint16_t)));
    c->bfn[slot] = n;
  }
  return c->bfb[slot];
}
/* an operand of shape (z, ch, sp) fp32 channels-first -> bf16 channels-last scratch */
static const void *to_bf(ctx_t *c, int slot, const float *x, int z, int ch, int sp) {
  uint16_t *b = bf_buf(c, slot, (size_t)z * ch * sp);
  transpose(c, x, b, z, ch, sp);
  return b;
}
/* the bf16 channels-last result (z, sp, ch) -> fp32 channels-first */
static void from_bf(ctx_t *c, const void *b, float *y, int z, int ch, int sp) {
  transpose(c, (const uint16_t *)b, y, z, sp, ch);
}

/* One convolution op on (a, bb) into out, in the operand order choose() uses: forward
 * (x, w) -> y; backward data (dy, w) -> dx; backward filter (x, dy) -> dw.  In bf16 mode the
 * operands are cast to bf16 channels-last scratch and the result back to fp32 NCHW;
 * afterwards yd describes the fp32 NCHW output side again (for the bias ops). */
static void run_conv(ctx_t *c, int op, const mp_conv_desc *d, const float *a, const float *bb, float *out) {
  set_conv(c, d);
  const void *A = a, *B = bb;
  void *O = out;
  /* (z, channels, spatial) of x, w and y */
  const int X[3] = {d->n, d->c, d->h * d->w}, W[3] = {d->k, d->c, d->r * d->s}, Y[3] = {d->n, d->k, d->p * d->q};
  const int *sa = op == OP_BWD_DATA ? Y : X, *sb = op == OP_BWD_FILTER ? Y : W;
  const int *so = op == OP_FWD ? Y : op == OP_BWD_DATA ? X : W;
  if (c->bf16) {
    A = to_bf(c, 0, a, sa[0], sa[1], sa[2]);
    B = to_bf(c, 1, bb, sb[0], sb[1], sb[2]);
    O = bf_buf(c, 2, (size_t)so[0] * so[1] * so[2]);
  }
  algo_entry *e = choose(c, op, d, A, B, O);
  MP_CHECK_CUDNN(cudnnSetConvolutionMathType(c->cd, e->math));
  const float one = 1.0f, zero = 0.0f;
  if (op == OP_FWD)
    MP_CHECK_CUDNN(cudnnConvolutionForward(c->dnn, &one, c->xd, A, c->wd, B, c->cd, (cudnnConvolutionFwdAlgo_t)e->algo,
                                           c->ws, e->ws, &zero, c->yd, O));
  else if (op == OP_BWD_DATA)
    MP_CHECK_CUDNN(cudnnConvolutionBackwardData(c->dnn, &one, c->wd, B, c->yd, A, c->cd,
                                                (cudnnConvolutionBwdDataAlgo_t)e->algo, c->ws, e->ws, &zero, c->xd, O));
  else
    MP_CHECK_CUDNN(cudnnConvolutionBackwardFilter(c->dnn, &one, c->xd, A, c->yd, B, c->cd,
                                                  (cudnnConvolutionBwdFilterAlgo_t)e->algo, c->ws, e->ws, &zero, c->wd, O));
  if (c->bf16) {
    from_bf(c, O, out, so[0], so[1], so[2]);
    MP_CHECK_CUDNN(cudnnSetTensor4dDescriptor(c->yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->k, d->p, d->q));
  }
}

static void cu_conv_fwd(mp_backend *b, const mp_conv_desc *d, const float *x, const float *w, const float *bias, float *y) {
  ctx_t *c = C(b);
  run_conv(c, OP_FWD, d, x, w, y);
  if (bias) {
    const float one = 1.0f;
    MP_CHECK_CUDNN(cudnnSetTensor4dDescriptor(c->bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, d->k, 1, 1));
    MP_CHECK_CUDNN(cudnnAddTensor(c->dnn, &one, c->bd, bias, &one, c->yd, y));
  }
}

static void cu_conv_bwd_data(mp_backend *b, const mp_conv_desc *d, const float *dy, const float *w, float *dx) {
  run_conv(C(b), OP_BWD_DATA, d, dy, w, dx);
}

static void cu_conv_bwd_weights(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, float *dw,
                                float *db) {
  ctx_t *c = C(b);
  run_conv(c, OP_BWD_FILTER, d, x, dy, dw);
  if (db) {
    const float one = 1.0f, zero = 0.0f;
    MP_CHECK_CUDNN(cudnnSetTensor4dDescriptor(c->bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, d->k, 1, 1));
    MP_CHECK_CUDNN(cudnnConvolutionBackwardBias(c->dnn, &one, c->yd, dy, &zero, c->bd, db));
  }
}

/* ---- batch norm (cuDNN, spatial mode: the ref's per-channel statistics over N, H, W;
 * running variance updated with the unbiased variance, as PyTorch and the ref) ---------------- */
static void set_bn(ctx_t *c, const mp_bn_desc *d) {
  MP_CHECK_CUDNN(cudnnSetTensor4dDescriptor(c->xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->c, d->hw, 1));
  MP_CHECK_CUDNN(cudnnSetTensor4dDescriptor(c->bnd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, d->c, 1, 1));
}

static void cu_bn_train(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                        float *y, float *sm, float *si, float *rm, float *rv) {
  ctx_t *c = C(b);
  set_bn(c, d);
  const float one = 1.0f, zero = 0.0f;
  MP_CHECK_CUDNN(cudnnBatchNormalizationForwardTraining(c->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, c->xd, x, c->xd, y,
                                                        c->bnd, gamma, beta, (double)d->momentum, rm, rv,
                                                        (double)d->eps, sm, si));
}

static void cu_bn_eval(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                       const float *rm, const float *rv, float *y) {
  ctx_t *c = C(b);
  set_bn(c, d);
  const float one = 1.0f, zero = 0.0f;
  MP_CHECK_CUDNN(cudnnBatchNormalizationForwardInference(c->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, c->xd, x, c->xd, y,
                                                         c->bnd, gamma, beta, rm, rv, (double)d->eps));
}

static void cu_bn_bwd(mp_backend *b, const mp_bn_desc *d, const float *x, const float *dy, const float *gamma,
                      const float *sm, const float *si, float *dx, float *dg, float *dbeta) {
  ctx_t *c = C(b);
  set_bn(c, d);
  const float one = 1.0f, zero = 0.0f;
  MP_CHECK_CUDNN(cudnnBatchNormalizationBackward(c->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero, c->xd, x,
                                                 c->xd, dy, c->xd, dx, c->bnd, gamma, dg, dbeta, (double)d->eps, sm, si));
}

/* ---- activations ------------------------------------------------------------------------------ */
__global__ void k_act_fwd(int kind, float slope, const float *x, float *y, size_t n) {
  GS_LOOP(i, n) {
    float v = x[i];
    switch (kind) {
    case MP_ACT_RELU: y[i] = v > 0 ? v : 0.0f; break;
    case MP_ACT_LRELU: y[i] = v > 0 ? v : slope * v; break;
    case MP_ACT_TANH: y[i] = (float)tanh((double)v); break;
    default: y[i] = (float)(1.0 / (1.0 + exp(-(double)v))); break;
    }
  }
}
__global__ void k_act_bwd(int kind, float slope, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  GS_LOOP(i, n) {
    switch (kind) {
    case MP_ACT_RELU: dx[i] = x[i] > 0 ? dy[i] : 0.0f; break;
    case MP_ACT_LRELU: dx[i] = x[i] > 0 ? dy[i] : slope * dy[i]; break;
    case MP_ACT_TANH: dx[i] = (float)(dy[i] * (1.0 - (double)y[i] * y[i])); break;
    default: dx[i] = (float)(dy[i] * (double)y[i] * (1.0 - y[i])); break;
    }
  }
}
static void cu_act_fwd(mp_backend *b, int kind, float slope, const float *x, float *y, size_t n) {
  if (!n) return;
  k_act_fwd<<<grid_for(n, TPB), TPB, 0, C(b)->st>>>(kind, slope, x, y, n);
  MP_LAUNCHED();
}
static void cu_act_bwd(mp_backend *b, int kind, float slope, const float *x, const float *y, const float *dy, float *dx,
                       size_t n) {
  if (!n) return;
  k_act_bwd<<<grid_for(n, TPB), TPB, 0, C(b)->st>>>(kind, slope, x, y, dy, dx, n);
  MP_LAUNCHED();
}

/* ---- 2x2 max-pool with the argmax (0..3, the first maximum wins, NaN propagates: the ref's rule) */
__global__ void k_pool_fwd(const float *x, float *y, unsigned char *am, size_t planes, int h, int w) {
  int ho = h / 2, wo = w / 2;
  size_t n = planes * (size_t)ho * wo;
  GS_LOOP(o, n) {
    size_t plane = o / ((size_t)ho * wo);
    int r = (int)(o % ((size_t)ho * wo));
    int i = r / wo, j = r % wo;
    const float *xp = x + plane * (size_t)h * w;
    int best = 0;
    float bv = xp[(2 * i) * w + 2 * j];
    for (int k = 1; k < 4; k++) {
      float v = xp[(2 * i + k / 2) * w + 2 * j + k % 2];
      if (v > bv || (isnan(v) && !isnan(bv))) {
        bv = v;
        best = k;
      }
    }
    y[o] = bv;
    am[o] = (unsigned char)best;
  }
}
/* every input element written once: the pooled gradient where it was the argmax, else 0 */
__global__ void k_pool_bwd(const float *dy, const unsigned char *am, float *dx, size_t planes, int h, int w) {
  int ho = h / 2, wo = w / 2;
  size_t n = planes * (size_t)ho * wo;
  GS_LOOP(o, n) {
    size_t plane = o / ((size_t)ho * wo);
    int r = (int)(o % ((size_t)ho * wo));
    int i = r / wo, j = r % wo;
    float *xp = dx + plane * (size_t)h * w;
    int k = am[o];
    for (int q = 0; q < 4; q++) xp[(2 * i + q / 2) * w + 2 * j + q % 2] = q == k ? dy[o] : 0.0f;
  }
}
static void cu_pool_fwd(mp_backend *b, const float *x, float *y, unsigned char *am, int n, int c, int h, int w) {
  size_t cnt = (size_t)n * c * (h / 2) * (w / 2);
  if (!cnt) return;
  k_pool_fwd<<<grid_for(cnt, TPB), TPB, 0, C(b)->st>>>(x, y, am, (size_t)n * c, h, w);
  MP_LAUNCHED();
}
static void cu_pool_bwd(mp_backend *b, const float *dy, const unsigned char *am, float *dx, int n, int c, int h, int w) {
  size_t cnt = (size_t)n * c * (h / 2) * (w / 2);
  if (!cnt) return;
  k_pool_bwd<<<grid_for(cnt, TPB), TPB, 0, C(b)->st>>>(dy, am, dx, (size_t)n * c, h, w);
  MP_LAUNCHED();
}

/* ---- linear (cuBLAS; row-major x n x in, W out x in, y n x out seen column-major) ------------- */
__global__ void k_add_bias_rows(float *y, const float *bias, int n, int out) {
  GS_LOOP(i, (size_t)n * out) y[i] += bias[i % (size_t)out];
}
__global__ void k_sum_rows(const float *dy, float *db, int n, int out) {
  GS_LOOP(o, (size_t)out) {
    double acc = 0;
    for (int r = 0; r < n; r++) acc += dy[(size_t)r * out + o];
    db[o] = (float)acc;
  }
}
/* cublasSgemm, or in bf16 mode the same product on bf16 tensor cores with fp32 accumulation */
static void sgemm(ctx_t *c, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *A, int lda,
                  const float *B, int ldb, float *Cm, int ldc) {
  const float one = 1.0f, zero = 0.0f;
  if (c->bf16)
    MP_CHECK_CUBLAS(cublasGemmEx(c->blas, ta, tb, m, n, k, &one, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, &zero, Cm,
                                 CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
  else
    MP_CHECK_CUBLAS(cublasSgemm(c->blas, ta, tb, m, n, k, &one, A, lda, B, ldb, &zero, Cm, ldc));
}

static void cu_lin_fwd(mp_backend *b, const float *x, const float *w, const float *bias, float *y, int n, int in, int out) {
  ctx_t *c = C(b);
  /* y^T (out x n) = W (out x in) . x^T (in x n) */
  sgemm(c, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, w, in, x, in, y, out);
  if (bias) {
    k_add_bias_rows<<<grid_for((size_t)n * out, TPB), TPB, 0, c->st>>>(y, bias, n, out);
    MP_LAUNCHED();
  }
}
static void cu_lin_bwd(mp_backend *b, const float *x, const float *w, const float *dy, float *dx, float *dw, float *db,
                       int n, int in, int out) {
  ctx_t *c = C(b);
  if (dx) /* dx^T (in x n) = W^T (in x out) . dy^T (out x n) */
    sgemm(c, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, w, in, dy, out, dx, in);
  /* dW^T (in x out) = x^T (in x n) . dy (n x out) */
  sgemm(c, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, x, in, dy, out, dw, in);
  if (db) {
    k_sum_rows<<<grid_for((size_t)out, TPB), TPB, 0, c->st>>>(dy, db, n, out);
    MP_LAUNCHED();
  }
}

/* C (m x n) = A (m x k) B^T (B n x k), row-major: column-major C^T = B A^T */
static void cu_gemm_nt(mp_backend *b, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float *Cm,
                       int ldc) {
  const float one = 1.0f, zero = 0.0f;
  MP_CHECK_CUBLAS(cublasSgemm(C(b)->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, B, ldb, A, lda, &zero, Cm, ldc));
}

/* ---- dropout: the ref's mask from mp_rng_at(seed, MP_RNG_DROPOUT, index, e0 + e) ------------- */
__global__ void k_drop_fwd(const float *x, float *y, unsigned char *mask, size_t n, float p, float scale, uint64_t seed,
                           uint64_t index, uint64_t e0) {
  GS_LOOP(e, n) {
    float u = (float)(mp_rng_at(seed, MP_RNG_DROPOUT, index, e0 + e) >> 8) * 0x1.0p-24f;
    unsigned char m = u >= p;
    mask[e] = m;
    y[e] = m ? x[e] * scale : 0.0f;
  }
}
__global__ void k_drop_bwd(const float *dy, const unsigned char *mask, float *dx, size_t n, float scale) {
  GS_LOOP(e, n) dx[e] = mask[e] ? dy[e] * scale : 0.0f;
}
static void cu_drop_fwd(mp_backend *b, const float *x, float *y, unsigned char *mask, size_t n, float p, uint64_t seed,
                        uint64_t index, uint64_t e0) {
  if (!n) return;
  float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  k_drop_fwd<<<grid_for(n, TPB), TPB, 0, C(b)->st>>>(x, y, mask, n, p, scale, seed, index, e0);
  MP_LAUNCHED();
}
static void cu_drop_bwd(mp_backend *b, const float *dy, const unsigned char *mask, float *dx, size_t n, float p) {
  if (!n) return;
  float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  k_drop_bwd<<<grid_for(n, TPB), TPB, 0, C(b)->st>>>(dy, mask, dx, n, scale);
  MP_LAUNCHED();
}

/* ---- Adam: the ref's arithmetic (moments in float, the update in double) ----------------------- */
__global__ void k_adam(float *param, const float *grad, float *m, float *v, size_t n, float beta1, float beta2,
                       double step_size, double sbc2, float eps) {
  GS_LOOP(i, n) {
    float g = grad[i];
    float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(1.0f - beta1, g));
    float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(__fmul_rn(1.0f - beta2, g), g));
    m[i] = mi;
    v[i] = vi;
    double denom = sqrt((double)vi) / sbc2 + eps;
    param[i] = (float)(param[i] - step_size * mi / denom);
  }
}
static void cu_adam(mp_backend *b, float *param, const float *grad, float *m, float *v, size_t n, float lr, float b1,
                    float b2, float eps, long step) {
  if (!n) return;
  double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
  k_adam<<<grid_for(n, TPB), TPB, 0, C(b)->st>>>(param, grad, m, v, n, b1, b2, lr / bc1, sqrt(bc2), eps);
  MP_LAUNCHED();
}

/* ---- deterministic double reductions: per-block partial sums, then one block in order ---------- */
__device__ double block_sum(double v) {
  __shared__ double sh[TPB];
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = TPB / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  double r = sh[0];
  __syncthreads();
  return r;
}
/* partial[block] = sum over the block's grid-stride share of a[i] * b[i] (b NULL: a[i]^2) */
__global__ void k_dot_partial(const float *a, const float *bb, size_t n, double *partial) {
  double acc = 0;
  GS_LOOP(i, n) acc += (double)a[i] * (bb ? bb[i] : a[i]);
  double s = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
__global__ void k_sum_partials(const double *partial, int nb, double *out) {
  double acc = 0;
  for (int i = threadIdx.x; i < nb; i += blockDim.x) acc += partial[i];
  double s = block_sum(acc);
  if (threadIdx.x == 0) *out = s;
}
/* *out = sum a[i] b[i] (b NULL: sum a[i]^2), on the stream, deterministic */
static void dot_to(ctx_t *c, const float *a, const float *bb, size_t n, double *out) {
  unsigned nb = grid_for(n, TPB);
  if (nb > PARTIALS) nb = PARTIALS;
  k_dot_partial<<<nb, TPB, 0, c->st>>>(a, bb, n, c->dsc + 2);
  MP_LAUNCHED();
  k_sum_partials<<<1, TPB, 0, c->st>>>(c->dsc + 2, (int)nb, out);
  MP_LAUNCHED();
}

/* ---- the gradient penalty's per-sample part: one block per sample --------------------------- */
__global__ void k_sample_norms(const float *g, size_t m, double *norms) {
  const float *gj = g + (size_t)blockIdx.x * m;
  double acc = 0;
  for (size_t e = threadIdx.x; e < m; e += blockDim.x) acc += (double)gj[e] * gj[e];
  double s = block_sum(acc);
  if (threadIdx.x == 0) norms[blockIdx.x] = sqrt(s);
}
__global__ void k_penalty_scale(const float *g, int n, size_t m, float lambda, const double *norms, float *v) {
  GS_LOOP(i, (size_t)n * m) {
    double norm = norms[i / m];
    double coef = norm > 0 ? lambda * 2.0 * (norm - 1) / (n * norm) : 0.0;
    v[i] = (float)(coef * g[i]);
  }
}
static double cu_penalty_grad(mp_backend *b, const float *g, int n, size_t m, float lambda, float *v, double *norms) {
  ctx_t *c = C(b);
  if (n > c->gp_cap) {
    MP_CHECK_CUDA(cudaStreamSynchronize(c->st));
    if (c->gp_norms) MP_CHECK_CUDA(cudaFree(c->gp_norms));
    MP_CHECK_CUDA(cudaMalloc((void **)&c->gp_norms, (size_t)n * sizeof(double)));
    c->gp_cap = n;
  }
  k_sample_norms<<<n, TPB, 0, c->st>>>(g, m, c->gp_norms);
  MP_LAUNCHED();
  k_penalty_scale<<<grid_for((size_t)n * m, TPB), TPB, 0, c->st>>>(g, n, m, lambda, c->gp_norms, v);
  MP_LAUNCHED();
  MP_CHECK_CUDA(cudaMemcpyAsync(norms, c->gp_norms, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost, c->st));
  MP_CHECK_CUDA(cudaStreamSynchronize(c->st));
  double P = 0;
  for (int j = 0; j < n; j++) P += (norms[j] - 1) * (norms[j] - 1);
  return P;
}

/* ---- spectral norm (the ref's power iteration; cuBLAS products, double norms) ----------------- */
/* a /= max(sqrt(*ss), 1e-12) (F.normalize's eps) */
__global__ void k_normalize(float *a, int n, const double *ss) {
  double nrm = sqrt(*ss), den = nrm > 1e-12 ? nrm : 1e-12;
  GS_LOOP(i, (size_t)n) a[i] = (float)(a[i] / den);
}
__global__ void k_div_sigma(const float *w, float *w_sn, size_t n, const double *sigma) {
  double s = *sigma;
  GS_LOOP(i, n) w_sn[i] = (float)(w[i] / s);
}
__global__ void k_sn_bwd(const float *dw_sn, const float *u, const float *v, int cols, size_t n, double sigma,
                         const double *inner, float *dw) {
  double a = *inner / (sigma * sigma);
  GS_LOOP(k, n) {
    int i = (int)(k / (size_t)cols), j = (int)(k % (size_t)cols);
    dw[k] = (float)(dw_sn[k] / sigma - a * u[i] * v[j]);
  }
}

static double cu_sn_forward(mp_backend *b, const float *w, int rows, int cols, float *u, float *v, float *w_sn,
                            int train) {
  ctx_t *c = C(b);
  const float one = 1.0f, zero = 0.0f;
  size_t nw = (size_t)rows * cols;
  /* W row-major rows x cols = column-major cols x rows (lda cols) */
  float *t = w_sn; /* scratch for W v (rows floats) until w_sn is written */
  if (train) {
    MP_CHECK_CUBLAS(cublasSgemv(c->blas, CUBLAS_OP_N, cols, rows, &one, w, cols, u, 1, &zero, v, 1)); /* v = W^T u */
    dot_to(c, v, NULL, (size_t)cols, c->dsc);
    k_normalize<<<grid_for((size_t)cols, TPB), TPB, 0, c->st>>>(v, cols, c->dsc);
    MP_LAUNCHED();
    MP_CHECK_CUBLAS(cublasSgemv(c->blas, CUBLAS_OP_T, cols, rows, &one, w, cols, v, 1, &zero, t, 1)); /* t = W v */
    MP_CHECK_CUDA(cudaMemcpyAsync(u, t, (size_t)rows * sizeof(float), cudaMemcpyDefault, c->st));
    dot_to(c, u, NULL, (size_t)rows, c->dsc);
    k_normalize<<<grid_for((size_t)rows, TPB), TPB, 0, c->st>>>(u, rows, c->dsc);
    MP_LAUNCHED();
  } else {
    MP_CHECK_CUBLAS(cublasSgemv(c->blas, CUBLAS_OP_T, cols, rows, &one, w, cols, v, 1, &zero, t, 1)); /* t = W v */
  }
  dot_to(c, u, t, (size_t)rows, c->dsc + 1); /* sigma = u . W v */
  k_div_sigma<<<grid_for(nw, TPB), TPB, 0, c->st>>>(w, w_sn, nw, c->dsc + 1);
  MP_LAUNCHED();
  MP_CHECK_CUDA(cudaMemcpyAsync(c->hsc, c->dsc, 2 * sizeof(double), cudaMemcpyDeviceToHost, c->st));
  MP_CHECK_CUDA(cudaStreamSynchronize(c->st));
  return c->hsc[1];
}

static void cu_sn_backward(mp_backend *b, const float *w, const float *dw_sn, int rows, int cols, const float *u,
                           const float *v, double sigma, float *dw) {
  ctx_t *c = C(b);
  size_t nw = (size_t)rows * cols;
  dot_to(c, dw_sn, w, nw, c->dsc);
  k_sn_bwd<<<grid_for(nw, TPB), TPB, 0, c->st>>>(dw_sn, u, v, cols, nw, sigma, c->dsc, dw);
  MP_LAUNCHED();
}

/* ---- patch input: the uint8 patches gathered into pinned memory, one copy to the device
 * (a quarter of the float bytes), augmentation and conversion in a kernel ---------------------- */
__global__ void k_patches(const uint8_t *u8, const uint32_t *bits, const unsigned char *present, int n, int P,
                          int rot90, float *dst) {
  size_t px = (size_t)P * P;
  GS_LOOP(e, (size_t)n * px) {
    int q = (int)(e / px), r = (int)(e % px), i = r / P, j = r % P;
    if (!present[q]) {
      dst[e] = 0.0f;
      continue;
    }
    uint32_t b = bits ? bits[q] : 0;
    int ri = (b & 2) ? P - 1 - i : i, rj = (b & 1) ? P - 1 - j : j;
    int rot = rot90 ? (int)((b >> 2) & 3) : 0;
    for (int k = 0; k < rot; k++) { /* (i, j) -> (j, P-1-i) */
      int tmp = ri;
      ri = rj;
      rj = P - 1 - tmp;
    }
    dst[e] = (float)u8[(size_t)q * px + (size_t)ri * P + rj] / 127.5f - 1.0f;
  }
}

static void cu_patches(mp_backend *b, const uint8_t *const *src, const uint32_t *bits, int n, int P, int rot90,
                       float *dst) {
  ctx_t *c = C(b);
  if (n <= 0) return;
  size_t px = (size_t)P * P, need = (size_t)n * (px + sizeof(uint32_t) + 1);
  if (need > c->stage_size) { /* grown once to the largest batch */
    MP_CHECK_CUDA(cudaStreamSynchronize(c->st));
    if (c->stage) MP_CHECK_CUDA(cudaFreeHost(c->stage));
    if (c->dstage) MP_CHECK_CUDA(cudaFree(c->dstage));
    MP_CHECK_CUDA(cudaMallocHost(&c->stage, need));
    MP_CHECK_CUDA(cudaMalloc(&c->dstage, need));
    c->stage_size = need;
  } else {
    MP_CHECK_CUDA(cudaStreamSynchronize(c->st)); /* the previous batch's copy has left the staging buffer */
  }
  uint8_t *u8 = (uint8_t *)c->stage;
  uint32_t *hb = (uint32_t *)(u8 + (size_t)n * px);
  unsigned char *pres = (unsigned char *)(hb + n);
  for (int q = 0; q < n; q++) {
    pres[q] = src[q] != NULL;
    if (src[q]) memcpy(u8 + (size_t)q * px, src[q], px);
    hb[q] = bits ? bits[q] : 0;
  }
  MP_CHECK_CUDA(cudaMemcpyAsync(c->dstage, c->stage, need, cudaMemcpyHostToDevice, c->st));
  uint8_t *du8 = (uint8_t *)c->dstage;
  uint32_t *db = (uint32_t *)(du8 + (size_t)n * px);
  k_patches<<<grid_for((size_t)n * px, TPB), TPB, 0, c->st>>>(du8, db, (unsigned char *)(db + n), n, P, rot90, dst);
  MP_LAUNCHED();
}

/* ---- data parallelism (NCCL) ------------------------------------------------------------------- */
static int cu_comm_attach(mp_backend *b, const void *mpi_comm, char *err, size_t errlen) {
  ctx_t *c = C(b);
  MPI_Comm comm = *(const MPI_Comm *)mpi_comm;
  int K, rank;
  MP_CHECK_MPI(MPI_Comm_size(comm, &K));
  MP_CHECK_MPI(MPI_Comm_rank(comm, &rank));
#if MP_HAVE_NCCL_LIB
  if (c->has_nccl) {
    MP_CHECK_NCCL(ncclCommDestroy(c->nccl));
    c->has_nccl = 0;
  }
  /* NCCL needs one GPU per rank: refuse (every rank alike) when two ranks share one */
  char me[64] = {0};
  MP_CHECK_CUDA(cudaDeviceGetPCIBusId(me, (int)sizeof me - 1, c->dev));
  char host[MPI_MAX_PROCESSOR_NAME] = {0};
  int hl = 0;
  MP_CHECK_MPI(MPI_Get_processor_name(host, &hl));
  char key[64 + MPI_MAX_PROCESSOR_NAME + 2];
  memset(key, 0, sizeof key);
  snprintf(key, sizeof key, "%s/%s", host, me);
  char *all = (char *)mp_malloc((size_t)K * sizeof key);
  MP_CHECK_MPI(MPI_Allgather(key, (int)sizeof key, MPI_CHAR, all, (int)sizeof key, MPI_CHAR, comm));
  int shared = 0;
  for (int i = 0; i < K && !shared; i++)
    for (int j = i + 1; j < K && !shared; j++)
      if (!strcmp(all + (size_t)i * sizeof key, all + (size_t)j * sizeof key)) shared = 1;
  mp_free(all);
  if (shared) {
    snprintf(err, errlen, "ranks share a GPU (NCCL needs one GPU per rank): gradients are reduced with MPI in host memory");
    return -1;
  }
  ncclUniqueId id;
  if (rank == 0) MP_CHECK_NCCL(ncclGetUniqueId(&id));
  MP_CHECK_MPI(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, comm));
  MP_CHECK_NCCL(ncclCommInitRank(&c->nccl, K, id, rank));
  c->has_nccl = 1;
  return 0;
#else
  (void)c;
  (void)K;
  (void)rank;
  snprintf(err, errlen, "built without NCCL: gradients are reduced with MPI in host memory");
  return -1;
#endif
}

/* In place over the attached communicator, on the communication stream: it waits for the
 * compute stream's work so far, and the compute stream waits for the sum. */
static void cu_allreduce_sum(mp_backend *b, float *buf, size_t n) {
  ctx_t *c = C(b);
#if MP_HAVE_NCCL_LIB
  MP_CHECK(c->has_nccl, "cuda allreduce without an attached NCCL communicator");
  MP_CHECK_CUDA(cudaEventRecord(c->ev_ready, c->st));
  MP_CHECK_CUDA(cudaStreamWaitEvent(c->comm_st, c->ev_ready, 0));
  MP_CHECK_NCCL(ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, c->nccl, c->comm_st));
  MP_CHECK_CUDA(cudaEventRecord(c->ev_done, c->comm_st));
  MP_CHECK_CUDA(cudaStreamWaitEvent(c->st, c->ev_done, 0));
#else
  (void)c;
  (void)buf;
  (void)n;
  mp_fatal(MP_EXIT_FATAL, "cuda allreduce in a build without NCCL");
#endif
}

/* ---- description and lifetime ------------------------------------------------------------------ */
static const char *cu_describe(mp_backend *b, const char *op, const mp_conv_desc *d) {
  ctx_t *c = C(b);
  if (d) {
    int o = !strcmp(op, "conv2d_forward") ? OP_FWD : !strcmp(op, "conv2d_backward_data") ? OP_BWD_DATA : OP_BWD_FILTER;
    algo_entry *e = cached(c, o, d);
    if (e) return e->what;
  }
  char m1[32], m2[32];
  snprintf(c->desc, sizeof c->desc, "cuda device %d, %s math, managed memory %s (peak %s)", c->dev,
           c->bf16 ? "bf16 mixed" : c->tf32 ? "tf32" : "fp32", mp_format_bytes(c->bytes, m1, sizeof m1), mp_format_bytes(c->peak, m2, sizeof m2));
  return c->desc;
}

static size_t cu_device_peak(mp_backend *b) {
  ctx_t *c = C(b);
  return c->peak + c->ws_size + c->stage_size + 2 * (c->bfn[0] + c->bfn[1] + c->bfn[2]);
}

static void cu_destroy(mp_backend *b) {
  ctx_t *c = C(b);
  MP_CHECK_CUDA(cudaStreamSynchronize(c->st));
  MP_CHECK_CUDA(cudaStreamSynchronize(c->comm_st));
#if MP_HAVE_NCCL_LIB
  if (c->has_nccl) MP_CHECK_NCCL(ncclCommDestroy(c->nccl));
#endif
  MP_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->xd));
  MP_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->yd));
  MP_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->bd));
  MP_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->bnd));
  MP_CHECK_CUDNN(cudnnDestroyFilterDescriptor(c->wd));
  MP_CHECK_CUDNN(cudnnDestroyConvolutionDescriptor(c->cd));
  MP_CHECK_CUDNN(cudnnDestroy(c->dnn));
  MP_CHECK_CUBLAS(cublasDestroy(c->blas));
  void *dev[] = {c->ws, c->bfb[0], c->bfb[1], c->bfb[2], c->gp_norms, c->dstage, c->dsc};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    if (dev[i]) MP_CHECK_CUDA(cudaFree(dev[i]));
  if (c->stage) MP_CHECK_CUDA(cudaFreeHost(c->stage));
  MP_CHECK_CUDA(cudaFreeHost(c->hsc));
  MP_CHECK_CUDA(cudaEventDestroy(c->ev_ready));
  MP_CHECK_CUDA(cudaEventDestroy(c->ev_done));
  MP_CHECK_CUDA(cudaStreamDestroy(c->comm_st));
  MP_CHECK_CUDA(cudaStreamDestroy(c->st));
  mp_free(c->cache);
  mp_free(c->blk);
  mp_free(c);
  mp_free(b);
}

static mp_backend_i cuda_iface;

/* The node-local rank, which picks the device: recorded by mp_mpi_init (no collective
 * here: rank groups create backends at different times), else the launcher's variable,
 * else 0. */
static int local_rank(void) {
  int r = mp_gpu_local_rank();
  if (r >= 0) return r;
  const char *e = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (!e) e = getenv("SLURM_LOCALID");
  if (!e) e = getenv("MPI_LOCALRANKID");
  return e ? atoi(e) : 0;
}

extern "C" mp_backend *mp_backend_cuda_create(int precision, char *err, size_t errlen) {
  int ndev = mp_gpu_count();
  if (ndev <= 0) {
    snprintf(err, errlen, "backend 'cuda': no CUDA device is visible to this process (CUDA_VISIBLE_DEVICES=%s)",
             getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "unset");
    return NULL;
  }
  if (!cuda_iface.name) {
    cuda_iface.name = "cuda";
    cuda_iface.destroy = cu_destroy;
    cuda_iface.alloc = cu_alloc;
    cuda_iface.release = cu_release;
    cuda_iface.upload = cu_upload;
    cuda_iface.download = cu_download;
    cuda_iface.conv2d_forward = cu_conv_fwd;
    cuda_iface.conv2d_backward_data = cu_conv_bwd_data;
    cuda_iface.conv2d_backward_weights = cu_conv_bwd_weights;
    cuda_iface.bn_forward_train = cu_bn_train;
    cuda_iface.bn_forward_eval = cu_bn_eval;
    cuda_iface.bn_backward = cu_bn_bwd;
    cuda_iface.act_forward = cu_act_fwd;
    cuda_iface.act_backward = cu_act_bwd;
    cuda_iface.maxpool2_forward = cu_pool_fwd;
    cuda_iface.maxpool2_backward = cu_pool_bwd;
    cuda_iface.linear_forward = cu_lin_fwd;
    cuda_iface.linear_backward = cu_lin_bwd;
    cuda_iface.dropout_forward = cu_drop_fwd;
    cuda_iface.dropout_backward = cu_drop_bwd;
    cuda_iface.adam_step = cu_adam;
    cuda_iface.describe = cu_describe;
    cuda_iface.sync = cu_sync;
    cuda_iface.copy = cu_copy;
    cuda_iface.zero = cu_zero;
    cuda_iface.axpy = cu_axpy;
    cuda_iface.scale = cu_scale;
    cuda_iface.sn_forward = cu_sn_forward;
    cuda_iface.sn_backward = cu_sn_backward;
    cuda_iface.patches_to_input = cu_patches;
    cuda_iface.penalty_grad = cu_penalty_grad;
    cuda_iface.gemm_nt = cu_gemm_nt;
    cuda_iface.device_peak = cu_device_peak;
    cuda_iface.comm_attach = cu_comm_attach;
    cuda_iface.allreduce_sum = cu_allreduce_sum;
    /* conv2d_backward: the generic pair; bn+relu fusion: none (cuDNN's fused BN-activation
     * needs NHWC half precision) */
    mp_backend_fill_ref_ops(&cuda_iface);
  }
  ctx_t *c = (ctx_t *)mp_calloc(1, sizeof *c);
  c->dev = local_rank() % ndev;
  c->tf32 = precision >= 1;
  c->bf16 = precision == 2;
  const int tf32 = c->tf32;
  const char *cap = getenv("MP_CUDA_WORKSPACE_MB");
  c->ws_cap = (size_t)(cap && atoi(cap) > 0 ? atoi(cap) : 512) << 20;
  const char *det = getenv("MP_CUDA_DETERMINISTIC");
  c->deterministic = !(det && !strcmp(det, "0"));
  MP_CHECK_CUDA(cudaSetDevice(c->dev));
  int managed = 0;
  MP_CHECK_CUDA(cudaDeviceGetAttribute(&managed, cudaDevAttrConcurrentManagedAccess, c->dev));
  if (!managed) {
    snprintf(err, errlen, "backend 'cuda': device %d lacks concurrent managed memory access (needs Linux and a "
             "Pascal or newer GPU)", c->dev);
    mp_free(c);
    return NULL;
  }
  MP_CHECK_CUDA(cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking));
  MP_CHECK_CUDA(cudaStreamCreateWithFlags(&c->comm_st, cudaStreamNonBlocking));
  MP_CHECK_CUDA(cudaEventCreateWithFlags(&c->ev_ready, cudaEventDisableTiming));
  MP_CHECK_CUDA(cudaEventCreateWithFlags(&c->ev_done, cudaEventDisableTiming));
  MP_CHECK_CUDNN(cudnnCreate(&c->dnn));
  MP_CHECK_CUDNN(cudnnSetStream(c->dnn, c->st));
  MP_CHECK_CUBLAS(cublasCreate(&c->blas));
  MP_CHECK_CUBLAS(cublasSetStream(c->blas, c->st));
  MP_CHECK_CUBLAS(cublasSetMathMode(c->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  MP_CHECK_CUDNN(cudnnCreateTensorDescriptor(&c->xd));
  MP_CHECK_CUDNN(cudnnCreateTensorDescriptor(&c->yd));
  MP_CHECK_CUDNN(cudnnCreateTensorDescriptor(&c->bd));
  MP_CHECK_CUDNN(cudnnCreateTensorDescriptor(&c->bnd));
  MP_CHECK_CUDNN(cudnnCreateFilterDescriptor(&c->wd));
  MP_CHECK_CUDNN(cudnnCreateConvolutionDescriptor(&c->cd));
  MP_CHECK_CUDA(cudaMalloc((void **)&c->dsc, (2 + PARTIALS) * sizeof(double)));
  MP_CHECK_CUDA(cudaMallocHost((void **)&c->hsc, 2 * sizeof(double)));
  mp_backend *b = (mp_backend *)mp_calloc(1, sizeof *b);
  b->iface = &cuda_iface;
  b->ctx = c;
  return b;
}
