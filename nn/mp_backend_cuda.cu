/* mp_backend_cuda — the `cuda` nn backend (see mp_backend.h): cuDNN for convolutions
 * (forward, backward data = the transposed convolution, backward filter) and batch norm in
 * evaluation, cuBLAS for linear layers and spectral norm's matrix-vector products, own
 * kernels for batch norm in training (alone or fused with the ReLU after it), the
 * convolutions' bias and its gradient, activations, max-pool with argmax, dropout (the
 * same counter-based RNG as the CPU, so masks are identical), Adam, the spectral-norm
 * reductions and the memory-level entries; NCCL for the gradient allreduce.
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
 * Algorithms: one cudnnFind…Ex per (op, shape, operands' alignment) on the real buffers, with a
 * workspace cap (MP_CUDA_WORKSPACE_MB, default 512), cached for the life of the backend; the fastest
 * DETERMINISTIC algorithm is kept, so a rerun gives the same numbers (a checkpoint
 * resume stays bit-identical on one GPU, as long as the timings make the same choices: two
 * candidates within noise of each other may be chosen differently by two processes); see
 * choose() for a shape with none within the cap,
 * and MP_CUDA_DETERMINISTIC=0 for the fastest algorithm whatever its determinism.  Beside that
 * legacy pick compete, on the shape's first call, cuDNN's graph-API engines (every precision;
 * see "cuDNN's graph API": MP_CUDA_CONV_GRAPH) and in fp32 and TF32 the own deterministic
 * algorithms (wgrad3, gemm: see "own convolution algorithms"; MP_CUDA_CONV_OWN); one replaces
 * the legacy pick where its result matches the legacy one and it is faster (pick_algo).
 *
 * Every CUDA, cuDNN, cuBLAS and NCCL call is checked (MP_CHECK_CUDA/CUDNN/CUBLAS/NCCL:
 * the statement, file:line and rank, then MPI_Abort); every kernel launch is followed by
 * cudaGetLastError (MP_LAUNCHED).
 *
 * Device code lives in headers that the host tests also compile (an emulated GPU holds it to
 * ref where none is present): mp_cuda_kernels.cuh (the element-wise and reduction kernels),
 * mp_cuda_conv.cuh (the own convolution algorithms), mp_cuda_layout.cuh (few-channel casts). */
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
#include <sched.h>
#include <unistd.h>

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
#include "mp_cudnn_graph.h"

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
static const char *const op_names[3] = {"forward", "backward-data", "backward-filter"};

typedef struct {
  int op;
  mp_conv_desc d;
  int algo;
  cudnnMathType_t math;
  size_t ws;
  int own;   /* OWN_NONE (cuDNN's legacy algo), OWN_WGRAD3, OWN_GEMM or OWN_GRAPH (a graph-API plan) */
  int align; /* the operands' common byte alignment (up to 16) the entry was chosen for */
  unsigned long long used; /* when it last ran (ctx_t's use_clock) */
  bdesc_t plan, vp;             /* OWN_GRAPH: the execution plan and the last variant pack, */
  bdesc_t gcfg, keep[MPG_KEEP]; /* the plan's engine configuration and the graph's descriptors, */
  const void *vp_ptr[3];        /* and the operands that variant pack names */
  void *vp_ws;
  char what[200];
} algo_entry;

typedef struct {
  void *p;
  size_t bytes;
} blk_t;

typedef struct {
  int dev, tf32, bf16; /* tf32: TF32 tensor cores; bf16: mixed precision (tf32 also set) */
  bool deterministic;  /* only deterministic cuDNN algorithms (MP_CUDA_DETERMINISTIC, default 1) */
  uint16_t *bfb[4];    /* bf16 scratch: two operands and the result of one convolution, and
                          a backward pass's dy (cast once for both of its ops) */
  size_t bfb_bytes[4];
  cudaStream_t st, comm_st;
  cudaEvent_t ev_ready, ev_done;
  cudnnHandle_t dnn;
  bdesc_t devprop; /* the device's property descriptor for the graph API (NULL: the handle) */
  bdesc_t devprop_off; /* the same, set aside when plans built from it would not run (pick_algo) */
  cublasHandle_t blas;
  cudnnTensorDescriptor_t xd, yd, bnd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  void *ws;
  size_t ws_size, ws_cap;
  double *dsc;  /* device scratch: [0] a dot product / norm, [1] unused, then partial sums */
  double *hsc;  /* pinned host copy of dsc[0] */
  algo_entry *cache;
  int ncache, capcache;
  unsigned long long use_clock; /* convolutions run: the entries' `used` */
  size_t bytes;       /* managed memory held (the blocks of cu_alloc) */
  size_t dev_now, dev_peak; /* every device allocation of the backend's own (managed blocks,
                               scratch, workspace, staging, the first call's comparison
                               buffers) held now / at most: device_peak */
  blk_t *blk;         /* the allocations, for the bookkeeping */
  void *stage, *dstage; /* patch upload: pinned host and device staging */
  void *rz;             /* resize_u8: the patches' bytes on the device */
  size_t rz_bytes;
  double *gp_norms;     /* the gradient penalty's per-sample norms (device) */
  double *bn_tmp;       /* batch norm: per-slice partial sums, then per-channel coefficients */
  float *wg_part;       /* the own 3x3 weight gradient's partial sums (wgrad3) */
  size_t wg_bytes;
  float *gm;            /* the gemm path's im2col and swap buffers (conv_gemm) */
  size_t gm_bytes;
  int own_conv;         /* MP_CUDA_CONV_OWN: -1 measured choice (default), 0 off, else OWN_* forced where eligible */
  int graph;            /* MP_CUDA_CONV_GRAPH: -1 measured choice (default), 0 off, 1 forced where one agrees */
  size_t bn_bytes;
  size_t gp_bytes;
  size_t stage_size;
  int nblk, capblk;
#if MP_HAVE_NCCL_LIB
  ncclComm_t nccl;
#endif
  int has_nccl;
  char desc[512]; /* describe's line for the backend as a whole */
} ctx_t;

enum { PARTIALS = 1024 }; /* blocks of the two-pass deterministic reductions */

static ctx_t *C(mp_backend *b) { return (ctx_t *)b->ctx; }

#include "mp_cuda_kernels.cuh" /* the own kernels, launch geometry and GS_LOOP */

/* ---- memory ------------------------------------------------------------------------------- */
/* the device bytes this backend holds, and their high-water mark (device_peak) */
static void dev_account(ctx_t *c, size_t add, size_t sub) {
  c->dev_now = c->dev_now + add - sub;
  if (c->dev_now > c->dev_peak) c->dev_peak = c->dev_now;
}

/* Wait for stream s.  With an NCCL communicator attached, the wait also watches NCCL's
 * asynchronous error: a peer that fails (a dead process, a broken link) leaves the allreduce
 * kernel, and every stream waiting on it, spinning forever; cudaStreamSynchronize would hang
 * the job until its wall time.  Here the communicator is aborted and the run ends with NCCL's
 * message (the exit code of NCCL failures).  Without NCCL: a plain synchronize.  Every host wait
 * on a stream goes through here (a wait on a stream that waits for the allreduce would hang too);
 * wait_stream_status returns the stream's CUDA error instead of ending the run with it. */
static cudaError_t wait_stream_status(ctx_t *c, cudaStream_t s) {
#if MP_HAVE_NCCL_LIB
  if (c->has_nccl) {
    for (;;) {
      cudaError_t e = cudaStreamQuery(s);
      if (e != cudaErrorNotReady) return e;
      /* the runtime records NotReady as the thread's last error (as PyTorch's event query
       * notes): left there, the next launch's MP_LAUNCHED would end the run with "device not
       * ready".  Every launch is checked at once, so nothing else is pending to be cleared. */
      (void)cudaGetLastError();
      ncclResult_t ae = ncclSuccess;
      MP_CHECK_NCCL(ncclCommGetAsyncError(c->nccl, &ae));
      if (ae != ncclSuccess && ae != ncclInProgress) {
        char why[512];
        const char *w = ncclGetLastError(c->nccl);
        snprintf(why, sizeof why, "%s", w && *w ? w : "no detail"); /* before the abort frees it */
        (void)ncclCommAbort(c->nccl);
        c->has_nccl = 0;
        mp_fatal_at(MP_EXIT_NCCL, __FILE__, __LINE__, "NCCL failed during the gradient allreduce: %s (%s)",
                    ncclGetErrorString(ae), why);
      }
      sched_yield();
    }
  }
#endif
  return cudaStreamSynchronize(s);
}
static void wait_stream(ctx_t *c, cudaStream_t s) { MP_CHECK_CUDA(wait_stream_status(c, s)); }

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
  dev_account(c, bytes, 0);
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
      dev_account(c, 0, c->blk[i].bytes);
      c->blk[i] = c->blk[--c->nblk];
      break;
    }
  wait_stream(c, c->st);
  MP_CHECK_CUDA(cudaFree(p));
}

static void cu_sync(mp_backend *b) { wait_stream(C(b), C(b)->st); }

static void cu_upload(mp_backend *b, void *dst, const void *host, size_t bytes) {
  MP_CHECK_CUDA(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyDefault, C(b)->st));
  wait_stream(C(b), C(b)->st); /* the host buffer may be reused at once */
}
static void cu_download(mp_backend *b, void *host, const void *src, size_t bytes) {
  MP_CHECK_CUDA(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDefault, C(b)->st));
  wait_stream(C(b), C(b)->st);
}
static void cu_copy(mp_backend *b, float *dst, const float *src, size_t n) {
  if (n) MP_CHECK_CUDA(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDefault, C(b)->st));
}
static void cu_zero(mp_backend *b, void *dst, size_t bytes) {
  if (bytes) MP_CHECK_CUDA(cudaMemsetAsync(dst, 0, bytes, C(b)->st));
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

/* the entry for (op, shape, operand alignment); align < 0: of any alignment, the one that ran
 * last (for describe: a layer whose operands came with two alignments has two entries) */
static algo_entry *cached(ctx_t *c, int op, const mp_conv_desc *d, int align) {
  algo_entry *e = NULL;
  for (int i = 0; i < c->ncache; i++)
    if (c->cache[i].op == op && same_shape(&c->cache[i].d, d) && (align < 0 || c->cache[i].align == align)) {
      if (align >= 0) return &c->cache[i];
      if (!e || c->cache[i].used > e->used) e = &c->cache[i];
    }
  return e;
}

/* *p: at least `bytes` of device memory, grown (the stream drained first, as the old block may
 * still be read), never shrunk; *have its size in bytes.  The backend's growable scratch.
 * dev_grow returns cudaMalloc's error instead of ending the run (the previous block, or none, is
 * kept, and the error cleared: an allocation failure is not sticky); dev_reserve ends it. */
static cudaError_t dev_grow(ctx_t *c, void **p, size_t *have, size_t bytes) {
  if (bytes <= *have) return cudaSuccess;
  wait_stream(c, c->st);
  if (*p) {
    MP_CHECK_CUDA(cudaFree(*p));
    dev_account(c, 0, *have);
  }
  const size_t old = *have;
  *p = NULL, *have = 0;
  cudaError_t e = cudaMalloc(p, bytes);
  if (e != cudaSuccess) {
    *p = NULL;
    (void)cudaGetLastError();
    /* the previous size back (just freed), for what already relies on it */
    if (old && cudaMalloc(p, old) == cudaSuccess) {
      *have = old;
      dev_account(c, old, 0);
    } else {
      *p = NULL;
      (void)cudaGetLastError();
    }
    return e;
  }
  *have = bytes;
  dev_account(c, bytes, 0);
  return cudaSuccess;
}
static void *dev_reserve(ctx_t *c, void **p, size_t *have, size_t bytes) {
  cudaError_t e = dev_grow(c, p, have, bytes);
  if (e != cudaSuccess) {
    char m[32];
    mp_fatal_at(MP_EXIT_ALLOC, __FILE__, __LINE__, "cudaMalloc of %s (backend scratch) failed: %s",
                mp_format_bytes(bytes, m, sizeof m), cudaGetErrorString(e));
  }
  return *p;
}

static void ensure_ws(ctx_t *c, size_t bytes) { dev_reserve(c, &c->ws, &c->ws_size, bytes); }

/* ---- own convolution algorithms (fp32 operands; nn/mp_cuda_conv.cuh has their kernels) ----------
 * cuDNN's legacy API offers few deterministic algorithms, and some are slow on our shapes (H100,
 * fp32): the classifier's block 1 weight gradient (16 -> 16 channels, 128x128, batch 128: algo 1,
 * 3.3 ms of a ~17 ms step), the GANs' 4x4 stride-2 layers (G's 512 -> 512 4x4 -> 8x8 transposed
 * convolution, a backward data: algo 1, 2.1 ms for 4.3 GMAC).  Two own algorithms, both
 * deterministic, stand beside cuDNN's pick:
 *   wgrad3  the weight gradient of 3x3 stride-1 convolutions: one warp per (sample, 32-column
 *           strip, pair of k, pair of c), lane = output column walking down the rows with its
 *           3x3 input windows in registers, 2 x 2 x 9 accumulators, a fixed shuffle tree, then
 *           the N x strips partials of each weight added in a fixed order in double;
 *   gemm    any op as im2col / col2im around one cuBLAS GEMM per chunk of samples (stacked
 *           layout, see conv_gemm_plan), chunks of at least 16384 output pixels where the
 *           workspace cap allows; in TF32 mode cuBLAS's GEMM uses TF32 as cuDNN does.
 * choose() runs the eligible ones beside cuDNN's pick on the shape's first call, on the call's
 * buffers, compares each result with cuDNN's and times all alike, and keeps the fastest that
 * agrees (MP_CUDA_CONV_OWN=off: cuDNN only; =wgrad3 or =gemm: that one wherever eligible,
 * whatever the timing, for the tests). */
#include "mp_cuda_conv.cuh"
#include "mp_cuda_layout.cuh"
enum { OWN_NONE, OWN_WGRAD3, OWN_GEMM, OWN_GRAPH };
static const char *const own_names[4] = {"cudnn", "wgrad3", "gemm", "graph"};
static const size_t WG_MAX_PART = (size_t)64 << 20;

/* partials of wgrad3 for this shape, in bytes; 0 when the shape is not eligible */
static size_t wgrad3_part_bytes(const ctx_t *c, const mp_conv_desc *d) {
  if (c->bf16 || d->r != 3 || d->s != 3 || d->stride != 1 || d->n < 1 || d->n > 65535 || d->p < 1 || d->q < 1)
    return 0;
  size_t b = (size_t)d->n * ((d->q + 31) / 32) * d->k * d->c * 9 * sizeof(float);
  return b <= WG_MAX_PART ? b : 0;
}

/* dw (k, c, 3, 3) of x (n, c, h, w) and dy (n, k, p, q), fp32 NCHW, on the stream */
static void wgrad3(ctx_t *c, const mp_conv_desc *d, const float *x, const float *dy, float *dw) {
  size_t bytes = wgrad3_part_bytes(c, d);
  MP_CHECK(bytes > 0, "own 3x3 weight gradient called for an ineligible shape");
  dev_reserve(c, (void **)&c->wg_part, &c->wg_bytes, bytes);
  int strips = (d->q + 31) / 32, kp = (d->k + 1) / 2, cp = (d->c + 1) / 2;
  long gx = (long)strips * ((kp * cp + WG_WARPS - 1) / WG_WARPS);
  MP_CHECK(gx <= INT32_MAX, "own 3x3 weight gradient: grid of %ld blocks", gx);
  k_wgrad3<<<dim3((unsigned)gx, (unsigned)d->n), 32 * WG_WARPS, 0, c->st>>>(x, dy, c->wg_part, d->c, d->h, d->w, d->k,
                                                                           d->p, d->q, d->pad, d->pad_w, kp, cp);
  MP_LAUNCHED();
  size_t m = (size_t)d->k * d->c * 9;
  k_wgrad3_sum<<<(unsigned)((m + 31) / 32), dim3(32, 32), 0, c->st>>>(c->wg_part, dw, m, d->n * strips);
  MP_LAUNCHED();
}

/* samples per chunk of the gemm path (its buffers: (C R S + K) x chunk x P Q floats within the
 * workspace cap; at least 16384 columns a GEMM where the batch allows); 0 = not eligible */
static int gemm_chunk(const ctx_t *c, const mp_conv_desc *d) {
  size_t crs = (size_t)d->c * d->r * d->s, pq = (size_t)d->p * d->q;
  if (c->bf16 || d->n < 1 || !pq || !crs || crs > INT32_MAX / 2 || pq > INT32_MAX / 2) return 0;
  size_t per = (crs + (size_t)d->k) * pq * sizeof(float), want = (16384 + pq - 1) / pq, fit = c->ws_cap / per;
  size_t nb = want < (size_t)d->n ? want : (size_t)d->n;
  if (nb > fit) nb = fit;
  /* the kernels' 32-bit indices: col, sw and the chunk's x below 2^31 elements */
  size_t big = crs > (size_t)d->k ? crs : (size_t)d->k, img = (size_t)d->c * d->h * d->w;
  if (nb && nb > (size_t)INT32_MAX / (big * pq)) nb = (size_t)INT32_MAX / (big * pq);
  if (nb && img && nb > (size_t)INT32_MAX / img) nb = (size_t)INT32_MAX / img;
  return (int)nb;
}

/* the gemm path's Ops policy (conv_gemm_plan): kernels and cuBLAS on the backend's stream */
struct cuda_gemm_ops {
  ctx_t *c;
  /* rows x (elements per row), both grid-strided */
  static dim3 grid2(size_t rows, size_t per_row) {
    return dim3(grid_for(per_row, TPB) < 4096u ? grid_for(per_row, TPB) : 4096u, rows < 65535u ? (unsigned)rows : 65535u);
  }
  void im2col(const float *x, float *col, const conv_dims &d, int nb) {
    k_im2col<<<grid2((size_t)d.c * d.r * d.s, (size_t)nb * d.p * d.q), TPB, 0, c->st>>>(x, col, d, nb);
    MP_LAUNCHED();
  }
  void col2im(const float *col, float *dx, const conv_dims &d, int nb) {
    k_col2im<<<grid2((size_t)nb * d.c, (size_t)d.h * d.w), TPB, 0, c->st>>>(col, dx, d, nb);
    MP_LAUNCHED();
  }
  void swap01(const float *in, float *out, int A, int B, size_t L) {
    size_t total = (size_t)A * B * L;
    k_swap01<<<grid_for(total, TPB), TPB, 0, c->st>>>(in, out, (unsigned)A, (unsigned)B, (unsigned)L, (unsigned)total);
    MP_LAUNCHED();
  }
  /* row-major C (M x N) = op(A) op(B) + beta C is column-major C^T = op(B)^T op(A)^T */
  void gemm(bool ta, bool tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *Cm, int ldc,
            float beta) {
    const float one = 1.0f;
    MP_CHECK_CUBLAS(cublasSgemm(c->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one,
                                B, ldb, A, lda, &beta, Cm, ldc));
  }
};

/* the gemm path's buffers for this shape (im2col columns and the swapped operand of a chunk) */
static size_t gemm_bytes(const ctx_t *c, const mp_conv_desc *d) {
  return ((size_t)d->c * d->r * d->s + (size_t)d->k) * gemm_chunk(c, d) * d->p * d->q * sizeof(float);
}

/* one op by the gemm path, in run_conv's operand order */
static void conv_gemm(ctx_t *c, int op, const mp_conv_desc *d, const float *a, const float *bb, float *out) {
  int nb = gemm_chunk(c, d);
  MP_CHECK(nb > 0, "gemm convolution called for an ineligible shape");
  size_t crs = (size_t)d->c * d->r * d->s, cols = (size_t)nb * d->p * d->q;
  dev_reserve(c, (void **)&c->gm, &c->gm_bytes, gemm_bytes(c, d));
  conv_dims cd = {d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->p, d->q, d->stride, d->pad, d->pad_w};
  cuda_gemm_ops o = {c};
  conv_gemm_plan(o, op, cd, a, bb, out, c->gm, c->gm + crs * cols, nb);
}

/* An own algorithm's scratch for a trial, where the device has room: false (the error cleared)
 * where it has not, and the candidate is then left out instead of ending the run. */
static bool own_scratch(ctx_t *c, int own, const mp_conv_desc *d) {
  return own == OWN_WGRAD3 ? dev_grow(c, (void **)&c->wg_part, &c->wg_bytes, wgrad3_part_bytes(c, d)) == cudaSuccess
                           : dev_grow(c, (void **)&c->gm, &c->gm_bytes, gemm_bytes(c, d)) == cudaSuccess;
}

static void run_own(ctx_t *c, int own, int op, const mp_conv_desc *d, const float *a, const float *bb, float *out) {
  if (own == OWN_WGRAD3)
    wgrad3(c, d, a, bb, out);
  else
    conv_gemm(c, op, d, a, bb, out);
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
  /* fp32: cuDNN's DEFAULT_MATH permits TF32 on Ampere and later, so a result reported with it
   * runs with FMA math (as PyTorch does when TF32 is off).  tf32 (not bf16): ALLOW_CONVERSION
   * would permit fp16 down-conversion of the fp32 operands (TF32's mantissa, fp16's range), so
   * such results are not candidates. */
  for (int i = 0; i < got; i++) {
    if (!c->tf32 && out[i].math == CUDNN_DEFAULT_MATH) out[i].math = CUDNN_FMA_MATH;
    if (c->tf32 && !c->bf16 && out[i].math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) out[i].st = CUDNN_STATUS_NOT_SUPPORTED;
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

static void dot_to(ctx_t *c, const float *a, const float *bb, size_t n, double *out, bool dist);

static void run_cudnn(ctx_t *c, int op, int algo, size_t ws, const void *A, const void *B, void *O) {
  const float one = 1.0f, zero = 0.0f;
  if (op == OP_FWD)
    MP_CHECK_CUDNN(cudnnConvolutionForward(c->dnn, &one, c->xd, A, c->wd, B, c->cd, (cudnnConvolutionFwdAlgo_t)algo,
                                           c->ws, ws, &zero, c->yd, O));
  else if (op == OP_BWD_DATA)
    MP_CHECK_CUDNN(cudnnConvolutionBackwardData(c->dnn, &one, c->wd, B, c->yd, A, c->cd,
                                                (cudnnConvolutionBwdDataAlgo_t)algo, c->ws, ws, &zero, c->xd, O));
  else
    MP_CHECK_CUDNN(cudnnConvolutionBackwardFilter(c->dnn, &one, c->xd, A, c->yd, B, c->cd,
                                                  (cudnnConvolutionBwdFilterAlgo_t)algo, c->ws, ws, &zero, c->wd, O));
}

/* ---- cuDNN's graph API: its engines as candidates beside the legacy pick (nn/mp_cudnn_graph.h
 * builds the one-convolution graphs, filters the heuristics' engine configurations by their
 * notes and finalizes the plans); up to GRAPH_MAX a (op, shape, alignment). --------------- */
enum { GRAPH_MAX = 8 };
static_assert((int)OP_FWD == (int)MPG_FWD && (int)OP_BWD_DATA == (int)MPG_BWD_DATA &&
                  (int)OP_BWD_FILTER == (int)MPG_BWD_FILTER,
              "op numbering");

/* the graphs' device: its property descriptor where cuDNN gives one (mpg_devprop_of), else the handle */
static mpg_mode graph_mode(const ctx_t *c) {
  return mpg_mode{c->bf16 != 0, c->tf32 != 0, c->deterministic, c->devprop ? NULL : c->dnn, c->devprop};
}
static mpg_conv graph_conv(const mp_conv_desc *d) {
  return mpg_conv{d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->p, d->q, d->stride, d->pad, d->pad_w};
}

static void bf_to_f32(ctx_t *c, const void *in, float *out, size_t n); /* with the bf16 staging below */


/* A trial's graph-API variant pack, kept across its runs as run_conv keeps an entry's. */
typedef struct {
  bdesc_t vp;
  const void *ptr[3];
  void *ws;
} vpack_t;

/* One candidate's trial run on the call's buffers; false when a graph plan fails to run or an
 * own algorithm's scratch does not fit on the device. */
static bool run_trial(ctx_t *c, int kind, int op, const mp_conv_desc *d, const perf_t *pk, const mpg_cand *g,
                      vpack_t *vp, const void *a, const void *b, void *out) {
  if (kind == OWN_NONE) {
    MP_CHECK_CUDNN(cudnnSetConvolutionMathType(c->cd, pk->math));
    run_cudnn(c, op, pk->algo, pk->mem, a, b, out);
    return true;
  }
  if (kind == OWN_GRAPH) {
    cudnnStatus_t st = mpg_exec(c->dnn, g->plan, &vp->vp, vp->ptr, &vp->ws, op, a, b, out, c->ws);
    if (st == CUDNN_STATUS_SUCCESS) return true;
    /* a launch error cuDNN may have left behind would be reported by the next launch check as
     * that launch's own: cleared here; one that persists (the context is lost) ends the run */
    (void)cudaGetLastError();
    cudaError_t se = wait_stream_status(c, c->st);
    MP_CHECK(se == cudaSuccess, "cuda: cuDNN graph engine %lld failed (%s) and left the device in error: %s",
             (long long)g->engine, cudnnGetErrorString(st), cudaGetErrorString(se));
    return false;
  }
  if (!own_scratch(c, kind, d)) return false;
  run_own(c, kind, op, d, (const float *)a, (const float *)b, (float *)out);
  return true;
}

/* The algorithm for (op, shape) among cuDNN's legacy pick `pk`, the graph-API plans gc[0..ng)
 * and the eligible own algorithms, on the call's buffers (a, b -> out in run_conv's operand
 * order; out is overwritten, as the caller will again).  Each candidate runs once to warm up
 * and 3 times between events (its time: the mean); the legacy pick's result is the reference,
 * each other result is compared with it (NMSE in double on the device, after a bf16 result is
 * widened: fp32 1e-10; TF32 1e-5 for TF32 rounding; bf16 1e-4, a bf16 result rounding either
 * way; each plus 4 u^2 L for fp32 accumulation over the reduction length L, see `tol` below;
 * a reference of all zeros tells nothing, and the legacy pick stays), and a graph plan
 * also runs a fifth time and must repeat its result bit for bit when determinism is asked
 * (cuDNN's notes say so; this checks it).  Returns OWN_NONE (legacy),
 * OWN_GRAPH with the plan's index in *gsel, or an own algorithm: the fastest that agrees, or
 * what MP_CUDA_CONV_OWN / MP_CUDA_CONV_GRAPH force.  `what` describes the choice. */
static int pick_algo(ctx_t *c, int op, const mp_conv_desc *d, const void *a, const void *b, void *out,
                     const perf_t *pk, const mpg_cand *gc, int ng, int *gsel, char *what, size_t wl) {
  bool own_ok[3] = {false, op == OP_BWD_FILTER && wgrad3_part_bytes(c, d) > 0, gemm_chunk(c, d) > 0};
  for (int i = 1; i < 3; i++) own_ok[i] = own_ok[i] && c->own_conv != 0 && (c->own_conv < 0 || c->own_conv == i);
  *gsel = -1;
  if (!own_ok[OWN_WGRAD3] && !own_ok[OWN_GEMM] && ng == 0) return OWN_NONE;
  struct {
    int kind, g;
    float ms;
    double nmse;
    bool ran, det;
  } t[1 + GRAPH_MAX + 2];
  int nt = 0;
  t[nt++] = {OWN_NONE, -1, 0, 0, false, true};
  for (int i = 0; i < ng && i < GRAPH_MAX; i++) t[nt++] = {OWN_GRAPH, i, 0, 0, false, true};
  for (int k = 1; k < 3; k++)
    if (own_ok[k]) t[nt++] = {k, -1, 0, 0, false, true};
  size_t m = op == OP_FWD ? mp_conv_y_count(d) : op == OP_BWD_DATA ? mp_conv_x_count(d) : mp_conv_w_count(d);
  size_t es = c->bf16 ? sizeof(uint16_t) : sizeof(float);
  float *ref = NULL, *wide = NULL;
  void *snap = NULL;
  /* the comparison buffers (up to 10 bytes an output element, for this first call only): where
   * the device cannot hold them, the legacy pick stays, with a warning */
  bool got = cudaMalloc((void **)&ref, m * sizeof(float)) == cudaSuccess &&
             (!c->bf16 || cudaMalloc((void **)&wide, m * sizeof(float)) == cudaSuccess) &&
             (!ng || !c->deterministic || cudaMalloc(&snap, m * es) == cudaSuccess);
  if (!got) {
    (void)cudaGetLastError(); /* the failed allocation's error, not sticky */
    void *bufs[3] = {ref, wide, snap};
    for (void *p : bufs)
      if (p) MP_CHECK_CUDA(cudaFree(p));
    MP_WARN("cuda: no device memory to compare other algorithms with cuDNN's legacy %s algo %d for conv n%d c%d %dx%d "
            "k%d %dx%d stride %d: that one is used",
            op_names[op], pk->algo, d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride);
    return OWN_NONE;
  }
  const size_t cmp_bytes = m * sizeof(float) * (c->bf16 ? 2 : 1) + (snap ? m * es : 0);
  dev_account(c, cmp_bytes, 0);
  cudaEvent_t e0, e1;
  MP_CHECK_CUDA(cudaEventCreate(&e0));
  MP_CHECK_CUDA(cudaEventCreate(&e1));
  double den = 0;
  for (int i = 0; i < nt; i++) {
    const mpg_cand *g = t[i].kind == OWN_GRAPH ? &gc[t[i].g] : NULL;
    vpack_t vp = {NULL, {NULL, NULL, NULL}, NULL};
    bool ok = true;
    for (int it = 0; it < 4 && ok; it++) {
      if (it == 1) MP_CHECK_CUDA(cudaEventRecord(e0, c->st));
      ok = run_trial(c, t[i].kind, op, d, pk, g, &vp, a, b, out);
    }
    if (!ok) {
      bd_free(vp.vp);
      continue;
    }
    MP_CHECK_CUDA(cudaEventRecord(e1, c->st));
    wait_stream(c, c->st); /* e1 is the stream's last work: its wait, watching NCCL */
    MP_CHECK_CUDA(cudaEventElapsedTime(&t[i].ms, e0, e1));
    t[i].ms /= 3;
    t[i].ran = true;
    /* the result as fp32 (own algorithms compute in fp32 only) */
    const float *v = (const float *)out;
    if (c->bf16 && (t[i].kind == OWN_NONE || t[i].kind == OWN_GRAPH)) bf_to_f32(c, out, wide, m), v = wide;
    if (t[i].kind == OWN_NONE) MP_CHECK_CUDA(cudaMemcpyAsync(ref, v, m * sizeof(float), cudaMemcpyDeviceToDevice, c->st));
    /* on the device (a result may be GBs): sum ref^2 once, then sum (candidate - ref)^2 */
    dot_to(c, t[i].kind == OWN_NONE ? ref : v, t[i].kind == OWN_NONE ? NULL : ref, m, c->dsc, t[i].kind != OWN_NONE);
    MP_CHECK_CUDA(cudaMemcpyAsync(c->hsc, c->dsc, sizeof(double), cudaMemcpyDeviceToHost, c->st));
    wait_stream(c, c->st);
    if (t[i].kind == OWN_NONE)
      den = c->hsc[0];
    else
      t[i].nmse = den > 0 ? c->hsc[0] / den : c->hsc[0];
    if (g && snap) { /* a fifth run must repeat the fourth bit for bit */
      MP_CHECK_CUDA(cudaMemcpyAsync(snap, out, m * es, cudaMemcpyDeviceToDevice, c->st));
      t[i].ran = run_trial(c, t[i].kind, op, d, pk, g, &vp, a, b, out);
      size_t nw = m * es / sizeof(uint16_t);
      MP_CHECK_CUDA(cudaMemsetAsync(c->dsc, 0, sizeof(double), c->st));
      k_ndiff16<<<grid_for(nw, TPB), TPB, 0, c->st>>>((const uint16_t *)snap, (const uint16_t *)out, nw,
                                                       (unsigned long long *)c->dsc);
      MP_LAUNCHED();
      unsigned long long nd = 0;
      MP_CHECK_CUDA(cudaMemcpyAsync(&nd, c->dsc, sizeof nd, cudaMemcpyDeviceToHost, c->st));
      wait_stream(c, c->st);
      if (nd && t[i].ran) {
        t[i].det = false;
        MP_WARN("cuda: cuDNN engine %lld (graph API), noted deterministic, gave two results %llu words apart for the %s "
                "of conv n%d c%d %dx%d k%d %dx%d stride %d: not used",
                (long long)g->engine, nd, op_names[op], d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride);
      }
    }
    bd_free(vp.vp);
  }
  MP_CHECK_CUDA(cudaEventDestroy(e0));
  MP_CHECK_CUDA(cudaEventDestroy(e1));
  MP_CHECK_CUDA(cudaFree(ref));
  if (wide) MP_CHECK_CUDA(cudaFree(wide));
  if (snap) MP_CHECK_CUDA(cudaFree(snap));
  dev_account(c, 0, cmp_bytes);
  /* Agreement: the precision's operand rounding, plus fp32 accumulation over the op's reduction
   * length L (what one output sums: forward c r s, backward data k r s, backward filter n p q).
   * Two correct fp32 results that add in different orders differ by about u^2 L / 2 in NMSE
   * (u = 2^-24; random-sign terms, the partial sums growing as sqrt(L)): 2.6e-10 for one
   * serial chain over the classifier's first weight gradient at batch 128 (L = 2^21), beyond a
   * flat 1e-10, which would reject a correct and more accurate candidate there (wgrad3 adds
   * short fp32 chains in double).  4 u^2 L leaves room for both sides' errors; an indexing bug
   * drops or repeats whole rows or images of that sum (one row of 128 in 2^21: NMSE 6e-5), far
   * beyond it, and test_backend holds every candidate, forced, to ref besides. */
  const double L = op == OP_FWD ? (double)d->c * d->r * d->s
                   : op == OP_BWD_DATA ? (double)d->k * d->r * d->s
                                       : (double)d->n * d->p * d->q;
  const double tol = (c->bf16 ? 1e-4 : c->tf32 ? 1e-5 : 1e-10) + 4.0 * 0x1p-48 * L;
  int use = 0, best_graph = -1;
  for (int i = 1; i < nt; i++) {
    /* false for a NaN, and where the reference is all zero (nothing to tell a candidate by) */
    bool agree = t[i].ran && t[i].det && den > 0 && t[i].nmse <= tol;
    if (t[i].ran && !(t[i].nmse <= tol)) {
      char nm[48];
      if (t[i].kind == OWN_GRAPH)
        snprintf(nm, sizeof nm, "cuDNN graph-API engine %lld", (long long)gc[t[i].g].engine);
      else
        snprintf(nm, sizeof nm, "own convolution %s", own_names[t[i].kind]);
      MP_WARN("cuda: %s disagrees with cuDNN's legacy %s algo %d for conv n%d c%d %dx%d k%d %dx%d stride %d "
              "(nmse %.1e): %s", nm, op_names[op], pk->algo, d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride,
              t[i].nmse, c->own_conv == t[i].kind ? "used anyway (MP_CUDA_CONV_OWN)" : "not used");
    }
    if (c->own_conv == t[i].kind && t[i].ran) {
      use = i; /* forced, for the tests */
      break;
    }
    if (agree && t[i].kind == OWN_GRAPH && (best_graph < 0 || t[i].ms < t[best_graph].ms)) best_graph = i;
    if (agree && t[i].ms < t[use].ms) use = i;
  }
  if (c->graph == 1 && best_graph >= 0 && !(c->own_conv > 0 && t[use].kind == c->own_conv)) use = best_graph;
  /* what: the choice, then every candidate's time */
  int l = t[use].kind == OWN_NONE
              ? snprintf(what, wl, "cudnn %s algo %d%s, %.3f ms%s;", op_names[op], pk->algo,
                         pk->det == CUDNN_DETERMINISTIC ? "" : " (nondeterministic)", (double)t[0].ms,
                         pk->mem > c->ws_cap ? ", workspace beyond the cap" : "")
          : t[use].kind == OWN_GRAPH
              ? snprintf(what, wl, "cudnn graph engine %lld, %.3f ms (nmse %.0e; legacy %s algo %d %.3f ms);",
                         (long long)gc[t[use].g].engine, (double)t[use].ms, t[use].nmse, op_names[op], pk->algo,
                         (double)t[0].ms)
              : snprintf(what, wl, "own %s, %.3f ms (nmse %.0e; cudnn %s algo %d %.3f ms);", own_names[t[use].kind],
                         (double)t[use].ms, t[use].nmse, op_names[op], pk->algo, (double)t[0].ms);
  for (int i = 1; i < nt && l > 0 && (size_t)l < wl; i++) {
    char nm[24], item[48];
    if (t[i].kind == OWN_GRAPH)
      snprintf(nm, sizeof nm, "e%lld", (long long)gc[t[i].g].engine);
    else
      snprintf(nm, sizeof nm, "%s", own_names[t[i].kind]);
    if (!t[i].ran)
      snprintf(item, sizeof item, "%s failed", nm);
    else if (!t[i].det)
      snprintf(item, sizeof item, "%s nondeterministic", nm);
    else if (!(t[i].nmse <= tol))
      snprintf(item, sizeof item, "%s differs", nm);
    else if (!(den > 0))
      snprintf(item, sizeof item, "%s unchecked (zero reference)", nm);
    else
      snprintf(item, sizeof item, "%s %.3f", nm, (double)t[i].ms);
    l += snprintf(what + l, wl - (size_t)l, " %s", item);
  }
  if (t[use].kind == OWN_GRAPH) *gsel = t[use].g;
  /* Plans finalized against the device-property descriptor (cuDNN >= 9.8) and executed on the
   * handle are what cudnn-frontend does for its handle-less deserialisation; should this cuDNN
   * refuse to run every one of a shape's plans so made, the next shapes' plans are built from
   * the handle (the established way) instead of every shape losing its graph candidates.  The
   * descriptor is kept (plans made with it may live in the cache) until the backend goes. */
  bool any_graph = false, graph_ran = false;
  for (int i = 1; i < nt; i++)
    if (t[i].kind == OWN_GRAPH) any_graph = true, graph_ran |= t[i].ran;
  if (any_graph && !graph_ran && c->devprop) {
    MP_WARN("cuda: none of the %d cuDNN graph plans for the %s of conv n%d c%d %dx%d k%d %dx%d stride %d ran (plans "
            "built from the device-property descriptor): later shapes' plans are built from the cuDNN handle",
            ng, op_names[op], d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride);
    c->devprop_off = c->devprop;
    c->devprop = NULL;
  }
  return t[use].kind;
}

/* The algorithm for (op, shape), found once and cached.  The fastest deterministic one
 * within the workspace cap; when there is none (cuDNN 9's deterministic backward-filter
 * kernels for large batches want more), the search is repeated with a workspace of up to
 * half the free device memory (at most 8 GiB); only then is a nondeterministic algorithm
 * taken, with a warning.  MP_CUDA_DETERMINISTIC=0 takes the fastest algorithm whatever its
 * determinism (PyTorch's cudnn.benchmark choice).  Then cuDNN's graph-API plans (mpg_plans) and
 * the own algorithms compete with it on the call's buffers (pick_algo).  Entries are per
 * operand alignment too, which the graph-API plans are built for. */
static algo_entry *choose(ctx_t *c, int op, const mp_conv_desc *d, const void *x, const void *w, const void *y,
                          int align) {
  algo_entry *e = cached(c, op, d, align);
  if (e) return e;
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
                op_names[op], d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride, p[pick].algo);
    }
    /* keep the workspace that the chosen algorithms need, not the search's */
    size_t keep = c->ws_cap;
    if (pick >= 0 && p[pick].mem > keep) keep = p[pick].mem;
    for (int i = 0; i < c->ncache; i++)
      if (c->cache[i].ws > keep) keep = c->cache[i].ws;
    if (keep < c->ws_size) {
      wait_stream(c, c->st);
      MP_CHECK_CUDA(cudaFree(c->ws));
      dev_account(c, 0, c->ws_size);
      c->ws = NULL, c->ws_size = 0;
      ensure_ws(c, keep);
    }
  }
  MP_CHECK(pick >= 0, "cuDNN offers no %s algorithm for conv n%d c%d %dx%d k%d %dx%d stride %d within %zu MiB of workspace",
           op_names[op], d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride, cap >> 20);
  algo_entry ne;
  memset(&ne, 0, sizeof ne);
  ne.op = op;
  ne.d = *d;
  ne.algo = p[pick].algo, ne.math = p[pick].math, ne.ws = p[pick].mem;
  snprintf(ne.what, sizeof ne.what, "cudnn %s algo %d%s, %.3f ms%s", op_names[op], p[pick].algo,
           p[pick].det == CUDNN_DETERMINISTIC ? "" : " (nondeterministic)", (double)p[pick].ms,
           p[pick].mem > c->ws_cap ? ", workspace beyond the cap" : "");
  ne.align = align;
  mpg_cand gc[GRAPH_MAX];
  bdesc_t keep[MPG_KEEP];
  int ng = 0, gsel = -1;
  if (c->graph != 0) {
    size_t lim = p[pick].mem > c->ws_cap ? p[pick].mem : c->ws_cap;
    mpg_mode gm = graph_mode(c);
    mpg_conv gd = graph_conv(d);
    ng = mpg_plans(&gm, op, &gd, align, lim < c->ws_size ? lim : c->ws_size, gc, GRAPH_MAX, keep);
  }
  ne.own = pick_algo(c, op, d, x, w, (void *)y, &p[pick], gc, ng, &gsel, ne.what, sizeof ne.what);
  /* the chosen plan keeps its configuration and the graph's descriptors; the rest go */
  for (int i = 0; i < ng; i++)
    if (i == gsel) {
      ne.plan = gc[i].plan, ne.gcfg = gc[i].cfg, ne.ws = gc[i].ws;
      for (int k = 0; k < MPG_KEEP; k++) ne.keep[k] = keep[k];
    } else {
      bd_free(gc[i].plan), bd_free(gc[i].cfg);
    }
  if (c->graph != 0 && gsel < 0) bd_free_all(keep, MPG_KEEP);
  /* the gemm path's buffers stay only while a cached shape uses them */
  bool gemm_used = ne.own == OWN_GEMM;
  for (int i = 0; i < c->ncache; i++) gemm_used = gemm_used || c->cache[i].own == OWN_GEMM;
  if (!gemm_used && c->gm) {
    wait_stream(c, c->st);
    MP_CHECK_CUDA(cudaFree(c->gm));
    dev_account(c, 0, c->gm_bytes);
    c->gm = NULL, c->gm_bytes = 0;
  }
  if (c->ncache == c->capcache)
    c->cache = (algo_entry *)mp_realloc(c->cache, (size_t)(c->capcache = c->capcache ? 2 * c->capcache : 32) * sizeof *c->cache);
  c->cache[c->ncache] = ne;
  return &c->cache[c->ncache++];
}

/* ---- bf16 staging: fp32 NCHW <-> bf16 NHWC (round to nearest even) into growable scratch.
 * cuDNN's bf16 tensor-core kernels want channels-last: NCHW bf16 operands cost it a layout
 * conversion of its own on every call (bench/gpu: 0.15x PyTorch's channels-last bf16 at batch
 * 512), so the cast also transposes: activations (n, c, h*w) -> (n, h*w, c), filters
 * (k, c, r*s) -> (k, r*s, c), and the result back: 8, 16 or 32 channels by one thread a position
 * (mp_cuda_layout.cuh: bf16_rn, few_channels), others by 32 x 32 tiles (k_transpose).  A
 * convolution's bias rides on the result's way back: a pass of its own read and wrote every
 * output element once more (8 bytes an element; the classifier's convolutions all have a bias),
 * except where the result is a plain conversion (one channel or one position: from_bf says so
 * and the caller adds the bias apart).  The bits are those of the separate pass. ------------- */
/* bias: added to out's rows s (the result's channels) on the way back; not with R or S = 1 */
template <typename Tin, typename Tout>
static void transpose(ctx_t *c, const Tin *in, Tout *out, int Z, int R, int S, const float *bias = NULL) {
  if (!Z || !R || !S) return;
  if (R == 1 || S == 1) {
    MP_CHECK(!bias, "bf16 staging: a bias on a plain conversion");
    size_t n = (size_t)Z * R * S;
    k_convert<Tin, Tout><<<grid_for(n, TPB), TPB, 0, c->st>>>(in, out, n);
    MP_LAUNCHED();
    return;
  }
  MP_CHECK(Z <= 65535, "bf16 staging: a %d x %d x %d operand is beyond one launch", Z, R, S);
  const int rt = (R + TT - 1) / TT; /* R's tiles, grid y striding over them beyond 65535 */
  dim3 grid((unsigned)((S + TT - 1) / TT), (unsigned)(rt < 65535 ? rt : 65535), (unsigned)Z), block(TT, TROWS);
  k_transpose<Tin, Tout><<<grid, block, 0, c->st>>>(in, out, R, S, bias);
  MP_LAUNCHED();
}

/* 8, 16 or 32 channels: one thread a position (mp_cuda_layout.cuh) instead of half-idle tiles;
 * false (nothing launched) for other shapes or a bf16 side not 16-byte aligned.  to: (z, ch, sp)
 * fp32 -> (z, sp, ch) bf16; else back, plus bias[ch] (NULL: none). */
static bool few_channels(ctx_t *c, bool to, const void *in, void *out, int z, int ch, int sp,
                         const float *bias = NULL) {
  if ((ch != 8 && ch != 16 && ch != 32) || z < 1 || sp < 1 || ((uintptr_t)(to ? out : in) & 15)) return false;
  size_t total = (size_t)z * sp;
  unsigned g = grid_for(total, TPB), S = (unsigned)sp;
  const float *f = (const float *)in;
  const uint16_t *h = (const uint16_t *)in;
  if (to && ch == 8) k_to_nhwc_bf16<8><<<g, TPB, 0, c->st>>>(f, (uint16_t *)out, S, total);
  if (to && ch == 16) k_to_nhwc_bf16<16><<<g, TPB, 0, c->st>>>(f, (uint16_t *)out, S, total);
  if (to && ch == 32) k_to_nhwc_bf16<32><<<g, TPB, 0, c->st>>>(f, (uint16_t *)out, S, total);
  if (!to && ch == 8) k_from_nhwc_bf16<8><<<g, TPB, 0, c->st>>>(h, (float *)out, S, total, bias);
  if (!to && ch == 16) k_from_nhwc_bf16<16><<<g, TPB, 0, c->st>>>(h, (float *)out, S, total, bias);
  if (!to && ch == 32) k_from_nhwc_bf16<32><<<g, TPB, 0, c->st>>>(h, (float *)out, S, total, bias);
  MP_LAUNCHED();
  return true;
}

static uint16_t *bf_buf(ctx_t *c, int slot, size_t n) {
  return (uint16_t *)dev_reserve(c, (void **)&c->bfb[slot], &c->bfb_bytes[slot], n * sizeof(uint16_t));
}
/* an operand of shape (z, ch, sp) fp32 channels-first -> bf16 channels-last scratch */
static const void *to_bf(ctx_t *c, int slot, const float *x, int z, int ch, int sp) {
  uint16_t *b = bf_buf(c, slot, (size_t)z * ch * sp);
  if (!few_channels(c, true, x, b, z, ch, sp)) transpose(c, x, b, z, ch, sp);
  return b;
}
/* the bf16 channels-last result (z, sp, ch) -> fp32 channels-first, plus bias[ch] where bias is
 * not NULL and the shape lets the pass add it; returns whether it did (else the caller adds it) */
static bool from_bf(ctx_t *c, const void *b, float *y, int z, int ch, int sp, const float *bias) {
  if (few_channels(c, false, b, y, z, ch, sp, bias)) return bias != NULL;
  if (bias && (ch == 1 || sp == 1)) bias = NULL; /* a plain conversion */
  transpose(c, (const uint16_t *)b, y, z, sp, ch, bias);
  return bias != NULL;
}
/* n bf16 values widened to fp32, same order (pick_algo's comparisons) */
static void bf_to_f32(ctx_t *c, const void *in, float *out, size_t n) {
  if (!n) return;
  k_convert<uint16_t, float><<<grid_for(n, TPB), TPB, 0, c->st>>>((const uint16_t *)in, out, n);
  MP_LAUNCHED();
}

/* the operands' common byte alignment, up to 16 (what a graph-API plan is built for) */
static int op_align(const void *a, const void *b, const void *o) {
  uintptr_t u = (uintptr_t)a | (uintptr_t)b | (uintptr_t)o;
  int al = 16;
  while (al > 1 && (u & (uintptr_t)(al - 1))) al >>= 1;
  return al;
}

/* One convolution op on (a, bb) into out, in the operand order choose() uses: forward
 * (x, w) -> y; backward data (dy, w) -> dx; backward filter (x, dy) -> dw.  In bf16 mode the
 * operands are cast to bf16 channels-last scratch (abf / bbf: an operand already cast, or
 * NULL) and the result back to fp32 NCHW.  bias (forward only; NULL: none): added on that way
 * back where it can be; returns whether it was (never outside bf16 mode). */
static bool run_conv(ctx_t *c, int op, const mp_conv_desc *d, const float *a, const float *bb, float *out,
                     const void *abf, const void *bbf, const float *bias = NULL) {
  set_conv(c, d);
  const void *A = a, *B = bb;
  void *O = out;
  /* (z, channels, spatial) of x, w and y */
  const int X[3] = {d->n, d->c, d->h * d->w}, W[3] = {d->k, d->c, d->r * d->s}, Y[3] = {d->n, d->k, d->p * d->q};
  const int *sa = op == OP_BWD_DATA ? Y : X, *sb = op == OP_BWD_FILTER ? Y : W;
  const int *so = op == OP_FWD ? Y : op == OP_BWD_DATA ? X : W;
  if (c->bf16) {
    A = abf ? abf : to_bf(c, 0, a, sa[0], sa[1], sa[2]);
    B = bbf ? bbf : to_bf(c, 1, bb, sb[0], sb[1], sb[2]);
    O = bf_buf(c, 2, (size_t)so[0] * so[1] * so[2]);
  }
  algo_entry *e = choose(c, op, d, A, B, O, op_align(A, B, O));
  e->used = ++c->use_clock;
  if (e->own == OWN_WGRAD3 || e->own == OWN_GEMM) { /* fp32 operands: never chosen in bf16 mode */
    run_own(c, e->own, op, d, a, bb, out);
    return false;
  }
  if (e->own == OWN_GRAPH)
    MP_CHECK_CUDNN(mpg_exec(c->dnn, e->plan, &e->vp, e->vp_ptr, &e->vp_ws, op, A, B, O, c->ws));
  else {
    MP_CHECK_CUDNN(cudnnSetConvolutionMathType(c->cd, e->math));
    run_cudnn(c, op, e->algo, e->ws, A, B, O);
  }
  return c->bf16 && from_bf(c, O, out, so[0], so[1], so[2], op == OP_FWD ? bias : NULL);
}

static void bias_add(ctx_t *c, float *y, const float *bias, int n, int C, int hw);
static void bias_grad(ctx_t *c, const float *dy, float *db, int n, int C, int hw);

static void cu_conv_fwd(mp_backend *b, const mp_conv_desc *d, const float *x, const float *w, const float *bias, float *y) {
  ctx_t *c = C(b);
  if (!run_conv(c, OP_FWD, d, x, w, y, NULL, NULL, bias) && bias) bias_add(c, y, bias, d->n, d->k, d->p * d->q);
}

static void cu_conv_bwd_data(mp_backend *b, const mp_conv_desc *d, const float *dy, const float *w, float *dx) {
  run_conv(C(b), OP_BWD_DATA, d, dy, w, dx, NULL, NULL);
}

static void cu_conv_bwd_weights(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, float *dw,
                                float *db) {
  ctx_t *c = C(b);
  run_conv(c, OP_BWD_FILTER, d, x, dy, dw, NULL, NULL);
  if (db) bias_grad(c, dy, db, d->n, d->k, d->p * d->q);
}

/* Both gradients of one convolution; in bf16 mode dy is cast to channels-last once for the
 * two (its own scratch slot, which neither op's staging touches). */
static void cu_conv_bwd(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, const float *w, float *dx,
                        float *dw, float *db) {
  ctx_t *c = C(b);
  const void *DY = c->bf16 ? to_bf(c, 3, dy, d->n, d->k, d->p * d->q) : NULL;
  if (dx) run_conv(c, OP_BWD_DATA, d, dy, w, dx, DY, NULL);
  run_conv(c, OP_BWD_FILTER, d, x, dy, dw, NULL, DY);
  if (db) bias_grad(c, dy, db, d->n, d->k, d->p * d->q);
}

/* ---- batch norm: training forward and backward in own kernels, optionally fused with the
 * ReLU after it; evaluation through cuDNN.
 * cuDNN's NCHW fp32 batch norm ran at 0.13-0.18 TB/s on an H100 for the classifier's block 1
 * (16 channels of 128 x 128 at batch 128: forward 1.0 ms, backward 3.0 ms per layer, 40% of a
 * training step; PyTorch calls the same kernels), because its per-channel reductions give
 * each of few channels one block.  Here a channel's N x HW values are cut into S slices, one
 * block each (S chosen so that C x S fills the GPU), float4 loads where HW allows:
 *   stats   partial sums per (channel, slice) in double, then one thread per channel adds
 *           its S partials in a fixed order (deterministic) and writes the per-channel
 *           coefficients: forward (mean, invstd) and the running statistics; backward
 *           sum(g) and sum(g (x - mean)), g = dy masked by y > 0 when fused with ReLU;
 *   apply   one element-wise pass in double: y = (x - mean) invstd gamma + beta [ReLU];
 *           dx = a (g - sum(g)/M) - (x - mean) a invstd sum(g xhat)/M, a = gamma invstd
 *           (the ref's formulas, mp_ref.c).
 * Forward moves 3 and backward 5 (fused: 7) tensor-sized streams; the ReLU costs nothing
 * extra in the forward and replaces its own 3-stream backward.  Kernels: mp_cuda_kernels.cuh. */

/* the partials' and coefficients' scratch for C channels of S slices (grown once) */
static double *bn_scratch(ctx_t *c, int C, int S, double **coef) {
  size_t need = 2 * (size_t)C * S + 4 * (size_t)C;
  dev_reserve(c, (void **)&c->bn_tmp, &c->bn_bytes, need * sizeof(double));
  *coef = c->bn_tmp + 2 * (size_t)C * S;
  return c->bn_tmp;
}


/* The first pass of a training forward (dy NULL) or backward: the shape checked, the
 * slices chosen, k_bn_partial launched into the scratch; returns the partials (S per
 * channel) and the coefficients' place. */
static double *bn_partials(ctx_t *c, const mp_bn_desc *d, int V, const float *x, const float *y, const float *dy,
                           const float *mean, int *S, double **coef) {
  MP_CHECK(d->c <= 65535 && (size_t)d->n * d->c * d->hw < ((size_t)1 << 31),
           "batch norm of %d x %d x %d is beyond one launch (32-bit indices)", d->n, d->c, d->hw);
  *S = bn_slices(d, V);
  double *part = bn_scratch(c, d->c, *S, coef);
  dim3 grid((unsigned)*S, (unsigned)d->c);
  if (V == 4)
    k_bn_partial<4><<<grid, BN_TPB, 0, c->st>>>(x, y, dy, mean, d->n, d->c, d->hw / V, part);
  else
    k_bn_partial<1><<<grid, BN_TPB, 0, c->st>>>(x, y, dy, mean, d->n, d->c, d->hw / V, part);
  MP_LAUNCHED();
  return part;
}

static void bn_train(ctx_t *c, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta, float *y,
                     float *sm, float *si, float *rm, float *rv, bool relu) {
  if (!d->n || !d->c || !d->hw) return;
  int V = bn_vec(d, x, y, x, y), S, hwv = d->hw / V;
  double *coef, *part = bn_partials(c, d, V, x, NULL, NULL, NULL, &S, &coef);
  k_bn_stats<<<(d->c + 127) / 128, 128, 0, c->st>>>(part, S, d->c, x, d->hw, (double)d->n * d->hw, d->eps, d->momentum,
                                                    gamma, beta, sm, si, rm, rv, coef);
  MP_LAUNCHED();
  unsigned units = (unsigned)((size_t)d->n * d->c * hwv);
  unsigned g = grid_for(units, TPB);
  if (V == 4 && relu) k_bn_apply<4, true><<<g, TPB, 0, c->st>>>(x, y, coef, d->c, hwv, units);
  else if (V == 4) k_bn_apply<4, false><<<g, TPB, 0, c->st>>>(x, y, coef, d->c, hwv, units);
  else if (relu) k_bn_apply<1, true><<<g, TPB, 0, c->st>>>(x, y, coef, d->c, hwv, units);
  else k_bn_apply<1, false><<<g, TPB, 0, c->st>>>(x, y, coef, d->c, hwv, units);
  MP_LAUNCHED();
}

/* y: the fused forward's output (ReLU's mask), NULL for plain batch norm */
static void bn_back(ctx_t *c, const mp_bn_desc *d, const float *x, const float *y, const float *dy, const float *gamma,
                    const float *sm, const float *si, float *dx, float *dg, float *db) {
  if (!d->n || !d->c || !d->hw) return;
  int V = bn_vec(d, x, y ? y : x, dy, dx), S, hwv = d->hw / V;
  double *coef, *part = bn_partials(c, d, V, x, y, dy, sm, &S, &coef);
  k_bn_bstats<<<(d->c + 127) / 128, 128, 0, c->st>>>(part, S, d->c, (double)d->n * d->hw, gamma, sm, si, dg, db, coef);
  MP_LAUNCHED();
  unsigned units = (unsigned)((size_t)d->n * d->c * hwv);
  unsigned g = grid_for(units, TPB);
  if (V == 4)
    k_bn_dx<4><<<g, TPB, 0, c->st>>>(x, y, dy, dx, coef, d->c, hwv, units);
  else
    k_bn_dx<1><<<g, TPB, 0, c->st>>>(x, y, dy, dx, coef, d->c, hwv, units);
  MP_LAUNCHED();
}

/* ---- a convolution's bias (per output channel of an NCHW tensor), in the batch norm's
 * manner: cudnnAddTensor and cudnnConvolutionBackwardBias took 0.19 ms and 1.7 ms for the
 * classifier's 16-channel 128 x 128 layers at batch 128 (one block per channel again). ----- */
static void bias_add(ctx_t *c, float *y, const float *bias, int n, int C, int hw) {
  if (!n || !C || !hw) return;
  mp_bn_desc d = {n, C, hw, 0, 0};
  MP_CHECK((size_t)n * C * hw < ((size_t)1 << 31), "bias of %d x %d x %d is beyond one launch (32-bit indices)", n, C, hw);
  int V = bn_vec(&d, y, y, y, y);
  unsigned hwv = (unsigned)(hw / V), units = (unsigned)((size_t)n * C * hwv);
  if (V == 4)
    k_bias_add<4><<<grid_for(units, TPB), TPB, 0, c->st>>>(y, bias, (unsigned)C, hwv, units);
  else
    k_bias_add<1><<<grid_for(units, TPB), TPB, 0, c->st>>>(y, bias, (unsigned)C, hwv, units);
  MP_LAUNCHED();
}

/* db[c] = sum over samples and positions of dy (overwritten), deterministic */
static void bias_grad(ctx_t *c, const float *dy, float *db, int n, int C, int hw) {
  if (!C) return;
  if (!n || !hw) {
    MP_CHECK_CUDA(cudaMemsetAsync(db, 0, (size_t)C * sizeof(float), c->st));
    return;
  }
  mp_bn_desc d = {n, C, hw, 0, 0};
  MP_CHECK(C <= 65535 && (size_t)n * C * hw < ((size_t)1 << 31),
           "bias gradient of %d x %d x %d is beyond one launch (32-bit indices)", n, C, hw);
  int V = bn_vec(&d, dy, dy, dy, dy), S = bn_slices(&d, V), hwv = hw / V;
  double *coef, *part = bn_scratch(c, C, S, &coef);
  dim3 grid((unsigned)S, (unsigned)C);
  if (V == 4)
    k_chan_partial<4><<<grid, BN_TPB, 0, c->st>>>(dy, n, C, hwv, part);
  else
    k_chan_partial<1><<<grid, BN_TPB, 0, c->st>>>(dy, n, C, hwv, part);
  MP_LAUNCHED();
  k_chan_final<<<(C + 127) / 128, 128, 0, c->st>>>(part, S, C, db);
  MP_LAUNCHED();
}

static void cu_bn_train(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                        float *y, float *sm, float *si, float *rm, float *rv) {
  bn_train(C(b), d, x, gamma, beta, y, sm, si, rm, rv, false);
}
static void cu_bn_relu_train(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                             float *y, float *sm, float *si, float *rm, float *rv) {
  bn_train(C(b), d, x, gamma, beta, y, sm, si, rm, rv, true);
}
static void cu_bn_bwd(mp_backend *b, const mp_bn_desc *d, const float *x, const float *dy, const float *gamma,
                      const float *sm, const float *si, float *dx, float *dg, float *dbeta) {
  bn_back(C(b), d, x, NULL, dy, gamma, sm, si, dx, dg, dbeta);
}
static void cu_bn_relu_bwd(mp_backend *b, const mp_bn_desc *d, const float *x, const float *y, const float *dy,
                           const float *gamma, const float *sm, const float *si, float *dx, float *dg, float *dbeta) {
  bn_back(C(b), d, x, y, dy, gamma, sm, si, dx, dg, dbeta);
}

/* evaluation: cuDNN (spatial mode, the running statistics) */
static void cu_bn_eval(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                       const float *rm, const float *rv, float *y) {
  ctx_t *c = C(b);
  MP_CHECK_CUDNN(cudnnSetTensor4dDescriptor(c->xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->c, d->hw, 1));
  MP_CHECK_CUDNN(cudnnSetTensor4dDescriptor(c->bnd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, d->c, 1, 1));
  const float one = 1.0f, zero = 0.0f;
  MP_CHECK_CUDNN(cudnnBatchNormalizationForwardInference(c->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, c->xd, x, c->xd, y,
                                                         c->bnd, gamma, beta, rm, rv, (double)d->eps));
}

/* ---- activations ------------------------------------------------------------------------------ */
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

/* C (m x n) = A (m x k) B^T (B n x k), row-major: column-major C^T = B A^T.  Pedantic fp32 in
 * every precision mode: the handle's TF32 math mode (cuda:tf32, cuda:bf16) would otherwise
 * round the operands to 10 bits, and the kNN (SPEC §9) picks its candidates from these scores,
 * so that its neighbours could differ from the CPU's SGEMM-backed search. */
static void cu_gemm_nt(mp_backend *b, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float *Cm,
                       int ldc) {
  const float one = 1.0f, zero = 0.0f;
  MP_CHECK_CUBLAS(cublasGemmEx(C(b)->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, B, CUDA_R_32F, ldb, A, CUDA_R_32F,
                               lda, &zero, Cm, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
}

/* C (m x n)[i][j] = sum_e |A[i][e] - B[j][e]|, row-major (k_l1_nt: the kNN's l1 score blocks,
 * which the CPU computes with its own blocked loop; on a GPU node that loop ran on the host) */
static void cu_l1_nt(mp_backend *b, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float *Cm,
                     int ldc) {
  if (m < 1 || n < 1) return;
  MP_CHECK((m + L1_TILE - 1) / L1_TILE <= 65535, "l1 scores: %d rows are beyond one launch", m);
  dim3 grid((unsigned)((n + L1_TILE - 1) / L1_TILE), (unsigned)((m + L1_TILE - 1) / L1_TILE)), block(16, 16);
  k_l1_nt<<<grid, block, 0, C(b)->st>>>(m, n, k, A, lda, B, ldb, Cm, ldc);
  MP_LAUNCHED();
}

/* ---- Inception-v3 on the device (nn/mp_inception.c): its pools and channel concatenation -- */
/* the patches' bytes up, then one thread an output pixel (k_resize_u8: mp_ref_resize_u8's
 * bits).  The copy is waited for, as cu_upload's: px is pageable, and only the staging of such
 * a copy, not its end, is promised on return (on HMM/ATS systems not even that) */
static void cu_resize_u8(mp_backend *b, const uint8_t *px, int n, int side, int S, float *dst) {
  ctx_t *c = C(b);
  const size_t in = (size_t)n * side * side, m = (size_t)n * S * S;
  if (!m || !in) return;
  uint8_t *d = (uint8_t *)dev_reserve(c, &c->rz, &c->rz_bytes, in);
  MP_CHECK_CUDA(cudaMemcpyAsync(d, px, in, cudaMemcpyHostToDevice, c->st));
  wait_stream(c, c->st);
  k_resize_u8<<<grid_for(m, TPB), TPB, 0, c->st>>>(d, n, side, S, dst);
  MP_LAUNCHED();
}
static void cu_pool2d(mp_backend *b, int kind, const float *x, float *y, int n, int c, int h, int w, int k, int stride,
                      int pad) {
  const int oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
  const size_t planes = (size_t)n * c, m = planes * oh * ow;
  if (!m || oh < 1 || ow < 1) return;
  k_pool2d<<<grid_for(m, TPB), TPB, 0, C(b)->st>>>(kind, x, y, planes, h, w, k, stride, pad, oh, ow);
  MP_LAUNCHED();
}
static void cu_copy2d(mp_backend *b, float *dst, size_t dpitch, const float *src, size_t spitch, size_t width,
                      size_t rows) {
  if (!width || !rows) return;
  MP_CHECK_CUDA(cudaMemcpy2DAsync(dst, dpitch * sizeof(float), src, spitch * sizeof(float), width * sizeof(float), rows,
                                  cudaMemcpyDefault, C(b)->st));
}

/* ---- dropout: the ref's mask from mp_rng_at(seed, MP_RNG_DROPOUT, index, e0 + e) ------------- */
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
static void cu_adam(mp_backend *b, float *param, const float *grad, float *m, float *v, size_t n, float lr, float b1,
                    float b2, float eps, long step) {
  if (!n) return;
  double step_size, sbc2;
  adam_consts(lr, b1, b2, step, &step_size, &sbc2);
  k_adam<<<grid_for(n, TPB), TPB, 0, C(b)->st>>>(param, grad, m, v, n, b1, b2, step_size, sbc2, eps);
  MP_LAUNCHED();
}

/* ---- deterministic double reductions: per-block partial sums, then one block in order ---------- */
/* *out = sum a[i] b[i] (b NULL: sum a[i]^2; dist: sum (a[i] - b[i])^2), on the stream,
 * deterministic */
static void dot_to(ctx_t *c, const float *a, const float *bb, size_t n, double *out, bool dist) {
  unsigned nb = grid_for(n, TPB);
  if (nb > PARTIALS) nb = PARTIALS;
  if (dist)
    k_dot_partial<true><<<nb, TPB, 0, c->st>>>(a, bb, n, c->dsc + 2);
  else
    k_dot_partial<false><<<nb, TPB, 0, c->st>>>(a, bb, n, c->dsc + 2);
  MP_LAUNCHED();
  k_sum_partials<<<1, TPB, 0, c->st>>>(c->dsc + 2, (int)nb, out);
  MP_LAUNCHED();
}

/* ---- the gradient penalty's per-sample part: one block per sample --------------------------- */
static double cu_penalty_grad(mp_backend *b, const float *g, int n, size_t m, float lambda, float *v, double *norms) {
  ctx_t *c = C(b);
  if (n <= 0) return 0; /* no sample: no launch (a grid of 0 blocks is an error) */
  dev_reserve(c, (void **)&c->gp_norms, &c->gp_bytes, (size_t)n * sizeof(double));
  k_sample_norms<<<n, TPB, 0, c->st>>>(g, m, c->gp_norms);
  MP_LAUNCHED();
  k_penalty_scale<<<grid_for((size_t)n * m, TPB), TPB, 0, c->st>>>(g, n, m, lambda, c->gp_norms, v);
  MP_LAUNCHED();
  MP_CHECK_CUDA(cudaMemcpyAsync(norms, c->gp_norms, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost, c->st));
  wait_stream(c, c->st);
  double P = 0;
  for (int j = 0; j < n; j++) P += (norms[j] - 1) * (norms[j] - 1);
  return P;
}

/* ---- the WGAN-GP interpolates: out_j = e_j a_j + (1 - e_j) b_j, the host's arithmetic (each
 * product rounded, then the sum: explicit roundings, so that no FMA contraction changes a bit).
 * The weights ride in the launch parameters, MIX_ROWS rows a launch (no host-to-device copy,
 * no synchronisation); grid y = a row. */
static void cu_mix_rows(mp_backend *b, const float *a, const float *bb, const float *e, int n, size_t m, float *out) {
  ctx_t *c = C(b);
  if (!m) return;
  for (int j0 = 0; j0 < n; j0 += MIX_ROWS) {
    const int rows = n - j0 < MIX_ROWS ? n - j0 : MIX_ROWS;
    mix_weights w;
    memcpy(w.e, e + j0, (size_t)rows * sizeof(float));
    const size_t off = (size_t)j0 * m;
    dim3 grid(grid_for(m, TPB), (unsigned)rows);
    k_mix_rows<<<grid, TPB, 0, c->st>>>(a + off, bb + off, w, m, out + off);
    MP_LAUNCHED();
  }
}

/* ---- spectral norm (the ref's power iteration; cuBLAS products, double norms) ----------------- */

static void cu_sn_forward(mp_backend *b, const float *w, int rows, int cols, float *u, float *v, float *w_sn,
                          int train, double *sigma) {
  ctx_t *c = C(b);
  const float one = 1.0f, zero = 0.0f;
  size_t nw = (size_t)rows * cols;
  /* W row-major rows x cols = column-major cols x rows (lda cols) */
  float *t = w_sn; /* scratch for W v (rows floats) until w_sn is written */
  if (train) {
    MP_CHECK_CUBLAS(cublasSgemv(c->blas, CUBLAS_OP_N, cols, rows, &one, w, cols, u, 1, &zero, v, 1)); /* v = W^T u */
    dot_to(c, v, NULL, (size_t)cols, c->dsc, false);
    k_normalize<<<grid_for((size_t)cols, TPB), TPB, 0, c->st>>>(v, cols, c->dsc);
    MP_LAUNCHED();
    MP_CHECK_CUBLAS(cublasSgemv(c->blas, CUBLAS_OP_T, cols, rows, &one, w, cols, v, 1, &zero, t, 1)); /* t = W v */
    MP_CHECK_CUDA(cudaMemcpyAsync(u, t, (size_t)rows * sizeof(float), cudaMemcpyDefault, c->st));
    dot_to(c, u, NULL, (size_t)rows, c->dsc, false);
    k_normalize<<<grid_for((size_t)rows, TPB), TPB, 0, c->st>>>(u, rows, c->dsc);
    MP_LAUNCHED();
  } else {
    MP_CHECK_CUBLAS(cublasSgemv(c->blas, CUBLAS_OP_T, cols, rows, &one, w, cols, v, 1, &zero, t, 1)); /* t = W v */
  }
  dot_to(c, u, t, (size_t)rows, sigma, false); /* sigma = u . W v, left on the device */
  k_div_sigma<<<grid_for(nw, TPB), TPB, 0, c->st>>>(w, w_sn, nw, sigma);
  MP_LAUNCHED();
}

static void cu_sn_backward(mp_backend *b, const float *w, const float *dw_sn, int rows, int cols, const float *u,
                           const float *v, const double *sigma, float *dw) {
  ctx_t *c = C(b);
  size_t nw = (size_t)rows * cols;
  dot_to(c, dw_sn, w, nw, c->dsc, false);
  k_sn_bwd<<<grid_for(nw, TPB), TPB, 0, c->st>>>(dw_sn, u, v, cols, nw, sigma, c->dsc, dw);
  MP_LAUNCHED();
}

/* ---- patch input: the uint8 patches gathered into pinned memory, one copy to the device
 * (a quarter of the float bytes), augmentation and conversion in a kernel ---------------------- */

static void cu_patches(mp_backend *b, const uint8_t *const *src, const uint32_t *bits, int n, int P, int rot90,
                       float *dst) {
  ctx_t *c = C(b);
  if (n <= 0) return;
  size_t px = (size_t)P * P, need = patch_stage_bytes(n, P);
  if (need > c->stage_size) { /* grown once to the largest batch */
    wait_stream(c, c->st);
    if (c->stage) MP_CHECK_CUDA(cudaFreeHost(c->stage));
    if (c->dstage) {
      MP_CHECK_CUDA(cudaFree(c->dstage));
      dev_account(c, 0, c->stage_size);
    }
    MP_CHECK_CUDA(cudaMallocHost(&c->stage, need));
    MP_CHECK_CUDA(cudaMalloc(&c->dstage, need));
    c->stage_size = need;
    dev_account(c, need, 0);
  } else {
    wait_stream(c, c->st); /* the previous batch's copy has left the staging buffer */
  }
  patch_stage_fill(c->stage, src, bits, n, P);
  MP_CHECK_CUDA(cudaMemcpyAsync(c->dstage, c->stage, need, cudaMemcpyHostToDevice, c->st));
  const uint32_t *db;
  const uint8_t *du8;
  const unsigned char *dpres;
  patch_stage_parts(c->dstage, n, P, &db, &du8, &dpres);
  k_patches<<<grid_for((size_t)n * px, TPB), TPB, 0, c->st>>>(du8, db, dpres, n, P, rot90, dst);
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
  /* NCCL needs one GPU per rank: refuse (every rank alike) when two ranks share one (the same
   * device, or MIG slices of one: mp_gpu_key) */
  mp_gpu_key key, *all = (mp_gpu_key *)mp_malloc((size_t)K * sizeof key);
  mp_gpu_key_of(c->dev, &key);
  MP_CHECK_MPI(MPI_Allgather(&key, (int)sizeof key, MPI_BYTE, all, (int)sizeof key, MPI_BYTE, comm));
  int gpus, nshared, none;
  const int shared = mp_gpu_sharing(all, NULL, K, &gpus, &nshared, &none);
  mp_free(all);
  if (shared) {
    snprintf(err, errlen, "ranks share a GPU (the same device, or MIG slices of one; NCCL needs one GPU per rank): "
                          "gradients are reduced with MPI in host memory");
    return -1;
  }
  /* Rank 0's id and whether it got one, in one broadcast: where NCCL cannot even make an id
   * (no usable network interface, say), every rank falls back to MPI alike.  A failure inside
   * ncclCommInitRank stays fatal: it is collective and blocking, and a rank that fails there
   * cannot tell the others, which may be waiting in it. */
  struct {
    ncclUniqueId id;
    int rc;
  } boot;
  memset(&boot, 0, sizeof boot);
  if (rank == 0) boot.rc = (int)ncclGetUniqueId(&boot.id);
  MP_CHECK_MPI(MPI_Bcast(&boot, (int)sizeof boot, MPI_BYTE, 0, comm));
  if (boot.rc != (int)ncclSuccess) {
    snprintf(err, errlen, "NCCL could not make its unique id on rank 0 (%s): gradients are reduced with MPI in host memory",
             ncclGetErrorString((ncclResult_t)boot.rc));
    return -1;
  }
  MP_CHECK_NCCL(ncclCommInitRank(&c->nccl, K, boot.id, rank));
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
    algo_entry *e = cached(c, o, d, -1);
    return e ? e->what : "not run for this shape";
  }
  /* the backend as a whole (mp_backend_compute_json): the card, the library versions (cuDNN,
   * cuBLAS and NCCL encode theirs as major * 10000 + minor * 100 + patch, the driver and runtime
   * as major * 1000 + minor * 10), the precision, and the settings that change results */
  cudaDeviceProp p;
  MP_CHECK_CUDA(cudaGetDeviceProperties(&p, c->dev));
  int drv = 0, rt = 0, cb = 0;
  MP_CHECK_CUDA(cudaDriverGetVersion(&drv));
  MP_CHECK_CUDA(cudaRuntimeGetVersion(&rt));
  MP_CHECK_CUBLAS(cublasGetVersion(c->blas, &cb));
  const size_t dn = cudnnGetVersion();
  char nccl[24] = "none";
#if MP_HAVE_NCCL_LIB
  int nv = 0;
  if (ncclGetVersion(&nv) == ncclSuccess) /* NCCL before 2.9: major * 1000 + minor * 100 + patch */
    snprintf(nccl, sizeof nccl, "%d.%d.%d", nv < 10000 ? nv / 1000 : nv / 10000, nv < 10000 ? nv / 100 % 10 : nv / 100 % 100,
             nv % 100);
#endif
  char mem[32];
  snprintf(c->desc, sizeof c->desc,
           "cuda: %s (sm_%d%d, %d SMs, %s), driver %d.%d, CUDA runtime %d.%d, cuDNN %zu.%zu.%zu, cuBLAS %d.%d.%d, "
           "NCCL %s; %s; %s%s%s",
           p.name, p.major, p.minor, p.multiProcessorCount, mp_format_bytes(p.totalGlobalMem, mem, sizeof mem),
           drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10, dn / 10000, dn / 100 % 100, dn % 100, cb / 10000,
           cb / 100 % 100, cb % 100, nccl,
           c->bf16 ? "bf16 mixed precision" : c->tf32 ? "TF32 tensor cores" : "fp32 (no tensor cores)",
           c->deterministic ? "deterministic algorithms" : "nondeterministic algorithms allowed (MP_CUDA_DETERMINISTIC=0)",
           c->own_conv == 0 ? ", own convolution algorithms off" : c->own_conv > 0 ? ", an own convolution algorithm forced" : "",
           c->graph == 0 ? ", graph-API engines off" : c->graph == 1 ? ", graph-API engines forced" : "");
  return c->desc;
}

static size_t cu_device_peak(mp_backend *b) { return C(b)->dev_peak; }

static void cu_destroy(mp_backend *b) {
  ctx_t *c = C(b);
  wait_stream(c, c->st);
  wait_stream(c, c->comm_st);
#if MP_HAVE_NCCL_LIB
  if (c->has_nccl) MP_CHECK_NCCL(ncclCommDestroy(c->nccl));
#endif
  c->has_nccl = 0; /* destroyed: no later wait may poll it */
  for (int i = 0; i < c->ncache; i++) {
    algo_entry *e = &c->cache[i];
    bd_free(e->vp), bd_free(e->plan), bd_free(e->gcfg);
    bd_free_all(e->keep, MPG_KEEP);
  }
  MP_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->xd));
  MP_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->yd));
  MP_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->bnd));
  MP_CHECK_CUDNN(cudnnDestroyFilterDescriptor(c->wd));
  MP_CHECK_CUDNN(cudnnDestroyConvolutionDescriptor(c->cd));
  bd_free(c->devprop);
  bd_free(c->devprop_off);
  MP_CHECK_CUDNN(cudnnDestroy(c->dnn));
  MP_CHECK_CUBLAS(cublasDestroy(c->blas));
  void *dev[] = {c->ws, c->bfb[0], c->bfb[1], c->bfb[2], c->bfb[3], c->gp_norms, c->bn_tmp, c->wg_part, c->gm, c->dstage, c->rz, c->dsc};
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
    cuda_iface.conv2d_backward = cu_conv_bwd;
    cuda_iface.bn_forward_train = cu_bn_train;
    cuda_iface.bn_forward_eval = cu_bn_eval;
    cuda_iface.bn_backward = cu_bn_bwd;
    cuda_iface.bn_relu_forward_train = cu_bn_relu_train;
    cuda_iface.bn_relu_backward = cu_bn_relu_bwd;
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
    cuda_iface.mix_rows = cu_mix_rows;
    cuda_iface.gemm_nt = cu_gemm_nt;
    cuda_iface.l1_nt = cu_l1_nt;
    cuda_iface.resize_u8 = cu_resize_u8;
    cuda_iface.pool2d_forward = cu_pool2d;
    cuda_iface.copy2d = cu_copy2d;
    cuda_iface.device_peak = cu_device_peak;
    cuda_iface.comm_attach = cu_comm_attach;
    cuda_iface.allreduce_sum = cu_allreduce_sum;
    mp_backend_fill_ref_ops(&cuda_iface);
  }
  ctx_t *c = (ctx_t *)mp_calloc(1, sizeof *c);
  /* one GPU per node-local rank; whether ranks share GPUs is said by mp_dp (within a rank group:
   * NCCL refuses) and by mp_backend_gpu_plan (across a sweep's or an experiment's groups) */
  c->dev = mp_gpu_pick(ndev);
  c->tf32 = precision >= 1;
  c->bf16 = precision == 2;
  const int tf32 = c->tf32;
  const char *cap = getenv("MP_CUDA_WORKSPACE_MB");
  c->ws_cap = (size_t)(cap && atoi(cap) > 0 ? atoi(cap) : 512) << 20;
  const char *det = getenv("MP_CUDA_DETERMINISTIC");
  c->deterministic = !(det && !strcmp(det, "0"));
  const char *own = getenv("MP_CUDA_CONV_OWN");
  c->own_conv = -1;
  if (own && *own && strcmp(own, "auto")) {
    c->own_conv = !strcmp(own, "off") || !strcmp(own, "0") ? 0 : !strcmp(own, "wgrad3") ? OWN_WGRAD3 : !strcmp(own, "gemm") ? OWN_GEMM : -2;
    if (c->own_conv == -2) {
      snprintf(err, errlen, "MP_CUDA_CONV_OWN=%s: expected auto, off, wgrad3 or gemm", own);
      mp_free(c);
      return NULL;
    }
  }
  const char *graph = getenv("MP_CUDA_CONV_GRAPH");
  c->graph = -1;
  if (graph && *graph && strcmp(graph, "auto")) {
    c->graph = !strcmp(graph, "off") || !strcmp(graph, "0") ? 0 : !strcmp(graph, "force") ? 1 : -2;
    if (c->graph == -2) {
      snprintf(err, errlen, "MP_CUDA_CONV_GRAPH=%s: expected auto, off or force", graph);
      mp_free(c);
      return NULL;
    }
  }
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
  c->devprop = mpg_devprop_of(c->dnn);
  MP_CHECK_CUDNN(cudnnSetStream(c->dnn, c->st));
  MP_CHECK_CUBLAS(cublasCreate(&c->blas));
  MP_CHECK_CUBLAS(cublasSetStream(c->blas, c->st));
  MP_CHECK_CUBLAS(cublasSetMathMode(c->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  MP_CHECK_CUDNN(cudnnCreateTensorDescriptor(&c->xd));
  MP_CHECK_CUDNN(cudnnCreateTensorDescriptor(&c->yd));
  MP_CHECK_CUDNN(cudnnCreateTensorDescriptor(&c->bnd));
  MP_CHECK_CUDNN(cudnnCreateFilterDescriptor(&c->wd));
  MP_CHECK_CUDNN(cudnnCreateConvolutionDescriptor(&c->cd));
  MP_CHECK_CUDA(cudaMalloc((void **)&c->dsc, (2 + PARTIALS) * sizeof(double)));
  dev_account(c, (2 + PARTIALS) * sizeof(double), 0);
  MP_CHECK_CUDA(cudaMallocHost((void **)&c->hsc, 2 * sizeof(double)));
  mp_backend *b = (mp_backend *)mp_calloc(1, sizeof *b);
  b->iface = &cuda_iface;
  b->ctx = c;
  return b;
}
