/* mp_backend_strict — the `strict` nn backend: a host backend's arithmetic (cpu where the build
 * has oneDNN, else ref; its results bit for bit) under the cuda backend's memory contract,
 * enforced, so that CI (no GPU) catches host code that touches a device backend's memory without
 * the sync the contract asks for.
 *
 * On the cuda backend, kernels and library calls run asynchronously on one stream in CUDA
 * managed memory: host code that reads a result before `sync` reads whatever is there (a
 * race, silently wrong numbers), and host code that writes a buffer a queued kernel still
 * reads changes that kernel's input.  On ref and cpu every op returns finished, so such a
 * missing sync is invisible to every CPU test.  Here every block the backend hands out is its
 * own mapping, and each op that the cuda backend leaves running when it returns (every
 * kernel-like entry, the copies, the NCCL allreduce) leaves the blocks it writes closed to the
 * host (mprotect PROT_NONE) and those it only reads read-only, until the next entry of that
 * backend that waits on its stream (sync, upload, download, release, penalty_grad),
 * which opens them again.  A host access in between that a GPU would race on (any access to what
 * a queued op writes, a write to what it reads) faults; the handler names the block, the op
 * that left it so and where the access came from (a backtrace), and the process dies of the
 * SIGSEGV.  Ops themselves may use pending blocks (on a stream, ops run in order): each op opens
 * its operands, computes, and leaves them pending again.
 *
 * Granularity: a whole block (an allocation, e.g. a net's carved parameter buffer), not the
 * bytes an op touched, so host code that touches one part of a block while a queued kernel
 * writes another part is flagged although a GPU would not race there; nothing here does that.
 * A new block is open (nothing queued touches it yet).
 *
 * Entries as the cuda backend has them: the fused batch norm + ReLU (bn_relu_*: the host
 * backend's where it has them, else its batch norm then ReLU, the same bits as the unfused
 * pair), gemm_nt and l1_nt (the kNN score blocks on the device path; gemm_nt in double, l1_nt
 * with the cuda kernel's runs), and a
 * collective of its own: `strict` attaches to a communicator and reduces with MPI_Allreduce on
 * the blocks, pending afterwards (as NCCL on its stream), so the trainers' device path of mp_dp
 * (never run with two GPUs here) is exercised; `strict:mpi` declines (as cuda where ranks share a
 * GPU), so gradients go through host memory after a sync.  `strict` is a checking backend for
 * tests (tests/nn/test_strict.sh, test_backend), not listed among the ones a run would choose
 * (mp_backend_list). */
#define _GNU_SOURCE
#include "mp_backend.h"

#include <execinfo.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_build_config.h"
#include "mp_check.h"

enum { OPEN, READ, WRITE }; /* a block's pending state: queued ops only read it / write it */
typedef struct {
  char *p;        /* the mapping (page-aligned) */
  size_t len;     /* mapped bytes (whole pages) */
  size_t bytes;   /* asked for */
  int mode;       /* OPEN (read-write), READ (host may read: read-only), WRITE (closed) */
  const char *by; /* the op that left it so */
  const void *on; /* the backend whose op did (its stream: only its waits open the block) */
} blk;

typedef struct {
  mp_backend *host; /* the arithmetic: the host backend (cpu or ref) */
  int collective;  /* 1: comm_attach takes the communicator (strict), 0: declines (strict:mpi) */
  MPI_Comm comm;
  int attached;
  size_t cur, peak;
} sctx;

/* The blocks of every strict backend in the process (the fault handler looks them up): a
 * fixed table, so that the handler reads no memory that a concurrent realloc could move. */
enum { MAXBLK = 1 << 16 };
static blk blocks[MAXBLK];
static int nblk;
static struct sigaction previous;
static int handler_in;

static sctx *S(mp_backend *b) { return (sctx *)b->ctx; }

static blk *find(const void *p) {
  const char *c = (const char *)p;
  if (!c) return NULL;
  for (int i = 0; i < nblk; i++)
    if (blocks[i].p && c >= blocks[i].p && c < blocks[i].p + blocks[i].len) return &blocks[i];
  return NULL;
}

static void set_mode(blk *k, int mode) {
  if (k->mode == mode) return;
  int prot = mode == OPEN ? PROT_READ | PROT_WRITE : mode == READ ? PROT_READ : PROT_NONE;
  if (mprotect(k->p, k->len, prot) != 0)
    mp_fatal_at(MP_EXIT_FATAL, __FILE__, __LINE__, "strict backend: mprotect of a %zu-byte block failed", k->len);
  k->mode = mode;
}

/* A host access to a pending block: say which and where from, then die of the SIGSEGV (the
 * default action, re-raised by the faulting instruction); any other fault goes to the handler
 * that was there before (Open MPI's, a sanitizer's). */
static void on_fault(int sig, siginfo_t *si, void *uc) {
  blk *k = handler_in ? NULL : find(si->si_addr);
  if (k && k->mode != OPEN) {
    handler_in = 1;
    char m[600];
    int l = snprintf(m, sizeof m,
                     "strict backend: host code %s backend memory that a queued op %s, without a sync: byte %zu of a "
                     "%zu-byte block, left so by %s (on a GPU this access races with the kernel: add "
                     "mp_backend_sync, or move the data with upload/download). Where:\n",
                     k->mode == READ ? "wrote" : "touched", k->mode == READ ? "still reads" : "writes",
                     (size_t)((const char *)si->si_addr - k->p), k->bytes, k->by);
    if (l > 0) {
      ssize_t w = write(2, m, (size_t)l < sizeof m ? (size_t)l : sizeof m - 1);
      (void)w;
    }
    void *bt[48];
    backtrace_symbols_fd(bt, backtrace(bt, 48), 2);
    signal(SIGSEGV, SIG_DFL);
    return;
  }
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction) {
      previous.sa_sigaction(sig, si, uc);
      return;
    }
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
    return;
  }
  signal(SIGSEGV, SIG_DFL);
}

/* ---- the pending set ------------------------------------------------------------------------
 * An op's operands: its inputs (read) and outputs (written; an operand both read and written is
 * an output); pointers outside the blocks (host memory, NULL operands) are ignored.  Before the
 * op every operand is opened for it (queued ops run in order: the op may use what earlier ones
 * left pending); after it, an output is WRITE (closed to the host), an input at least READ (the
 * host may still read it; a write would change what the queued op reads). */
typedef struct {
  blk *k;
  int mode;
  const char *by;
  int wrote;
} was;
enum { MAXOPS = 12 };
static int open_ops(const void *const *in, int nin, const void *const *out, int nout, was *w) {
  int n = 0;
  for (int i = 0; i < nin + nout; i++) {
    blk *k = find(i < nin ? in[i] : out[i - nin]);
    if (!k) continue;
    int j = 0;
    while (j < n && w[j].k != k) j++;
    if (j == n) {
      MP_CHECK(n < MAXOPS, "strict backend: more than %d operands", MAXOPS);
      w[n++] = (was){k, k->mode, k->by, 0};
    }
    w[j].wrote |= i >= nin;
    set_mode(k, OPEN);
  }
  return n;
}
static void pend_ops(const void *on, was *w, int n, const char *by) {
  for (int j = 0; j < n; j++) {
    blk *k = w[j].k;
    if (w[j].wrote || w[j].mode == WRITE) {
      set_mode(k, WRITE);
      k->by = w[j].wrote ? by : w[j].by;
    } else {
      set_mode(k, READ);
      k->by = w[j].mode == READ ? w[j].by : by;
    }
    k->on = on;
  }
}
/* a wait on backend on's stream: every block its ops left pending is open */
static void wait_all(const void *on) {
  for (int i = 0; i < nblk; i++)
    if (blocks[i].p && blocks[i].mode != OPEN && blocks[i].on == on) {
      set_mode(&blocks[i], OPEN);
      blocks[i].by = NULL, blocks[i].on = NULL;
    }
}

/* OPS((inputs...), (outputs...)) before the op ((NULL) for none), PEND(name) after it */
#define MP_UNPACK(...) __VA_ARGS__
#define OPS(ins, outs)                                                                        \
  const void *in_[] = {MP_UNPACK ins}, *out_[] = {MP_UNPACK outs};                            \
  was was_[MAXOPS];                                                                           \
  const int nops_ = open_ops(in_, (int)(sizeof in_ / sizeof *in_), out_, (int)(sizeof out_ / sizeof *out_), was_)
#define PEND(name) pend_ops(b, was_, nops_, name)
#define HOST(b) (S(b)->host)
#define HI(b) (S(b)->host->iface)

/* ---- memory ---------------------------------------------------------------------------------- */
static void *st_alloc(mp_backend *b, size_t bytes) {
  sctx *s = S(b);
  size_t pg = (size_t)sysconf(_SC_PAGESIZE), len = ((bytes ? bytes : 1) + pg - 1) / pg * pg;
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) mp_fatal_at(MP_EXIT_ALLOC, __FILE__, __LINE__, "strict backend: mmap of %zu bytes failed", len);
  /* what a block holds before anything writes it is undefined (cudaMallocManaged promises
   * nothing either): all bits set, a NaN in every float, so that a read of it shows */
  memset(p, 0xff, bytes);
  int i = 0;
  while (i < nblk && blocks[i].p) i++;
  MP_CHECK(i < MAXBLK, "strict backend: more than %d blocks", MAXBLK);
  blocks[i] = (blk){(char *)p, len, bytes, OPEN, NULL, NULL};
  if (i == nblk) nblk++;
  s->cur += bytes;
  if (s->cur > s->peak) s->peak = s->cur;
  return p;
}
static void st_release(mp_backend *b, void *p) {
  if (!p) return;
  wait_all(b); /* cuda: waits for the stream before cudaFree */
  blk *k = find(p);
  MP_CHECK(k && k->p == (char *)p, "strict backend: release of %p, which it did not allocate", p);
  S(b)->cur -= k->bytes;
  munmap(k->p, k->len);
  k->p = NULL;
  while (nblk && !blocks[nblk - 1].p) nblk--;
}
static void st_upload(mp_backend *b, void *dst, const void *host, size_t bytes) {
  wait_all(b); /* cuda: a copy on the stream, waited for (the host buffer may be reused at once) */
  HI(b)->upload(HOST(b), dst, host, bytes);
}
static void st_download(mp_backend *b, void *host, const void *src, size_t bytes) {
  wait_all(b);
  HI(b)->download(HOST(b), host, src, bytes);
}
static void st_sync(mp_backend *b) { wait_all(b); }
static void st_copy(mp_backend *b, float *dst, const float *src, size_t n) {
  OPS((src), (dst));
  HI(b)->copy(HOST(b), dst, src, n);
  PEND("copy");
}
static void st_zero(mp_backend *b, void *dst, size_t bytes) {
  OPS((NULL), (dst));
  HI(b)->zero(HOST(b), dst, bytes);
  PEND("zero");
}
static void st_axpy(mp_backend *b, float a, const float *x, float *y, size_t n) {
  OPS((x), (y));
  HI(b)->axpy(HOST(b), a, x, y, n);
  PEND("axpy");
}
static void st_scale(mp_backend *b, float a, float *x, size_t n) {
  OPS((NULL), (x));
  HI(b)->scale(HOST(b), a, x, n);
  PEND("scale");
}

/* ---- ops ---------------------------------------------------------------------------------------- */
static void st_conv_fwd(mp_backend *b, const mp_conv_desc *d, const float *x, const float *w, const float *bias,
                        float *y) {
  OPS((x, w, bias), (y));
  HI(b)->conv2d_forward(HOST(b), d, x, w, bias, y);
  PEND("conv2d_forward");
}
static void st_conv_bwd_data(mp_backend *b, const mp_conv_desc *d, const float *dy, const float *w, float *dx) {
  OPS((dy, w), (dx));
  HI(b)->conv2d_backward_data(HOST(b), d, dy, w, dx);
  PEND("conv2d_backward_data");
}
static void st_conv_bwd_weights(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, float *dw,
                                float *db) {
  OPS((x, dy), (dw, db));
  HI(b)->conv2d_backward_weights(HOST(b), d, x, dy, dw, db);
  PEND("conv2d_backward_weights");
}
static void st_conv_bwd(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, const float *w,
                        float *dx, float *dw, float *db) {
  OPS((x, dy, w), (dx, dw, db));
  HI(b)->conv2d_backward(HOST(b), d, x, dy, w, dx, dw, db);
  PEND("conv2d_backward");
}
static void st_bn_train(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                        float *y, float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
  OPS((x, gamma, beta), (y, save_mean, save_invstd, run_mean, run_var));
  HI(b)->bn_forward_train(HOST(b), d, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
  PEND("bn_forward_train");
}
static void st_bn_eval(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                       const float *run_mean, const float *run_var, float *y) {
  OPS((x, gamma, beta, run_mean, run_var), (y));
  HI(b)->bn_forward_eval(HOST(b), d, x, gamma, beta, run_mean, run_var, y);
  PEND("bn_forward_eval");
}
static void st_bn_bwd(mp_backend *b, const mp_bn_desc *d, const float *x, const float *dy, const float *gamma,
                      const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta) {
  OPS((x, dy, gamma, save_mean, save_invstd), (dx, dgamma, dbeta));
  HI(b)->bn_backward(HOST(b), d, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
  PEND("bn_backward");
}
/* the fused pair as the cuda backend has it: ref's batch norm, then ReLU in place (the bits of
 * the unfused pair) */
static void st_bn_relu_train(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma,
                             const float *beta, float *y, float *save_mean, float *save_invstd, float *run_mean,
                             float *run_var) {
  OPS((x, gamma, beta), (y, save_mean, save_invstd, run_mean, run_var));
  if (HI(b)->bn_relu_forward_train) {
    HI(b)->bn_relu_forward_train(HOST(b), d, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
    PEND("bn_relu_forward_train");
    return;
  }
  HI(b)->bn_forward_train(HOST(b), d, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
  size_t n = (size_t)d->n * d->c * d->hw;
  for (size_t i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : 0.0f;
  PEND("bn_relu_forward_train");
}
/* dy masked by the fused output's sign (ReLU's backward), then batch norm's backward */
static void st_bn_relu_bwd(mp_backend *b, const mp_bn_desc *d, const float *x, const float *y, const float *dy,
                           const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                           float *dgamma, float *dbeta) {
  OPS((x, y, dy, gamma, save_mean, save_invstd), (dx, dgamma, dbeta));
  if (HI(b)->bn_relu_backward) {
    HI(b)->bn_relu_backward(HOST(b), d, x, y, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
    PEND("bn_relu_backward");
    return;
  }
  size_t n = (size_t)d->n * d->c * d->hw;
  float *g = mp_malloc((n ? n : 1) * sizeof *g);
  for (size_t i = 0; i < n; i++) g[i] = y[i] > 0 ? dy[i] : 0.0f;
  HI(b)->bn_backward(HOST(b), d, x, g, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
  mp_free(g);
  PEND("bn_relu_backward");
}
static void st_act_fwd(mp_backend *b, int kind, float slope, const float *x, float *y, size_t n) {
  OPS((x), (y));
  HI(b)->act_forward(HOST(b), kind, slope, x, y, n);
  PEND("act_forward");
}
static void st_act_bwd(mp_backend *b, int kind, float slope, const float *x, const float *y, const float *dy, float *dx,
                       size_t n) {
  OPS((x, y, dy), (dx));
  HI(b)->act_backward(HOST(b), kind, slope, x, y, dy, dx, n);
  PEND("act_backward");
}
static void st_pool_fwd(mp_backend *b, const float *x, float *y, unsigned char *am, int n, int c, int h, int w) {
  OPS((x), (y, am));
  HI(b)->maxpool2_forward(HOST(b), x, y, am, n, c, h, w);
  PEND("maxpool2_forward");
}
static void st_pool_bwd(mp_backend *b, const float *dy, const unsigned char *am, float *dx, int n, int c, int h,
                        int w) {
  OPS((dy, am), (dx));
  HI(b)->maxpool2_backward(HOST(b), dy, am, dx, n, c, h, w);
  PEND("maxpool2_backward");
}
static void st_lin_fwd(mp_backend *b, const float *x, const float *w, const float *bias, float *y, int n, int in,
                       int out) {
  OPS((x, w, bias), (y));
  HI(b)->linear_forward(HOST(b), x, w, bias, y, n, in, out);
  PEND("linear_forward");
}
static void st_lin_bwd(mp_backend *b, const float *x, const float *w, const float *dy, float *dx, float *dw, float *db,
                       int n, int in, int out) {
  OPS((x, w, dy), (dx, dw, db));
  HI(b)->linear_backward(HOST(b), x, w, dy, dx, dw, db, n, in, out);
  PEND("linear_backward");
}
static void st_drop_fwd(mp_backend *b, const float *x, float *y, unsigned char *mask, size_t n, float p, uint64_t seed,
                        uint64_t index, uint64_t e0) {
  OPS((x), (y, mask));
  HI(b)->dropout_forward(HOST(b), x, y, mask, n, p, seed, index, e0);
  PEND("dropout_forward");
}
static void st_drop_bwd(mp_backend *b, const float *dy, const unsigned char *mask, float *dx, size_t n, float p) {
  OPS((dy, mask), (dx));
  HI(b)->dropout_backward(HOST(b), dy, mask, dx, n, p);
  PEND("dropout_backward");
}
static void st_adam(mp_backend *b, float *param, const float *grad, float *m, float *v, size_t n, float lr, float b1,
                    float b2, float eps, long step) {
  OPS((grad), (param, m, v));
  HI(b)->adam_step(HOST(b), param, grad, m, v, n, lr, b1, b2, eps, step);
  PEND("adam_step");
}
/* cuda: kernels and a device-to-device sigma, nothing waited for */
static void st_sn_fwd(mp_backend *b, const float *w, int rows, int cols, float *u, float *v, float *w_sn, int train,
                      double *sigma) {
  OPS((w), (u, v, w_sn, sigma));
  HI(b)->sn_forward(HOST(b), w, rows, cols, u, v, w_sn, train, sigma);
  PEND("sn_forward");
}
static void st_sn_bwd(mp_backend *b, const float *w, const float *dw_sn, int rows, int cols, const float *u,
                      const float *v, const double *sigma, float *dw) {
  OPS((w, dw_sn, u, v, sigma), (dw));
  HI(b)->sn_backward(HOST(b), w, dw_sn, rows, cols, u, v, sigma, dw);
  PEND("sn_backward");
}
/* cuda: kernels, then a wait for the norms (host memory) */
static double st_penalty(mp_backend *b, const float *g, int n, size_t m, float lambda, float *v, double *norms) {
  wait_all(b);
  return HI(b)->penalty_grad(HOST(b), g, n, m, lambda, v, norms);
}
static void st_mix_rows(mp_backend *b, const float *a, const float *bb, const float *e, int n, size_t m, float *out) {
  OPS((a, bb), (out)); /* e: host memory, read at the call (cuda: in the launch parameters) */
  HI(b)->mix_rows(HOST(b), a, bb, e, n, m, out);
  PEND("mix_rows");
}
/* cuda: the bytes copied up from pageable memory (a wait on the stream first), then a kernel */
static void st_resize_u8(mp_backend *b, const uint8_t *px, int n, int side, int S, float *dst) {
  wait_all(b);
  OPS((NULL), (dst)); /* px: host memory, read at the call */
  mp_ref_resize_u8(px, n, side, S, dst);
  PEND("resize_u8");
}
static void st_pool2d(mp_backend *b, int kind, const float *x, float *y, int n, int c, int h, int w, int k, int stride,
                      int pad) {
  OPS((x), (y));
  mp_ref_pool2d_forward(kind, x, y, n, c, h, w, k, stride, pad);
  PEND("pool2d_forward");
}
static void st_copy2d(mp_backend *b, float *dst, size_t dpitch, const float *src, size_t spitch, size_t width,
                      size_t rows) {
  OPS((src), (dst));
  mp_ref_copy2d(dst, dpitch, src, spitch, width, rows);
  PEND("copy2d");
}
/* C = A B^T (row-major), double accumulation rounded once */
static void st_gemm_nt(mp_backend *b, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float *C,
                       int ldc) {
  OPS((A, B), (C));
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double acc = 0;
      for (int e = 0; e < k; e++) acc += (double)A[(size_t)i * lda + e] * B[(size_t)j * ldb + e];
      C[(size_t)i * ldc + j] = (float)acc;
    }
  PEND("gemm_nt");
}
/* C[i][j] = sum_e |A[i][e] - B[j][e]| in runs of 32 terms (float), the runs added in double:
 * the cuda kernel's arithmetic */
static void st_l1_nt(mp_backend *b, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float *C,
                     int ldc) {
  OPS((A, B), (C));
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double acc = 0;
      for (int e0 = 0; e0 < k; e0 += 32) {
        float run = 0;
        for (int e = e0; e < k && e < e0 + 32; e++) run += fabsf(A[(size_t)i * lda + e] - B[(size_t)j * ldb + e]);
        acc += run;
      }
      C[(size_t)i * ldc + j] = (float)acc;
    }
  PEND("l1_nt");
}
/* cuda: waits for the previous batch's staging, copies the host patches, then a kernel */
static void st_patches(mp_backend *b, const uint8_t *const *src, const uint32_t *bits, int n, int P, int rot90,
                       float *dst) {
  wait_all(b);
  OPS((NULL), (dst));
  HI(b)->patches_to_input(HOST(b), src, bits, n, P, rot90, dst);
  PEND("patches_to_input");
}

/* ---- the collective ------------------------------------------------------------------------------ */
static int st_attach(mp_backend *b, const void *mpi_comm, char *err, size_t errlen) {
  sctx *s = S(b);
  if (!s->collective) {
    snprintf(err, errlen, "strict:mpi has no collective of its own: gradients are reduced with MPI in host memory");
    return -1;
  }
  s->comm = *(const MPI_Comm *)mpi_comm;
  s->attached = 1;
  return 0;
}
/* as NCCL on its stream: in place, pending afterwards (the compute stream waits for it) */
static void st_allreduce(mp_backend *b, float *buf, size_t n) {
  sctx *s = S(b);
  MP_CHECK(s->attached, "strict allreduce without an attached communicator");
  MP_CHECK(n <= (size_t)INT_MAX, "allreduce of %zu floats", n);
  OPS((NULL), (buf));
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, s->comm));
  PEND("allreduce_sum");
}

static const char *st_describe(mp_backend *b, const char *op, const mp_conv_desc *d) {
  if (op) return HI(b)->describe(HOST(b), op, d);
  static char whole[640];
  snprintf(whole, sizeof whole, "%s: backend memory closed to host code from an asynchronous op to the next wait (the "
                                "cuda backend's contract, checked) over %s",
           S(b)->collective ? "strict" : "strict:mpi", HI(b)->describe(HOST(b), NULL, NULL));
  return whole;
}
static size_t st_peak(mp_backend *b) { return S(b)->peak; }

static void st_destroy(mp_backend *b) {
  sctx *s = S(b);
  wait_all(b);
  mp_backend_free(s->host);
  mp_free(s);
  mp_free(b);
}

static const mp_backend_i strict_iface = {
    .name = "strict",
    .destroy = st_destroy,
    .alloc = st_alloc,
    .release = st_release,
    .upload = st_upload,
    .download = st_download,
    .conv2d_forward = st_conv_fwd,
    .conv2d_backward_data = st_conv_bwd_data,
    .conv2d_backward_weights = st_conv_bwd_weights,
    .conv2d_backward = st_conv_bwd,
    .bn_forward_train = st_bn_train,
    .bn_forward_eval = st_bn_eval,
    .bn_backward = st_bn_bwd,
    .bn_relu_forward_train = st_bn_relu_train,
    .bn_relu_backward = st_bn_relu_bwd,
    .act_forward = st_act_fwd,
    .act_backward = st_act_bwd,
    .maxpool2_forward = st_pool_fwd,
    .maxpool2_backward = st_pool_bwd,
    .linear_forward = st_lin_fwd,
    .linear_backward = st_lin_bwd,
    .dropout_forward = st_drop_fwd,
    .dropout_backward = st_drop_bwd,
    .adam_step = st_adam,
    .describe = st_describe,
    .sync = st_sync,
    .copy = st_copy,
    .zero = st_zero,
    .axpy = st_axpy,
    .scale = st_scale,
    .sn_forward = st_sn_fwd,
    .sn_backward = st_sn_bwd,
    .penalty_grad = st_penalty,
    .mix_rows = st_mix_rows,
    .gemm_nt = st_gemm_nt,
    .l1_nt = st_l1_nt,
    .resize_u8 = st_resize_u8,
    .pool2d_forward = st_pool2d,
    .copy2d = st_copy2d,
    .patches_to_input = st_patches,
    .comm_attach = st_attach,
    .allreduce_sum = st_allreduce,
    .device_peak = st_peak,
};

mp_backend *mp_backend_strict_create(int collective, char *err, size_t errlen) {
  mp_backend *host = mp_backend_create(MP_HAVE_DNNL ? "cpu" : "ref", err, errlen);
  if (!host) return NULL;
  static int installed;
  if (!installed) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    MP_CHECK(sigaction(SIGSEGV, &sa, &previous) == 0, "strict backend: cannot install its SIGSEGV handler");
    installed = 1;
  }
  sctx *s = mp_calloc(1, sizeof *s);
  s->host = host;
  s->collective = collective;
  mp_backend *b = mp_calloc(1, sizeof *b);
  b->iface = &strict_iface;
  b->ctx = s;
  return b;
}
