/* mp_backend_dnnl — the `cpu` backend on oneDNN's C API.
 *
 * Each (op, shape) gets its primitive once, on first use, and keeps it (small caches
 * keyed by the op and the shape); later calls only wrap the caller's buffers in memory
 * objects and execute.  Model code holds plain NCHW / OIHW tensors.
 *
 *   convolutions   oneDNN picks its layouts (format_tag_any: blocked nChw16c-style on
 *                  AVX-512, direct JIT kernels); arguments whose chosen layout differs from
 *                  the plain one are reordered in and out through shared scratch buffers.
 *                  On plain NCHW oneDNN falls back to im2col + GEMM, 2-4x slower.
 *   batch norm     oneDNN batch_normalization on NCHW (scale and shift; the running
 *                  statistics are updated here from its batch mean and biased variance)
 *   activations    oneDNN eltwise
 *   linear         dnnl_sgemm (row-major), bias and its gradient in C
 *   max-pool 2x2   our own loop, OpenMP over planes (the argmax format is the net's)
 *   dropout, Adam  the ref kernels
 */
#include "mp_build_config.h"
#include "mp_backend.h"

#include <dnnl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"

#define MP_CHECK_DNNL(stmt)                                                                 \
  do {                                                                                      \
    dnnl_status_t mp_dnnl_rc_ = (stmt);                                                     \
    if (mp_dnnl_rc_ != dnnl_success)                                                        \
      mp_fatal_at(MP_EXIT_DNNL, __FILE__, __LINE__, "MP_CHECK_DNNL(%s) failed: status %d", #stmt, \
                  (int)mp_dnnl_rc_);                                                        \
  } while (0)

enum { OP_FWD, OP_BWD_DATA, OP_BWD_WEIGHTS, OP_FWD_NOBIAS, OP_BWD_WEIGHTS_NOBIAS };

/* A convolution argument whose layout oneDNN chose differently from the plain one. */
typedef struct {
  bool reorder;                /* plain != chosen */
  dnnl_memory_desc_t plain, md; /* the user's and the primitive's descriptors */
  dnnl_primitive_t to, from;    /* plain -> chosen (inputs), chosen -> plain (outputs) */
} arg_layout;

enum { A_SRC, A_WEI, A_DST, A_N }; /* argument slots (diff_* for the backward ops) */

typedef struct {
  int op;
  mp_conv_desc d;
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t prim;
  arg_layout arg[A_N];
} cached;

typedef struct {
  int fwd;
  mp_bn_desc d;
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t prim;
} cached_bn;

typedef struct {
  int fwd, kind;
  float slope;
  size_t n;
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t prim;
} cached_elt;

typedef struct {
  dnnl_engine_t eng;
  dnnl_stream_t stream;
  cached *cache;
  int n, cap;
  cached_elt *elt;
  int nelt, capelt;
  cached_bn *bn;
  int nbn, capbn;
  void *scr[A_N];   /* reorder scratch per argument slot, shared by every convolution */
  size_t scr_n[A_N];
  /* conv_bwd: the scratch of a slot may be reused by the next primitive while it holds
   * the same caller buffer (scr_src) in the same layout (scr_md); only set and cleared
   * inside one conv_bwd call, so no later write to the caller's buffer can be missed */
  bool scr_valid[A_N];
  const void *scr_src[A_N];
  dnnl_memory_desc_t scr_md[A_N];
  float *stat;      /* batch norm: variance (c floats), grown on demand */
  int stat_n;
  /* one user-managed scratchpad for every primitive (oneDNN's default allocates and
   * frees one per execution: page faults on every call for the big convolutions) */
  dnnl_primitive_attr_t attr;
  void *spad;
  size_t spad_n;
} dnnl_ctx;

static void md4(dnnl_memory_desc_t *md, int a, int b, int c, int d, dnnl_format_tag_t tag) {
  dnnl_dims_t dims = {a, b, c, d};
  MP_CHECK_DNNL(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag));
}

static dnnl_primitive_t reorder_prim(dnnl_ctx *c, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to) {
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t p;
  MP_CHECK_DNNL(dnnl_reorder_primitive_desc_create(&pd, from, c->eng, to, c->eng, NULL));
  MP_CHECK_DNNL(dnnl_primitive_create(&p, pd));
  dnnl_primitive_desc_destroy(pd);
  return p;
}

/* Record argument slot `slot`: the plain layout and the one the primitive chose. */
static void layout(dnnl_ctx *c, cached *e, int slot, const dnnl_memory_desc_t *plain, dnnl_query_t q, bool input) {
  arg_layout *a = &e->arg[slot];
  a->plain = *plain;
  a->md = *dnnl_primitive_desc_query_md(e->pd, q, 0);
  a->reorder = !dnnl_memory_desc_equal(&a->plain, &a->md);
  if (!a->reorder) return;
  if (input)
    a->to = reorder_prim(c, &a->plain, &a->md);
  else
    a->from = reorder_prim(c, &a->md, &a->plain);
  size_t need = dnnl_memory_desc_get_size(&a->md);
  if (need > c->scr_n[slot]) {
    c->scr_valid[slot] = false; /* a conv_bwd in flight must reorder again */
    mp_free(c->scr[slot]);
    c->scr[slot] = mp_malloc(need);
    c->scr_n[slot] = need;
  }
}

/* The primitive for (op, d), created on first use, with oneDNN's choice of layouts. */
static cached *get(dnnl_ctx *c, int op, const mp_conv_desc *d) {
  for (int i = 0; i < c->n; i++)
    if (c->cache[i].op == op && !memcmp(&c->cache[i].d, d, sizeof *d)) return &c->cache[i];
  dnnl_memory_desc_t src, wei, bia, dst, asrc, awei, adst;
  md4(&src, d->n, d->c, d->h, d->w, dnnl_nchw);
  md4(&wei, d->k, d->c, d->r, d->s, dnnl_oihw);
  md4(&dst, d->n, d->k, d->p, d->q, dnnl_nchw);
  md4(&asrc, d->n, d->c, d->h, d->w, dnnl_format_tag_any);
  md4(&awei, d->k, d->c, d->r, d->s, dnnl_format_tag_any);
  md4(&adst, d->n, d->k, d->p, d->q, dnnl_format_tag_any);
  dnnl_dims_t bdims = {d->k};
  MP_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&bia, 1, bdims, dnnl_f32, dnnl_a));
  dnnl_dims_t strides = {d->stride, d->stride}, pad = {d->pad, d->pad_w};
  /* right padding so that the output size is exactly p x q */
  dnnl_dims_t padr = {(d->p - 1) * d->stride + d->r - d->h - d->pad, (d->q - 1) * d->stride + d->s - d->w - d->pad_w};
  dnnl_convolution_desc_t fwd_desc;
  int with_bias = op == OP_FWD || op == OP_BWD_WEIGHTS;
  MP_CHECK_DNNL(dnnl_convolution_forward_desc_init(&fwd_desc, dnnl_forward_training, dnnl_convolution_direct, &asrc,
                                                   &awei, with_bias ? &bia : NULL, &adst, strides, pad, padr));
  dnnl_primitive_desc_t fwd_pd;
  MP_CHECK_DNNL(dnnl_primitive_desc_create(&fwd_pd, &fwd_desc, c->attr, c->eng, NULL));
  dnnl_primitive_desc_t pd = fwd_pd;
  if (op == OP_BWD_DATA) {
    dnnl_convolution_desc_t bd;
    MP_CHECK_DNNL(dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &asrc, &awei, &adst, strides,
                                                           pad, padr));
    MP_CHECK_DNNL(dnnl_primitive_desc_create(&pd, &bd, c->attr, c->eng, fwd_pd));
    dnnl_primitive_desc_destroy(fwd_pd);
  } else if (op == OP_BWD_WEIGHTS || op == OP_BWD_WEIGHTS_NOBIAS) {
    dnnl_convolution_desc_t bd;
    MP_CHECK_DNNL(dnnl_convolution_backward_weights_desc_init(
        &bd, dnnl_convolution_direct, &asrc, &awei, op == OP_BWD_WEIGHTS ? &bia : NULL, &adst, strides, pad, padr));
    MP_CHECK_DNNL(dnnl_primitive_desc_create(&pd, &bd, c->attr, c->eng, fwd_pd));
    dnnl_primitive_desc_destroy(fwd_pd);
  }
  if (c->n == c->cap) c->cache = mp_realloc(c->cache, (size_t)(c->cap = c->cap ? 2 * c->cap : 16) * sizeof *c->cache);
  cached *e = &c->cache[c->n++];
  memset(e, 0, sizeof *e);
  e->op = op;
  e->d = *d;
  e->pd = pd;
  MP_CHECK_DNNL(dnnl_primitive_create(&e->prim, pd));
  switch (op) {
  case OP_BWD_DATA:
    layout(c, e, A_DST, &dst, dnnl_query_diff_dst_md, true);
    layout(c, e, A_WEI, &wei, dnnl_query_weights_md, true);
    layout(c, e, A_SRC, &src, dnnl_query_diff_src_md, false);
    break;
  case OP_BWD_WEIGHTS:
  case OP_BWD_WEIGHTS_NOBIAS:
    layout(c, e, A_SRC, &src, dnnl_query_src_md, true);
    layout(c, e, A_DST, &dst, dnnl_query_diff_dst_md, true);
    layout(c, e, A_WEI, &wei, dnnl_query_diff_weights_md, false);
    break;
  default:
    layout(c, e, A_SRC, &src, dnnl_query_src_md, true);
    layout(c, e, A_WEI, &wei, dnnl_query_weights_md, true);
    layout(c, e, A_DST, &dst, dnnl_query_dst_md, false);
  }
  return e;
}

static dnnl_memory_t mem(dnnl_ctx *c, const dnnl_memory_desc_t *md, const void *p) {
  dnnl_memory_t m;
  MP_CHECK_DNNL(dnnl_memory_create(&m, md, c->eng, (void *)p));
  return m;
}

/* Execute and wait; with pd (a primitive made with c->attr) its scratchpad is the
 * shared buffer, grown to the largest need. */
static void exec_pd(dnnl_ctx *c, dnnl_primitive_t p, dnnl_primitive_desc_t pd, int nargs, dnnl_exec_arg_t *args) {
  dnnl_exec_arg_t all[12];
  MP_CHECK(nargs < 12, "too many primitive arguments");
  memcpy(all, args, (size_t)nargs * sizeof *args);
  dnnl_memory_t sp = NULL;
  if (pd) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t need = md ? dnnl_memory_desc_get_size(md) : 0;
    if (need) {
      if (need > c->spad_n) {
        mp_free(c->spad);
        c->spad = mp_malloc(need);
        c->spad_n = need;
      }
      sp = mem(c, md, c->spad);
      all[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, sp};
    }
  }
  MP_CHECK_DNNL(dnnl_primitive_execute(p, c->stream, nargs, all));
  MP_CHECK_DNNL(dnnl_stream_wait(c->stream));
  if (sp) dnnl_memory_destroy(sp);
}

static void exec(dnnl_ctx *c, dnnl_primitive_t p, int nargs, dnnl_exec_arg_t *args) { exec_pd(c, p, NULL, nargs, args); }

/* The memory the primitive reads for an input slot: the caller's buffer, or the scratch
 * it was reordered into. */
static dnnl_memory_t conv_in(dnnl_ctx *c, cached *e, int slot, const void *p) {
  arg_layout *a = &e->arg[slot];
  if (!a->reorder) return mem(c, &a->md, p);
  if (c->scr_valid[slot] && c->scr_src[slot] == p && dnnl_memory_desc_equal(&c->scr_md[slot], &a->md))
    return mem(c, &a->md, c->scr[slot]); /* still holds this buffer in this layout (see conv_bwd) */
  c->scr_valid[slot] = false;
  dnnl_memory_t user = mem(c, &a->plain, p), m = mem(c, &a->md, c->scr[slot]);
  dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, m}};
  exec(c, a->to, 2, r);
  dnnl_memory_destroy(user);
  return m;
}

static dnnl_memory_t conv_out(dnnl_ctx *c, cached *e, int slot, void *p) {
  arg_layout *a = &e->arg[slot];
  return mem(c, &a->md, a->reorder ? c->scr[slot] : p);
}

/* Execute; reorder the output slot back to the caller's buffer; free the memory objects. */
static void conv_run(dnnl_ctx *c, cached *e, int nargs, dnnl_exec_arg_t *args, int out_slot, void *out) {
  exec_pd(c, e->prim, e->pd, nargs, args);
  arg_layout *a = &e->arg[out_slot];
  if (a->reorder) {
    dnnl_memory_t from = mem(c, &a->md, c->scr[out_slot]), user = mem(c, &a->plain, out);
    dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, user}};
    exec(c, a->from, 2, r);
    dnnl_memory_destroy(from);
    dnnl_memory_destroy(user);
  }
  for (int i = 0; i < nargs; i++) dnnl_memory_destroy(args[i].memory);
}

static dnnl_memory_t bias_mem(dnnl_ctx *c, int k, const void *p) {
  dnnl_memory_desc_t md;
  dnnl_dims_t dims = {k};
  MP_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a));
  return mem(c, &md, p);
}

static void conv_fwd(mp_backend *b, const mp_conv_desc *d, const float *x, const float *w, const float *bias, float *y) {
  dnnl_ctx *c = b->ctx;
  cached *e = get(c, bias ? OP_FWD : OP_FWD_NOBIAS, d);
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, conv_in(c, e, A_SRC, x)},
                          {DNNL_ARG_WEIGHTS, conv_in(c, e, A_WEI, w)},
                          {DNNL_ARG_DST, conv_out(c, e, A_DST, y)},
                          {DNNL_ARG_BIAS, NULL}};
  int n = 3;
  if (bias) a[n++].memory = bias_mem(c, d->k, bias);
  conv_run(c, e, n, a, A_DST, y);
}

static void conv_bwd_data(mp_backend *b, const mp_conv_desc *d, const float *dy, const float *w, float *dx) {
  dnnl_ctx *c = b->ctx;
  cached *e = get(c, OP_BWD_DATA, d);
  dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, conv_in(c, e, A_DST, dy)},
                          {DNNL_ARG_WEIGHTS, conv_in(c, e, A_WEI, w)},
                          {DNNL_ARG_DIFF_SRC, conv_out(c, e, A_SRC, dx)}};
  conv_run(c, e, 3, a, A_SRC, dx);
}

static void conv_bwd_weights(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, float *dw,
                             float *db) {
  dnnl_ctx *c = b->ctx;
  cached *e = get(c, db ? OP_BWD_WEIGHTS : OP_BWD_WEIGHTS_NOBIAS, d);
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, conv_in(c, e, A_SRC, x)},
                          {DNNL_ARG_DIFF_DST, conv_in(c, e, A_DST, dy)},
                          {DNNL_ARG_DIFF_WEIGHTS, conv_out(c, e, A_WEI, dw)},
                          {DNNL_ARG_DIFF_BIAS, NULL}};
  int n = 3;
  if (db) a[n++].memory = bias_mem(c, d->k, db);
  conv_run(c, e, n, a, A_WEI, dw);
}

/* Both gradients with dy converted to the chosen layout once when the two primitives
 * chose the same layout for it (the usual case). */
static void conv_bwd(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, const float *w, float *dx,
                     float *dw, float *db) {
  dnnl_ctx *c = b->ctx;
  conv_bwd_weights(b, d, x, dy, dw, db);
  if (!dx) return;
  cached *ew = get(c, db ? OP_BWD_WEIGHTS : OP_BWD_WEIGHTS_NOBIAS, d); /* cached: a lookup */
  if (ew->arg[A_DST].reorder) {
    c->scr_valid[A_DST] = true;
    c->scr_src[A_DST] = dy;
    c->scr_md[A_DST] = ew->arg[A_DST].md;
  }
  conv_bwd_data(b, d, dy, w, dx);
  c->scr_valid[A_DST] = false;
}

/* ---- batch norm: oneDNN on NCHW ------------------------------------------------------------ */
enum { BN_TRAIN, BN_EVAL, BN_BWD };

static cached_bn *get_bn(dnnl_ctx *c, int fwd, const mp_bn_desc *d) {
  for (int i = 0; i < c->nbn; i++)
    if (c->bn[i].fwd == fwd && !memcmp(&c->bn[i].d, d, sizeof *d)) return &c->bn[i];
  dnnl_memory_desc_t md;
  md4(&md, d->n, d->c, d->hw, 1, dnnl_nchw);
  unsigned flags = dnnl_use_scale | dnnl_use_shift;
  dnnl_batch_normalization_desc_t fd;
  MP_CHECK_DNNL(dnnl_batch_normalization_forward_desc_init(
      &fd, fwd == BN_EVAL ? dnnl_forward_inference : dnnl_forward_training, &md, d->eps,
      flags | (fwd == BN_EVAL ? dnnl_use_global_stats : 0)));
  dnnl_primitive_desc_t fpd, pd;
  MP_CHECK_DNNL(dnnl_primitive_desc_create(&fpd, &fd, c->attr, c->eng, NULL));
  pd = fpd;
  if (fwd == BN_BWD) {
    dnnl_batch_normalization_desc_t bd;
    MP_CHECK_DNNL(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &md, &md, d->eps, flags));
    MP_CHECK_DNNL(dnnl_primitive_desc_create(&pd, &bd, c->attr, c->eng, fpd));
    dnnl_primitive_desc_destroy(fpd);
  }
  if (c->nbn == c->capbn) c->bn = mp_realloc(c->bn, (size_t)(c->capbn = c->capbn ? 2 * c->capbn : 16) * sizeof *c->bn);
  cached_bn *e = &c->bn[c->nbn++];
  *e = (cached_bn){fwd, *d, pd, NULL};
  MP_CHECK_DNNL(dnnl_primitive_create(&e->prim, pd));
  return e;
}

static float *bn_var(dnnl_ctx *c, int ch) {
  if (ch > c->stat_n) {
    mp_free(c->stat);
    c->stat = mp_malloc((size_t)ch * sizeof(float));
    c->stat_n = ch;
  }
  return c->stat;
}

static void bn_exec(dnnl_ctx *c, cached_bn *e, const mp_bn_desc *d, int nargs, const int *kinds, const void **ptrs) {
  dnnl_memory_desc_t data, vec;
  md4(&data, d->n, d->c, d->hw, 1, dnnl_nchw);
  dnnl_dims_t dims = {d->c};
  MP_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&vec, 1, dims, dnnl_f32, dnnl_a));
  dnnl_exec_arg_t a[9];
  MP_CHECK(nargs <= 9, "batch norm arguments");
  for (int i = 0; i < nargs; i++) {
    int k = kinds[i];
    bool is_data = k == DNNL_ARG_SRC || k == DNNL_ARG_DST || k == DNNL_ARG_DIFF_SRC || k == DNNL_ARG_DIFF_DST;
    a[i] = (dnnl_exec_arg_t){k, mem(c, is_data ? &data : &vec, ptrs[i])};
  }
  exec_pd(c, e->prim, e->pd, nargs, a);
  for (int i = 0; i < nargs; i++) dnnl_memory_destroy(a[i].memory);
}

static void bn_fwd_train(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                         float *y, float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
  dnnl_ctx *c = b->ctx;
  float *var = bn_var(c, d->c);
  int k[6] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_SCALE, DNNL_ARG_SHIFT};
  const void *p[6] = {x, y, save_mean, var, gamma, beta};
  bn_exec(c, get_bn(c, BN_TRAIN, d), d, 6, k, p);
  double m = (double)d->n * d->hw;
  for (int i = 0; i < d->c; i++) { /* PyTorch's running statistics (unbiased variance) */
    save_invstd[i] = (float)(1.0 / sqrt((double)var[i] + d->eps));
    double unbiased = m > 1 ? var[i] * m / (m - 1) : var[i];
    run_mean[i] = (float)((1 - d->momentum) * run_mean[i] + d->momentum * save_mean[i]);
    run_var[i] = (float)((1 - d->momentum) * run_var[i] + d->momentum * unbiased);
  }
}

static void bn_fwd_eval(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                        const float *run_mean, const float *run_var, float *y) {
  dnnl_ctx *c = b->ctx;
  int k[6] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_SCALE, DNNL_ARG_SHIFT};
  const void *p[6] = {x, y, run_mean, run_var, gamma, beta};
  bn_exec(c, get_bn(c, BN_EVAL, d), d, 6, k, p);
}

static void bn_bwd(mp_backend *b, const mp_bn_desc *d, const float *x, const float *dy, const float *gamma,
                   const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta) {
  dnnl_ctx *c = b->ctx;
  float *var = bn_var(c, d->c);
  for (int i = 0; i < d->c; i++) var[i] = (float)(1.0 / ((double)save_invstd[i] * save_invstd[i]) - d->eps);
  /* oneDNN's backward takes the shift as an argument but does not read it: gamma stands in */
  int k[9] = {DNNL_ARG_SRC,   DNNL_ARG_MEAN,  DNNL_ARG_VARIANCE, DNNL_ARG_DIFF_DST,   DNNL_ARG_SCALE,
              DNNL_ARG_SHIFT, DNNL_ARG_DIFF_SRC, DNNL_ARG_DIFF_SCALE, DNNL_ARG_DIFF_SHIFT};
  const void *p[9] = {x, save_mean, var, dy, gamma, gamma, dx, dgamma, dbeta};
  bn_exec(c, get_bn(c, BN_BWD, d), d, 9, k, p);
}

/* ---- batch norm + ReLU in one pass (NCHW), OpenMP over channels ------------------------------
 * Statistics from data shifted by the channel's first value (one read pass, no
 * cancellation for data far from 0); the same formulas as mp_ref_bn_*, then max(0, .).
 * Sums: float partials over chunks of CHUNK elements (vectorised; the error is bounded by
 * the chunk, not by a 16k-element row: whole rows in float, unvectorised, moved the
 * gradients by 1e-4 NMSE), accumulated in double. */
enum { CHUNK = 256 };
static void bnr_fwd_train(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                          float *y, float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
  (void)b;
  const int N = d->n, C = d->c, HW = d->hw;
  const double m = (double)N * HW;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++) {
    const float k = x[(size_t)c * HW];
    double s = 0, ss = 0;
    for (int n = 0; n < N; n++) {
      const float *xp = x + ((size_t)n * C + c) * HW;
      for (int i0 = 0; i0 < HW; i0 += CHUNK) { /* float partials over a chunk (vectorised), summed in double */
        int i1 = i0 + CHUNK < HW ? i0 + CHUNK : HW;
        float ps = 0, pss = 0;
#pragma omp simd reduction(+ : ps, pss)
        for (int i = i0; i < i1; i++) {
          float t = xp[i] - k;
          ps += t;
          pss += t * t;
        }
        s += ps, ss += pss;
      }
    }
    double mean_k = s / m, var = ss / m - mean_k * mean_k;
    if (var < 0) var = 0;
    double mean = k + mean_k, invstd = 1.0 / sqrt(var + d->eps);
    float a = (float)(gamma[c] * invstd), bb = (float)(beta[c] - mean * gamma[c] * invstd);
    for (int n = 0; n < N; n++) {
      const float *xp = x + ((size_t)n * C + c) * HW;
      float *yp = y + ((size_t)n * C + c) * HW;
#pragma omp simd
      for (int i = 0; i < HW; i++) {
        float v = a * xp[i] + bb;
        yp[i] = v > 0 ? v : 0.0f;
      }
    }
    save_mean[c] = (float)mean;
    save_invstd[c] = (float)invstd;
    double unbiased = m > 1 ? var * m / (m - 1) : var;
    run_mean[c] = (float)((1 - d->momentum) * run_mean[c] + d->momentum * mean);
    run_var[c] = (float)((1 - d->momentum) * run_var[c] + d->momentum * unbiased);
  }
}

static void bnr_bwd(mp_backend *b, const mp_bn_desc *d, const float *x, const float *y, const float *dy,
                    const float *gamma, const float *save_mean, const float *save_invstd, float *dx, float *dgamma,
                    float *dbeta) {
  (void)b;
  const int N = d->n, C = d->c, HW = d->hw;
  const double m = (double)N * HW;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++) {
    const float mean = save_mean[c], is = save_invstd[c];
    double sdy = 0, sdyx = 0;
    for (int n = 0; n < N; n++) {
      size_t o = ((size_t)n * C + c) * HW;
      for (int i0 = 0; i0 < HW; i0 += CHUNK) {
        int i1 = i0 + CHUNK < HW ? i0 + CHUNK : HW;
        float p1 = 0, p2 = 0;
#pragma omp simd reduction(+ : p1, p2)
        for (int i = i0; i < i1; i++) {
          float yy = y[o + i], gg = dy[o + i]; /* both loads unconditional: a select, vectorisable */
          float g = yy > 0 ? gg : 0.0f;
          p1 += g;
          p2 += g * (x[o + i] - mean);
        }
        sdy += p1, sdyx += p2;
      }
    }
    sdyx *= is; /* sum of g * xhat */
    dgamma[c] = (float)sdyx;
    dbeta[c] = (float)sdy;
    /* dx = gamma invstd / m (m g - sum g - xhat sum(g xhat)) = A g + B (x - mean) + D */
    const float A = gamma[c] * is, D0 = (float)(-(double)gamma[c] * is * sdy / m);
    const float Bx = (float)(-(double)gamma[c] * is * is * sdyx / m);
    for (int n = 0; n < N; n++) {
      size_t o = ((size_t)n * C + c) * HW;
#pragma omp simd
      for (int i = 0; i < HW; i++) {
        float yy = y[o + i], gg = dy[o + i];
        float g = yy > 0 ? gg : 0.0f;
        dx[o + i] = A * g + Bx * (x[o + i] - mean) + D0;
      }
    }
  }
}

/* ---- linear: row-major SGEMM ------------------------------------------------------------------ */
static void lin_fwd(mp_backend *b, const float *x, const float *w, const float *bias, float *y, int n, int in, int out) {
  (void)b;
  for (int i = 0; i < n; i++)
    for (int o = 0; o < out; o++) y[(size_t)i * out + o] = bias ? bias[o] : 0.0f;
  MP_CHECK_DNNL(dnnl_sgemm('N', 'T', n, out, in, 1.0f, x, in, w, in, 1.0f, y, out)); /* y += x W^T */
}

static void lin_bwd(mp_backend *b, const float *x, const float *w, const float *dy, float *dx, float *dw, float *db,
                    int n, int in, int out) {
  (void)b;
  if (dx) MP_CHECK_DNNL(dnnl_sgemm('N', 'N', n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in)); /* dx = dy W */
  MP_CHECK_DNNL(dnnl_sgemm('T', 'N', out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in));          /* dW = dy^T x */
  if (db)
    for (int o = 0; o < out; o++) {
      double s = 0;
      for (int i = 0; i < n; i++) s += dy[(size_t)i * out + o];
      db[o] = (float)s;
    }
}

/* ---- max-pool 2x2: the ref semantics (first maximum, NaN wins), OpenMP over planes ----------- */
static void pool_fwd(mp_backend *b, const float *x, float *y, unsigned char *argmax, int n, int c, int h, int w) {
  (void)b;
  const int ho = h / 2, wo = w / 2;
  const long planes = (long)n * c;
#pragma omp parallel for schedule(static)
  for (long pl = 0; pl < planes; pl++) {
    const float *xp = x + (size_t)pl * h * w;
    float *yp = y + (size_t)pl * ho * wo;
    unsigned char *ap = argmax + (size_t)pl * ho * wo;
    for (int i = 0; i < ho; i++) {
      const float *r0 = xp + (size_t)(2 * i) * w, *r1 = r0 + w;
      for (int j = 0; j < wo; j++) {
        float v[4] = {r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]}, bv = v[0];
        int best = 0;
        for (int k = 1; k < 4; k++)
          if (v[k] > bv || (isnan(v[k]) && !isnan(bv))) bv = v[k], best = k;
        yp[(size_t)i * wo + j] = bv;
        ap[(size_t)i * wo + j] = (unsigned char)best;
      }
    }
  }
}

static void pool_bwd(mp_backend *b, const float *dy, const unsigned char *argmax, float *dx, int n, int c, int h, int w) {
  (void)b;
  const int ho = h / 2, wo = w / 2;
  const long planes = (long)n * c;
#pragma omp parallel for schedule(static)
  for (long pl = 0; pl < planes; pl++) {
    const float *gp = dy + (size_t)pl * ho * wo;
    const unsigned char *ap = argmax + (size_t)pl * ho * wo;
    float *xp = dx + (size_t)pl * h * w;
    for (int i = 0; i < ho; i++) {
      float *r[2] = {xp + (size_t)(2 * i) * w, xp + (size_t)(2 * i + 1) * w};
      for (int j = 0; j < wo; j++) {
        int a = ap[(size_t)i * wo + j];
        r[0][2 * j] = r[0][2 * j + 1] = r[1][2 * j] = r[1][2 * j + 1] = 0.0f;
        r[a >> 1][2 * j + (a & 1)] = gp[(size_t)i * wo + j];
      }
    }
  }
}

/* ---- element-wise activations: oneDNN eltwise over a flat tensor ------------------------- */
static dnnl_alg_kind_t elt_alg(int kind) {
  switch (kind) {
  case MP_ACT_RELU:
  case MP_ACT_LRELU: return dnnl_eltwise_relu; /* alpha = the negative slope; backward from src */
  case MP_ACT_TANH: return dnnl_eltwise_tanh_use_dst_for_bwd;
  default: return dnnl_eltwise_logistic_use_dst_for_bwd;
  }
}

static cached_elt *get_elt(dnnl_ctx *c, int fwd, int kind, float slope, size_t n) {
  float alpha = kind == MP_ACT_LRELU ? slope : 0.0f;
  for (int i = 0; i < c->nelt; i++) {
    cached_elt *e = &c->elt[i];
    if (e->fwd == fwd && e->kind == kind && e->slope == alpha && e->n == n) return e;
  }
  dnnl_memory_desc_t md;
  dnnl_dims_t dims = {(dnnl_dim_t)n};
  MP_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a));
  dnnl_eltwise_desc_t fd;
  MP_CHECK_DNNL(dnnl_eltwise_forward_desc_init(&fd, dnnl_forward_training, elt_alg(kind), &md, alpha, 0.0f));
  dnnl_primitive_desc_t fpd, pd;
  MP_CHECK_DNNL(dnnl_primitive_desc_create(&fpd, &fd, c->attr, c->eng, NULL));
  pd = fpd;
  if (!fwd) {
    dnnl_eltwise_desc_t bd;
    MP_CHECK_DNNL(dnnl_eltwise_backward_desc_init(&bd, elt_alg(kind), &md, &md, alpha, 0.0f));
    MP_CHECK_DNNL(dnnl_primitive_desc_create(&pd, &bd, c->attr, c->eng, fpd));
    dnnl_primitive_desc_destroy(fpd);
  }
  if (c->nelt == c->capelt) c->elt = mp_realloc(c->elt, (size_t)(c->capelt = c->capelt ? 2 * c->capelt : 16) * sizeof *c->elt);
  cached_elt *e = &c->elt[c->nelt++];
  *e = (cached_elt){fwd, kind, alpha, n, pd, NULL};
  MP_CHECK_DNNL(dnnl_primitive_create(&e->prim, pd));
  return e;
}

static dnnl_memory_t elt_mem(dnnl_ctx *c, cached_elt *e, const void *p) {
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(e->pd, dnnl_query_src_md, 0);
  if (!md || md->ndims == 0) md = dnnl_primitive_desc_query_md(e->pd, dnnl_query_diff_src_md, 0);
  dnnl_memory_t m;
  MP_CHECK_DNNL(dnnl_memory_create(&m, md, c->eng, (void *)p));
  return m;
}

static void elt_run(dnnl_ctx *c, cached_elt *e, int nargs, dnnl_exec_arg_t *args) {
  exec_pd(c, e->prim, e->pd, nargs, args);
  for (int i = 0; i < nargs; i++) dnnl_memory_destroy(args[i].memory);
}

static void act_fwd(mp_backend *b, int kind, float slope, const float *x, float *y, size_t n) {
  dnnl_ctx *c = b->ctx;
  cached_elt *e = get_elt(c, 1, kind, slope, n);
  dnnl_exec_arg_t a[2] = {{DNNL_ARG_SRC, elt_mem(c, e, x)}, {DNNL_ARG_DST, elt_mem(c, e, y)}};
  elt_run(c, e, 2, a);
}

static void act_bwd(mp_backend *b, int kind, float slope, const float *x, const float *y, const float *dy, float *dx,
                    size_t n) {
  dnnl_ctx *c = b->ctx;
  cached_elt *e = get_elt(c, 0, kind, slope, n);
  bool use_dst = kind == MP_ACT_TANH || kind == MP_ACT_SIGMOID;
  dnnl_exec_arg_t a[3] = {{use_dst ? DNNL_ARG_DST : DNNL_ARG_SRC, elt_mem(c, e, use_dst ? y : x)},
                          {DNNL_ARG_DIFF_DST, elt_mem(c, e, dy)},
                          {DNNL_ARG_DIFF_SRC, elt_mem(c, e, dx)}};
  elt_run(c, e, 3, a);
}

/* oneDNN's instruction set in use (the ISAs of dnnl_types.h this library knows) */
static const char *isa_name(dnnl_cpu_isa_t isa) {
  switch ((int)isa) {
  case dnnl_cpu_isa_sse41: return "sse41";
  case dnnl_cpu_isa_avx: return "avx";
  case dnnl_cpu_isa_avx2: return "avx2";
  case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
  case dnnl_cpu_isa_avx512_core: return "avx512_core";
  case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
  case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
  case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
  default: return NULL;
  }
}

static const char *describe(mp_backend *b, const char *op, const mp_conv_desc *d) {
  dnnl_ctx *c = b->ctx;
  if (!op) { /* the backend as a whole */
    static char whole[256];
    const dnnl_version_t *v = dnnl_version();
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    char isa_buf[24];
    const char *in = isa_name(isa);
    if (!in) snprintf(isa_buf, sizeof isa_buf, "isa 0x%x", (unsigned)isa), in = isa_buf;
    snprintf(whole, sizeof whole, "cpu: oneDNN %d.%d.%d (%s), %s", v->major, v->minor, v->patch, in,
             mp_host_cpu_model());
    return whole;
  }
  int k = !strcmp(op, "conv2d_backward_data") ? OP_BWD_DATA : !strcmp(op, "conv2d_backward_weights") ? OP_BWD_WEIGHTS : OP_FWD;
  const char *impl = NULL;
  MP_CHECK_DNNL(dnnl_primitive_desc_query(get(c, k, d)->pd, dnnl_query_impl_info_str, 0, &impl));
  return impl;
}

static void *host_alloc(mp_backend *b, size_t bytes) {
  (void)b;
  return mp_malloc(bytes);
}
static void host_release(mp_backend *b, void *p) {
  (void)b;
  mp_free(p);
}
static void host_copy(mp_backend *b, void *dst, const void *src, size_t bytes) {
  (void)b;
  memcpy(dst, src, bytes);
}

static void destroy(mp_backend *b) {
  dnnl_ctx *c = b->ctx;
  for (int i = 0; i < c->n; i++) {
    dnnl_primitive_destroy(c->cache[i].prim);
    dnnl_primitive_desc_destroy(c->cache[i].pd);
    for (int a = 0; a < A_N; a++) {
      if (c->cache[i].arg[a].to) dnnl_primitive_destroy(c->cache[i].arg[a].to);
      if (c->cache[i].arg[a].from) dnnl_primitive_destroy(c->cache[i].arg[a].from);
    }
  }
  mp_free(c->cache);
  for (int i = 0; i < c->nbn; i++) {
    dnnl_primitive_destroy(c->bn[i].prim);
    dnnl_primitive_desc_destroy(c->bn[i].pd);
  }
  mp_free(c->bn);
  for (int a = 0; a < A_N; a++) mp_free(c->scr[a]);
  mp_free(c->stat);
  mp_free(c->spad);
  dnnl_primitive_attr_destroy(c->attr);
  for (int i = 0; i < c->nelt; i++) {
    dnnl_primitive_destroy(c->elt[i].prim);
    dnnl_primitive_desc_destroy(c->elt[i].pd);
  }
  mp_free(c->elt);
  dnnl_stream_destroy(c->stream);
  dnnl_engine_destroy(c->eng);
  mp_free(c);
  mp_free(b);
}

/* Dropout and Adam run the ref kernels on the same host memory (mp_backend_fill_ref_ops). */
static mp_backend_i dnnl_iface = {
    .name = "cpu",
    .destroy = destroy,
    .alloc = host_alloc,
    .release = host_release,
    .upload = host_copy,
    .download = host_copy,
    .conv2d_forward = conv_fwd,
    .conv2d_backward_data = conv_bwd_data,
    .conv2d_backward_weights = conv_bwd_weights,
    .conv2d_backward = conv_bwd,
    .act_forward = act_fwd,
    .act_backward = act_bwd,
    .bn_forward_train = bn_fwd_train,
    .bn_forward_eval = bn_fwd_eval,
    .bn_backward = bn_bwd,
    .bn_relu_forward_train = bnr_fwd_train,
    .bn_relu_backward = bnr_bwd,
    .linear_forward = lin_fwd,
    .linear_backward = lin_bwd,
    .maxpool2_forward = pool_fwd,
    .maxpool2_backward = pool_bwd,
    .describe = describe,
};

mp_backend *mp_backend_dnnl_create(char *err, size_t errlen) {
  dnnl_ctx *c = mp_calloc(1, sizeof *c);
  if (dnnl_engine_create(&c->eng, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&c->stream, c->eng, dnnl_stream_default_flags) != dnnl_success) {
    snprintf(err, errlen, "oneDNN could not create a CPU engine");
    mp_free(c);
    return NULL;
  }
  MP_CHECK_DNNL(dnnl_primitive_attr_create(&c->attr));
  MP_CHECK_DNNL(dnnl_primitive_attr_set_scratchpad_mode(c->attr, dnnl_scratchpad_mode_user));
  mp_backend *b = mp_calloc(1, sizeof *b);
  mp_backend_fill_ref_ops(&dnnl_iface);
  b->iface = &dnnl_iface;
  b->ctx = c;
  return b;
}
