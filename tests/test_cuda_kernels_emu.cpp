/* test_cuda_kernels_emu — the cuda backend's own element-wise and reduction kernels
 * (nn/mp_cuda_kernels.cuh) compiled for the host and run on an emulated GPU (tests/cuda_emu.h),
 * against the ref backend: where no GPU is present (CI) this is what holds them to ref.  Each
 * check launches the kernels in the order and geometry the backend's wrapper does (the host
 * helpers that choose it, bn_vec, bn_slices, patch_stage_fill, adam_consts, are the backend's
 * own), with outputs poisoned (NaN) first:
 *   batch norm   training forward and backward, plain and fused with ReLU, on shapes that take
 *                float4 and scalar units, one and several (uneven) slices per channel, and more
 *                channels than one block of the per-channel kernels: NMSE against ref's as
 *                test_backend's on a GPU (1e-10, dx 1e-9);
 *   bit for bit  (the backend's claims: the host's roundings) axpy, scale, activations, max-pool
 *                with ties and NaN, dropout masks and values, Adam over three steps, the
 *                WGAN-GP interpolates (weights 0 and 1 give a row back), the patch input with
 *                every flip and quarter turn on an odd patch size, the bf16 tile transpose;
 *   in double    the deterministic reductions (dot, squared norm, squared distance), the bias
 *                sums, the gradient penalty's norms and scaling, spectral norm's steps.
 * Element-wise kernels get a small grid, so that their grid-stride loops go round.  On a GPU,
 * test_backend holds the compiled backend to ref. */
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "cuda_emu.h"
#include "mp_nmse.h"

#define _Noreturn [[noreturn]]
extern "C" {
#include "mp_backend.h"
#include "mp_ref.h"
#include "mp_rng.h"
}
#include "mp_cuda_kernels.cuh"

static int g_bad;
static std::mt19937 g_rng(20261207);

/* host buffers 256-byte aligned (as cudaMalloc's), so that the float4 paths are taken */
template <typename T> struct buf {
  T *p;
  size_t n;
  explicit buf(size_t n_) : n(n_) {
    p = (T *)aligned_alloc(256, ((n * sizeof(T) + 255) / 256 + 1) * 256);
    memset((void *)p, 0, n * sizeof(T));
  }
  ~buf() { free(p); }
  buf(const buf &) = delete;
  buf &operator=(const buf &) = delete;
  T &operator[](size_t i) { return p[i]; }
  operator T *() { return p; }
};
static void fill(float *a, size_t n) {
  std::uniform_real_distribution<float> U(-1.0f, 1.0f);
  for (size_t i = 0; i < n; i++) a[i] = U(g_rng);
}
static void poison(float *a, size_t n) {
  for (size_t i = 0; i < n; i++) a[i] = NAN;
}
static void check_nmse(const char *what, const float *a, const float *ref, size_t n, double tol) {
  const double e = mp_nmse(a, ref, n);
  const bool ok = e < tol;
  printf("  %-52s nmse %.1e  %s\n", what, e, ok ? "ok" : "FAIL");
  g_bad += !ok;
}
/* the same bits (NaN payloads included) */
static void check_same(const char *what, const void *a, const void *ref, size_t bytes) {
  size_t diff = 0;
  for (size_t i = 0; i < bytes; i++) diff += ((const unsigned char *)a)[i] != ((const unsigned char *)ref)[i];
  printf("  %-52s %zu of %zu bytes differ  %s\n", what, diff, bytes, diff ? "FAIL" : "ok");
  g_bad += diff != 0;
}
static void check_rel(const char *what, double got, double want, double tol) {
  const double e = fabs(got - want) / (fabs(want) > 0 ? fabs(want) : 1);
  const bool ok = e <= tol;
  printf("  %-52s %.17g vs %.17g  %s\n", what, got, want, ok ? "ok" : "FAIL");
  g_bad += !ok;
}

static const u3 SMALL_GRID = {3, 1, 1}, SMALL_BLOCK = {64, 1, 1}; /* 192 threads */

/* ---- batch norm: bn_train / bn_back's launches (mp_backend_cuda.cu) ------------------------ */
static void emu_bn_train(const mp_bn_desc *d, const float *x, const float *gamma, const float *beta, float *y,
                         float *sm, float *si, float *rm, float *rv, bool relu) {
  const int V = bn_vec(d, x, y, x, y), S = bn_slices(d, V), hwv = d->hw / V, C = d->c;
  std::vector<double> scratch(2 * (size_t)C * S + 4 * (size_t)C, NAN);
  double *part = scratch.data(), *coef = part + 2 * (size_t)C * S;
  launch({(unsigned)S, (unsigned)C, 1}, {BN_TPB, 1, 1}, [&] {
    if (V == 4) k_bn_partial<4>(x, NULL, NULL, NULL, d->n, C, hwv, part);
    else k_bn_partial<1>(x, NULL, NULL, NULL, d->n, C, hwv, part);
  });
  launch({(unsigned)((C + 127) / 128), 1, 1}, {128, 1, 1}, [&] {
    k_bn_stats(part, S, C, x, d->hw, (double)d->n * d->hw, d->eps, d->momentum, gamma, beta, sm, si, rm, rv, coef);
  });
  const unsigned units = (unsigned)((size_t)d->n * C * hwv);
  launch(SMALL_GRID, SMALL_BLOCK, [&] {
    if (V == 4 && relu) k_bn_apply<4, true>(x, y, coef, C, hwv, units);
    else if (V == 4) k_bn_apply<4, false>(x, y, coef, C, hwv, units);
    else if (relu) k_bn_apply<1, true>(x, y, coef, C, hwv, units);
    else k_bn_apply<1, false>(x, y, coef, C, hwv, units);
  });
}
static void emu_bn_back(const mp_bn_desc *d, const float *x, const float *y, const float *dy, const float *gamma,
                        const float *sm, const float *si, float *dx, float *dg, float *db) {
  const int V = bn_vec(d, x, y ? y : x, dy, dx), S = bn_slices(d, V), hwv = d->hw / V, C = d->c;
  std::vector<double> scratch(2 * (size_t)C * S + 4 * (size_t)C, NAN);
  double *part = scratch.data(), *coef = part + 2 * (size_t)C * S;
  launch({(unsigned)S, (unsigned)C, 1}, {BN_TPB, 1, 1}, [&] {
    if (V == 4) k_bn_partial<4>(x, y, dy, sm, d->n, C, hwv, part);
    else k_bn_partial<1>(x, y, dy, sm, d->n, C, hwv, part);
  });
  launch({(unsigned)((C + 127) / 128), 1, 1}, {128, 1, 1},
         [&] { k_bn_bstats(part, S, C, (double)d->n * d->hw, gamma, sm, si, dg, db, coef); });
  const unsigned units = (unsigned)((size_t)d->n * C * hwv);
  launch(SMALL_GRID, SMALL_BLOCK, [&] {
    if (V == 4) k_bn_dx<4>(x, y, dy, dx, coef, C, hwv, units);
    else k_bn_dx<1>(x, y, dy, dx, coef, C, hwv, units);
  });
}

static void check_bn(mp_backend *ref, mp_bn_desc d) {
  const mp_backend_i *g = ref->iface;
  const size_t C = (size_t)d.c, n = (size_t)d.n * d.c * d.hw;
  const int V = bn_vec(&d, (const void *)0, (const void *)0, (const void *)0, (const void *)0);
  printf(" batch norm n %d c %d hw %d: %s units, %d slice(s) a channel\n", d.n, d.c, d.hw, V == 4 ? "float4" : "scalar",
         bn_slices(&d, V));
  buf<float> x(n), dy(n), y1(n), y2(n), t2(n), g2(n), dx1(n), dx2(n);
  buf<float> gm(C), bt(C), sm1(C), sm2(C), si1(C), si2(C), rm1(C), rm2(C), rv1(C), rv2(C);
  buf<float> dg1(C), dg2(C), db1(C), db2(C);
  fill(x, n);
  /* an offset and a scale per channel (the shift against cancellation matters) */
  for (size_t i = 0; i < n; i++) x[i] = x[i] * (1.0f + (float)((i / d.hw) % C)) + 3.5f * (float)((i / d.hw) % C);
  fill(dy, n), fill(gm, C), fill(bt, C), fill(rm1, C);
  for (size_t i = 0; i < C; i++) rv1[i] = 0.5f + (float)i, rm2[i] = rm1[i], rv2[i] = rv1[i];
  for (int relu = 0; relu < 2; relu++) {
    const char *tag = relu ? "bn+relu" : "bn";
    char what[96];
    poison(y1, n), poison(sm1, C), poison(si1, C), poison(dx1, n), poison(dg1, C), poison(db1, C);
    emu_bn_train(&d, x, gm, bt, y1, sm1, si1, rm1, rv1, relu);
    g->bn_forward_train(ref, &d, x, gm, bt, t2, sm2, si2, rm2, rv2);
    if (relu) mp_ref_relu_forward(t2, y2, n);
    else memcpy(y2, t2, n * sizeof(float));
    snprintf(what, sizeof what, "%s train: y", tag), check_nmse(what, y1, y2, n, 1e-10);
    snprintf(what, sizeof what, "%s train: saved mean", tag), check_nmse(what, sm1, sm2, C, 1e-10);
    snprintf(what, sizeof what, "%s train: saved 1/std", tag), check_nmse(what, si1, si2, C, 1e-10);
    snprintf(what, sizeof what, "%s train: running mean", tag), check_nmse(what, rm1, rm2, C, 1e-10);
    snprintf(what, sizeof what, "%s train: running var", tag), check_nmse(what, rv1, rv2, C, 1e-10);
    /* backward from ref's saved statistics; fused: through the fused forward's output */
    emu_bn_back(&d, x, relu ? (const float *)y1 : NULL, dy, gm, sm2, si2, dx1, dg1, db1);
    if (relu) mp_ref_relu_backward(t2, dy, g2, n);
    else memcpy(g2, dy, n * sizeof(float));
    g->bn_backward(ref, &d, x, g2, gm, sm2, si2, dx2, dg2, db2);
    snprintf(what, sizeof what, "%s backward: dx", tag), check_nmse(what, dx1, dx2, n, 1e-9);
    snprintf(what, sizeof what, "%s backward: dgamma", tag), check_nmse(what, dg1, dg2, C, 1e-10);
    snprintf(what, sizeof what, "%s backward: dbeta", tag), check_nmse(what, db1, db2, C, 1e-10);
  }
}

/* ---- a convolution's bias: bias_add and bias_grad's launches -------------------------------- */
static void check_bias(int n, int C, int hw) {
  const size_t N = (size_t)n * C * hw;
  mp_bn_desc d = {n, C, hw, 0, 0};
  buf<float> y(N), y0(N), bias((size_t)C), db((size_t)C), want((size_t)C), wantd((size_t)C);
  fill(y, N), fill(bias, (size_t)C);
  memcpy(y0, y, N * sizeof(float));
  const int V = bn_vec(&d, y.p, y.p, y.p, y.p), S = bn_slices(&d, V);
  const unsigned hwv = (unsigned)(hw / V), units = (unsigned)((size_t)n * C * hwv);
  printf(" convolution bias n %d c %d hw %d: %s units, %d slice(s)\n", n, C, hw, V == 4 ? "float4" : "scalar", S);
  launch(SMALL_GRID, SMALL_BLOCK, [&] {
    if (V == 4) k_bias_add<4>(y, bias, (unsigned)C, hwv, units);
    else k_bias_add<1>(y, bias, (unsigned)C, hwv, units);
  });
  for (size_t i = 0; i < N; i++) y0[i] += bias[(i / hw) % C];
  check_same("bias add", y.p, y0.p, N * sizeof(float));
  std::vector<double> part((size_t)C * S, NAN);
  poison(db, (size_t)C);
  launch({(unsigned)S, (unsigned)C, 1}, {BN_TPB, 1, 1}, [&] {
    if (V == 4) k_chan_partial<4>(y, n, C, (int)hwv, part.data());
    else k_chan_partial<1>(y, n, C, (int)hwv, part.data());
  });
  launch({(unsigned)((C + 127) / 128), 1, 1}, {128, 1, 1}, [&] { k_chan_final(part.data(), S, C, db); });
  for (int c = 0; c < C; c++) {
    double a = 0;
    for (int q = 0; q < n; q++)
      for (int p = 0; p < hw; p++) a += y[((size_t)q * C + c) * hw + p];
    want[c] = (float)a;
  }
  check_nmse("bias gradient (per-channel sums)", db, want, (size_t)C, 1e-14);
}

/* ---- the element-wise kernels against ref, bit for bit ------------------------------------- */
static void check_elementwise(mp_backend *ref) {
  const mp_backend_i *g = ref->iface;
  enum { N = 1001 };
  buf<float> a(N), c1(N), c2(N), x(N), y1(N), y2(N), dy(N), dx1(N), dx2(N);
  fill(a, N), fill(c1, N), fill(x, N), fill(dy, N);
  memcpy(c2, c1, sizeof(float) * N);
  launch(SMALL_GRID, SMALL_BLOCK, [&] { k_axpy(0.75f, a, c1, N); });
  g->axpy(ref, 0.75f, a, c2, N);
  check_same("axpy", c1.p, c2.p, sizeof(float) * N);
  launch(SMALL_GRID, SMALL_BLOCK, [&] { k_scale(-1.5f, c1, N); });
  g->scale(ref, -1.5f, c2, N);
  check_same("scale", c1.p, c2.p, sizeof(float) * N);

  static const char *const names[] = {"relu", "leaky relu", "tanh", "sigmoid"};
  for (int kind = MP_ACT_RELU; kind <= MP_ACT_SIGMOID; kind++) {
    char what[96];
    x[5] = 0.0f, x[6] = -0.0f; /* the boundary of the ReLUs */
    poison(y1, N), poison(dx1, N);
    launch(SMALL_GRID, SMALL_BLOCK, [&] { k_act_fwd(kind, 0.2f, x, y1, N); });
    g->act_forward(ref, kind, 0.2f, x, y2, N);
    snprintf(what, sizeof what, "%s forward", names[kind]), check_same(what, y1.p, y2.p, sizeof(float) * N);
    launch(SMALL_GRID, SMALL_BLOCK, [&] { k_act_bwd(kind, 0.2f, x, y2, dy, dx1, N); });
    g->act_backward(ref, kind, 0.2f, x, y2, dy, dx2, N);
    snprintf(what, sizeof what, "%s backward", names[kind]), check_same(what, dx1.p, dx2.p, sizeof(float) * N);
  }

  /* max-pool 2x2 (H, W even: the entry's contract): ties (quantised inputs), NaNs; dx poisoned
   * first, so that every element must be written */
  {
    enum { PN = 2, PC = 3, PH = 6, PW = 10, NX = PN * PC * PH * PW, NY = NX / 4 };
    buf<float> px(NX), py1(NY), py2(NY), pdy(NY), pdx1(NX), pdx2(NX);
    buf<unsigned char> a1(NY), a2(NY);
    fill(px, NX), fill(pdy, NY);
    for (int i = 0; i < NX; i++) px[i] = roundf(px[i] * 3.0f);
    px[PW + 1] = NAN, px[4 * PW + 6] = NAN;
    poison(py1, NY), poison(pdx1, NX);
    memset(a1.p, 0xff, NY);
    launch(SMALL_GRID, {32, 1, 1}, [&] { k_pool_fwd(px, py1, a1, (size_t)PN * PC, PH, PW); });
    g->maxpool2_forward(ref, px, py2, a2, PN, PC, PH, PW);
    check_same("max-pool forward", py1.p, py2.p, sizeof(float) * NY);
    check_same("max-pool argmax", a1.p, a2.p, NY);
    launch(SMALL_GRID, {32, 1, 1}, [&] { k_pool_bwd(pdy, a1, pdx1, (size_t)PN * PC, PH, PW); });
    g->maxpool2_backward(ref, pdy, a2, pdx2, PN, PC, PH, PW);
    check_same("max-pool backward", pdx1.p, pdx2.p, sizeof(float) * NX);
  }

  /* Inception's input (k_resize_u8) against mp_ref_resize_u8, bit for bit: 128 -> 299 (the FID's
   * upsampling), 13 -> 5 (down), 7 -> 10; out poisoned first */
  {
    static const int sizes[3][3] = {{2, 128, 299}, {3, 13, 5}, {2, 7, 10}}; /* n, side, S */
    for (const auto &sz : sizes) {
      const int n = sz[0], side = sz[1], S = sz[2];
      buf<uint8_t> px((size_t)n * side * side);
      buf<float> o1((size_t)n * S * S), o2((size_t)n * S * S);
      for (size_t i = 0; i < (size_t)n * side * side; i++) px[i] = (uint8_t)((i * 2654435761u) >> 24);
      px[0] = 0, px[1] = 255;
      poison(o1, (size_t)n * S * S), poison(o2, (size_t)n * S * S);
      launch(SMALL_GRID, SMALL_BLOCK, [&] { k_resize_u8(px, n, side, S, o1); });
      mp_ref_resize_u8(px, n, side, S, o2);
      char what[64];
      snprintf(what, sizeof what, "resize u8 %d -> %d (%d images)", side, S, n);
      check_same(what, o1.p, o2.p, sizeof(float) * n * S * S);
    }
  }

  /* Inception's pools (k_pool2d) against mp_ref_pool2d_forward, bit for bit: 3x3 max at stride
   * 2 and at stride 1 with padding (NaNs and ties in the input), 3x3 averages with padding
   * counted and not, the global 8x8 mean; y poisoned first, so that every element is written */
  {
    enum { QN = 2, QC = 3, QH = 9, QW = 8, NQ = QN * QC * QH * QW };
    buf<float> qx(NQ), q1(NQ), q2(NQ);
    fill(qx, NQ);
    for (int i = 0; i < NQ; i++) qx[i] = i % 7 == 0 ? roundf(qx[i] * 2.0f) : qx[i];
    qx[QW + 2] = NAN;
    static const int cases[6][5] = {{MP_POOL_MAX, 3, 2, 0, QH}, {MP_POOL_MAX, 3, 1, 1, QH}, {MP_POOL_AVG, 3, 1, 1, QH},
                                    {MP_POOL_AVG_IN, 3, 1, 1, QH}, {MP_POOL_AVG, 8, 1, 0, 8}, {MP_POOL_AVG_IN, 3, 2, 1, QH}};
    for (const auto &cs : cases) {
      const int kind = cs[0], k = cs[1], st = cs[2], pd = cs[3], h = cs[4];
      const int oh = (h + 2 * pd - k) / st + 1, ow = (QW + 2 * pd - k) / st + 1;
      const size_t m = (size_t)QN * QC * oh * ow;
      poison(q1, NQ), poison(q2, NQ);
      launch(SMALL_GRID, SMALL_BLOCK, [&] { k_pool2d(kind, qx, q1, (size_t)QN * QC, h, QW, k, st, pd, oh, ow); });
      mp_ref_pool2d_forward(kind, qx, q2, QN, QC, h, QW, k, st, pd);
      char what[64];
      snprintf(what, sizeof what, "pool2d kind %d %dx%d stride %d pad %d", kind, k, k, st, pd);
      check_same(what, q1.p, q2.p, sizeof(float) * m);
    }
  }

  /* linear layers' bias (rows: n 5, out 37) */
  {
    enum { LN = 5, LO = 37 };
    buf<float> ly(LN * LO), ly0(LN * LO), lb(LO), db1(LO), x0(LN * 3), w0(LO * 3), dx0(LN * 3), dw0(LO * 3), db2(LO);
    fill(ly, LN * LO), fill(lb, LO), fill(x0, LN * 3), fill(w0, LO * 3);
    memcpy(ly0, ly, sizeof(float) * LN * LO);
    launch({2, 1, 1}, {32, 1, 1}, [&] { k_add_bias_rows(ly, lb, LN, LO); });
    for (int i = 0; i < LN * LO; i++) ly0[i] += lb[i % LO];
    check_same("linear bias add", ly.p, ly0.p, sizeof(float) * LN * LO);
    poison(db1, LO);
    launch({1, 1, 1}, {32, 1, 1}, [&] { k_sum_rows(ly, db1, LN, LO); });
    g->linear_backward(ref, x0, w0, ly, dx0, dw0, db2, LN, 3, LO);
    check_nmse("linear bias gradient", db1, db2, LO, 1e-14);
  }

  /* dropout: an offset into the mask's stream (e0), p 0.3 */
  {
    buf<unsigned char> m1(N), m2(N);
    const float p = 0.3f, scale = 1.0f / (1.0f - p);
    poison(y1, N), poison(dx1, N);
    launch(SMALL_GRID, SMALL_BLOCK, [&] { k_drop_fwd(x, y1, m1, N, p, scale, 0x1234567890ull, 17, 4096); });
    g->dropout_forward(ref, x, y2, m2, N, p, 0x1234567890ull, 17, 4096);
    check_same("dropout mask", m1.p, m2.p, N);
    check_same("dropout forward", y1.p, y2.p, sizeof(float) * N);
    launch(SMALL_GRID, SMALL_BLOCK, [&] { k_drop_bwd(dy, m1, dx1, N, scale); });
    g->dropout_backward(ref, dy, m2, dx2, N, p);
    check_same("dropout backward", dx1.p, dx2.p, sizeof(float) * N);
  }

  /* Adam, three steps from zero moments (cu_adam's constants) */
  {
    buf<float> p1(N), p2(N), m1(N), m2(N), v1(N), v2(N);
    fill(p1, N);
    memcpy(p2, p1, sizeof(float) * N);
    for (long t = 1; t <= 3; t++) {
      double step_size, sbc2;
      adam_consts(1e-3f, 0.5f, 0.999f, t, &step_size, &sbc2);
      launch(SMALL_GRID, SMALL_BLOCK, [&] { k_adam(p1, dy, m1, v1, N, 0.5f, 0.999f, step_size, sbc2, 1e-8f); });
      g->adam_step(ref, p2, dy, m2, v2, N, 1e-3f, 0.5f, 0.999f, 1e-8f, t);
    }
    check_same("adam, three steps: parameters", p1.p, p2.p, sizeof(float) * N);
    check_same("adam, three steps: moments", m1.p, m2.p, sizeof(float) * N);
    check_same("adam, three steps: second moments", v1.p, v2.p, sizeof(float) * N);
  }

  /* the WGAN-GP interpolates: 3 rows of 333, weights 0, 1 and one between (cu_mix_rows: grid y
   * = a row; here 2 x 64 threads a row, so that the loop goes round) */
  {
    enum { R = 3, M = N / 3 };
    mix_weights w;
    w.e[0] = 0.0f, w.e[1] = 1.0f, w.e[2] = 0.3125f + 1e-3f;
    buf<float> o1(R * M + 1), o2(R * M);
    poison(o1, R * M + 1);
    launch({2, R, 1}, {64, 1, 1}, [&] { k_mix_rows(a, c2, w, M, o1); });
    g->mix_rows(ref, a, c2, w.e, R, M, o2);
    check_same("mix_rows", o1.p, o2.p, sizeof(float) * R * M);
    const bool ends = !memcmp(o1.p, c2.p, sizeof(float) * M) && !memcmp(o1.p + M, a.p + M, sizeof(float) * M) &&
                      std::isnan(o1[R * M]);
    printf("  %-52s %s\n", "mix_rows: weight 0 / 1 rows, nothing past the rows", ends ? "ok" : "FAIL");
    g_bad += !ends;
  }
}

/* ---- the deterministic reductions, the gradient penalty, spectral norm ------------------- */
static double emu_dot(const float *a, const float *b, size_t n, bool dist) {
  const unsigned nb = 5; /* dot_to: min(grid_for(n, TPB), PARTIALS) blocks of TPB */
  std::vector<double> part(nb, NAN);
  double out = NAN;
  launch({nb, 1, 1}, {TPB, 1, 1}, [&] {
    if (dist) k_dot_partial<true>(a, b, n, part.data());
    else k_dot_partial<false>(a, b, n, part.data());
  });
  launch({1, 1, 1}, {TPB, 1, 1}, [&] { k_sum_partials(part.data(), (int)nb, &out); });
  return out;
}

static void check_reductions(mp_backend *ref) {
  const mp_backend_i *g = ref->iface;
  enum { N = 5003 };
  buf<float> a(N), b(N);
  fill(a, N), fill(b, N);
  double dab = 0, daa = 0, dd = 0;
  for (size_t i = 0; i < N; i++) {
    dab += (double)a[i] * b[i], daa += (double)a[i] * a[i];
    dd += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
  }
  check_rel("dot a . b (5 blocks)", emu_dot(a, b, N, false), dab, 1e-13);
  check_rel("dot a . a (b NULL)", emu_dot(a, NULL, N, false), daa, 1e-13);
  check_rel("squared distance |a - b|^2", emu_dot(a, b, N, true), dd, 1e-13);

  /* the gradient penalty: 4 samples of 700, the third all zero (norm 0: no gradient) */
  {
    enum { PN = 4, PM = 700 };
    buf<float> gr(PN * PM), v1(PN * PM), v2(PN * PM);
    fill(gr, PN * PM);
    for (int e = 0; e < PM; e++) gr[2 * PM + e] = 0.0f, gr[3 * PM + e] *= 0.01f;
    std::vector<double> norms1(PN, NAN), norms2(PN, NAN);
    poison(v1, PN * PM);
    launch({PN, 1, 1}, {TPB, 1, 1}, [&] { k_sample_norms(gr, PM, norms1.data()); });
    launch(SMALL_GRID, SMALL_BLOCK, [&] { k_penalty_scale(gr, PN, PM, 10.0f, norms1.data(), v1); });
    g->penalty_grad(ref, gr, PN, PM, 10.0f, v2, norms2.data());
    for (int j = 0; j < PN; j++) {
      char what[64];
      snprintf(what, sizeof what, "gradient penalty: sample %d's norm", j);
      check_rel(what, norms1[j], norms2[j], 1e-14);
    }
    check_nmse("gradient penalty: gradient", v1, v2, PN * PM, 1e-24);
  }

  /* spectral norm's kernels: v / |v|, W / sigma, and the backward (rows 24, cols 48) */
  {
    enum { SR = 24, SC = 48 };
    buf<float> w(SR * SC), u(SR), v(SC), vn(SC), vw(SC), ws1(SR * SC), dws(SR * SC), dw1(SR * SC), dw2(SR * SC);
    fill(w, SR * SC), fill(u, SR), fill(v, SC), fill(dws, SR * SC);
    memcpy(vn, v, sizeof(float) * SC);
    double ss = emu_dot(v, NULL, SC, false), sigma = 1.7320508;
    launch({1, 1, 1}, {32, 1, 1}, [&] { k_normalize(vn, SC, &ss); });
    const double den = sqrt(ss);
    for (int i = 0; i < SC; i++) vw[i] = (float)(v[i] / den);
    check_same("spectral norm: normalise", vn.p, vw.p, sizeof(float) * SC);
    double zero = 0;
    memcpy(vw, v, sizeof(float) * SC);
    launch({1, 1, 1}, {32, 1, 1}, [&] { k_normalize(vw, SC, &zero); }); /* F.normalize's eps: v / 1e-12 */
    bool eps_ok = true;
    for (int i = 0; i < SC; i++) eps_ok &= vw[i] == (float)(v[i] / 1e-12);
    printf("  %-52s %s\n", "spectral norm: normalise a zero vector (eps)", eps_ok ? "ok" : "FAIL");
    g_bad += !eps_ok;
    poison(ws1, SR * SC);
    launch(SMALL_GRID, SMALL_BLOCK, [&] { k_div_sigma(w, ws1, SR * SC, &sigma); });
    size_t wrong = 0;
    for (int i = 0; i < SR * SC; i++) wrong += ws1[i] != (float)(w[i] / sigma);
    printf("  %-52s %zu wrong  %s\n", "spectral norm: W / sigma", wrong, wrong ? "FAIL" : "ok");
    g_bad += wrong != 0;
    double inner = emu_dot(dws, w, SR * SC, false);
    poison(dw1, SR * SC);
    launch(SMALL_GRID, SMALL_BLOCK, [&] { k_sn_bwd(dws, u, vn, SC, SR * SC, &sigma, &inner, dw1); });
    g->sn_backward(ref, w, dws, SR, SC, u, vn, &sigma, dw2);
    check_nmse("spectral norm backward", dw1, dw2, SR * SC, 1e-14);
  }
}

/* ---- the patch input: cu_patches' staging and k_patches ------------------------------------ */
static void check_patches(mp_backend *ref) {
  const mp_backend_i *g = ref->iface;
  std::uniform_int_distribution<int> B(0, 255);
  for (int shape = 0; shape < 2; shape++) {
    const int PN = shape ? 3 : 5, PP = shape ? 13 : 12; /* 3 x 13 x 13: bytes no multiple of 4 */
    std::vector<uint8_t> u8((size_t)5 * PP * PP);
    for (auto &v : u8) v = (uint8_t)B(g_rng);
    const uint8_t *src[5] = {u8.data(), u8.data() + PP * PP, NULL, u8.data() + 3 * PP * PP, u8.data() + 4 * PP * PP};
    if (shape) src[1] = NULL, src[2] = u8.data() + 2 * PP * PP;
    const uint32_t bits[5] = {0, 1 | 4, 2 | 12, 3 | 8, 2 | 12};
    buf<unsigned char> stage(patch_stage_bytes(PN, PP));
    patch_stage_fill(stage, src, bits, PN, PP);
    const uint32_t *sb;
    const uint8_t *su8;
    const unsigned char *spres;
    patch_stage_parts(stage, PN, PP, &sb, &su8, &spres);
    buf<float> x1((size_t)PN * PP * PP), x2((size_t)PN * PP * PP);
    for (int rot = 0; rot < 2; rot++) {
      poison(x1, (size_t)PN * PP * PP);
      launch(SMALL_GRID, SMALL_BLOCK, [&] { k_patches(su8, sb, spres, PN, PP, rot, x1); });
      g->patches_to_input(ref, src, bits, PN, PP, rot, x2);
      char what[96];
      snprintf(what, sizeof what, "patches to input %d x %d x %d, flips%s", PN, PP, PP, rot ? " + rotations" : "");
      check_same(what, x1.p, x2.p, sizeof(float) * PN * PP * PP);
    }
  }
}

/* ---- the bf16 staging's general transpose and conversion, and the graph trials' count ----- */
static void check_staging() {
  const unsigned Z = 2;
  const int R = 37, S = 45; /* partial tiles both ways */
  const size_t n = (size_t)Z * R * S;
  buf<float> x(n), back(n);
  buf<uint16_t> h(n);
  fill(x, n);
  x[3] = NAN, x[4] = INFINITY, x[5] = 1e-40f; /* a NaN, an infinity, a subnormal */
  const u3 grid = {(unsigned)((S + TT - 1) / TT), (unsigned)((R + TT - 1) / TT), Z}, block = {TT, TROWS, 1};
  const float *nob = nullptr;
  launch(grid, block, [&] { k_transpose<float, uint16_t>(x, h, R, S, nob); });
  launch({(unsigned)((R + TT - 1) / TT), (unsigned)((S + TT - 1) / TT), Z}, block,
         [&] { k_transpose<uint16_t, float>(h, back, S, R, nob); });
  size_t wrong_to = 0, wrong_back = 0;
  for (unsigned z = 0; z < Z; z++)
    for (int r = 0; r < R; r++)
      for (int s = 0; s < S; s++) {
        const size_t src = ((size_t)z * R + r) * S + s, dst = ((size_t)z * S + s) * R + r;
        wrong_to += h[dst] != bf16_rn(x[src]);
        wrong_back += __float_as_uint(back[src]) != (uint32_t)h[dst] << 16;
      }
  printf("  %-52s %zu wrong, back %zu wrong  %s\n", "bf16 tile transpose 2 x 37 x 45 and back", wrong_to, wrong_back,
         wrong_to || wrong_back ? "FAIL" : "ok");
  g_bad += wrong_to || wrong_back;
  /* back with a convolution's bias (per row of the result: R = 37 channels) in the same pass:
   * the bits of the plain way back followed by k_bias_add */
  buf<float> bias((size_t)R), backb(n), want(n);
  fill(bias, (size_t)R);
  bias[2] = 0.0f, bias[3] = -0.0f;
  memcpy(want.p, back.p, n * sizeof(float));
  const unsigned units = (unsigned)n;
  launch(SMALL_GRID, SMALL_BLOCK, [&] { k_bias_add<1>(want, bias, (unsigned)R, (unsigned)S, units); });
  launch({(unsigned)((R + TT - 1) / TT), (unsigned)((S + TT - 1) / TT), Z}, block,
         [&] { k_transpose<uint16_t, float>(h, backb, S, R, bias); });
  size_t wrong_bias = 0;
  for (size_t i = 0; i < n; i++)
    wrong_bias += __float_as_uint(backb[i]) != __float_as_uint(want[i]) && !(want[i] != want[i] && backb[i] != backb[i]);
  printf("  %-52s %zu wrong  %s\n", "bf16 tile transpose back + bias (k_bias_add's bits)", wrong_bias,
         wrong_bias ? "FAIL" : "ok");
  g_bad += wrong_bias != 0;
  /* grid y smaller than R's tiles (as beyond 65535 tiles): the blocks stride over them */
  buf<uint16_t> hs(n);
  launch({grid.x, 1, Z}, block, [&] { k_transpose<float, uint16_t>(x, hs, R, S, nob); });
  check_same("bf16 tile transpose, grid y striding over R", hs.p, h.p, n * sizeof(uint16_t));
  /* R = 1: the plain conversion */
  buf<uint16_t> h1(n);
  launch(SMALL_GRID, SMALL_BLOCK, [&] { k_convert<float, uint16_t>(x, h1, n); });
  size_t wrong = 0;
  for (size_t i = 0; i < n; i++) wrong += h1[i] != bf16_rn(x[i]);
  printf("  %-52s %zu wrong  %s\n", "bf16 conversion", wrong, wrong ? "FAIL" : "ok");
  g_bad += wrong != 0;
  /* k_ndiff16: 23 words changed */
  memcpy(h1.p, h.p, n * sizeof(uint16_t));
  for (size_t i = 0; i < 23; i++) h1[i * 97 % n] ^= 0x0100;
  unsigned long long cnt = 0;
  launch(SMALL_GRID, SMALL_BLOCK, [&] { k_ndiff16(h, h1, n, &cnt); });
  printf("  %-52s %llu (want 23)  %s\n", "bf16 words that differ", cnt, cnt == 23 ? "ok" : "FAIL");
  g_bad += cnt != 23;
}

/* ---- the kNN's l1 score blocks (cu_l1_nt's launch) ------------------------------------------
 * 70 x 67 entries (2 x 2 tiles, partial both ways), k = 75 (two runs of 32 and a partial one),
 * strided operands: the bits of the documented arithmetic (float runs of 32 terms in order,
 * added in double, rounded once), the rows and columns past the tile edges untouched. */
static void check_l1_nt() {
  enum { M = 70, N = 67, K = 75, LDA = 80, LDB = 77, LDC = 71 };
  const size_t nc = (size_t)(M + 1) * LDC; /* a guard row past the last */
  buf<float> A((size_t)M * LDA), B((size_t)N * LDB), Cg(nc), Cw(nc), Cd(nc);
  fill(A, (size_t)M * LDA), fill(B, (size_t)N * LDB);
  for (size_t i = 0; i < nc; i++) Cg[i] = Cw[i] = Cd[i] = -7.0f; /* the padding columns and the guard row stay */
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double acc = 0, exact = 0;
      for (int e0 = 0; e0 < K; e0 += 32) {
        float run = 0;
        for (int e = e0; e < K && e < e0 + 32; e++) {
          run += fabsf(A[(size_t)i * LDA + e] - B[(size_t)j * LDB + e]);
          exact += fabs((double)A[(size_t)i * LDA + e] - B[(size_t)j * LDB + e]);
        }
        acc += run;
      }
      Cw[(size_t)i * LDC + j] = (float)acc, Cd[(size_t)i * LDC + j] = (float)exact;
    }
  const u3 grid = {(unsigned)((N + (int)L1_TILE - 1) / (int)L1_TILE), (unsigned)((M + (int)L1_TILE - 1) / (int)L1_TILE), 1},
           block = {16, 16, 1};
  launch(grid, block, [&] { k_l1_nt(M, N, K, A, LDA, B, LDB, Cg, LDC); });
  check_same("l1 scores 70 x 67, k 75, strided: the runs' bits", Cg.p, Cw.p, sizeof(float) * nc);
  check_nmse("l1 scores against a double sum", Cg.p, Cd.p, (size_t)M * LDC, 1e-12);
}

int main() {
  char err[256];
  mp_backend *ref = mp_backend_create("ref", err, sizeof err);
  if (!ref) {
    fprintf(stderr, "ref backend: %s\n", err);
    return 1;
  }
  /* batch norm: odd planes (scalar units, one slice); float4 units in 8 slices; scalar units in
   * 10 uneven slices; float4 units in 3 uneven slices; more channels than one block of 128 */
  const mp_bn_desc shapes[] = {{3, 5, 42, 1e-5f, 0.1f},
                               {8, 3, 1024, 1e-5f, 0.1f},
                               {64, 2, 42, 1e-5f, 0.1f},
                               {50, 2, 64, 1e-3f, 0.3f},
                               {2, 130, 6, 1e-5f, 0.1f}};
  for (const auto &d : shapes) check_bn(ref, d);
  check_bias(8, 3, 1024);
  check_bias(64, 2, 42);
  check_bias(2, 130, 6);
  printf(" element-wise kernels\n");
  check_elementwise(ref);
  printf(" reductions, gradient penalty, spectral norm\n");
  check_reductions(ref);
  printf(" patch input\n");
  check_patches(ref);
  printf(" bf16 staging\n");
  check_staging();
  printf(" kNN l1 score blocks\n");
  check_l1_nt();
  mp_backend_free(ref);
  printf("%s: %d check(s) failed\n", g_bad ? "FAIL" : "ok", g_bad);
  return g_bad ? 1 : 0;
}
