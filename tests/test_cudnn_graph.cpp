/* test_cudnn_graph — the cuda backend's cuDNN graph-API path (nn/mp_cudnn_graph.h) on the host,
 * without a GPU: cuDNN (>= 9.8) builds operation graphs, answers its heuristics and finalizes
 * execution plans for a device described by a device-property descriptor (here an H100 SXM's
 * properties as the CUDA runtime reports them); only executing a plan needs the device.  Where a
 * GPU is present (tests/gpu/run.sh) it plans for that device too, described from a cuDNN handle
 * as the backend describes it (mpg_devprop_of), with that machine's cuDNN.
 *
 * For every precision the backend has (fp32, TF32, bf16 channels-last), every op (forward,
 * backward data, backward filter) and the project's convolution shapes (the classifier's blocks
 * at batch 128, the GANs' 4x4 stride-2 layers and the critic's 4x4 valid one at batch 64, and
 * two of test_backend's odd shapes), it checks that
 *   - the one-convolution graph finalizes (the tensors' layouts, the convolution's and the
 *     operation's attributes are what cuDNN accepts);
 *   - the operation holds under each operand's name (x, w, y; dy, w, dx; x, dy, dw) a tensor
 *     of the dimensions and layout run_conv's buffer for it has, and the id mpg_exec's variant
 *     pack binds that buffer to (mpg_uid) is that tensor's (a wrong id would run a kernel on a
 *     buffer of another size: mutations of the ids, the operand names or the layouts fail);
 *   - the heuristics (mode A) propose engine configurations and their notes can be read;
 *   - the note filter (mpg_cfg_fits) keeps no engine it must not take (nothing nondeterministic,
 *     down-converting, reduced-precision-reducing or runtime-compiled; in fp32 no tensor-core
 *     engine), and, so that it is seen to act on real notes, that it rejects some engines and
 *     that bf16 engines carry the tensor-core note;
 *   - mpg_plans finalizes at least one plan within the backend's default workspace cap (512 MiB)
 *     for each of the project's shapes, each one the filter keeps and no engine more than
 *     MPG_PER_ENGINE times, and in bf16 at least one on tensor cores (the engines the graph path
 *     is for).
 * What it cannot check without a GPU: running the plans (test_backend does, on a GPU, with
 * MP_CUDA_CONV_GRAPH=force) and whether an engine noted deterministic is (the backend checks
 * that on the device: a candidate must repeat its result bit for bit).  cuDNN notes no bf16
 * engine nondeterministic here, the split-K weight-gradient ones included.
 * The plans' engines are printed: the next GPU run times them against the legacy pick. */
#include "mp_cudnn_graph.h"

#include <stdio.h>
#include <string.h>

static int failures = 0;
#define EXPECT(cond, ...)                 \
  do {                                    \
    if (!(cond)) {                        \
      printf("  FAIL: " __VA_ARGS__);     \
      printf("\n");                       \
      failures++;                         \
    }                                     \
  } while (0)

struct shape {
  const char *what;
  bool real; /* one of the project's networks' shapes */
  int n, c, h, w, k, r, s, stride, pad, pad_w;
};

#if CUDNN_VERSION < 90800
int main() {
  printf("skipped: cuDNN %d has no device-property descriptors (9.8 and later do)\n", (int)CUDNN_VERSION);
  return 77;
}
#else
/* A tensor's dimensions and strides without its size-1 dimensions (cuDNN hands an operation's
 * tensors back in its own 5-D grouped form, (n, 1, c, h, w) and (1, k, c, r, s), and without
 * their ids): their number; false from tensor_of when it cannot be read. */
struct dims {
  int n;
  int64_t d[8], s[8];
};
static bool tensor_of(bdesc_t t, dims *o) {
  int64_t nd = 0, ns = 0, d[8], s[8];
  if (cudnnBackendGetAttribute(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 8, &nd, d) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendGetAttribute(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 8, &ns, s) != CUDNN_STATUS_SUCCESS ||
      nd != ns || nd < 1 || nd > 8)
    return false;
  o->n = 0;
  for (int64_t i = 0; i < nd; i++)
    if (d[i] != 1) o->d[o->n] = d[i], o->s[o->n++] = s[i];
  return true;
}
static bool same(const dims &a, const dims &b) {
  if (a.n != b.n) return false;
  for (int i = 0; i < a.n; i++)
    if (a.d[i] != b.d[i] || a.s[i] != b.s[i]) return false;
  return true;
}
static void show(const dims &a, char *buf, size_t l) {
  size_t k = (size_t)snprintf(buf, l, "(");
  for (int i = 0; i < a.n && k < l; i++)
    k += (size_t)snprintf(buf + k, l - k, "%s%lld:%lld", i ? " " : "", (long long)a.d[i], (long long)a.s[i]);
  if (k < l) snprintf(buf + k, l - k, ")");
}

/* mpg_exec's variant pack names the operands (a, b, out) by the ids mpg_uid[op] gives; a wrong
 * id would hand a kernel a buffer of another tensor's size.  Each operand the operation that
 * mpg_graph built (keep[4]) holds under cuDNN's own attribute name must have the dimensions and
 * strides (size:stride, size-1 dimensions left out) of run_conv's buffer (fp32 NCHW, bf16
 * channels-last), and the tensor with the id mpg_exec binds that buffer to (keep[0..2], ids
 * read back) must be that tensor. */
static void check_operands(const char *mode, const char *opname, const char *what, bool bf16, int op,
                           const mpg_conv *d, const bdesc_t *keep) {
  static const cudnnBackendAttributeName_t role[3][3] = {
      {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y},
      {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX},
      {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW}};
  static const char *const rn[3] = {"first operand", "second operand", "result"};
  const int64_t X[4] = {d->n, d->c, d->h, d->w}, W[4] = {d->k, d->c, d->r, d->s}, Y[4] = {d->n, d->k, d->p, d->q};
  const int64_t *shape[3][3] = {{X, W, Y}, {Y, W, X}, {X, Y, W}};
  for (int i = 0; i < 3; i++) {
    const int64_t *e = shape[op][i];
    /* run_conv's buffer: (n, c, h, w) dimensions; NCHW or channels-last strides */
    const int64_t nchw[4] = {e[1] * e[2] * e[3], e[2] * e[3], e[3], 1}, nhwc[4] = {e[1] * e[2] * e[3], 1, e[3] * e[1], e[1]};
    dims want = {0, {}, {}}, held = {0, {}, {}}, bound = {0, {}, {}};
    for (int k = 0; k < 4; k++)
      if (e[k] != 1) want.d[want.n] = e[k], want.s[want.n++] = (bf16 ? nhwc : nchw)[k];
    bdesc_t t = bd_new(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    int64_t got = 0;
    bool ok = t && cudnnBackendGetAttribute(keep[4], role[op][i], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &got, &t) ==
                       CUDNN_STATUS_SUCCESS &&
              got == 1 && tensor_of(t, &held);
    bd_free(t);
    EXPECT(ok, "%s %s of %s: the %s cannot be read back from the operation", mode, opname, what, rn[i]);
    if (!ok) continue;
    char a[160], b[160];
    show(held, a, sizeof a), show(want, b, sizeof b);
    EXPECT(same(held, want), "%s %s of %s: the operation's %s is %s, run_conv's buffer %s", mode, opname, what, rn[i], a,
           b);
    int found = 0;
    for (int k = 0; k < 3; k++) {
      int64_t uid = -1;
      if (cudnnBackendGetAttribute(keep[k], CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &got, &uid) ==
              CUDNN_STATUS_SUCCESS &&
          uid == mpg_uid[op][i] && tensor_of(keep[k], &bound))
        found++;
    }
    EXPECT(found == 1, "%s %s of %s: %d graph tensors have the %s's id %lld", mode, opname, what, found, rn[i],
           (long long)mpg_uid[op][i]);
    if (found != 1) continue;
    show(bound, b, sizeof b);
    EXPECT(same(held, bound), "%s %s of %s: mpg_exec binds the %s (%s) to id %lld, a tensor %s", mode, opname, what,
           rn[i], a, (long long)mpg_uid[op][i], b);
  }
}

/* an H100 SXM 80GB as cudaGetDeviceProperties / cudaDeviceGetAttribute report it */
static const char *const H100 =
    "{\"maxGridSize\": [2147483647, 65535, 65535], \"maxBlockSize\": [1024, 1024, 64], \"regsPerBlock\": 65536, "
    "\"multiProcessorCount\": 132, \"warpSize\": 32, \"maxSharedMemoryPerBlock\": 49152, "
    "\"maxSharedMemoryPerBlockOptin\": 232448, \"reservedSharedMemoryPerBlock\": 1024, \"maxRegistersPerSM\": 65536, "
    "\"maxCtasPerSM\": 32, \"maxThreadsPerBlock\": 1024, \"maxThreadsPerSM\": 2048, \"pciDeviceId\": 9008, "
    "\"isTccDriver\": 0, \"supportCoopLaunch\": 1, \"totalGlobalMem\": 85520809984, \"smClockRateKHz\": 1980000, "
    "\"memClockRateKHz\": 2619000, \"l2CacheSize\": 52428800, \"cudaDeviceId\": 0, \"deviceVer\": 900, "
    "\"driverVer\": 13000, \"deviceName\": \"NVIDIA H100 80GB HBM3\"}";

int main() {
  static const shape shapes[] = {
      {"classifier block 1, first conv", true, 128, 1, 128, 128, 16, 3, 3, 1, 1, 1},
      {"classifier block 1, second conv", true, 128, 16, 128, 128, 16, 3, 3, 1, 1, 1},
      {"classifier block 2", true, 128, 16, 64, 64, 32, 3, 3, 1, 1, 1},
      {"classifier block 3", true, 128, 64, 32, 32, 64, 3, 3, 1, 1, 1},
      {"classifier block 5", true, 128, 128, 8, 8, 128, 3, 3, 1, 1, 1},
      {"critic 1 -> 64, 4x4 s2", true, 64, 1, 128, 128, 64, 4, 4, 2, 1, 1},
      {"critic 64 -> 128 / G's 128 -> 64", true, 64, 64, 64, 64, 128, 4, 4, 2, 1, 1},
      {"critic 512 -> 512 / G's 512 -> 512", true, 64, 512, 8, 8, 512, 4, 4, 2, 1, 1},
      {"critic output 512 -> 1, 4x4 valid", true, 64, 512, 4, 4, 1, 4, 4, 1, 0, 0},
      {"odd sizes 5 -> 6, 9x7, s2", false, 1, 5, 9, 7, 6, 3, 3, 2, 1, 1},
      {"Inception 1x7 pad (0, 3)", false, 2, 6, 9, 11, 5, 1, 7, 1, 0, 3},
  };
  /* The devices to plan for: the described H100, and where a GPU is present the device itself,
   * described as the backend describes it (mpg_devprop_of on a cuDNN handle), so that a GPU
   * node checks the backend's own path with its cuDNN and card.  There a cuDNN that refuses the
   * description (its JSON form is checked with the cuDNN this build was written against) is
   * said and skipped: the device covers it. */
  struct {
    const char *name;
    bdesc_t dp;
  } devs[2] = {};
  int ndev = 0;
  cudnnHandle_t h = NULL;
  if (cudnnCreate(&h) != CUDNN_STATUS_SUCCESS) h = NULL;
  bdesc_t described = bd_new(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR);
  if (described)
    described = bd_done(described, bd_set(described, CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
                                          (int64_t)strlen(H100) + 1, H100));
  if (described) devs[ndev++] = {"described H100", described};
  else if (h)
    printf("note: cuDNN %zu refuses the described H100's properties; planning for this machine's GPU only\n",
           cudnnGetVersion());
  else {
    printf("FAIL: cuDNN %zu does not take the device-property descriptor (cuDNN >= 9.8 does)\n", cudnnGetVersion());
    return 1;
  }
  if (h) {
    bdesc_t own = mpg_devprop_of(h);
    EXPECT(own != NULL, "cuDNN %zu: no device-property descriptor from this machine's GPU (the backend's path)",
           cudnnGetVersion());
    if (own) devs[ndev++] = {"this machine's GPU", own};
  }
  static const char *const ops[3] = {"forward", "backward-data", "backward-filter"};
  const size_t cap = (size_t)512 << 20; /* the backend's default workspace cap */
  int rejected = 0, tc_seen_bf16 = 0, cases = 0;
  for (int dv = 0; dv < ndev; dv++) {
    bdesc_t dp = devs[dv].dp;
    printf("%s (cuDNN %zu):\n", devs[dv].name, cudnnGetVersion());
    const struct {
      const char *name;
      mpg_mode m;
    } modes[] = {{"fp32", {false, false, true, NULL, dp}}, {"tf32", {false, true, true, NULL, dp}},
                 {"bf16", {true, true, true, NULL, dp}}};
    for (const auto &md : modes) {
      for (const shape &sh : shapes) {
        for (int op = MPG_FWD; op <= MPG_BWD_FILTER; op++) {
          mpg_conv d = {sh.n, sh.c, sh.h, sh.w, sh.k, sh.r, sh.s, 0, 0, sh.stride, sh.pad, sh.pad_w};
          d.p = (d.h + 2 * d.pad - d.r) / d.stride + 1;
          d.q = (d.w + 2 * d.pad_w - d.s) / d.stride + 1;
          cases++;
          /* the graph and the heuristics' proposals, through the note filter */
          bdesc_t keep[MPG_KEEP] = {};
          bdesc_t g = mpg_graph(&md.m, op, &d, 16, keep);
          EXPECT(g != NULL, "%s %s of %s: the graph does not finalize", md.name, ops[op], sh.what);
          if (!g) continue;
          check_operands(md.name, ops[op], sh.what, md.m.bf16, op, &d, keep);
          bdesc_t cfg[64], heur = NULL;
          int n = mpg_heuristics(&md.m, g, CUDNN_HEUR_MODE_A, cfg, 64, &heur);
          EXPECT(n > 0, "%s %s of %s: the heuristics propose no engine", md.name, ops[op], sh.what);
          int kept = 0;
          for (int i = 0; i < n; i++) {
            int64_t gi = -1;
            char notes[160];
            bool fits = mpg_cfg_fits(&md.m, cfg[i], &gi, notes, sizeof notes);
            EXPECT(gi >= 0, "%s %s of %s: configuration %d: its engine cannot be read", md.name, ops[op], sh.what, i);
            if (md.m.bf16 && strstr(notes, "tensor-core")) tc_seen_bf16++;
            if (!fits) {
              rejected++;
            } else {
              kept++;
              EXPECT(!strstr(notes, "nondeterministic") && !strstr(notes, "down-convert") &&
                         !strstr(notes, "reduced-precision") && !strstr(notes, "runtime-compiled") &&
                         (md.m.tf32 || !strstr(notes, "tensor-core")),
                     "%s %s of %s: engine %lld kept despite its notes (%s)", md.name, ops[op], sh.what, (long long)gi,
                     notes);
            }
            bd_free(cfg[i]);
          }
          bd_free(heur);
          bd_free(g);
          bd_free_all(keep, MPG_KEEP);
          /* the backend's candidates: plans within the cap */
          mpg_cand cand[8];
          bdesc_t pk[MPG_KEEP];
          int np = mpg_plans(&md.m, op, &d, 16, cap, cand, 8, pk), ntc = 0;
          char list[400] = "";
          size_t l = 0;
          for (int i = 0; i < np; i++) {
            int64_t gi = -1;
            char notes[160];
            EXPECT(mpg_cfg_fits(&md.m, cand[i].cfg, &gi, notes, sizeof notes) && gi == cand[i].engine && cand[i].ws <= cap,
                   "%s %s of %s: plan %d is not one the filter keeps within the cap", md.name, ops[op], sh.what, i);
            ntc += strstr(notes, "tensor-core") != NULL;
            int same = 0;
            for (int j = 0; j < np; j++) same += cand[j].engine == cand[i].engine;
            EXPECT(same <= MPG_PER_ENGINE, "%s %s of %s: engine %lld in %d plans", md.name, ops[op], sh.what,
                   (long long)cand[i].engine, same);
            if (l < sizeof list)
              l += (size_t)snprintf(list + l, sizeof list - l, " e%lld%s/%zuK", (long long)cand[i].engine,
                                    strstr(notes, "tensor-core") ? "tc" : "", cand[i].ws >> 10);
            bd_free(cand[i].plan), bd_free(cand[i].cfg);
          }
          bd_free_all(pk, MPG_KEEP);
          printf("  %s %-15s %-34s n%-3d c%-3d %3dx%-3d k%-3d %dx%d s%d: %2d proposed, %2d kept, %d plans:%s\n", md.name,
                 ops[op], sh.what, d.n, d.c, d.h, d.w, d.k, d.r, d.s, d.stride, n, kept, np, list);
          if (sh.real) {
            EXPECT(np > 0, "%s %s of %s: no plan within the cap", md.name, ops[op], sh.what);
            if (md.m.bf16) EXPECT(ntc > 0, "bf16 %s of %s: no tensor-core plan", ops[op], sh.what);
          }
        }
      }
    }
    bd_free(dp);
  }
  if (h) cudnnDestroy(h);
  EXPECT(rejected > 0, "the note filter rejected no engine in %d cases: are the notes read?", cases);
  EXPECT(tc_seen_bf16 > 0, "no bf16 engine carries the tensor-core note: are the notes read?");
  printf("%d cases, %d engine configurations rejected by their notes, %d bf16 tensor-core configurations seen: %s\n",
         cases, rejected, tc_seen_bf16, failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
#endif
