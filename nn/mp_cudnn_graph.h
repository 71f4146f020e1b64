/* mp_cudnn_graph — one convolution op through cuDNN's graph API (backend descriptors): the
 * engines behind cudnn-frontend, which PyTorch uses.  Host-only C++ (no kernels), included by
 * the cuda backend (nn/mp_backend_cuda.cu) and by tests/test_cudnn_graph.cpp, which builds
 * the graphs, heuristics and plans for a described H100 without a GPU.
 *
 * Why: the legacy cudnnFind… API offers eight algorithms an op, and for bf16 channels-last
 * operands and for the GANs' 4x4 stride-2 layers its deterministic ones are slow (bench/gpu on
 * an H100: the bf16 classifier's convolutions ~3x PyTorch's kernel time; PyTorch reaches the
 * sm90 implicit-GEMM engines through the graph API).  For an (op, shape) the engine
 * configurations cuDNN's heuristics propose (mode A, else the fallback list) for a
 * one-convolution graph with the backend's operands are filtered by their notes
 * (mpg_cfg_fits), and the first ones whose execution plans finalize within a workspace limit
 * become candidates (mpg_plans), which the backend times and checks beside its legacy pick.
 *
 * Every call here is soft: a status other than success drops that candidate (or the graph
 * for the shape), never the run.  Operands: fp32 NCHW, or bf16 channels-last as the backend's
 * staging writes them (activations (n, h, w, c), filters (k, r, s, c)); accumulation fp32.
 * Tensor ids: x 1, w 2, y 3.  Ops: MPG_FWD (x, w) -> y, MPG_BWD_DATA (dy, w) -> dx,
 * MPG_BWD_FILTER (x, dy) -> dw, the operand order of the backend's run_conv. */
#pragma once
#include <cudnn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef cudnnBackendDescriptor_t bdesc_t;
enum { MPG_FWD, MPG_BWD_DATA, MPG_BWD_FILTER };
enum { MPG_KEEP = 8 }; /* descriptors a shape's plans depend on: x, w, y, convolution, operation, graph, 2 heuristics */
enum { MPG_PER_ENGINE = 2 }; /* plans of one engine (different knob settings) mpg_plans returns at most */

/* what the backend computes in: bf16 (channels-last bf16 operands), tf32 (tensor cores allowed
 * for fp32 operands; set with bf16), deterministic engines only; the device: the cuDNN handle,
 * or (handle NULL) a device-property descriptor, with which cuDNN answers heuristics and builds
 * plans without a device (cuDNN >= 9.8; the tests), or neither (graphs only) */
struct mpg_mode {
  bool bf16, tf32, deterministic;
  cudnnHandle_t handle;
  bdesc_t devprop;
};
/* device-property descriptors came with cuDNN 9.8; before it, a mode has a handle or no device */
#if CUDNN_VERSION >= 90800
#define MPG_SET_DEVPROP(d, attr, dp) bd_set(d, attr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &(dp))
#else
#define MPG_SET_DEVPROP(d, attr, dp) ((void)(d), (void)(dp), false)
#endif
/* a convolution: input (n, c, h, w), k filters r x s, output p x q, stride, padding (h, w) */
struct mpg_conv {
  int n, c, h, w, k, r, s, p, q, stride, pad, pad_w;
};
/* a candidate: its execution plan and engine configuration, workspace bytes and engine index */
struct mpg_cand {
  bdesc_t plan, cfg;
  size_t ws;
  int64_t engine;
};

static inline void bd_free(bdesc_t d) {
  if (d) (void)cudnnBackendDestroyDescriptor(d);
}
static inline void bd_free_all(bdesc_t *d, int n) {
  for (int i = 0; i < n; i++) bd_free(d[i]), d[i] = NULL;
}
static inline bdesc_t bd_new(cudnnBackendDescriptorType_t t) {
  bdesc_t d = NULL;
  return cudnnBackendCreateDescriptor(t, &d) == CUDNN_STATUS_SUCCESS ? d : NULL;
}
/* set one attribute; false on failure */
static inline bool bd_set(bdesc_t d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t, int64_t n,
                          const void *v) {
  return cudnnBackendSetAttribute(d, a, t, n, v) == CUDNN_STATUS_SUCCESS;
}
/* d finalized when ok, else (or if finalizing fails) destroyed: NULL */
static inline bdesc_t bd_done(bdesc_t d, bool ok) {
  if (ok && cudnnBackendFinalize(d) == CUDNN_STATUS_SUCCESS) return d;
  bd_free(d);
  return NULL;
}

/* The device-property descriptor of a handle's device (cuDNN >= 9.8, else NULL; NULL too where
 * cuDNN refuses): the backend builds its graphs' heuristics and plans from it rather than from
 * the handle (the OPERATIONGRAPH / EXECUTION_PLAN handle attributes are deprecated in cuDNN 9),
 * which is also the path test_cudnn_graph takes with a described device.  Plans built from it
 * run with cudnnBackendExecute on the handle (cuDNN's ahead-of-time workflow). */
static inline bdesc_t mpg_devprop_of(cudnnHandle_t handle) {
#if CUDNN_VERSION >= 90800
  bdesc_t dp = bd_new(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR);
  return dp ? bd_done(dp, bd_set(dp, CUDNN_ATTR_DEVICEPROP_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)) : NULL;
#else
  (void)handle;
  return NULL;
#endif
}

/* a tensor (n, ch, h, w) of the mode's type and layout; a filter is the same with (k, c, r, s) */
static inline bdesc_t mpg_tensor(const mpg_mode *m, int64_t uid, int n, int ch, int h, int w, int64_t align) {
  cudnnDataType_t t = m->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  int64_t dim[4] = {n, ch, h, w}, str[4];
  str[0] = (int64_t)ch * h * w;
  if (m->bf16)
    str[1] = 1, str[2] = (int64_t)w * ch, str[3] = ch;
  else
    str[1] = (int64_t)h * w, str[2] = w, str[3] = 1;
  bdesc_t d = bd_new(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  if (!d) return NULL;
  bool ok = bd_set(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &t) &&
            bd_set(d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim) &&
            bd_set(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, str) &&
            bd_set(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid) &&
            bd_set(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
  return bd_done(d, ok);
}

/* The finalized one-operation graph of (op, shape), or NULL; keep[0..4] get x, w, y, the
 * convolution and the operation, which it references (kept while a plan of it lives). */
static inline bdesc_t mpg_graph(const mpg_mode *m, int op, const mpg_conv *d, int64_t align, bdesc_t *keep) {
  bdesc_t X = mpg_tensor(m, 1, d->n, d->c, d->h, d->w, align), W = mpg_tensor(m, 2, d->k, d->c, d->r, d->s, align);
  bdesc_t Y = mpg_tensor(m, 3, d->n, d->k, d->p, d->q, align), cv = bd_new(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  bdesc_t od = NULL, g = NULL;
  if (X && W && Y && cv) {
    int64_t nd = 2, pad[2] = {d->pad, d->pad_w}, str[2] = {d->stride, d->stride}, dil[2] = {1, 1};
    cudnnDataType_t ct = CUDNN_DATA_FLOAT;
    cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    bool ok = bd_set(cv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &nd) &&
              bd_set(cv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &ct) &&
              bd_set(cv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode) &&
              bd_set(cv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad) &&
              bd_set(cv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad) &&
              bd_set(cv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil) &&
              bd_set(cv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, str);
    cv = bd_done(cv, ok);
  }
  if (X && W && Y && cv && op >= MPG_FWD && op <= MPG_BWD_FILTER) {
    static const cudnnBackendDescriptorType_t T[3] = {CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
                                                      CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
                                                      CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR};
    /* alpha, beta, conv, then x, w, y under each op's names */
    static const cudnnBackendAttributeName_t A[3][6] = {
        {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y},
        {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY},
        {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY}};
    float one = 1.0f, zero = 0.0f;
    od = bd_new(T[op]);
    if (od) {
      bool ok = bd_set(od, A[op][0], CUDNN_TYPE_FLOAT, 1, &one) && bd_set(od, A[op][1], CUDNN_TYPE_FLOAT, 1, &zero) &&
                bd_set(od, A[op][2], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cv) &&
                bd_set(od, A[op][3], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &X) &&
                bd_set(od, A[op][4], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &W) &&
                bd_set(od, A[op][5], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &Y);
      od = bd_done(od, ok);
    }
  }
  if (od && (g = bd_new(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)) != NULL) {
    bool ok = bd_set(g, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &od);
    if (ok && m->handle) ok = bd_set(g, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &m->handle);
    g = bd_done(g, ok);
  }
  bdesc_t all[5] = {X, W, Y, cv, od};
  for (int i = 0; i < 5; i++) {
    if (g)
      keep[i] = all[i];
    else
      bd_free(all[i]);
  }
  return g;
}

/* Whether an engine configuration's notes fit the mode: deterministic when asked; fp32 no
 * tensor cores (TF32); never down-converted inputs or reduced-precision reductions; no
 * runtime-compiled engines (they need NVRTC and take seconds to build).  Its global engine
 * index into *gi, and (when `notes` is given) its notes as text. */
static inline bool mpg_cfg_fits(const mpg_mode *m, bdesc_t cfg, int64_t *gi, char *notes, size_t nl) {
  bdesc_t e = bd_new(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  int64_t got = 0, nn = 0, nb = 0;
  cudnnBackendNumericalNote_t num[32];
  cudnnBackendBehaviorNote_t beh[32];
  bool ok = e &&
            cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &got, &e) ==
                CUDNN_STATUS_SUCCESS &&
            got == 1 &&
            cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE, 32, &nn, num) ==
                CUDNN_STATUS_SUCCESS &&
            cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE, 32, &nb, beh) ==
                CUDNN_STATUS_SUCCESS &&
            cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &got, gi) ==
                CUDNN_STATUS_SUCCESS;
  bd_free(e);
  if (notes && nl) notes[0] = 0;
  if (!ok) return false;
  size_t l = 0;
  for (int64_t i = 0; i < nn && i < 32; i++) {
    static const char *const nm[] = {"tensor-core", "down-convert", "reduced-precision-reduction", "fft",
                                     "nondeterministic", "winograd", "winograd-4x4", "winograd-6x6",
                                     "winograd-13x13", "strict-nan"};
    if (num[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC && m->deterministic) ok = false;
    if (num[i] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS || num[i] == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION)
      ok = false;
    if (num[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE && !m->tf32) ok = false;
    if (notes && l < nl && (int)num[i] >= 0 && (size_t)num[i] < sizeof nm / sizeof nm[0])
      l += (size_t)snprintf(notes + l, nl - l, "%s%s", l ? "," : "", nm[num[i]]);
  }
  for (int64_t i = 0; i < nb && i < 32; i++)
    if (beh[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION) {
      ok = false;
      if (notes && l < nl) l += (size_t)snprintf(notes + l, nl - l, "%sruntime-compiled", l ? "," : "");
    }
  return ok;
}

/* The engine configurations cuDNN's heuristics (mode `hm`) propose for graph g on the mode's
 * device, best first: up to `max` finalized ones into cfg[] (the caller frees them); the
 * heuristics descriptor into *heur (the caller frees it).  Returns their number (0 on any
 * failure, and without a device). */
static inline int mpg_heuristics(const mpg_mode *m, bdesc_t g, cudnnBackendHeurMode_t hm, bdesc_t *cfg, int max,
                                 bdesc_t *heur) {
  *heur = NULL;
  if (!m->handle && !m->devprop) return 0; /* no device to ask about (cuDNN's heuristics may divide by its SM count) */
  bdesc_t h = bd_new(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  if (!h) return 0;
  bool ok = bd_set(h, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g) &&
            bd_set(h, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &hm);
  if (ok && !m->handle && m->devprop) ok = MPG_SET_DEVPROP(h, CUDNN_ATTR_ENGINEHEUR_DEVICEPROP, m->devprop);
  h = bd_done(h, ok);
  *heur = h;
  int64_t cnt = 0, got = 0;
  if (!h || cudnnBackendGetAttribute(h, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &cnt, NULL) !=
                CUDNN_STATUS_SUCCESS)
    return 0;
  if (cnt > max) cnt = max;
  int64_t made = 0;
  for (; made < cnt; made++)
    if (!(cfg[made] = bd_new(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR))) break;
  if (made > 0 && cudnnBackendGetAttribute(h, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, made, &got,
                                           cfg) != CUDNN_STATUS_SUCCESS)
    got = 0;
  if (got > made) got = made;
  for (int64_t i = got; i < made; i++) bd_free(cfg[i]), cfg[i] = NULL;
  return (int)got;
}

/* Up to `max` finalized execution plans for (op, shape) whose workspace fits `ws_max`, in the
 * heuristics' order (mode A; the fallback list if A gives none), at most MPG_PER_ENGINE of one
 * engine, into cand[]; the descriptors they depend on into keep[MPG_KEEP] (NULLs where unused),
 * which the caller frees once no plan of them is left.  Needs the mode's handle or device
 * properties (plans are built for a device). */
static inline int mpg_plans(const mpg_mode *m, int op, const mpg_conv *d, int64_t align, size_t ws_max, mpg_cand *cand,
                            int max, bdesc_t *keep) {
  for (int i = 0; i < MPG_KEEP; i++) keep[i] = NULL;
  bdesc_t g = mpg_graph(m, op, d, align, keep);
  if (!g) return 0;
  keep[5] = g;
  int n = 0;
  static const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
  for (int hm = 0; hm < 2 && n == 0; hm++) {
    bdesc_t cfg[64];
    int got = mpg_heuristics(m, g, modes[hm], cfg, 64, &keep[6 + hm]);
    for (int i = 0; i < got; i++) {
      int64_t idx = -1, wsz = 0, one = 0;
      bdesc_t p = NULL;
      int same = 0; /* the heuristics list an engine with several knob settings: 2 at most, for variety */
      bool fits = n < max && (m->handle || m->devprop) && mpg_cfg_fits(m, cfg[i], &idx, NULL, 0);
      for (int j = 0; fits && j < n; j++) same += cand[j].engine == idx;
      if (fits && same < MPG_PER_ENGINE && (p = bd_new(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)) != NULL) {
        bool ok = m->handle ? bd_set(p, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &m->handle)
                            : MPG_SET_DEVPROP(p, CUDNN_ATTR_EXECUTION_PLAN_DEVICEPROP, m->devprop);
        p = bd_done(p, ok && bd_set(p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i]));
        if (p && cudnnBackendGetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &one, &wsz) ==
                     CUDNN_STATUS_SUCCESS &&
            wsz >= 0 && (size_t)wsz <= ws_max) {
          cand[n++] = mpg_cand{p, cfg[i], (size_t)wsz, idx};
          continue; /* the plan keeps its configuration */
        }
        bd_free(p);
      }
      bd_free(cfg[i]);
    }
  }
  return n;
}

/* the tensor ids of an op's operands in run_conv's order (a, b, out): forward (x, w) -> y;
 * backward data (dy, w) -> dx; backward filter (x, dy) -> dw.  test_cudnn_graph checks them
 * against the ids the graph's operation holds under each operand's name. */
static const int64_t mpg_uid[3][3] = {{1, 2, 3}, {3, 2, 1}, {1, 3, 2}};

/* Run a plan on (a, b) -> out in the op's operand order with workspace ws, on the handle's
 * stream.  *vp is the variant pack, kept with the operands it names (vp_ptr[3], *vp_ws) and
 * rebuilt when they change; the caller frees it. */
static inline cudnnStatus_t mpg_exec(cudnnHandle_t handle, bdesc_t plan, bdesc_t *vp, const void **vp_ptr, void **vp_ws,
                                     int op, const void *a, const void *b, void *out, void *ws) {
  if (op < MPG_FWD || op > MPG_BWD_FILTER) return CUDNN_STATUS_BAD_PARAM;
  if (!*vp || vp_ptr[0] != a || vp_ptr[1] != b || vp_ptr[2] != out || *vp_ws != ws) {
    bd_free(*vp);
    void *ptr[3] = {(void *)a, (void *)b, out};
    *vp = bd_new(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    if (!*vp) return CUDNN_STATUS_ALLOC_FAILED;
    *vp = bd_done(*vp, bd_set(*vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, mpg_uid[op]) &&
                           bd_set(*vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, ptr) &&
                           bd_set(*vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws));
    if (!*vp) return CUDNN_STATUS_BAD_PARAM;
    vp_ptr[0] = a, vp_ptr[1] = b, vp_ptr[2] = out, *vp_ws = ws;
  }
  return cudnnBackendExecute(handle, plan, *vp);
}
