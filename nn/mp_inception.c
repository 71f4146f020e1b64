/* mp_inception — Inception-v3 inference (see mp_inception.h).
 *
 * Shapes (per image), torchvision's Inception3:
 *   1x299x299 -> Conv2d_1a_3x3 s2 32x149 -> 2a 32x147 -> 2b (p1) 64x147 -> maxpool 3/2 64x73
 *   -> 3b 1x1 80x73 -> 4a 192x71 -> maxpool 3/2 192x35
 *   -> Mixed_5b/5c/5d (A) 256/288/288 x35 -> Mixed_6a (B) 768x17 -> 6b..6e (C) 768x17
 *   -> Mixed_7a (D) 1280x8 -> 7b/7c (E) 2048x8 -> global average pool3 2048 -> fc classes.
 * Every "unit" is BasicConv2d: conv (no bias) + BN(eps 1e-3) + ReLU, folded at load.
 *
 * Two places for the activations: host memory with OpenMP loops for the pools, the
 * concatenation and the resize (host backends: ref, cpu); or the backend's memory (device
 * backends that offer resize_u8, pool2d_forward and copy2d: cuda, strict), where the patches
 * go up as bytes (a quarter of a 128 x 128 float batch; the resize on the host had cost ~1 ms
 * an image on one core, more than a GPU's whole forward) and each activation buffer is taken
 * from a cache of the batch's sizes (a device allocation per tensor would wait on the device
 * each time), released at the end of every mp_inception_forward_u8.  The arithmetic is the
 * same in both: mp_ref_resize_u8's, and the pools mp_ref_pool2d_forward's (averages summed in
 * double in window order).
 */
#include "mp_inception.h"

#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"

/* the plain-C layers (pools, concatenation, resize) share oneDNN's OpenMP threads */
#ifdef _OPENMP
#define PAR_FOR _Pragma("omp parallel for schedule(static)")
#else
#define PAR_FOR
#endif

typedef struct {
  char name[48];
  int cin, cout, kh, kw, stride, ph, pw;
  float *w, *b; /* folded, backend memory */
} unit;

enum { MAX_UNITS = 96 };

enum { MAX_CACHED = 64 };

struct mp_inception {
  mp_backend *be;
  int max_batch, classes, n; /* n: images of the batch being run */
  bool fid;
  bool dev; /* activations in the backend's memory (a device backend) */
  char variant[16];
  unit u[MAX_UNITS];
  int nu;
  float *fc_w, *fc_b; /* classes x 2048, classes */
  /* dev: activation buffers by size (reused across the batches of a call), and pool3 /
   * logits in the backend's memory */
  struct {
    float *p;
    size_t floats;
    bool used;
  } cache[MAX_CACHED];
  int ncache;
  float *dpool, *dlogits;
};

/* activations of the current batch: n x c x h x w (host memory, or the backend's when dev) */
typedef struct {
  float *d;
  int c, h, w;
} tensor;

/* ---- the architecture (one table drives loading; forward looks units up by name) ---------- */
static void add(mp_inception *m, const char *name, int cin, int cout, int kh, int kw, int stride, int ph, int pw) {
  MP_CHECK(m->nu < MAX_UNITS, "too many Inception units");
  unit *u = &m->u[m->nu++];
  snprintf(u->name, sizeof u->name, "%s", name);
  u->cin = cin, u->cout = cout, u->kh = kh, u->kw = kw, u->stride = stride, u->ph = ph, u->pw = pw;
}

static void add_sq(mp_inception *m, const char *name, int cin, int cout, int k, int stride, int pad) {
  add(m, name, cin, cout, k, k, stride, pad, pad);
}

static void define(mp_inception *m) {
  char b[48];
#define N(blk, br) (snprintf(b, sizeof b, "%s.%s", blk, br), b)
  add_sq(m, "Conv2d_1a_3x3", 3, 32, 3, 2, 0);
  add_sq(m, "Conv2d_2a_3x3", 32, 32, 3, 1, 0);
  add_sq(m, "Conv2d_2b_3x3", 32, 64, 3, 1, 1);
  add_sq(m, "Conv2d_3b_1x1", 64, 80, 1, 1, 0);
  add_sq(m, "Conv2d_4a_3x3", 80, 192, 3, 1, 0);
  static const char *const A[3] = {"Mixed_5b", "Mixed_5c", "Mixed_5d"};
  static const int Ain[3] = {192, 256, 288}, Apf[3] = {32, 64, 64};
  for (int i = 0; i < 3; i++) {
    add_sq(m, N(A[i], "branch1x1"), Ain[i], 64, 1, 1, 0);
    add_sq(m, N(A[i], "branch5x5_1"), Ain[i], 48, 1, 1, 0);
    add_sq(m, N(A[i], "branch5x5_2"), 48, 64, 5, 1, 2);
    add_sq(m, N(A[i], "branch3x3dbl_1"), Ain[i], 64, 1, 1, 0);
    add_sq(m, N(A[i], "branch3x3dbl_2"), 64, 96, 3, 1, 1);
    add_sq(m, N(A[i], "branch3x3dbl_3"), 96, 96, 3, 1, 1);
    add_sq(m, N(A[i], "branch_pool"), Ain[i], Apf[i], 1, 1, 0);
  }
  add_sq(m, "Mixed_6a.branch3x3", 288, 384, 3, 2, 0);
  add_sq(m, "Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1, 0);
  add_sq(m, "Mixed_6a.branch3x3dbl_2", 64, 96, 3, 1, 1);
  add_sq(m, "Mixed_6a.branch3x3dbl_3", 96, 96, 3, 2, 0);
  static const char *const C[4] = {"Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"};
  static const int c7s[4] = {128, 160, 160, 192};
  for (int i = 0; i < 4; i++) {
    int c7 = c7s[i];
    add_sq(m, N(C[i], "branch1x1"), 768, 192, 1, 1, 0);
    add_sq(m, N(C[i], "branch7x7_1"), 768, c7, 1, 1, 0);
    add(m, N(C[i], "branch7x7_2"), c7, c7, 1, 7, 1, 0, 3);
    add(m, N(C[i], "branch7x7_3"), c7, 192, 7, 1, 1, 3, 0);
    add_sq(m, N(C[i], "branch7x7dbl_1"), 768, c7, 1, 1, 0);
    add(m, N(C[i], "branch7x7dbl_2"), c7, c7, 7, 1, 1, 3, 0);
    add(m, N(C[i], "branch7x7dbl_3"), c7, c7, 1, 7, 1, 0, 3);
    add(m, N(C[i], "branch7x7dbl_4"), c7, c7, 7, 1, 1, 3, 0);
    add(m, N(C[i], "branch7x7dbl_5"), c7, 192, 1, 7, 1, 0, 3);
    add_sq(m, N(C[i], "branch_pool"), 768, 192, 1, 1, 0);
  }
  add_sq(m, "Mixed_7a.branch3x3_1", 768, 192, 1, 1, 0);
  add_sq(m, "Mixed_7a.branch3x3_2", 192, 320, 3, 2, 0);
  add_sq(m, "Mixed_7a.branch7x7x3_1", 768, 192, 1, 1, 0);
  add(m, "Mixed_7a.branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3);
  add(m, "Mixed_7a.branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0);
  add_sq(m, "Mixed_7a.branch7x7x3_4", 192, 192, 3, 2, 0);
  static const char *const E[2] = {"Mixed_7b", "Mixed_7c"};
  static const int Ein[2] = {1280, 2048};
  for (int i = 0; i < 2; i++) {
    add_sq(m, N(E[i], "branch1x1"), Ein[i], 320, 1, 1, 0);
    add_sq(m, N(E[i], "branch3x3_1"), Ein[i], 384, 1, 1, 0);
    add(m, N(E[i], "branch3x3_2a"), 384, 384, 1, 3, 1, 0, 1);
    add(m, N(E[i], "branch3x3_2b"), 384, 384, 3, 1, 1, 1, 0);
    add_sq(m, N(E[i], "branch3x3dbl_1"), Ein[i], 448, 1, 1, 0);
    add_sq(m, N(E[i], "branch3x3dbl_2"), 448, 384, 3, 1, 1);
    add(m, N(E[i], "branch3x3dbl_3a"), 384, 384, 1, 3, 1, 0, 1);
    add(m, N(E[i], "branch3x3dbl_3b"), 384, 384, 3, 1, 1, 1, 0);
    add_sq(m, N(E[i], "branch_pool"), Ein[i], 192, 1, 1, 0);
  }
#undef N
}

/* ---- loading ------------------------------------------------------------------------------------ */
/* Read dataset `name` (float32 of exactly `count` elements and the given rank/dims). */
static int read_ds(hid_t f, const char *name, int rank, const hsize_t *dims, float *out, char *err, size_t errlen) {
  if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return snprintf(err, errlen, "tensor '%s' is missing", name), -1;
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  if (d < 0) return snprintf(err, errlen, "tensor '%s' cannot be opened", name), -1;
  hid_t s = H5Dget_space(d);
  hsize_t got[8] = {0};
  int r = H5Sget_simple_extent_ndims(s);
  int ok = r == rank && r <= 8;
  if (ok) H5Sget_simple_extent_dims(s, got, NULL);
  for (int i = 0; ok && i < rank; i++) ok = got[i] == dims[i];
  if (!ok) {
    char want[96] = "", have[96] = "";
    for (int i = 0; i < rank; i++)
      snprintf(want + strlen(want), sizeof want - strlen(want), "%s%llu", i ? "x" : "", (unsigned long long)dims[i]);
    for (int i = 0; i < r && i < 8; i++)
      snprintf(have + strlen(have), sizeof have - strlen(have), "%s%llu", i ? "x" : "", (unsigned long long)got[i]);
    snprintf(err, errlen, "tensor '%s' has shape %s, expected %s", name, have, want);
  } else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
    snprintf(err, errlen, "tensor '%s' cannot be read", name);
    ok = 0;
  }
  H5Sclose(s);
  H5Dclose(d);
  return ok ? 0 : -1;
}

/* A root attribute as a string (fixed or variable length) or an integer. */
static int attr_str(hid_t f, const char *name, char *out, size_t n) {
  out[0] = 0;
  if (H5Aexists(f, name) <= 0) return -1;
  hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = H5Aget_type(a);
  int rc = -1;
  if (H5Tget_class(t) == H5T_STRING) {
    if (H5Tis_variable_str(t)) {
      hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      char *s = NULL;
      if (H5Aread(a, mt, &s) >= 0 && s) {
        snprintf(out, n, "%s", s);
        H5free_memory(s);
        rc = 0;
      }
      H5Tclose(mt);
    } else {
      size_t sz = H5Tget_size(t);
      char *buf = mp_calloc(1, sz + 1);
      if (H5Aread(a, t, buf) >= 0) snprintf(out, n, "%s", buf), rc = 0;
      mp_free(buf);
    }
  }
  H5Tclose(t);
  H5Aclose(a);
  return rc;
}

static int attr_int(hid_t f, const char *name, long long *v) {
  if (H5Aexists(f, name) <= 0) return -1;
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  int rc = H5Aread(a, H5T_NATIVE_LLONG, v) < 0 ? -1 : 0;
  H5Aclose(a);
  return rc;
}

/* conv weight + BN of one unit, folded: w' = w g / sqrt(v + eps), b' = beta - m g / sqrt(v + eps) */
static int load_unit(mp_inception *m, hid_t f, unit *u, char *err, size_t errlen) {
  const size_t per = (size_t)u->cin * u->kh * u->kw, nw = (size_t)u->cout * per;
  float *w = mp_malloc(nw * sizeof *w), *bn = mp_malloc(4 * (size_t)u->cout * sizeof *bn);
  char name[96];
  hsize_t wd[4] = {(hsize_t)u->cout, (hsize_t)u->cin, (hsize_t)u->kh, (hsize_t)u->kw}, cd[1] = {(hsize_t)u->cout};
  static const char *const bnp[4] = {"weight", "bias", "running_mean", "running_var"};
  snprintf(name, sizeof name, "%s.conv.weight", u->name);
  int rc = read_ds(f, name, 4, wd, w, err, errlen);
  for (int i = 0; i < 4 && !rc; i++) {
    snprintf(name, sizeof name, "%s.bn.%s", u->name, bnp[i]);
    rc = read_ds(f, name, 1, cd, bn + (size_t)i * u->cout, err, errlen);
  }
  if (!rc) {
    /* the first conv sees three copies of one gray image: sum its input channels */
    const bool gray = strcmp(u->name, "Conv2d_1a_3x3") == 0;
    const size_t rs = (size_t)u->kh * u->kw, per_out = gray ? rs : per;
    float *wf = mp_malloc((size_t)u->cout * per_out * sizeof *wf), *bf = mp_malloc((size_t)u->cout * sizeof *bf);
    for (int k = 0; k < u->cout; k++) {
      double g = bn[k], beta = bn[u->cout + k], mean = bn[2 * u->cout + k], var = bn[3 * u->cout + k];
      double s = g / sqrt(var + 1e-3);
      bf[k] = (float)(beta - mean * s);
      for (size_t e = 0; e < per_out; e++) {
        double v = 0;
        if (gray)
          for (int c = 0; c < u->cin; c++) v += w[(size_t)k * per + (size_t)c * rs + e];
        else
          v = w[(size_t)k * per + e];
        wf[(size_t)k * per_out + e] = (float)(v * s);
      }
    }
    if (gray) u->cin = 1;
    u->w = m->be->iface->alloc(m->be, (size_t)u->cout * per_out * sizeof(float));
    u->b = m->be->iface->alloc(m->be, (size_t)u->cout * sizeof(float));
    m->be->iface->upload(m->be, u->w, wf, (size_t)u->cout * per_out * sizeof(float));
    m->be->iface->upload(m->be, u->b, bf, (size_t)u->cout * sizeof(float));
    mp_free(wf), mp_free(bf);
  }
  mp_free(w), mp_free(bn);
  return rc;
}

bool mp_inception_runs_on(const mp_backend *be) {
  return !mp_backend_is_device(be) || (be->iface->resize_u8 && be->iface->pool2d_forward && be->iface->copy2d);
}

mp_inception *mp_inception_load(mp_backend *be, const char *path, int max_batch, char *err, size_t errlen) {
  if (!mp_inception_runs_on(be)) {
    snprintf(err, errlen, "the Inception extractor needs resizing, pooling and strided copies on the %s backend",
             be->iface->name);
    return NULL;
  }
  H5E_auto2_t fn;
  void *data;
  H5Eget_auto2(H5E_DEFAULT, &fn, &data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    H5Eset_auto2(H5E_DEFAULT, fn, data);
    snprintf(err, errlen, "cannot open Inception weights '%s' (convert them with tools/convert_inception_weights.py)",
             path);
    return NULL;
  }
  mp_inception *m = mp_calloc(1, sizeof *m);
  m->be = be, m->max_batch = max_batch > 0 ? max_batch : 1;
  m->dev = mp_backend_is_device(be);
  char model[64];
  long long ver = 0, classes = 0;
  int rc = 0;
  if (attr_int(f, "format_version", &ver) || ver != 1 || attr_str(f, "model", model, sizeof model) ||
      strcmp(model, "inception-v3") != 0) {
    snprintf(err, errlen, "%s: not an Inception-v3 weights file of format 1 (tools/convert_inception_weights.py)", path);
    rc = -1;
  }
  if (!rc && (attr_str(f, "variant", m->variant, sizeof m->variant) ||
              (strcmp(m->variant, "fid") && strcmp(m->variant, "torchvision")))) {
    snprintf(err, errlen, "%s: attribute variant must be fid or torchvision", path);
    rc = -1;
  }
  if (!rc && (attr_int(f, "num_classes", &classes) || classes < 1 || classes > 100000)) {
    snprintf(err, errlen, "%s: bad num_classes", path);
    rc = -1;
  }
  m->fid = strcmp(m->variant, "fid") == 0, m->classes = (int)classes;
  define(m);
  for (int i = 0; i < m->nu && !rc; i++) rc = load_unit(m, f, &m->u[i], err, errlen);
  if (!rc) {
    float *w = mp_malloc((size_t)m->classes * MP_INCEPTION_POOL3 * sizeof *w), *b = mp_malloc((size_t)m->classes * 4);
    hsize_t wd[2] = {(hsize_t)m->classes, MP_INCEPTION_POOL3}, bd[1] = {(hsize_t)m->classes};
    rc = read_ds(f, "fc.weight", 2, wd, w, err, errlen);
    if (!rc) rc = read_ds(f, "fc.bias", 1, bd, b, err, errlen);
    if (!rc) {
      m->fc_w = be->iface->alloc(be, (size_t)m->classes * MP_INCEPTION_POOL3 * sizeof *w);
      m->fc_b = be->iface->alloc(be, (size_t)m->classes * sizeof *b);
      be->iface->upload(be, m->fc_w, w, (size_t)m->classes * MP_INCEPTION_POOL3 * sizeof *w);
      be->iface->upload(be, m->fc_b, b, (size_t)m->classes * sizeof *b);
    }
    mp_free(w), mp_free(b);
  }
  H5Fclose(f);
  H5Eset_auto2(H5E_DEFAULT, fn, data);
  if (rc) {
    mp_inception_free(m);
    return NULL;
  }
  return m;
}

/* dev: the cached activation buffers back to the backend */
static void drop_buffers(mp_inception *m) {
  if (!m->ncache) return;
  mp_backend_sync(m->be);
  for (int i = 0; i < m->ncache; i++) m->be->iface->release(m->be, m->cache[i].p);
  m->ncache = 0;
}

/* dev: those and the per-call buffers */
static void release_cache(mp_inception *m) {
  drop_buffers(m);
  if (m->dpool) m->be->iface->release(m->be, m->dpool);
  if (m->dlogits) m->be->iface->release(m->be, m->dlogits);
  m->dpool = m->dlogits = NULL;
}

void mp_inception_free(mp_inception *m) {
  if (!m) return;
  for (int i = 0; i < m->nu; i++) {
    if (m->u[i].w) m->be->iface->release(m->be, m->u[i].w);
    if (m->u[i].b) m->be->iface->release(m->be, m->u[i].b);
  }
  if (m->fc_w) m->be->iface->release(m->be, m->fc_w);
  if (m->fc_b) m->be->iface->release(m->be, m->fc_b);
  release_cache(m);
  mp_free(m);
}

int mp_inception_classes(const mp_inception *m) { return m->classes; }
const char *mp_inception_variant(const mp_inception *m) { return m->variant; }

/* ---- layers ------------------------------------------------------------------------------------- */
static tensor tnew(mp_inception *m, int c, int h, int w) {
  const size_t floats = (size_t)m->n * c * h * w;
  if (!m->dev) return (tensor){mp_malloc(floats * sizeof(float)), c, h, w};
  for (int i = 0; i < m->ncache; i++)
    if (!m->cache[i].used && m->cache[i].floats == floats) {
      m->cache[i].used = true;
      return (tensor){m->cache[i].p, c, h, w};
    }
  MP_CHECK(m->ncache < MAX_CACHED, "Inception: more than %d activation buffers", MAX_CACHED);
  float *p = m->be->iface->alloc(m->be, floats * sizeof(float));
  m->cache[m->ncache].p = p, m->cache[m->ncache].floats = floats, m->cache[m->ncache].used = true;
  m->ncache++;
  return (tensor){p, c, h, w};
}

/* a tensor's buffer given back (dev: to the cache, for the next tensor of its size) */
static void tfree(mp_inception *m, tensor x) {
  if (!m->dev) {
    mp_free(x.d);
    return;
  }
  for (int i = 0; i < m->ncache; i++)
    if (m->cache[i].p == x.d) {
      m->cache[i].used = false;
      return;
    }
  mp_fatal(MP_EXIT_FATAL, "Inception: a buffer not from the cache");
}

static const unit *U(const mp_inception *m, const char *blk, const char *br) {
  char name[48];
  if (br)
    snprintf(name, sizeof name, "%s.%s", blk, br);
  else
    snprintf(name, sizeof name, "%s", blk);
  for (int i = 0; i < m->nu; i++)
    if (strcmp(m->u[i].name, name) == 0) return &m->u[i];
  mp_fatal(MP_EXIT_FATAL, "Inception unit %s not defined", name);
  return NULL;
}

/* conv (folded BN) + ReLU on the backend; x is kept */
static tensor conv(mp_inception *m, const unit *u, tensor x) {
  mp_conv_desc d;
  MP_CHECK(x.c == u->cin && mp_conv_desc_init_hw(&d, m->n, x.c, x.h, x.w, u->cout, u->kh, u->kw, u->stride, u->ph,
                                                 u->pw) == 0,
           "Inception %s: input %dx%dx%d", u->name, x.c, x.h, x.w);
  tensor y = tnew(m, u->cout, d.p, d.q);
  mp_conv2d_forward(m->be, &d, x.d, u->w, u->b, y.d);
  m->be->iface->act_forward(m->be, MP_ACT_RELU, 0.0f, y.d, y.d, mp_conv_y_count(&d));
  return y;
}

static tensor conv_free(mp_inception *m, const unit *u, tensor x) { /* conv, then x freed */
  tensor y = conv(m, u, x);
  tfree(m, x);
  return y;
}

/* 3x3 max pool (stride, padding ignored as -inf) */
static tensor maxpool3(mp_inception *m, tensor x, int stride, int pad) {
  int oh = (x.h + 2 * pad - 3) / stride + 1, ow = (x.w + 2 * pad - 3) / stride + 1;
  tensor y = tnew(m, x.c, oh, ow);
  if (m->dev) {
    m->be->iface->pool2d_forward(m->be, MP_POOL_MAX, x.d, y.d, m->n, x.c, x.h, x.w, 3, stride, pad);
    return y;
  }
  PAR_FOR
  for (size_t nc = 0; nc < (size_t)m->n * x.c; nc++) {
    const float *src = x.d + nc * x.h * x.w;
    float *dst = y.d + nc * oh * ow;
    for (int i = 0; i < oh; i++)
      for (int j = 0; j < ow; j++) {
        float v = -INFINITY;
        for (int a = 0; a < 3; a++) {
          int r = i * stride - pad + a;
          if (r < 0 || r >= x.h) continue;
          for (int b = 0; b < 3; b++) {
            int c = j * stride - pad + b;
            if (c >= 0 && c < x.w && src[r * x.w + c] > v) v = src[r * x.w + c];
          }
        }
        dst[i * ow + j] = v;
      }
  }
  return y;
}

/* 3x3 average pool, stride 1, padding 1: divide by 9 (count_include_pad, torchvision) or
 * by the pixels inside the image (the FID network); summed in double (mp_ref_pool2d_forward) */
static tensor avgpool3(mp_inception *m, tensor x, bool count_pad) {
  tensor y = tnew(m, x.c, x.h, x.w);
  if (m->dev) {
    m->be->iface->pool2d_forward(m->be, count_pad ? MP_POOL_AVG : MP_POOL_AVG_IN, x.d, y.d, m->n, x.c, x.h, x.w, 3, 1,
                                 1);
    return y;
  }
  PAR_FOR
  for (size_t nc = 0; nc < (size_t)m->n * x.c; nc++) {
    const float *src = x.d + nc * x.h * x.w;
    float *dst = y.d + nc * x.h * x.w;
    for (int i = 0; i < x.h; i++)
      for (int j = 0; j < x.w; j++) {
        double s = 0;
        int cnt = 0;
        for (int r = i - 1; r <= i + 1; r++)
          for (int c = j - 1; c <= j + 1; c++)
            if (r >= 0 && r < x.h && c >= 0 && c < x.w) s += src[r * x.w + c], cnt++;
        dst[i * x.w + j] = (float)(s / (count_pad ? 9 : cnt));
      }
  }
  return y;
}

/* channel concatenation of k tensors of the same h x w (each freed) */
static tensor cat(mp_inception *m, tensor *p, int k) {
  int c = 0;
  for (int i = 0; i < k; i++) c += p[i].c;
  tensor y = tnew(m, c, p[0].h, p[0].w);
  const size_t hw = (size_t)p[0].h * p[0].w;
  if (m->dev) { /* part i: n rows of its c_i hw floats, at its channel offset of each image */
    size_t off = 0;
    for (int i = 0; i < k; i++) {
      m->be->iface->copy2d(m->be, y.d + off, (size_t)c * hw, p[i].d, (size_t)p[i].c * hw, (size_t)p[i].c * hw,
                           (size_t)m->n);
      off += (size_t)p[i].c * hw;
      tfree(m, p[i]);
    }
    return y;
  }
  PAR_FOR
  for (int n = 0; n < m->n; n++) {
    size_t off = (size_t)n * c * hw;
    for (int i = 0; i < k; i++) {
      memcpy(y.d + off, p[i].d + (size_t)n * p[i].c * hw, (size_t)p[i].c * hw * sizeof(float));
      off += (size_t)p[i].c * hw;
    }
  }
  for (int i = 0; i < k; i++) tfree(m, p[i]);
  return y;
}

/* ---- blocks (x freed) ------------------------------------------------------------------------------ */
static tensor block_a(mp_inception *m, const char *b, tensor x) {
  tensor p[4];
  p[0] = conv(m, U(m, b, "branch1x1"), x);
  p[1] = conv_free(m, U(m, b, "branch5x5_2"), conv(m, U(m, b, "branch5x5_1"), x));
  p[2] = conv_free(m, U(m, b, "branch3x3dbl_3"),
                   conv_free(m, U(m, b, "branch3x3dbl_2"), conv(m, U(m, b, "branch3x3dbl_1"), x)));
  p[3] = conv_free(m, U(m, b, "branch_pool"), avgpool3(m, x, !m->fid));
  tfree(m, x);
  return cat(m, p, 4);
}

static tensor block_b(mp_inception *m, tensor x) {
  const char *b = "Mixed_6a";
  tensor p[3];
  p[0] = conv(m, U(m, b, "branch3x3"), x);
  p[1] = conv_free(m, U(m, b, "branch3x3dbl_3"),
                   conv_free(m, U(m, b, "branch3x3dbl_2"), conv(m, U(m, b, "branch3x3dbl_1"), x)));
  p[2] = maxpool3(m, x, 2, 0);
  tfree(m, x);
  return cat(m, p, 3);
}

static tensor block_c(mp_inception *m, const char *b, tensor x) {
  tensor p[4];
  p[0] = conv(m, U(m, b, "branch1x1"), x);
  tensor t = conv(m, U(m, b, "branch7x7_1"), x);
  t = conv_free(m, U(m, b, "branch7x7_2"), t);
  p[1] = conv_free(m, U(m, b, "branch7x7_3"), t);
  t = conv(m, U(m, b, "branch7x7dbl_1"), x);
  for (int i = 2; i <= 5; i++) {
    char br[24];
    snprintf(br, sizeof br, "branch7x7dbl_%d", i);
    t = conv_free(m, U(m, b, br), t);
  }
  p[2] = t;
  p[3] = conv_free(m, U(m, b, "branch_pool"), avgpool3(m, x, !m->fid));
  tfree(m, x);
  return cat(m, p, 4);
}

static tensor block_d(mp_inception *m, tensor x) {
  const char *b = "Mixed_7a";
  tensor p[3];
  p[0] = conv_free(m, U(m, b, "branch3x3_2"), conv(m, U(m, b, "branch3x3_1"), x));
  tensor t = conv(m, U(m, b, "branch7x7x3_1"), x);
  t = conv_free(m, U(m, b, "branch7x7x3_2"), t);
  t = conv_free(m, U(m, b, "branch7x7x3_3"), t);
  p[1] = conv_free(m, U(m, b, "branch7x7x3_4"), t);
  p[2] = maxpool3(m, x, 2, 0);
  tfree(m, x);
  return cat(m, p, 3);
}

/* Mixed_7b / 7c; `last` = 7c, whose branch pool is a max pool in the FID network */
static tensor block_e(mp_inception *m, const char *b, tensor x, bool last) {
  tensor p[6];
  p[0] = conv(m, U(m, b, "branch1x1"), x);
  tensor t = conv(m, U(m, b, "branch3x3_1"), x);
  p[1] = conv(m, U(m, b, "branch3x3_2a"), t);
  p[2] = conv_free(m, U(m, b, "branch3x3_2b"), t);
  t = conv_free(m, U(m, b, "branch3x3dbl_2"), conv(m, U(m, b, "branch3x3dbl_1"), x));
  p[3] = conv(m, U(m, b, "branch3x3dbl_3a"), t);
  p[4] = conv_free(m, U(m, b, "branch3x3dbl_3b"), t);
  tensor pool = m->fid && last ? maxpool3(m, x, 1, 1) : avgpool3(m, x, !m->fid);
  p[5] = conv_free(m, U(m, b, "branch_pool"), pool);
  tfree(m, x);
  return cat(m, p, 6);
}

static void forward_batch(mp_inception *m, const uint8_t *px, int n, int side, float *pool3, float *logits) {
  if (m->dev && n != m->n) drop_buffers(m); /* another batch size (a call's last): other sizes */
  m->n = n;
  enum { S = MP_INCEPTION_SIDE };
  tensor x = tnew(m, 1, S, S);
  if (m->dev) /* the patches go up as bytes and are resized there */
    m->be->iface->resize_u8(m->be, px, n, side, S, x.d);
  else {
    PAR_FOR
    for (int i = 0; i < n; i++) mp_ref_resize_u8(px + (size_t)i * side * side, 1, side, S, x.d + (size_t)i * S * S);
  }
  x = conv_free(m, U(m, "Conv2d_1a_3x3", NULL), x);
  x = conv_free(m, U(m, "Conv2d_2a_3x3", NULL), x);
  x = conv_free(m, U(m, "Conv2d_2b_3x3", NULL), x);
  tensor t = maxpool3(m, x, 2, 0);
  tfree(m, x);
  x = conv_free(m, U(m, "Conv2d_3b_1x1", NULL), t);
  x = conv_free(m, U(m, "Conv2d_4a_3x3", NULL), x);
  t = maxpool3(m, x, 2, 0);
  tfree(m, x);
  x = block_a(m, "Mixed_5b", t);
  x = block_a(m, "Mixed_5c", x);
  x = block_a(m, "Mixed_5d", x);
  x = block_b(m, x);
  x = block_c(m, "Mixed_6b", x);
  x = block_c(m, "Mixed_6c", x);
  x = block_c(m, "Mixed_6d", x);
  x = block_c(m, "Mixed_6e", x);
  x = block_d(m, x);
  x = block_e(m, "Mixed_7b", x, false);
  x = block_e(m, "Mixed_7c", x, true);
  MP_CHECK(x.c == MP_INCEPTION_POOL3 && x.h == x.w, "Inception: %dx%dx%d before the pool", x.c, x.h, x.w);
  const size_t hw = (size_t)x.h * x.w;
  if (m->dev) { /* the global mean (the host loop's arithmetic), the fc, then to the host */
    m->be->iface->pool2d_forward(m->be, MP_POOL_AVG, x.d, m->dpool, n, x.c, x.h, x.w, x.h, 1, 0);
    tfree(m, x);
    mp_backend_download(m->be, pool3, m->dpool, (size_t)n * MP_INCEPTION_POOL3 * sizeof(float));
    if (logits) {
      m->be->iface->linear_forward(m->be, m->dpool, m->fc_w, m->fc_b, m->dlogits, n, MP_INCEPTION_POOL3, m->classes);
      mp_backend_download(m->be, logits, m->dlogits, (size_t)n * m->classes * sizeof(float));
    }
    return;
  }
  PAR_FOR
  for (size_t nc = 0; nc < (size_t)n * x.c; nc++) {
    double s = 0;
    for (size_t e = 0; e < hw; e++) s += x.d[nc * hw + e];
    pool3[nc] = (float)(s / (double)hw);
  }
  tfree(m, x);
  if (logits) m->be->iface->linear_forward(m->be, pool3, m->fc_w, m->fc_b, logits, n, MP_INCEPTION_POOL3, m->classes);
}

void mp_inception_forward_u8(mp_inception *m, const uint8_t *px, int n, int side, float *pool3, float *logits) {
  if (m->dev && n > 0) {
    const int b = n < m->max_batch ? n : m->max_batch;
    m->dpool = m->be->iface->alloc(m->be, (size_t)b * MP_INCEPTION_POOL3 * sizeof(float));
    m->dlogits = m->be->iface->alloc(m->be, (size_t)b * m->classes * sizeof(float));
  }
  for (int i = 0; i < n; i += m->max_batch) {
    int k = n - i < m->max_batch ? n - i : m->max_batch;
    forward_batch(m, px + (size_t)i * side * side, k, side, pool3 + (size_t)i * MP_INCEPTION_POOL3,
                  logits ? logits + (size_t)i * m->classes : NULL);
  }
  if (m->dev) release_cache(m);
}

void mp_inception_score(const float *logits, int n, int classes, int splits, double *mean, double *std) {
  *mean = *std = NAN;
  if (splits < 1 || n < splits) return;
  double *p = mp_malloc((size_t)classes * sizeof *p), *py = mp_malloc((size_t)classes * sizeof *py);
  double *is = mp_malloc((size_t)splits * sizeof *is), m1 = 0;
  for (int sp = 0; sp < splits; sp++) {
    int a = (int)((long long)sp * n / splits), b = (int)((long long)(sp + 1) * n / splits);
    memset(py, 0, (size_t)classes * sizeof *py);
    for (int i = a; i < b; i++) { /* p(y) = mean softmax */
      const float *z = logits + (size_t)i * classes;
      double mx = z[0], s = 0;
      for (int c = 1; c < classes; c++) mx = z[c] > mx ? z[c] : mx;
      for (int c = 0; c < classes; c++) s += exp(z[c] - mx);
      for (int c = 0; c < classes; c++) py[c] += exp(z[c] - mx) / s / (b - a);
    }
    double kl = 0;
    for (int i = a; i < b; i++) {
      const float *z = logits + (size_t)i * classes;
      double mx = z[0], s = 0;
      for (int c = 1; c < classes; c++) mx = z[c] > mx ? z[c] : mx;
      for (int c = 0; c < classes; c++) s += exp(z[c] - mx);
      double ls = log(s);
      for (int c = 0; c < classes; c++) {
        p[c] = exp(z[c] - mx) / s;
        if (p[c] > 0) kl += p[c] * ((z[c] - mx - ls) - log(py[c]));
      }
    }
    is[sp] = exp(kl / (b - a));
    m1 += is[sp];
  }
  m1 /= splits;
  double v = 0;
  for (int sp = 0; sp < splits; sp++) v += (is[sp] - m1) * (is[sp] - m1);
  *mean = m1, *std = sqrt(v / splits);
  mp_free(p), mp_free(py), mp_free(is);
}
