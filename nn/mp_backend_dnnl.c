/* mp_backend_dnnl — the `cpu` backend on oneDNN's C API.
 *
 * Each (op, shape) gets its primitive once, on first use, and keeps it (a small cache
 * keyed by the op and the convolution descriptor); later calls only wrap the caller's
 * buffers in memory objects and execute.  Tensors are plain NCHW / OIHW, which is what
 * model code holds; blocked layouts with reorders (format_tag_any) are the next step for
 * speed and will stay inside this file.
 *
 * Work in progress (issue 5): convolutions (forward, backward-data, backward-weights) and
 * the element-wise activations; the other ops still run the ref kernels.
 */
#include "mp_build_config.h"
#include "mp_backend.h"

#include <dnnl.h>
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

typedef struct {
  int op;
  mp_conv_desc d;
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t prim;
} cached;

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
} dnnl_ctx;

static void md4(dnnl_memory_desc_t *md, int a, int b, int c, int d, dnnl_format_tag_t tag) {
  dnnl_dims_t dims = {a, b, c, d};
  MP_CHECK_DNNL(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag));
}

/* The primitive for (op, d), created on first use. */
static cached *get(dnnl_ctx *c, int op, const mp_conv_desc *d) {
  for (int i = 0; i < c->n; i++)
    if (c->cache[i].op == op && !memcmp(&c->cache[i].d, d, sizeof *d)) return &c->cache[i];
  dnnl_memory_desc_t src, wei, bia, dst;
  md4(&src, d->n, d->c, d->h, d->w, dnnl_nchw);
  md4(&wei, d->k, d->c, d->r, d->s, dnnl_oihw);
  md4(&dst, d->n, d->k, d->p, d->q, dnnl_nchw);
  dnnl_dims_t bdims = {d->k};
  MP_CHECK_DNNL(dnnl_memory_desc_init_by_tag(&bia, 1, bdims, dnnl_f32, dnnl_a));
  dnnl_dims_t strides = {d->stride, d->stride}, pad = {d->pad, d->pad};
  /* right padding so that the output size is exactly p x q */
  dnnl_dims_t padr = {(d->p - 1) * d->stride + d->r - d->h - d->pad, (d->q - 1) * d->stride + d->s - d->w - d->pad};
  dnnl_convolution_desc_t fwd_desc;
  int with_bias = op == OP_FWD || op == OP_BWD_WEIGHTS;
  MP_CHECK_DNNL(dnnl_convolution_forward_desc_init(&fwd_desc, dnnl_forward_training, dnnl_convolution_direct, &src, &wei,
                                                   with_bias ? &bia : NULL, &dst, strides, pad, padr));
  dnnl_primitive_desc_t fwd_pd;
  MP_CHECK_DNNL(dnnl_primitive_desc_create(&fwd_pd, &fwd_desc, NULL, c->eng, NULL));
  dnnl_primitive_desc_t pd = fwd_pd;
  if (op == OP_BWD_DATA) {
    dnnl_convolution_desc_t bd;
    MP_CHECK_DNNL(dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &src, &wei, &dst, strides, pad, padr));
    MP_CHECK_DNNL(dnnl_primitive_desc_create(&pd, &bd, NULL, c->eng, fwd_pd));
    dnnl_primitive_desc_destroy(fwd_pd);
  } else if (op == OP_BWD_WEIGHTS || op == OP_BWD_WEIGHTS_NOBIAS) {
    dnnl_convolution_desc_t bd;
    MP_CHECK_DNNL(dnnl_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &src, &wei,
                                                              op == OP_BWD_WEIGHTS ? &bia : NULL, &dst, strides, pad, padr));
    MP_CHECK_DNNL(dnnl_primitive_desc_create(&pd, &bd, NULL, c->eng, fwd_pd));
    dnnl_primitive_desc_destroy(fwd_pd);
  }
  if (c->n == c->cap) c->cache = mp_realloc(c->cache, (size_t)(c->cap = c->cap ? 2 * c->cap : 16) * sizeof *c->cache);
  cached *e = &c->cache[c->n++];
  e->op = op;
  e->d = *d;
  e->pd = pd;
  MP_CHECK_DNNL(dnnl_primitive_create(&e->prim, pd));
  return e;
}

/* Wrap a caller's buffer described by the primitive's query, execute, wait. */
static dnnl_memory_t wrap(dnnl_ctx *c, cached *e, dnnl_query_t what, int idx, const void *p) {
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(e->pd, what, idx);
  dnnl_memory_t m;
  MP_CHECK_DNNL(dnnl_memory_create(&m, md, c->eng, (void *)p));
  return m;
}

static void run(dnnl_ctx *c, cached *e, int nargs, dnnl_exec_arg_t *args) {
  MP_CHECK_DNNL(dnnl_primitive_execute(e->prim, c->stream, nargs, args));
  MP_CHECK_DNNL(dnnl_stream_wait(c->stream));
  for (int i = 0; i < nargs; i++) dnnl_memory_destroy(args[i].memory);
}

static void conv_fwd(mp_backend *b, const mp_conv_desc *d, const float *x, const float *w, const float *bias, float *y) {
  dnnl_ctx *c = b->ctx;
  cached *e = get(c, bias ? OP_FWD : OP_FWD_NOBIAS, d);
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, wrap(c, e, dnnl_query_src_md, 0, x)},
                          {DNNL_ARG_WEIGHTS, wrap(c, e, dnnl_query_weights_md, 0, w)},
                          {DNNL_ARG_DST, wrap(c, e, dnnl_query_dst_md, 0, y)},
                          {DNNL_ARG_BIAS, NULL}};
  int n = 3;
  if (bias) a[n++].memory = wrap(c, e, dnnl_query_weights_md, 1, bias);
  run(c, e, n, a);
}

static void conv_bwd_data(mp_backend *b, const mp_conv_desc *d, const float *dy, const float *w, float *dx) {
  dnnl_ctx *c = b->ctx;
  cached *e = get(c, OP_BWD_DATA, d);
  dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, wrap(c, e, dnnl_query_diff_dst_md, 0, dy)},
                          {DNNL_ARG_WEIGHTS, wrap(c, e, dnnl_query_weights_md, 0, w)},
                          {DNNL_ARG_DIFF_SRC, wrap(c, e, dnnl_query_diff_src_md, 0, dx)}};
  run(c, e, 3, a);
}

static void conv_bwd_weights(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, float *dw,
                             float *db) {
  dnnl_ctx *c = b->ctx;
  cached *e = get(c, db ? OP_BWD_WEIGHTS : OP_BWD_WEIGHTS_NOBIAS, d);
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, wrap(c, e, dnnl_query_src_md, 0, x)},
                          {DNNL_ARG_DIFF_DST, wrap(c, e, dnnl_query_diff_dst_md, 0, dy)},
                          {DNNL_ARG_DIFF_WEIGHTS, wrap(c, e, dnnl_query_diff_weights_md, 0, dw)},
                          {DNNL_ARG_DIFF_BIAS, NULL}};
  int n = 3;
  if (db) a[n++].memory = wrap(c, e, dnnl_query_diff_weights_md, 1, db);
  run(c, e, n, a);
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
  MP_CHECK_DNNL(dnnl_primitive_desc_create(&fpd, &fd, NULL, c->eng, NULL));
  pd = fpd;
  if (!fwd) {
    dnnl_eltwise_desc_t bd;
    MP_CHECK_DNNL(dnnl_eltwise_backward_desc_init(&bd, elt_alg(kind), &md, &md, alpha, 0.0f));
    MP_CHECK_DNNL(dnnl_primitive_desc_create(&pd, &bd, NULL, c->eng, fpd));
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
  MP_CHECK_DNNL(dnnl_primitive_execute(e->prim, c->stream, nargs, args));
  MP_CHECK_DNNL(dnnl_stream_wait(c->stream));
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

static const char *describe(mp_backend *b, const char *op, const mp_conv_desc *d) {
  dnnl_ctx *c = b->ctx;
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
  }
  mp_free(c->cache);
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

/* Ops oneDNN does not compute yet run the ref kernels on the same host memory
 * (mp_backend_fill_ref_ops): batch norm, pooling, linear, dropout, Adam. */
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
    .act_forward = act_fwd,
    .act_backward = act_bwd,
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
  mp_backend *b = mp_calloc(1, sizeof *b);
  mp_backend_fill_ref_ops(&dnnl_iface);
  b->iface = &dnnl_iface;
  b->ctx = c;
  return b;
}
