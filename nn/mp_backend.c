/* mp_backend — backend registry and the ref backend (see mp_backend.h). */
#include "mp_build_config.h"
#include "mp_backend.h"

#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_config.h"
#include "mp_gpu.h"
#include "mp_log.h"

static void *ref_alloc(mp_backend *b, size_t bytes) {
  (void)b;
  return mp_malloc(bytes);
}
static void ref_release(mp_backend *b, void *p) {
  (void)b;
  mp_free(p);
}
static void ref_copy(mp_backend *b, void *dst, const void *src, size_t bytes) {
  (void)b;
  memcpy(dst, src, bytes);
}
static void ref_destroy(mp_backend *b) { mp_free(b); }
static void ref_conv_fwd(mp_backend *b, const mp_conv_desc *d, const float *x, const float *w, const float *bias,
                         float *y) {
  (void)b;
  mp_ref_conv2d_forward(d, x, w, bias, y);
}
static void ref_conv_bwd_data(mp_backend *b, const mp_conv_desc *d, const float *dy, const float *w, float *dx) {
  (void)b;
  mp_ref_conv2d_backward_data(d, dy, w, dx);
}
static void ref_conv_bwd_weights(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, float *dw,
                                 float *db) {
  (void)b;
  mp_ref_conv2d_backward_weights(d, x, dy, dw, db);
}
/* (mp_backend.h) the first "model name" line of /proc/cpuinfo, read once */
const char *mp_host_cpu_model(void) {
  static char model[160];
  if (model[0]) return model;
  snprintf(model, sizeof model, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return model;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    const char *colon = strchr(line, ':');
    if (strncmp(line, "model name", 10) != 0 || !colon) continue;
    colon++;
    while (*colon == ' ' || *colon == '\t') colon++;
    size_t n = strcspn(colon, "\n");
    while (n && colon[n - 1] == ' ') n--;
    if (n) snprintf(model, sizeof model, "%.*s", (int)(n < sizeof model ? n : sizeof model - 1), colon);
    break;
  }
  fclose(f);
  return model;
}

static const char *ref_describe(mp_backend *b, const char *op, const mp_conv_desc *d) {
  (void)b;
  (void)d;
  static char whole[224];
  if (op) return "ref: plain C, double accumulation";
  snprintf(whole, sizeof whole, "ref: plain C, double accumulation, %s", mp_host_cpu_model());
  return whole;
}

static void ref_bn_train(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                         float *y, float *sm, float *si, float *rm, float *rv) {
  (void)b;
  mp_ref_bn_forward_train(d, x, gamma, beta, y, sm, si, rm, rv);
}
static void ref_bn_eval(mp_backend *b, const mp_bn_desc *d, const float *x, const float *gamma, const float *beta,
                        const float *rm, const float *rv, float *y) {
  (void)b;
  mp_ref_bn_forward_eval(d, x, gamma, beta, rm, rv, y);
}
static void ref_bn_bwd(mp_backend *b, const mp_bn_desc *d, const float *x, const float *dy, const float *gamma,
                       const float *sm, const float *si, float *dx, float *dg, float *dbeta) {
  (void)b;
  mp_ref_bn_backward(d, x, dy, gamma, sm, si, dx, dg, dbeta);
}
static void ref_act_fwd(mp_backend *b, int kind, float slope, const float *x, float *y, size_t n) {
  (void)b;
  switch (kind) {
  case MP_ACT_RELU: mp_ref_relu_forward(x, y, n); break;
  case MP_ACT_LRELU: mp_ref_lrelu_forward(x, y, n, slope); break;
  case MP_ACT_TANH: mp_ref_tanh_forward(x, y, n); break;
  default: mp_ref_sigmoid_forward(x, y, n); break;
  }
}
static void ref_act_bwd(mp_backend *b, int kind, float slope, const float *x, const float *y, const float *dy,
                        float *dx, size_t n) {
  (void)b;
  switch (kind) {
  case MP_ACT_RELU: mp_ref_relu_backward(x, dy, dx, n); break;
  case MP_ACT_LRELU: mp_ref_lrelu_backward(x, dy, dx, n, slope); break;
  case MP_ACT_TANH: mp_ref_tanh_backward(y, dy, dx, n); break;
  default: mp_ref_sigmoid_backward(y, dy, dx, n); break;
  }
}
static void ref_pool_fwd(mp_backend *b, const float *x, float *y, unsigned char *am, int n, int c, int h, int w) {
  (void)b;
  mp_ref_maxpool2_forward(x, y, am, n, c, h, w);
}
static void ref_pool_bwd(mp_backend *b, const float *dy, const unsigned char *am, float *dx, int n, int c, int h, int w) {
  (void)b;
  mp_ref_maxpool2_backward(dy, am, dx, n, c, h, w);
}
static void ref_lin_fwd(mp_backend *b, const float *x, const float *w, const float *bias, float *y, int n, int in,
                        int out) {
  (void)b;
  mp_ref_linear_forward(x, w, bias, y, n, in, out);
}
static void ref_lin_bwd(mp_backend *b, const float *x, const float *w, const float *dy, float *dx, float *dw, float *db,
                        int n, int in, int out) {
  (void)b;
  mp_ref_linear_backward(x, w, dy, dx, dw, db, n, in, out);
}
static void ref_drop_fwd(mp_backend *b, const float *x, float *y, unsigned char *mask, size_t n, float p, uint64_t seed,
                         uint64_t index, uint64_t e0) {
  (void)b;
  mp_ref_dropout_forward(x, y, mask, n, p, seed, index, e0);
}
static void ref_drop_bwd(mp_backend *b, const float *dy, const unsigned char *mask, float *dx, size_t n, float p) {
  (void)b;
  mp_ref_dropout_backward(dy, mask, dx, n, p);
}
static void ref_adam(mp_backend *b, float *param, const float *grad, float *m, float *v, size_t n, float lr, float b1,
                     float b2, float eps, long step) {
  (void)b;
  mp_ref_adam_step(param, grad, m, v, n, lr, b1, b2, eps, step);
}

static void host_copy(mp_backend *b, float *dst, const float *src, size_t n) {
  (void)b;
  if (n) memcpy(dst, src, n * sizeof *dst);
}
static void host_zero(mp_backend *b, void *dst, size_t bytes) {
  (void)b;
  if (bytes) memset(dst, 0, bytes);
}
static void host_axpy(mp_backend *b, float a, const float *x, float *y, size_t n) {
  (void)b;
  for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}
static void host_scale(mp_backend *b, float a, float *x, size_t n) {
  (void)b;
  for (size_t i = 0; i < n; i++) x[i] *= a;
}
static void ref_sn_fwd(mp_backend *b, const float *w, int rows, int cols, float *u, float *v, float *w_sn, int train,
                       double *sigma) {
  (void)b;
  *sigma = train ? mp_ref_spectral_norm_forward(w, rows, cols, u, v, w_sn)
                 : mp_ref_spectral_norm_eval(w, rows, cols, u, v, w_sn);
}
static void ref_sn_bwd(mp_backend *b, const float *w, const float *dw_sn, int rows, int cols, const float *u,
                       const float *v, const double *sigma, float *dw) {
  (void)b;
  mp_ref_spectral_norm_backward(w, dw_sn, rows, cols, u, v, *sigma, dw);
}

static double host_penalty_grad(mp_backend *b, const float *g, int n, size_t m, float lambda, float *v,
                                double *norms) {
  mp_backend_sync(b);
  double P = 0;
  for (int j = 0; j < n; j++) {
    const float *gj = g + (size_t)j * m;
    double ss = 0;
    for (size_t e = 0; e < m; e++) ss += (double)gj[e] * gj[e];
    double norm = sqrt(ss);
    norms[j] = norm;
    P += (norm - 1) * (norm - 1);
    double coef = norm > 0 ? lambda * 2.0 * (norm - 1) / (n * norm) : 0.0;
    for (size_t e = 0; e < m; e++) v[(size_t)j * m + e] = (float)(coef * gj[e]);
  }
  return P;
}

static void host_mix_rows(mp_backend *b, const float *a, const float *bb, const float *e, int n, size_t m,
                          float *out) {
  mp_backend_sync(b);
  for (int j = 0; j < n; j++) {
    const float ej = e[j], *aj = a + (size_t)j * m, *bj = bb + (size_t)j * m;
    float *oj = out + (size_t)j * m;
    for (size_t i = 0; i < m; i++) oj[i] = ej * aj[i] + (1.0f - ej) * bj[i];
  }
}

static void ref_patches(mp_backend *b, const uint8_t *const *src, const uint32_t *bits, int n, int P, int rot90,
                        float *dst) {
  (void)b;
  mp_ref_patches_to_input(src, bits, n, P, rot90, dst);
}

static void generic_conv_bwd(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, const float *w,
                             float *dx, float *dw, float *db) {
  b->iface->conv2d_backward_weights(b, d, x, dy, dw, db);
  if (dx) b->iface->conv2d_backward_data(b, d, dy, w, dx);
}

void mp_backend_fill_ref_ops(mp_backend_i *f) {
  if (!f->conv2d_forward) f->conv2d_forward = ref_conv_fwd;
  if (!f->conv2d_backward_data) f->conv2d_backward_data = ref_conv_bwd_data;
  if (!f->conv2d_backward_weights) f->conv2d_backward_weights = ref_conv_bwd_weights;
  if (!f->conv2d_backward) f->conv2d_backward = generic_conv_bwd;
  if (!f->bn_forward_train) f->bn_forward_train = ref_bn_train;
  if (!f->bn_forward_eval) f->bn_forward_eval = ref_bn_eval;
  if (!f->bn_backward) f->bn_backward = ref_bn_bwd;
  if (!f->act_forward) f->act_forward = ref_act_fwd;
  if (!f->act_backward) f->act_backward = ref_act_bwd;
  if (!f->maxpool2_forward) f->maxpool2_forward = ref_pool_fwd;
  if (!f->maxpool2_backward) f->maxpool2_backward = ref_pool_bwd;
  if (!f->linear_forward) f->linear_forward = ref_lin_fwd;
  if (!f->linear_backward) f->linear_backward = ref_lin_bwd;
  if (!f->dropout_forward) f->dropout_forward = ref_drop_fwd;
  if (!f->dropout_backward) f->dropout_backward = ref_drop_bwd;
  if (!f->adam_step) f->adam_step = ref_adam;
  if (!f->copy) f->copy = host_copy;
  if (!f->zero) f->zero = host_zero;
  if (!f->axpy) f->axpy = host_axpy;
  if (!f->scale) f->scale = host_scale;
  if (!f->sn_forward) f->sn_forward = ref_sn_fwd;
  if (!f->sn_backward) f->sn_backward = ref_sn_bwd;
  if (!f->patches_to_input) f->patches_to_input = ref_patches;
  if (!f->penalty_grad) f->penalty_grad = host_penalty_grad;
  if (!f->mix_rows) f->mix_rows = host_mix_rows;
}

static mp_backend_i ref_iface = {
    .name = "ref",
    .destroy = ref_destroy,
    .alloc = ref_alloc,
    .release = ref_release,
    .upload = ref_copy,
    .download = ref_copy,
    .conv2d_forward = ref_conv_fwd,
    .conv2d_backward_data = ref_conv_bwd_data,
    .conv2d_backward_weights = ref_conv_bwd_weights,
    .describe = ref_describe,
};

mp_backend *mp_backend_ref_create(void) {
  mp_backend *b = mp_calloc(1, sizeof *b);
  mp_backend_fill_ref_ops(&ref_iface); /* idempotent: fills the entries once */
  b->iface = &ref_iface;
  return b;
}

#if MP_HAVE_CUDA_BACKEND
/* The cuda backend module, loaded on first use (so a run on the CPU never maps cuDNN,
 * cuBLAS or NCCL); NULL with the reason when it cannot be loaded. */
static mp_backend *cuda_create(int precision, char *err, size_t errlen) {
  static mp_backend_cuda_create_fn fn;
  if (!fn) {
    const char *path = getenv("MP_CUDA_BACKEND_MODULE");
    if (!path || !path[0]) path = MP_CUDA_BACKEND_MODULE;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      snprintf(err, errlen, "backend 'cuda': cannot load its module %s: %s", path, dlerror());
      return NULL;
    }
    fn = (mp_backend_cuda_create_fn)dlsym(h, "mp_backend_cuda_create");
    if (!fn) {
      snprintf(err, errlen, "backend 'cuda': %s has no mp_backend_cuda_create", path);
      return NULL;
    }
  }
  return fn(precision, err, errlen);
}
#endif

mp_backend *mp_backend_create(const char *name, char *err, size_t errlen) {
  if (!strcmp(name, "ref")) return mp_backend_ref_create();
  if (!strcmp(name, "strict")) return mp_backend_strict_create(1, err, errlen);
  if (!strcmp(name, "strict:mpi")) return mp_backend_strict_create(0, err, errlen);
#if MP_HAVE_DNNL
  if (!strcmp(name, "cpu")) return mp_backend_dnnl_create(err, errlen);
#endif
#if MP_HAVE_CUDA_BACKEND
  if (!strcmp(name, "cuda") || !strcmp(name, "cuda:fp32")) return cuda_create(0, err, errlen);
  if (!strcmp(name, "cuda:tf32")) return cuda_create(1, err, errlen);
  if (!strcmp(name, "cuda:bf16")) return cuda_create(2, err, errlen);
#endif
  snprintf(err, errlen, "backend '%s' is not in this build (available: %s)", name, mp_backend_list());
  return NULL;
}

void mp_backend_name_cfg(const mp_config *cfg, const char *name, char *out, size_t len) {
  if (strcmp(name, "cuda") != 0) snprintf(out, len, "%s", name);
  else snprintf(out, len, "cuda:%s", mp_config_str(cfg, "train.precision"));
}

mp_backend *mp_backend_create_cfg(const mp_config *cfg, char *err, size_t errlen) {
  char full[48];
  mp_backend_name_cfg(cfg, mp_config_str(cfg, "train.backend"), full, sizeof full);
  return mp_backend_create(full, err, errlen);
}

void mp_backend_gather_rows(mp_backend *b, float *dst, const float *a, const float *rows, const int64_t *sel, int n,
                            size_t m) {
  for (int j = 0, e; j < n; j = e) {
    if (sel[j] >= 0) {
      b->iface->copy(b, dst + (size_t)j * m, rows + (size_t)sel[j] * m, m);
      e = j + 1;
      continue;
    }
    for (e = j + 1; e < n && sel[e] < 0; e++) {}
    b->iface->copy(b, dst + (size_t)j * m, a + (size_t)j * m, (size_t)(e - j) * m);
  }
}

void mp_backend_free(mp_backend *b) {
  if (b) b->iface->destroy(b);
}

/* How a backend's own collective averages gradients (the run's record and mp_dp's log say the
 * same): NCCL on cuda, MPI on its closed blocks on strict. */
static const char *own_reduce(const mp_backend *be) {
  return strncmp(be->iface->name, "cuda", 4) == 0 ? "NCCL allreduce on the devices"
                                                   : "the backend's own allreduce (strict: MPI on its closed blocks)";
}

void mp_dp_init(mp_dp *dp, mp_backend *be, MPI_Comm comm) {
  dp->be = be;
  dp->comm = comm;
  MP_CHECK_MPI(MPI_Comm_size(comm, &dp->K));
  dp->device = 0;
  if (dp->K == 1 || !be->iface->comm_attach) return;
  char err[256] = "";
  int ok = be->iface->comm_attach(be, &comm, err, sizeof err) == 0;
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm)); /* every rank takes the same path */
  dp->device = ok;
  int rank;
  MP_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  if (rank == 0) {
    if (ok) MP_INFO("gradients: %s over %d ranks (%s backend)", own_reduce(be), dp->K, be->iface->name);
    else MP_INFO("gradients: MPI allreduce in host memory over %d ranks (%s)", dp->K, err[0] ? err : "another rank cannot use NCCL");
  }
}

void mp_dp_mean(const mp_dp *dp, float *buf, size_t n) {
  if (dp->K == 1 || !n) return;
  if (dp->device) {
    dp->be->iface->allreduce_sum(dp->be, buf, n);
  } else {
    mp_backend_sync(dp->be);
    MP_CHECK(n <= (size_t)INT_MAX, "allreduce of %zu floats", n);
    MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, dp->comm));
  }
  dp->be->iface->scale(dp->be, 1.0f / (float)dp->K, buf, n); /* the sum -> the mean, the same way on both paths */
}

enum { ENGINE_LEN = 512 }; /* one rank's describe(NULL) line in the gather */

cJSON *mp_backend_compute_json(mp_backend *be, const mp_dp *dp, MPI_Comm comm) {
  int rank, K;
  MP_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  MP_CHECK_MPI(MPI_Comm_size(comm, &K));
  char mine[ENGINE_LEN] = {0}; /* every byte defined: all of them travel */
  snprintf(mine, sizeof mine, "%s", be->iface->describe(be, NULL, NULL));
  char *all = rank == 0 ? mp_malloc((size_t)K * ENGINE_LEN) : NULL;
  MP_CHECK_MPI(MPI_Gather(mine, ENGINE_LEN, MPI_CHAR, all, ENGINE_LEN, MPI_CHAR, 0, comm));
  if (rank != 0) return NULL;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "backend", be->iface->name);
  cJSON_AddNumberToObject(o, "ranks", K);
  if (dp)
    cJSON_AddStringToObject(o, "gradient_mean", dp->K == 1    ? "none (one rank)"
                                                : dp->device ? own_reduce(be)
                                                             : "MPI allreduce in host memory");
  cJSON *eng = cJSON_AddArrayToObject(o, "engines");
  char *done = mp_calloc((size_t)K, 1);
  for (int r = 0; r < K; r++) {
    if (done[r]) continue;
    const char *line = all + (size_t)r * ENGINE_LEN;
    cJSON *g = cJSON_CreateObject(), *rs = cJSON_CreateArray();
    cJSON_AddStringToObject(g, "engine", line);
    for (int q = r; q < K; q++)
      if (!done[q] && strcmp(all + (size_t)q * ENGINE_LEN, line) == 0) {
        done[q] = 1;
        cJSON_AddItemToArray(rs, cJSON_CreateNumber(q));
      }
    cJSON_AddItemToObject(g, "ranks", rs);
    cJSON_AddItemToArray(eng, g);
  }
  mp_free(done);
  mp_free(all);
  return o;
}

void mp_backend_gpu_plan(const mp_config *cfg, MPI_Comm comm, int group) {
#if MP_HAVE_CUDA
  if (strcmp(mp_config_str(cfg, "train.backend"), "cuda")) return;
  int K, rank;
  MP_CHECK_MPI(MPI_Comm_size(comm, &K));
  MP_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  struct {
    mp_gpu_key key;
    int group;
  } me, *all = NULL;
  memset(&me, 0, sizeof me);
  const int ndev = mp_gpu_count();
  if (ndev > 0) mp_gpu_key_of(mp_gpu_pick(ndev), &me.key);
  me.group = group;
  if (rank == 0) all = mp_malloc((size_t)K * sizeof me);
  MP_CHECK_MPI(MPI_Gather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, 0, comm));
  if (rank != 0) return;
  mp_gpu_key *key = mp_malloc((size_t)K * sizeof *key);
  int *grp = mp_malloc((size_t)K * sizeof *grp);
  for (int i = 0; i < K; i++) key[i] = all[i].key, grp[i] = all[i].group;
  int gpus, shared, none;
  const int within = mp_gpu_sharing(key, grp, K, &gpus, &shared, &none);
  if (none)
    MP_WARN("GPUs: %d of %d rank%s see no GPU (CUDA_VISIBLE_DEVICES or the launcher's GPU binding): the cuda backend "
            "cannot run there", none, K, K == 1 ? "" : "s");
  if (shared)
    MP_WARN("GPUs: %d rank%s on %d GPU%s: %d of them use a GPU that another rank uses too, and take turns on it (one "
            "rank per GPU runs fastest)%s", K - none, K - none == 1 ? "" : "s", gpus, gpus == 1 ? "" : "s", shared,
            within ? "; ranks of one rank group share a GPU, so that group reduces its gradients with MPI in host "
                     "memory (NCCL needs one GPU per rank)" : "");
  else if (gpus)
    MP_INFO("GPUs: %d rank%s on %d GPU%s, one each", K - none, K - none == 1 ? "" : "s", gpus, gpus == 1 ? "" : "s");
  mp_free(grp);
  mp_free(key);
  mp_free(all);
#else
  (void)cfg, (void)comm, (void)group;
#endif
}

int mp_backend_device_absent(const char *name) {
#if MP_HAVE_CUDA_BACKEND
  if (!strncmp(name, "cuda", 4)) return mp_gpu_count() == 0;
#endif
  (void)name;
  return 0;
}

const char *mp_backend_list(void) {
  return MP_HAVE_DNNL ? (MP_HAVE_CUDA_BACKEND ? "ref cpu cuda" : "ref cpu") : (MP_HAVE_CUDA_BACKEND ? "ref cuda" : "ref");
}
