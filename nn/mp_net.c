/* mp_net — sequential networks on a backend (see mp_net.h).
 *
 * Every buffer (parameters, gradients, Adam moments, statistics, activations, masks, the
 * spectral-norm vectors) comes from the backend's allocator, and every bulk operation on
 * them (copies, zeroing, gradient accumulation, spectral norm) goes through the backend,
 * so a device backend keeps the whole pass on the device.  Host code here touches the
 * buffers only after mp_backend_sync (initialisation, the gradient penalty's per-sample
 * norms), and every public entry point ends synchronised, so callers may read what it
 * returns (outputs, gradients, parameters) directly. */
#include "mp_net.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_rng.h"

typedef enum { L_CONV, L_CONVT, L_BN, L_ACT, L_POOL, L_FLAT, L_LINEAR, L_DROP } kind_t;

typedef struct {
  kind_t kind;
  int k, r, stride, pad, act, out;
  bool bias, sn;
  float *sn_u, *sn_v, *w_eff, *dw_eff; /* spectral norm: persistent u, v, W/sigma, its gradient */
  double *sigma;                       /* and sigma (backend memory: the forward's, for the backward) */
  float slope, p;
  int c, h, w;    /* input per sample */
  int oc, oh, ow; /* output per sample */
  size_t w_off, w_n, b_off, b_n, stat_off;
  /* per-layer scratch for the backward */
  unsigned char *mask;  /* pool argmax / dropout mask */
  float *save_mean, *save_invstd;
  float *bn_scratch; /* 2c: parameter gradients an input-only backward discards; in a grouped
                      * training forward, one group's updated running statistics */
  float *bn_acc;     /* 2c after bn_scratch's: a grouped training forward's sum of the groups'
                      * updated statistics */
  bool fuse_relu;    /* BN: the next layer (a ReLU) is computed with it, into act[i+2] */
  bool fused;        /* ReLU: computed by the BN before it; skipped */
} layer;

struct mp_net {
  mp_backend *be;
  layer *L;
  int nl, cap, in_c, in_h, in_w, max_batch, batch;
  uint64_t seed, step;
  bool built, train;
  size_t nparams, nstats;
  float *params, *grads, *m, *v, *stats;
  float **act, **dact; /* act[i]: input of layer i; act[nl]: output */
  long adam_t;
  int bn_group;        /* samples per batch-norm statistics group in training (0: the whole batch) */
  uint64_t sample_offset; /* global position of this call's first sample (dropout masks) */
  bool accumulate;     /* backward adds into grads (through gtmp) */
  float *gtmp;         /* nparams: one backward's gradients before they are added */
  float *gp_a, *gp_b;  /* gradient penalty: ping-pong buffers, largest activation x max batch */
  size_t max_act;      /* floats per sample of the largest activation */
  /* MP_NN_PROFILE=1: seconds per layer, forward [2i] and backward [2i+1], each layer timed
   * between two backend syncs (which serialises a device backend: for finding where the
   * time goes, not for throughput); printed to stderr by mp_net_free.  The first forward
   * and backward are left out: a device backend searches its algorithms there. */
  double *prof;
  long prof_calls[2];
  int prof_batch;
};

/* the profiler's clock: the backend's queue drained, then the wall clock */
static double prof_mark(mp_net *n) {
  if (!n->prof) return 0;
  mp_backend_sync(n->be);
  return mp_now();
}
static void prof_add(mp_net *n, int i, int dir, double t0) {
  if (!n->prof) return;
  double t = prof_mark(n) - t0;
  if (n->prof_calls[dir] > 1) n->prof[2 * i + dir] += t;
}

mp_net *mp_net_new(mp_backend *be, int c, int h, int w, int max_batch, uint64_t seed) {
  mp_net *n = mp_calloc(1, sizeof *n);
  n->be = be;
  n->in_c = c;
  n->in_h = h;
  n->in_w = w;
  n->max_batch = max_batch;
  n->seed = seed;
  return n;
}

/* backend memory: zeroed when asked (the calloc of a host backend) */
static void *balloc(mp_net *n, size_t bytes, bool zero) {
  void *p = n->be->iface->alloc(n->be, bytes ? bytes : 1);
  if (zero) n->be->iface->zero(n->be, p, bytes ? bytes : 1);
  return p;
}
static void bfree(mp_net *n, void *p) {
  if (p) n->be->iface->release(n->be, p);
}
static void host(mp_net *n) { mp_backend_sync(n->be); }

static layer *push(mp_net *n, kind_t k) {
  MP_CHECK(!n->built, "layer added after mp_net_build");
  if (n->nl == n->cap) n->L = mp_realloc(n->L, (size_t)(n->cap = n->cap ? 2 * n->cap : 16) * sizeof *n->L);
  layer *l = &n->L[n->nl++];
  memset(l, 0, sizeof *l);
  l->kind = k;
  return l;
}

void mp_net_conv(mp_net *n, int k, int r, int stride, int pad, bool bias) {
  layer *l = push(n, L_CONV);
  l->k = k, l->r = r, l->stride = stride, l->pad = pad, l->bias = bias;
}
void mp_net_conv_sn(mp_net *n, int k, int r, int stride, int pad, bool bias) {
  mp_net_conv(n, k, r, stride, pad, bias);
  n->L[n->nl - 1].sn = true;
}
void mp_net_convt(mp_net *n, int k, int r, int stride, int pad) {
  layer *l = push(n, L_CONVT);
  l->k = k, l->r = r, l->stride = stride, l->pad = pad;
}
void mp_net_bn(mp_net *n) { push(n, L_BN); }
void mp_net_act(mp_net *n, int kind, float slope) {
  layer *l = push(n, L_ACT);
  l->act = kind, l->slope = slope;
}
void mp_net_maxpool2(mp_net *n) { push(n, L_POOL); }
void mp_net_flatten(mp_net *n) { push(n, L_FLAT); }
void mp_net_linear(mp_net *n, int out, bool bias) {
  layer *l = push(n, L_LINEAR);
  l->out = out, l->bias = bias;
}
void mp_net_dropout(mp_net *n, float p) {
  layer *l = push(n, L_DROP);
  l->p = p;
}

static const char *kind_name(kind_t k) {
  static const char *names[] = {"conv", "convt", "bn", "act", "pool", "flatten", "linear", "dropout"};
  return names[k];
}

static size_t per(int c, int h, int w) { return (size_t)c * h * w; }

/* The convolution that layer l computes for batch n (for convT: the convolution whose
 * backward-data is the layer's forward, mapping output -> input). */
static mp_conv_desc conv_of(const layer *l, int n) {
  mp_conv_desc d;
  int rc = l->kind == L_CONV ? mp_conv_desc_init(&d, n, l->c, l->h, l->w, l->k, l->r, l->r, l->stride, l->pad)
                             : mp_conv_desc_init(&d, n, l->k, l->oh, l->ow, l->c, l->r, l->r, l->stride, l->pad);
  MP_CHECK(rc == 0, "impossible convolution shape");
  return d;
}

void mp_net_build(mp_net *n) {
  int c = n->in_c, h = n->in_h, w = n->in_w;
  const char *pe = getenv("MP_NN_PROFILE");
  if (pe && *pe && strcmp(pe, "0") != 0) n->prof = mp_calloc(2 * (size_t)n->nl, sizeof(double));
  size_t np = 0, ns = 0;
  for (int i = 0; i < n->nl; i++) {
    layer *l = &n->L[i];
    l->c = c, l->h = h, l->w = w;
    switch (l->kind) {
    case L_CONV: {
      mp_conv_desc d;
      MP_CHECK(mp_conv_desc_init(&d, 1, c, h, w, l->k, l->r, l->r, l->stride, l->pad) == 0, "layer %d: conv shape", i);
      l->oc = l->k, l->oh = d.p, l->ow = d.q;
      l->w_n = (size_t)l->k * c * l->r * l->r;
      l->b_n = l->bias ? (size_t)l->k : 0;
      break;
    }
    case L_CONVT:
      l->oc = l->k, l->oh = (h - 1) * l->stride - 2 * l->pad + l->r, l->ow = (w - 1) * l->stride - 2 * l->pad + l->r;
      MP_CHECK(l->oh > 0 && l->ow > 0, "layer %d: transposed conv shape", i);
      l->w_n = (size_t)c * l->k * l->r * l->r; /* PyTorch's (in, out, r, s) = our KCRS of the mirror conv */
      break;
    case L_BN:
      l->oc = c, l->oh = h, l->ow = w;
      l->w_n = l->b_n = (size_t)c;
      l->stat_off = ns;
      ns += 2 * (size_t)c;
      l->save_mean = balloc(n, (size_t)c * n->max_batch * sizeof(float), true); /* per statistics group */
      l->save_invstd = balloc(n, (size_t)c * n->max_batch * sizeof(float), true);
      l->bn_scratch = balloc(n, 4 * (size_t)c * sizeof(float), true);
      l->bn_acc = l->bn_scratch + 2 * (size_t)c; /* carved: freed with bn_scratch */
      break;
    case L_POOL:
      MP_CHECK(h % 2 == 0 && w % 2 == 0, "layer %d: max-pool needs even sizes", i);
      l->oc = c, l->oh = h / 2, l->ow = w / 2;
      break;
    case L_FLAT: l->oc = c * h * w, l->oh = l->ow = 1; break;
    case L_LINEAR:
      l->oc = l->out, l->oh = l->ow = 1;
      l->w_n = (size_t)l->out * c * h * w;
      l->b_n = l->bias ? (size_t)l->out : 0;
      break;
    default: l->oc = c, l->oh = h, l->ow = w; break;
    }
    l->w_off = np;
    np += l->w_n;
    l->b_off = np;
    np += l->b_n;
    c = l->oc, h = l->oh, w = l->ow;
  }
  n->nparams = np;
  n->nstats = ns;
  /* BN followed by ReLU runs as one pass on backends that offer it */
  if (n->be->iface->bn_relu_forward_train && n->be->iface->bn_relu_backward)
    for (int i = 0; i + 1 < n->nl; i++)
      if (n->L[i].kind == L_BN && n->L[i + 1].kind == L_ACT && n->L[i + 1].act == MP_ACT_RELU) {
        n->L[i].fuse_relu = true;
        n->L[i + 1].fused = true;
      }
  n->params = balloc(n, np * sizeof(float), true);
  n->grads = balloc(n, np * sizeof(float), true);
  n->m = balloc(n, np * sizeof(float), true);
  n->v = balloc(n, np * sizeof(float), true);
  n->stats = balloc(n, ns * sizeof(float), true);
  n->act = mp_calloc((size_t)n->nl + 1, sizeof *n->act);
  n->dact = mp_calloc((size_t)n->nl + 1, sizeof *n->dact);
  for (int i = 0; i <= n->nl; i++) {
    size_t sz = i < n->nl ? per(n->L[i].c, n->L[i].h, n->L[i].w) : per(c, h, w);
    if (sz > n->max_act) n->max_act = sz;
    if (i < n->nl && n->L[i].fused) continue; /* a fused BN+ReLU never materialises the BN output */
    n->act[i] = balloc(n, sz * (size_t)n->max_batch * sizeof(float), false);
    n->dact[i] = balloc(n, sz * (size_t)n->max_batch * sizeof(float), false);
  }
  /* initial values: PyTorch's defaults from the counter-based RNG, one stream index per tensor */
  host(n);
  uint64_t tensor = 0;
  for (int i = 0; i < n->nl; i++) {
    layer *l = &n->L[i];
    if (l->kind == L_POOL || l->kind == L_DROP) l->mask = balloc(n, per(l->oc, l->oh, l->ow) * (size_t)n->max_batch, false);
    if (l->sn) { /* u ~ N(0, 1) normalised, as PyTorch; tensor index after all weights */
      size_t cols = l->w_n / (size_t)l->k;
      l->sn_u = balloc(n, (size_t)l->k * sizeof(float), false);
      l->sn_v = balloc(n, cols * sizeof(float), true);
      l->w_eff = balloc(n, l->w_n * sizeof(float), false);
      l->dw_eff = balloc(n, l->w_n * sizeof(float), false);
      l->sigma = balloc(n, sizeof(double), true);
      host(n); /* the initial values below are written by the host */
      mp_rng ru;
      mp_rng_init(&ru, n->seed, MP_RNG_INIT, 1000000 + (uint64_t)i);
      double ss = 0;
      for (int j = 0; j < l->k; j++) {
        l->sn_u[j] = (float)mp_rng_normal(&ru);
        ss += (double)l->sn_u[j] * l->sn_u[j];
      }
      for (int j = 0; j < l->k; j++) l->sn_u[j] = (float)(l->sn_u[j] / sqrt(ss));
    }
    if (l->kind == L_BN) {
      for (int j = 0; j < l->c; j++) {
        n->params[l->w_off + (size_t)j] = 1.0f;
        n->stats[l->stat_off + (size_t)l->c + (size_t)j] = 1.0f; /* running variance */
      }
      continue;
    }
    if (!l->w_n) continue;
    double fan_in = l->kind == L_CONVT ? (double)l->k * l->r * l->r : (double)l->w_n / (l->kind == L_LINEAR ? l->out : l->k);
    double bound = 1.0 / sqrt(fan_in);
    mp_rng r;
    mp_rng_init(&r, n->seed, MP_RNG_INIT, tensor++);
    for (size_t j = 0; j < l->w_n; j++) n->params[l->w_off + j] = (float)((2 * mp_rng_uniform_f64(&r) - 1) * bound);
    mp_rng_init(&r, n->seed, MP_RNG_INIT, tensor++);
    for (size_t j = 0; j < l->b_n; j++) n->params[l->b_off + j] = (float)((2 * mp_rng_uniform_f64(&r) - 1) * bound);
  }
  host(n);
  n->built = true;
}

static int bn_group_size(const mp_net *n, int batch) {
  if (n->bn_group <= 0 || n->bn_group >= batch) return batch;
  MP_CHECK(batch % n->bn_group == 0, "a batch of %d is not a multiple of the batch-norm group %d", batch, n->bn_group);
  return n->bn_group;
}

void mp_net_set_bn_group(mp_net *n, int samples) { n->bn_group = samples > 0 ? samples : 0; }

void mp_net_set_sample_offset(mp_net *n, uint64_t first) { n->sample_offset = first; }

const float *mp_net_forward(mp_net *n, const float *x, int batch, bool train, uint64_t step) {
  MP_CHECK(n->built && batch > 0 && batch <= n->max_batch, "forward of %d samples (max %d)", batch, n->max_batch);
  const mp_backend_i *f = n->be->iface;
  mp_backend *be = n->be;
  n->batch = batch;
  n->train = train;
  n->step = step;
  if (x != n->act[0]) f->upload(be, n->act[0], x, per(n->in_c, n->in_h, n->in_w) * (size_t)batch * sizeof(float));
  if (n->prof) n->prof_calls[0]++, n->prof_batch = batch;
  for (int i = 0; i < n->nl; i++) {
    layer *l = &n->L[i];
    double t0 = prof_mark(n);
    const float *in = n->act[i];
    float *out = n->act[i + 1], *P = n->params;
    size_t cnt = per(l->c, l->h, l->w) * (size_t)batch;
    switch (l->kind) {
    case L_CONV: {
      mp_conv_desc d = conv_of(l, batch);
      const float *wt = P + l->w_off;
      if (l->sn) { /* W / sigma, the power iteration only while training */
        f->sn_forward(be, wt, l->k, (int)(l->w_n / (size_t)l->k), l->sn_u, l->sn_v, l->w_eff, train, l->sigma);
        wt = l->w_eff;
      }
      f->conv2d_forward(be, &d, in, wt, l->b_n ? P + l->b_off : NULL, out);
      break;
    }
    case L_CONVT: {
      mp_conv_desc d = conv_of(l, batch);
      f->conv2d_backward_data(be, &d, in, P + l->w_off, out);
      break;
    }
    case L_BN: {
      float *rm = n->stats + l->stat_off, *rv = rm + l->c;
      float *y = l->fuse_relu ? n->act[i + 2] : out; /* fused: straight into the ReLU's output */
      if (!train) {
        mp_bn_desc d = {batch, l->c, l->h * l->w, 1e-5f, 0.1f};
        f->bn_forward_eval(be, &d, in, P + l->w_off, P + l->b_off, rm, rv, y);
        if (l->fuse_relu) f->act_forward(be, MP_ACT_RELU, 0, y, y, cnt);
        break;
      }
      /* training: statistics per group of bn_group samples (one group by default).  With G
       * groups the running statistics (rm, rv contiguous: 2c floats) take one update, the mean
       * of the G updates each group alone would make from the same start: what G ranks hold
       * once they average theirs (train's sync_bn; an EMA is linear, so averaging at the
       * epoch's end equals averaging every step), so that a rank count reproduced by groups
       * gives the same model in eval mode too, not G momentum steps a batch. */
      int gs = bn_group_size(n, batch), groups = batch / gs;
      size_t per_group = per(l->c, l->h, l->w) * (size_t)gs, c2 = 2 * (size_t)l->c;
      mp_bn_desc d = {gs, l->c, l->h * l->w, 1e-5f, 0.1f};
      for (int g = 0; g < groups; g++) {
        const float *xg = in + g * per_group;
        float *yg = y + g * per_group, *sm = l->save_mean + (size_t)g * l->c, *si = l->save_invstd + (size_t)g * l->c;
        float *gm = rm, *gv = rv; /* one group: updated in place */
        if (groups > 1) {         /* this group's update of a copy of the running statistics */
          f->copy(be, l->bn_scratch, rm, c2);
          gm = l->bn_scratch, gv = l->bn_scratch + l->c;
        }
        if (l->fuse_relu)
          f->bn_relu_forward_train(be, &d, xg, P + l->w_off, P + l->b_off, yg, sm, si, gm, gv);
        else
          f->bn_forward_train(be, &d, xg, P + l->w_off, P + l->b_off, yg, sm, si, gm, gv);
        if (groups > 1 && g == 0) f->copy(be, l->bn_acc, l->bn_scratch, c2);
        if (groups > 1 && g > 0) f->axpy(be, 1.0f, l->bn_scratch, l->bn_acc, c2);
      }
      if (groups > 1) {
        f->scale(be, 1.0f / (float)groups, l->bn_acc, c2);
        f->copy(be, rm, l->bn_acc, c2);
      }
      break;
    }
    case L_ACT:
      if (!l->fused) f->act_forward(be, l->act, l->slope, in, out, cnt);
      break;
    case L_POOL: f->maxpool2_forward(be, in, out, l->mask, batch, l->c, l->h, l->w); break;
    case L_FLAT: f->copy(be, out, in, cnt); break;
    case L_LINEAR:
      f->linear_forward(be, in, P + l->w_off, l->b_n ? P + l->b_off : NULL, out, batch, l->c * l->h * l->w, l->out);
      break;
    case L_DROP:
      if (train)
        f->dropout_forward(be, in, out, l->mask, cnt, l->p, n->seed, step * 1024 + (uint64_t)i,
                           n->sample_offset * per(l->c, l->h, l->w));
      else
        f->copy(be, out, in, cnt);
      break;
    }
    prof_add(n, i, 0, t0);
  }
  host(n);
  return n->act[n->nl];
}

static float *grad_target(mp_net *n) {
  if (!n->accumulate) return n->grads;
  if (!n->gtmp) n->gtmp = balloc(n, n->nparams * sizeof(float), false);
  return n->gtmp;
}

static void grad_commit(mp_net *n) {
  if (!n->accumulate) return;
  n->be->iface->axpy(n->be, 1.0f, n->gtmp, n->grads, n->nparams);
}

/* The backward pass over samples [first, first + batch) of the last forward (dy and dx
 * hold those samples only; their gradients go to the start of dact); weights = false skips
 * every parameter gradient (only dL/dinput); keep_dx: dL/dinput is computed into dact[0]
 * and left there.  A part of the batch (input-only; mp_net_backward_input_part) needs
 * layers that treat the samples independently: the forward's saved activations and masks
 * are read at the part's offset. */
static void backward(mp_net *n, const float *dy, float *dx, bool weights, bool keep_dx, int first, int batch) {
  const mp_backend_i *f = n->be->iface;
  mp_backend *be = n->be;
  const bool part = first != 0 || batch != n->batch;
  MP_CHECK(!part || !weights, "a backward over part of the batch computes dL/dinput only");
  MP_CHECK(first >= 0 && batch > 0 && first + batch <= n->batch, "backward of samples %d..%d of a forward of %d",
           first, first + batch, n->batch);
  float *G = weights ? grad_target(n) : NULL;
  f->upload(be, n->dact[n->nl], dy, mp_net_output_size(n) * (size_t)batch * sizeof(float));
  if (n->prof) n->prof_calls[1]++;
  for (int i = n->nl - 1; i >= 0; i--) {
    layer *l = &n->L[i];
    double t0 = prof_mark(n);
    const size_t per_in = per(l->c, l->h, l->w), per_out = per(l->oc, l->oh, l->ow);
    const float *in = n->act[i] + first * per_in, *out = n->act[i + 1] + first * per_out, *g = n->dact[i + 1];
    float *gi = n->dact[i], *P = n->params;
    size_t cnt = per_in * (size_t)batch;
    bool need_dx = i > 0 || dx || keep_dx;
    if (!weights && !need_dx) break;
    switch (l->kind) {
    case L_CONV: {
      mp_conv_desc d = conv_of(l, batch);
      const float *wt = l->sn ? l->w_eff : P + l->w_off;
      if (weights) {
        f->conv2d_backward(be, &d, in, g, wt, need_dx ? gi : NULL, l->sn ? l->dw_eff : G + l->w_off,
                           l->b_n ? G + l->b_off : NULL);
        if (l->sn) /* through W / sigma, u and v constant */
          f->sn_backward(be, P + l->w_off, l->dw_eff, l->k, (int)(l->w_n / (size_t)l->k), l->sn_u, l->sn_v, l->sigma,
                         G + l->w_off);
      } else if (need_dx) {
        f->conv2d_backward_data(be, &d, g, wt, gi);
      }
      break;
    }
    case L_CONVT: { /* y = D^T x: dx = D g, dW from (x := g, dy := x) */
      mp_conv_desc d = conv_of(l, batch);
      if (weights) f->conv2d_backward_weights(be, &d, g, in, G + l->w_off, NULL);
      if (need_dx) f->conv2d_forward(be, &d, g, P + l->w_off, NULL, gi);
      break;
    }
    case L_BN: {
      MP_CHECK(n->train, "backward through batch norm needs a training forward");
      MP_CHECK(!part, "batch norm couples the samples of a batch: no backward over part of it");
      int gs = bn_group_size(n, batch), groups = batch / gs;
      size_t per_group = per(l->c, l->h, l->w) * (size_t)gs;
      mp_bn_desc d = {gs, l->c, l->h * l->w, 1e-5f, 0.1f};
      /* one group writes dgamma, dbeta in place; several sum theirs (layer scratch);
       * an input-only backward discards them (scratch) */
      bool direct = weights && groups == 1;
      float *dg = direct ? G + l->w_off : l->bn_scratch, *db = direct ? G + l->b_off : l->bn_scratch + l->c;
      if (weights && !direct) f->zero(be, G + l->w_off, 2 * (size_t)l->c * sizeof(float)); /* gamma, beta adjacent */
      for (int q = 0; q < groups; q++) {
        const float *sm = l->save_mean + (size_t)q * l->c, *si = l->save_invstd + (size_t)q * l->c;
        size_t o = q * per_group;
        if (l->fuse_relu) /* from the ReLU's output and its gradient */
          f->bn_relu_backward(be, &d, in + o, n->act[i + 2] + o, n->dact[i + 2] + o, P + l->w_off, sm, si, gi + o, dg,
                              db);
        else
          f->bn_backward(be, &d, in + o, g + o, P + l->w_off, sm, si, gi + o, dg, db);
        if (weights && !direct) {
          f->axpy(be, 1.0f, dg, G + l->w_off, (size_t)l->c);
          f->axpy(be, 1.0f, db, G + l->b_off, (size_t)l->c);
        }
      }
      break;
    }
    case L_ACT:
      if (!l->fused) f->act_backward(be, l->act, l->slope, in, out, g, gi, cnt);
      break;
    case L_POOL: f->maxpool2_backward(be, g, l->mask + first * per_out, gi, batch, l->c, l->h, l->w); break;
    case L_FLAT: f->copy(be, gi, g, cnt); break;
    case L_LINEAR:
      MP_CHECK(weights, "input-only backward through a linear layer is not implemented");
      f->linear_backward(be, in, P + l->w_off, g, need_dx ? gi : NULL, G + l->w_off, l->b_n ? G + l->b_off : NULL,
                         batch, l->c * l->h * l->w, l->out);
      break;
    case L_DROP:
      if (n->train)
        f->dropout_backward(be, g, l->mask + first * per_in, gi, cnt, l->p);
      else
        f->copy(be, gi, g, cnt);
      break;
    }
    prof_add(n, i, 1, t0);
  }
  if (weights) grad_commit(n);
  if (dx) f->download(be, dx, n->dact[0], per(n->in_c, n->in_h, n->in_w) * (size_t)batch * sizeof(float));
  host(n);
}

void mp_net_backward(mp_net *n, const float *dy, float *dx) { backward(n, dy, dx, true, false, 0, n->batch); }

const float *mp_net_backward_keep_dx(mp_net *n, const float *dy) {
  backward(n, dy, NULL, true, true, 0, n->batch);
  return n->dact[0];
}

void mp_net_backward_input(mp_net *n, const float *dy, float *dx) {
  MP_CHECK(dx, "mp_net_backward_input needs dx");
  backward(n, dy, dx, false, false, 0, n->batch);
}

void mp_net_backward_input_part(mp_net *n, int first, int count, const float *dy, float *dx) {
  MP_CHECK(dx, "mp_net_backward_input_part needs dx");
  backward(n, dy, dx, false, false, first, count);
}

void mp_net_set_accumulate(mp_net *n, bool on) { n->accumulate = on; }

void mp_net_zero_grads(mp_net *n) {
  n->be->iface->zero(n->be, n->grads, n->nparams * sizeof(float));
  host(n);
}

/* The WGAN-GP penalty through the net (SPEC §7; the derivation is mp_ref_gradient_penalty's,
 * here on the backend's kernels and any conv / leaky-ReLU / ReLU / flatten stack):
 *   backward chain with dC = 1:   dact[i] = B_i(dact[i+1]),  g = dact[0]
 *   v_0 = dP/dg, then forward through the adjoints of the B_i:
 *     conv:  dW_i = dW(x := v_i, dy := dact[i+1]),  v_{i+1} = conv(v_i, W_i) (no bias)
 *     act:   v_{i+1} = slope mask of the forward * v_i
 * A spectrally normalised layer's dW (with respect to W/sigma) goes through the same
 * sigma backward as the loss gradient.  Biases get no gradient from the penalty. */
double mp_net_gradient_penalty(mp_net *n, const float *xhat, int batch, float lambda, uint64_t step, float *gnorm) {
  MP_CHECK(mp_net_output_size(n) == 1, "gradient penalty needs one output per sample");
  for (int i = 0; i < n->nl; i++) {
    const layer *l = &n->L[i];
    MP_CHECK(l->kind == L_CONV || l->kind == L_FLAT ||
                 (l->kind == L_ACT && (l->act == MP_ACT_RELU || l->act == MP_ACT_LRELU)),
             "gradient penalty: layer %d (%s) is not a conv, ReLU / leaky ReLU or flatten", i, kind_name(l->kind));
  }
  const mp_backend_i *f = n->be->iface;
  mp_backend *be = n->be;
  mp_net_forward(n, xhat, batch, true, step); /* one power iteration for SN layers, as PyTorch's D(xhat) */
  if (!n->gp_a) {
    n->gp_a = balloc(n, n->max_act * (size_t)n->max_batch * sizeof(float), false);
    n->gp_b = balloc(n, n->max_act * (size_t)n->max_batch * sizeof(float), false);
    host(n);
  }
  for (int j = 0; j < batch; j++) n->dact[n->nl][j] = 1.0f; /* host: the forward ended synchronised */
  for (int i = n->nl - 1; i >= 0; i--) {
    const layer *l = &n->L[i];
    size_t cnt = per(l->c, l->h, l->w) * (size_t)batch;
    if (l->kind == L_CONV) {
      mp_conv_desc d = conv_of(l, batch);
      f->conv2d_backward_data(be, &d, n->dact[i + 1], l->sn ? l->w_eff : n->params + l->w_off, n->dact[i]);
    } else if (l->kind == L_ACT) {
      f->act_backward(be, l->act, l->slope, n->act[i], n->act[i + 1], n->dact[i + 1], n->dact[i], cnt);
    } else {
      f->copy(be, n->dact[i], n->dact[i + 1], cnt);
    }
  }
  size_t in = per(n->in_c, n->in_h, n->in_w);
  float *v = n->gp_a, *next = n->gp_b;
  double *norms = mp_malloc((size_t)batch * sizeof *norms);
  double P = f->penalty_grad(be, n->dact[0], batch, in, lambda, v, norms);
  if (gnorm)
    for (int j = 0; j < batch; j++) gnorm[j] = (float)norms[j];
  mp_free(norms);
  P *= (double)lambda / batch;
  float *G = grad_target(n);
  f->zero(be, G, n->nparams * sizeof(float));
  for (int i = 0; i < n->nl; i++) {
    const layer *l = &n->L[i];
    size_t cnt = per(l->oc, l->oh, l->ow) * (size_t)batch;
    if (l->kind == L_CONV) {
      mp_conv_desc d = conv_of(l, batch);
      const float *W = n->params + l->w_off;
      f->conv2d_backward_weights(be, &d, v, n->dact[i + 1], l->sn ? l->dw_eff : G + l->w_off, NULL);
      if (l->sn)
        f->sn_backward(be, W, l->dw_eff, l->k, (int)(l->w_n / (size_t)l->k), l->sn_u, l->sn_v, l->sigma, G + l->w_off);
      if (i == n->nl - 1) break;
      f->conv2d_forward(be, &d, v, l->sn ? l->w_eff : W, NULL, next);
    } else if (l->kind == L_ACT) {
      f->act_backward(be, l->act, l->slope, n->act[i], n->act[i + 1], v, next, cnt);
    } else {
      f->copy(be, next, v, cnt);
    }
    float *t = v;
    v = next, next = t;
  }
  grad_commit(n);
  host(n);
  return P;
}

void mp_net_adam(mp_net *n, float lr, float beta1, float beta2, float eps) {
  n->adam_t++;
  n->be->iface->adam_step(n->be, n->params, n->grads, n->m, n->v, n->nparams, lr, beta1, beta2, eps, n->adam_t);
  host(n);
}

size_t mp_net_param_count(const mp_net *n) { return n->nparams; }
float *mp_net_input(mp_net *n) { return n->act[0]; }
mp_backend *mp_net_backend(const mp_net *n) { return n->be; }
float *mp_net_params(mp_net *n) { return n->params; }
float *mp_net_grads(mp_net *n) { return n->grads; }
int mp_net_layers(const mp_net *n) { return n->nl; }
size_t mp_net_output_size(const mp_net *n) {
  const layer *l = &n->L[n->nl - 1];
  return per(l->oc, l->oh, l->ow);
}
const float *mp_net_activation(const mp_net *n, int i, size_t *per_sample) {
  MP_CHECK(i >= 0 && i <= n->nl, "activation %d of a %d-layer net", i, n->nl);
  MP_CHECK(i == 0 || !n->L[i - 1].fuse_relu, "activation %d is not materialised (fused BN+ReLU)", i);
  if (per_sample) *per_sample = i == n->nl ? mp_net_output_size(n) : per(n->L[i].c, n->L[i].h, n->L[i].w);
  return n->act[i];
}
void mp_net_param_slice(const mp_net *n, int i, size_t *wo, size_t *wl, size_t *bo, size_t *bl) {
  *wo = n->L[i].w_off, *wl = n->L[i].w_n, *bo = n->L[i].b_off, *bl = n->L[i].b_n;
}
float *mp_net_running_stats(mp_net *n, int i, float **var) {
  if (n->L[i].kind != L_BN) return NULL;
  float *m = n->stats + n->L[i].stat_off;
  if (var) *var = m + n->L[i].c;
  return m;
}

/* MP_NN_PROFILE's table: per layer, its shape and ms per call forward and backward */
static void prof_print(const mp_net *n) {
  if (!n->prof || n->prof_calls[0] < 2) return;
  double tf = 0, tb = 0;
  for (int i = 0; i < n->nl; i++) tf += n->prof[2 * i], tb += n->prof[2 * i + 1];
  /* per call, the first of each direction left out */
  long cf = n->prof_calls[0] > 1 ? n->prof_calls[0] - 1 : 1, cb = n->prof_calls[1] > 1 ? n->prof_calls[1] - 1 : 1;
  fprintf(stderr, "MP_NN_PROFILE %s, last batch %d: %ld forward / %ld backward calls timed (the first of each left out), "
          "%.3f / %.3f ms per call\n", n->be->iface->name, n->prof_batch, n->prof_calls[0] - 1,
          n->prof_calls[1] > 0 ? n->prof_calls[1] - 1 : 0, 1e3 * tf / cf, 1e3 * tb / cb);
  for (int i = 0; i < n->nl; i++) {
    const layer *l = &n->L[i];
    char what[480] = "";
    if (l->kind == L_CONV || l->kind == L_CONVT) {
      /* the kernels the backend chose: the layer's forward op, then its backward ops */
      static const char *ops[2][3] = {{"conv2d_forward", "conv2d_backward_data", "conv2d_backward_weights"},
                                      {"conv2d_backward_data", "conv2d_forward", "conv2d_backward_weights"}};
      mp_conv_desc d = conv_of(l, n->prof_batch);
      int o = snprintf(what, sizeof what, "k%d %dx%d s%d%s ", l->k, l->r, l->r, l->stride, l->sn ? " SN" : "");
      for (int q = 0; q < 3 && o > 0 && (size_t)o < sizeof what; q++) {
        const char *a = n->be->iface->describe(n->be, ops[l->kind == L_CONVT][q], &d);
        o += snprintf(what + o, sizeof what - (size_t)o, " [%s]", a ? a : "-");
      }
    }
    fprintf(stderr, "  %2d %-6s %4dx%-4dx%-4d -> %4dx%-4dx%-4d fwd %8.3f ms  bwd %8.3f ms  %s\n", i, kind_name(l->kind), l->c,
            l->h, l->w, l->oc, l->oh, l->ow, 1e3 * n->prof[2 * i] / cf, 1e3 * n->prof[2 * i + 1] / cb, what);
  }
}

void mp_net_free(mp_net *n) {
  if (!n) return;
  prof_print(n);
  mp_free(n->prof);
  for (int i = 0; i < n->nl; i++) {
    bfree(n, n->L[i].mask);
    bfree(n, n->L[i].save_mean);
    bfree(n, n->L[i].save_invstd);
    bfree(n, n->L[i].bn_scratch);
    bfree(n, n->L[i].sn_u);
    bfree(n, n->L[i].sn_v);
    bfree(n, n->L[i].w_eff);
    bfree(n, n->L[i].dw_eff);
    bfree(n, n->L[i].sigma);
  }
  bfree(n, n->gtmp);
  bfree(n, n->gp_a);
  bfree(n, n->gp_b);
  if (n->act)
    for (int i = 0; i <= n->nl; i++) {
      bfree(n, n->act[i]);
      bfree(n, n->dact[i]);
    }
  mp_free(n->act);
  mp_free(n->dact);
  bfree(n, n->params);
  bfree(n, n->grads);
  bfree(n, n->m);
  bfree(n, n->v);
  bfree(n, n->stats);
  mp_free(n->L);
  mp_free(n);
}

/* ---- checkpoints ------------------------------------------------------------------------- */
enum { CK_FORMAT = 1 };

/* Visit every tensor of the checkpoint: name and buffer. */
typedef int (*tensor_fn)(void *user, const char *name, float *data, size_t n);
static int each_tensor(const mp_net *n, tensor_fn fn, void *user) {
  static const char *prefix[3] = {"", "adam_m/", "adam_v/"};
  float *bufs[3] = {n->params, n->m, n->v};
  char name[128];
  for (int i = 0; i < n->nl; i++) {
    const layer *l = &n->L[i];
    for (int b = 0; b < 3; b++) {
      if (l->w_n) {
        snprintf(name, sizeof name, "%s%02d_%s/%s", prefix[b], i, kind_name(l->kind), l->kind == L_BN ? "gamma" : "weight");
        if (fn(user, name, bufs[b] + l->w_off, l->w_n)) return -1;
      }
      if (l->b_n) {
        snprintf(name, sizeof name, "%s%02d_%s/%s", prefix[b], i, kind_name(l->kind), l->kind == L_BN ? "beta" : "bias");
        if (fn(user, name, bufs[b] + l->b_off, l->b_n)) return -1;
      }
    }
    if (l->kind == L_BN) {
      snprintf(name, sizeof name, "%02d_bn/running_mean", i);
      if (fn(user, name, n->stats + l->stat_off, (size_t)l->c)) return -1;
      snprintf(name, sizeof name, "%02d_bn/running_var", i);
      if (fn(user, name, n->stats + l->stat_off + l->c, (size_t)l->c)) return -1;
    }
    if (l->sn) {
      snprintf(name, sizeof name, "%02d_conv/sn_u", i);
      if (fn(user, name, l->sn_u, (size_t)l->k)) return -1;
      snprintf(name, sizeof name, "%02d_conv/sn_v", i);
      if (fn(user, name, l->sn_v, l->w_n / (size_t)l->k)) return -1;
    }
  }
  return 0;
}

static int save_one(void *user, const char *name, float *data, size_t cnt) {
  hid_t f = *(hid_t *)user;
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hsize_t d = cnt;
  hid_t sp = H5Screate_simple(1, &d, NULL);
  hid_t ds = H5Dcreate2(f, name, H5T_NATIVE_FLOAT, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  int bad = ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0;
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(sp);
  H5Pclose(lcpl);
  return bad ? -1 : 0;
}

static void attr_u64(hid_t f, const char *name, unsigned long long v) {
  hid_t sp = H5Screate(H5S_SCALAR), a = H5Acreate2(f, name, H5T_NATIVE_ULLONG, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_ULLONG, &v);
  H5Aclose(a);
  H5Sclose(sp);
}

static int attr_get_u64(hid_t f, const char *name, unsigned long long *v) {
  if (H5Aexists(f, name) <= 0) return -1;
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  int rc = H5Aread(a, H5T_NATIVE_ULLONG, v) < 0 ? -1 : 0;
  H5Aclose(a);
  return rc;
}

int mp_net_save(const mp_net *n, const char *path, uint64_t step, char *err, size_t errlen) {
  mp_backend_sync(n->be); /* HDF5 reads the buffers in place: whatever a caller queued lands first */
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  hid_t f;
  H5E_BEGIN_TRY { f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT); }
  H5E_END_TRY;
  if (f < 0) {
    snprintf(err, errlen, "cannot create checkpoint '%s'", tmp);
    return -1;
  }
  int rc = each_tensor(n, save_one, &f);
  attr_u64(f, "format_version", CK_FORMAT);
  attr_u64(f, "adam_step", (unsigned long long)n->adam_t);
  attr_u64(f, "seed", n->seed);
  attr_u64(f, "step", step);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(mp_version_git()) + 1);
  hid_t sp = H5Screate(H5S_SCALAR), a = H5Acreate2(f, "software_git", t, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, t, mp_version_git());
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  if (H5Fclose(f) < 0) rc = -1;
  if (rc == 0 && rename(tmp, path) != 0) rc = -1;
  if (rc) {
    snprintf(err, errlen, "cannot write checkpoint '%s'", path);
    unlink(tmp);
  }
  return rc;
}

typedef struct {
  hid_t f;
  char *err;
  size_t errlen;
} load_ctx;

static int load_one(void *user, const char *name, float *data, size_t cnt) {
  load_ctx *c = user;
  htri_t ex;
  H5E_BEGIN_TRY { ex = H5Lexists(c->f, name, H5P_DEFAULT); } /* a missing group fails rather than answering 0 */
  H5E_END_TRY;
  if (ex <= 0) {
    snprintf(c->err, c->errlen, "checkpoint lacks tensor '%s'", name);
    return -1;
  }
  hid_t ds = H5Dopen2(c->f, name, H5P_DEFAULT), sp = H5Dget_space(ds);
  hssize_t have = H5Sget_simple_extent_npoints(sp);
  H5Sclose(sp);
  int rc = 0;
  if (have != (hssize_t)cnt) {
    snprintf(c->err, c->errlen, "checkpoint tensor '%s' has %lld values, the network needs %zu", name, (long long)have, cnt);
    rc = -1;
  } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    snprintf(c->err, c->errlen, "cannot read tensor '%s'", name);
    rc = -1;
  }
  H5Dclose(ds);
  return rc;
}

int mp_net_load(mp_net *n, const char *path, uint64_t *step, char *err, size_t errlen) {
  host(n); /* HDF5 writes the buffers in place: no queued op may still read them */
  hid_t f;
  H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } /* a missing file is reported here, not on HDF5's stack */
  H5E_END_TRY;
  if (f < 0) {
    snprintf(err, errlen, "cannot open checkpoint '%s'", path);
    return -1;
  }
  unsigned long long fmt = 0, t = 0, st = 0;
  int rc = 0;
  if (attr_get_u64(f, "format_version", &fmt) || fmt != CK_FORMAT) {
    snprintf(err, errlen, "'%s' is not a format-%d mammopatch checkpoint", path, CK_FORMAT);
    rc = -1;
  } else {
    load_ctx c = {f, err, errlen};
    rc = each_tensor(n, load_one, &c);
    if (rc == 0 && (attr_get_u64(f, "adam_step", &t) || attr_get_u64(f, "step", &st))) {
      snprintf(err, errlen, "checkpoint '%s' lacks its step counters", path);
      rc = -1;
    }
  }
  H5Fclose(f);
  if (rc == 0) {
    n->adam_t = (long)t;
    if (step) *step = st;
  }
  return rc;
}
