/* Every backend against ref (ggml's test-backend-ops): each op on fresh random inputs,
 * outputs poisoned with NaN before every run, compared by normalised mean squared error
 * with a per-op tolerance.  Convolution shapes: the SPEC's three (small batches) and an
 * odd one; then activations, batch norm, max-pool, linear, dropout, Adam, the memory
 * entries and spectral norm.  Prints which convolution kernel each backend used.
 *
 * Every buffer comes from the allocator of the backend under test (device memory that
 * the host may touch after mp_backend_sync, e.g. cuda's managed memory), and the ref
 * computes on the same buffers.  A device backend whose device is absent is skipped
 * with a message. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_backend.h"
#include "mp_ref.h"
#include "mp_rng.h"
#include "mp_test.h"
#include "mp_nmse.h"

/* buffers of the backend under test, released together */
static mp_backend *g_be;
static void *g_blk[512];
static int g_nblk;
static void *TB(size_t bytes) {
  if (g_nblk == (int)(sizeof g_blk / sizeof g_blk[0])) fail_msg("test buffer table full");
  return g_blk[g_nblk++] = g_be->iface->alloc(g_be, bytes);
}
static float *T(size_t n) { return TB(n * sizeof(float)); }
static void T_release_all(void) {
  mp_backend_sync(g_be);
  while (g_nblk) g_be->iface->release(g_be, g_blk[--g_nblk]);
}

static void fill(float *a, size_t n, mp_rng *r) {
  for (size_t i = 0; i < n; i++) a[i] = (float)(2.0 * mp_rng_uniform_f64(r) - 1.0);
}
static void poison(float *a, size_t n) {
  for (size_t i = 0; i < n; i++) a[i] = NAN;
}

#define CHECK_NMSE(what, a, b, n, tol)                                                            \
  do {                                                                                            \
    mp_backend_sync(be);                                                                          \
    double e_ = mp_nmse(a, b, n);                                                                 \
    printf("  %-4s %-34s nmse %.1e\n", name, what, e_);                                           \
    if (!(e_ < (tol))) fail_msg("%s: %s differs from ref (nmse %.2e, tolerance %.0e)", name, what, e_, (double)(tol)); \
  } while (0)

/* The optional GEMM of device backends (the kNN's score blocks, SPEC §9): C = A B^T, strided,
 * in full fp32 whatever the backend's precision (the kNN's candidates must be as good as the
 * CPU's SGEMM; TF32 or bf16 operands would give ~1e-7 here). */
static void check_gemm_nt(const char *name, mp_backend *be, mp_rng *r) {
  enum { GM = 7, GN = 9, GK = 13, LDA = 15, LDC = 11 };
  float *A = T(GM * LDA), *Bm = T(GN * GK), *C1 = T(GM * LDC), *C2 = T(GM * LDC);
  fill(A, GM * LDA, r), fill(Bm, GN * GK, r), fill(C1, GM * LDC, r);
  memcpy(C2, C1, GM * LDC * 4);
  be->iface->gemm_nt(be, GM, GN, GK, A, LDA, Bm, GK, C1, LDC);
  for (int i = 0; i < GM; i++)
    for (int j = 0; j < GN; j++) {
      double acc = 0;
      for (int q = 0; q < GK; q++) acc += (double)A[i * LDA + q] * Bm[j * GK + q];
      C2[i * LDC + j] = (float)acc;
    }
  CHECK_NMSE("gemm A B^T (strided)", C1, C2, GM * LDC, 1e-12);
}

/* The optional l1 score blocks of device backends (the kNN's l1, SPEC §9): C[i][j] =
 * sum_e |A[i][e] - B[j][e]|, strided, k = 70 (two whole runs of 32 and a partial one), more
 * rows and columns than one 64 x 64 tile of the cuda kernel, against a double sum. */
static void check_l1_nt(const char *name, mp_backend *be, mp_rng *r) {
  enum { LM = 70, LN = 67, LK = 70, LDA = 75, LDB = 73, LDC = 69 };
  float *A = T(LM * LDA), *Bm = T(LN * LDB), *C1 = T(LM * LDC), *C2 = T(LM * LDC);
  fill(A, LM * LDA, r), fill(Bm, LN * LDB, r), fill(C1, LM * LDC, r);
  memcpy(C2, C1, LM * LDC * 4);
  be->iface->l1_nt(be, LM, LN, LK, A, LDA, Bm, LDB, C1, LDC);
  for (int i = 0; i < LM; i++)
    for (int j = 0; j < LN; j++) {
      double acc = 0;
      for (int q = 0; q < LK; q++) acc += fabs((double)A[i * LDA + q] - Bm[j * LDB + q]);
      C2[i * LDC + j] = (float)acc;
    }
  CHECK_NMSE("l1 scores sum |A_i - B_j| (strided)", C1, C2, LM * LDC, 1e-12);
}

/* mp_backend_gather_rows (the SMOTE variant's batch) in the backend's memory: runs of a's
 * rows at either end and inside, single rows between them, a row taken twice; exactly the
 * host loop's rows, and dst's rows beyond n untouched. */
static void check_gather_rows(const char *name, mp_backend *be, mp_rng *r) {
  enum { GN = 9, GR = 4, GM = 37 };
  static const int64_t sel[GN] = {-1, -1, 2, 0, -1, -1, -1, 2, -1};
  float *a = T((GN + 1) * GM), *rows = T(GR * GM), *dst = T((GN + 1) * GM), *want = mp_malloc((GN + 1) * GM * 4);
  fill(a, (GN + 1) * GM, r), fill(rows, GR * GM, r), poison(dst, (GN + 1) * GM);
  for (int j = 0; j < GN; j++) memcpy(want + j * GM, sel[j] < 0 ? a + j * GM : rows + sel[j] * GM, GM * 4);
  poison(want + GN * GM, GM);
  mp_backend_gather_rows(be, dst, a, rows, sel, GN, GM);
  mp_backend_sync(be);
  int differ = 0;
  for (int i = 0; i < (GN + 1) * GM; i++) differ += memcmp(&dst[i], &want[i], 4) != 0;
  printf("  %-4s %-34s %d of %d values differ\n", name, "gather rows", differ, (GN + 1) * GM);
  mp_free(want);
  if (differ) fail_msg("%s: gather rows differs from the host loop", name);
}

/* The optional Inception entries of device backends: resize_u8 (two 128 x 128 patches to 299 x
 * 299), pool2d_forward (max 3x3 stride 2, average 3x3 with the padding counted and not, the
 * global 8x8 mean) and copy2d (a channel concatenation's strided rows) hold mp_ref's bits. */
static void check_inception_ops(const char *name, mp_backend *be, mp_rng *r) {
  if (!be->iface->resize_u8 || !be->iface->pool2d_forward || !be->iface->copy2d) {
    printf("  %-4s resize_u8 / pool2d / copy2d: not offered (Inception runs its host loops on this backend)\n", name);
    return;
  }
  {
    enum { RN = 2, RS = 128, RO = 299 };
    uint8_t *px = mp_malloc(RN * RS * RS);
    for (int i = 0; i < RN * RS * RS; i++) px[i] = (uint8_t)(mp_rng_uniform_f64(r) * 256.0);
    float *out = T(RN * RO * RO), *want = mp_malloc(RN * RO * RO * 4);
    poison(out, RN * RO * RO);
    be->iface->resize_u8(be, px, RN, RS, RO, out);
    mp_ref_resize_u8(px, RN, RS, RO, want);
    mp_backend_sync(be);
    if (memcmp(out, want, RN * RO * RO * 4)) fail_msg("%s: resize_u8 differs from mp_ref", name);
    mp_free(px), mp_free(want);
  }
  enum { N = 2, C = 5, H = 9, W = 8 };
  float *x = T(N * C * H * W), *y = T(N * C * H * W), *want = mp_malloc(N * C * H * W * 4);
  fill(x, N * C * H * W, r);
  static const int cases[4][5] = {{MP_POOL_MAX, 3, 2, 0, H}, {MP_POOL_AVG, 3, 1, 1, H}, {MP_POOL_AVG_IN, 3, 1, 1, H},
                                  {MP_POOL_AVG, 8, 1, 0, 8}};
  for (int i = 0; i < 4; i++) {
    const int *cs = cases[i], oh = (cs[4] + 2 * cs[3] - cs[1]) / cs[2] + 1, ow = (W + 2 * cs[3] - cs[1]) / cs[2] + 1;
    const size_t m = (size_t)N * C * oh * ow;
    poison(y, N * C * H * W);
    be->iface->pool2d_forward(be, cs[0], x, y, N, C, cs[4], W, cs[1], cs[2], cs[3]);
    mp_ref_pool2d_forward(cs[0], x, want, N, C, cs[4], W, cs[1], cs[2], cs[3]);
    mp_backend_sync(be);
    if (memcmp(y, want, m * 4)) fail_msg("%s: pool2d kind %d %dx%d differs from mp_ref", name, cs[0], cs[1], cs[1]);
  }
  /* the second of two parts (3 and 2 channels of H x W) into a 5-channel concatenation */
  const size_t hw = H * W;
  poison(y, N * C * H * W), poison(want, N * C * H * W);
  be->iface->copy2d(be, y + 3 * hw, C * hw, x, 2 * hw, 2 * hw, N);
  mp_ref_copy2d(want + 3 * hw, C * hw, x, 2 * hw, 2 * hw, N);
  mp_backend_sync(be);
  if (memcmp(y, want, N * C * hw * 4)) fail_msg("%s: copy2d differs from mp_ref", name);
  printf("  %-4s resize_u8, pool2d (max, avg, avg inside, global mean), copy2d: mp_ref's bits\n", name);
  mp_free(want);
}

/* Batch norm (train, eval, backward, and the fused BN+ReLU pair where the backend has it) on
 * one shape: inputs with an offset and scale per channel, every output and saved statistic
 * poisoned before the run and compared with ref. */
static void check_bn(const char *name, mp_backend *be, mp_backend *ref, mp_rng *r, mp_bn_desc d) {
  const mp_backend_i *f = be->iface, *g = ref->iface;
  const size_t C = (size_t)d.c;
  printf("  %-4s batch norm n %d c %d hw %d\n", name, d.n, d.c, d.hw);
  size_t n = (size_t)d.n * d.c * d.hw;
  float *x = T(n), *dy = T(n), *y1 = T(n), *y2 = T(n), *dx1 = T(n), *dx2 = T(n);
  float *gm = T(C), *bt = T(C), *sm1 = T(C), *sm2 = T(C), *si1 = T(C), *si2 = T(C), *rm1 = T(C), *rm2 = T(C);
  float *rv1 = T(C), *rv2 = T(C), *dg1 = T(C), *dg2 = T(C), *db1 = T(C), *db2 = T(C);
  fill(x, n, r);
  for (size_t i = 0; i < n; i++) x[i] = x[i] * (1.0f + (float)((i / d.hw) % d.c)) + 0.5f * (float)((i / d.hw) % d.c);
  fill(dy, n, r);
  fill(gm, C, r);
  fill(bt, C, r);
  fill(rm1, C, r);
  for (size_t i = 0; i < C; i++) rv1[i] = 0.5f + (float)i, rm2[i] = rm1[i], rv2[i] = rv1[i];
  poison(y1, n), poison(sm1, C), poison(si1, C), poison(dx1, n), poison(dg1, C), poison(db1, C);
  f->bn_forward_train(be, &d, x, gm, bt, y1, sm1, si1, rm1, rv1);
  g->bn_forward_train(ref, &d, x, gm, bt, y2, sm2, si2, rm2, rv2);
  CHECK_NMSE("batch norm train: y", y1, y2, n, 1e-10);
  CHECK_NMSE("batch norm train: saved mean", sm1, sm2, C, 1e-10);
  CHECK_NMSE("batch norm train: saved 1/std", si1, si2, C, 1e-10);
  CHECK_NMSE("batch norm train: running mean", rm1, rm2, C, 1e-10);
  CHECK_NMSE("batch norm train: running var", rv1, rv2, C, 1e-10);
  f->bn_backward(be, &d, x, dy, gm, sm2, si2, dx1, dg1, db1);
  g->bn_backward(ref, &d, x, dy, gm, sm2, si2, dx2, dg2, db2);
  CHECK_NMSE("batch norm backward: dx", dx1, dx2, n, 1e-9);
  CHECK_NMSE("batch norm backward: dgamma", dg1, dg2, C, 1e-10);
  CHECK_NMSE("batch norm backward: dbeta", db1, db2, C, 1e-10);
  if (f->bn_relu_forward_train) { /* the fused pass against ref's batch norm then ReLU */
    float *t2 = T(n), *g2 = T(n);
    poison(y1, n), poison(sm1, C), poison(si1, C), poison(dx1, n), poison(dg1, C), poison(db1, C);
    f->bn_relu_forward_train(be, &d, x, gm, bt, y1, sm1, si1, rm1, rv1);
    g->bn_forward_train(ref, &d, x, gm, bt, t2, sm2, si2, rm2, rv2);
    mp_ref_relu_forward(t2, y2, n);
    CHECK_NMSE("batch norm + relu train: y", y1, y2, n, 1e-10);
    CHECK_NMSE("batch norm + relu train: saved 1/std", si1, si2, C, 1e-10);
    CHECK_NMSE("batch norm + relu train: running var", rv1, rv2, C, 1e-10);
    f->bn_relu_backward(be, &d, x, y1, dy, gm, sm2, si2, dx1, dg1, db1);
    mp_ref_relu_backward(t2, dy, g2, n);
    g->bn_backward(ref, &d, x, g2, gm, sm2, si2, dx2, dg2, db2);
    CHECK_NMSE("batch norm + relu backward: dx", dx1, dx2, n, 1e-9);
    CHECK_NMSE("batch norm + relu backward: dgamma", dg1, dg2, C, 1e-10);
    CHECK_NMSE("batch norm + relu backward: dbeta", db1, db2, C, 1e-10);
  }
  poison(y1, n);
  f->bn_forward_eval(be, &d, x, gm, bt, rm2, rv2, y1);
  g->bn_forward_eval(ref, &d, x, gm, bt, rm2, rv2, y2);
  CHECK_NMSE("batch norm eval", y1, y2, n, 1e-10);
}

/* Batch norm (check_bn, three shapes), max-pool, linear, dropout and Adam: every output
 * and every saved statistic poisoned before the run and compared with ref. */
static void check_other_ops(const char *name, mp_backend *be, mp_backend *ref, mp_rng *r) {
  const mp_backend_i *f = be->iface, *g = ref->iface;
  /* batch norm: odd sizes (7x6), then a plane of 64x64 (float4 loads on cuda) over many
   * samples, and many samples of a small odd plane (a channel split into several slices) */
  check_bn(name, be, ref, r, (mp_bn_desc){3, 5, 42, 1e-5f, 0.1f});
  check_bn(name, be, ref, r, (mp_bn_desc){16, 3, 4096, 1e-5f, 0.1f});
  check_bn(name, be, ref, r, (mp_bn_desc){64, 2, 42, 1e-5f, 0.1f});
  /* max-pool 2x2 with ties (quantised inputs) */
  {
    enum { PN = 2, PC = 3, PH = 6, PW = 8, NX = PN * PC * PH * PW, NY = NX / 4 };
    float *x = T(NX), *y1 = T(NY), *y2 = T(NY), *dy = T(NY), *dx1 = T(NX), *dx2 = T(NX);
    unsigned char *a1 = TB(NY), *a2 = TB(NY);
    fill(x, NX, r);
    for (int i = 0; i < NX; i++) x[i] = roundf(x[i] * 3.0f); /* many ties: the first maximum wins */
    fill(dy, NY, r);
    poison(y1, NY), poison(dx1, NX);
    memset(a1, 0xff, NY);
    f->maxpool2_forward(be, x, y1, a1, PN, PC, PH, PW);
    g->maxpool2_forward(ref, x, y2, a2, PN, PC, PH, PW);
    CHECK_NMSE("max-pool forward", y1, y2, NY, 1e-30);
    assert_memory_equal(a1, a2, NY);
    f->maxpool2_backward(be, dy, a1, dx1, PN, PC, PH, PW);
    g->maxpool2_backward(ref, dy, a2, dx2, PN, PC, PH, PW);
    CHECK_NMSE("max-pool backward", dx1, dx2, NX, 1e-30);
  }
  /* linear: n 5, in 37, out 11 */
  {
    enum { LN = 5, LI = 37, LO = 11 };
    float *x = T(LN * LI), *w = T(LO * LI), *b = T(LO), *dy = T(LN * LO), *y1 = T(LN * LO), *y2 = T(LN * LO);
    float *dx1 = T(LN * LI), *dx2 = T(LN * LI), *dw1 = T(LO * LI), *dw2 = T(LO * LI), *db1 = T(LO), *db2 = T(LO);
    fill(x, LN * LI, r), fill(w, LO * LI, r), fill(b, LO, r), fill(dy, LN * LO, r);
    poison(y1, LN * LO), poison(dx1, LN * LI), poison(dw1, LO * LI), poison(db1, LO);
    f->linear_forward(be, x, w, b, y1, LN, LI, LO);
    g->linear_forward(ref, x, w, b, y2, LN, LI, LO);
    CHECK_NMSE("linear forward", y1, y2, LN * LO, 1e-10);
    f->linear_backward(be, x, w, dy, dx1, dw1, db1, LN, LI, LO);
    g->linear_backward(ref, x, w, dy, dx2, dw2, db2, LN, LI, LO);
    CHECK_NMSE("linear backward: dx", dx1, dx2, LN * LI, 1e-10);
    CHECK_NMSE("linear backward: dW", dw1, dw2, LO * LI, 1e-10);
    CHECK_NMSE("linear backward: db", db1, db2, LO, 1e-10);
  }
  /* dropout (the same mask from the counter-based RNG) and Adam */
  {
    enum { DN = 999 };
    float *x = T(DN), *y1 = T(DN), *y2 = T(DN), *dy = T(DN), *dx1 = T(DN), *dx2 = T(DN);
    unsigned char *m1 = TB(DN), *m2 = TB(DN);
    fill(x, DN, r), fill(dy, DN, r);
    poison(y1, DN), poison(dx1, DN);
    f->dropout_forward(be, x, y1, m1, DN, 0.5f, 7, 3, 0);
    g->dropout_forward(ref, x, y2, m2, DN, 0.5f, 7, 3, 0);
    mp_backend_sync(be);
    assert_memory_equal(m1, m2, DN);
    CHECK_NMSE("dropout forward", y1, y2, DN, 1e-30);
    f->dropout_backward(be, dy, m1, dx1, DN, 0.5f);
    g->dropout_backward(ref, dy, m2, dx2, DN, 0.5f);
    CHECK_NMSE("dropout backward", dx1, dx2, DN, 1e-30);
    float *p1 = T(DN), *p2 = T(DN), *m_1 = T(DN), *m_2 = T(DN), *v1 = T(DN), *v2 = T(DN);
    mp_backend_sync(be);
    memset(m_1, 0, DN * 4), memset(m_2, 0, DN * 4), memset(v1, 0, DN * 4), memset(v2, 0, DN * 4);
    fill(p1, DN, r);
    memcpy(p2, p1, DN * 4);
    for (long t = 1; t <= 3; t++) {
      f->adam_step(be, p1, dy, m_1, v1, DN, 1e-3f, 0.5f, 0.999f, 1e-8f, t);
      g->adam_step(ref, p2, dy, m_2, v2, DN, 1e-3f, 0.5f, 0.999f, 1e-8f, t);
    }
    CHECK_NMSE("adam, three steps", p1, p2, DN, 1e-14);
  }
  /* patch input: 5 uint8 patches 12 x 12 (one absent: zeros), every flip and quarter turn; then
   * 3 patches 13 x 13, whose bytes (507) are no multiple of 4, as an odd store patch size and a
   * tail batch give (a device backend's staging must not misalign what follows them) */
  for (int shape = 0; shape < 2; shape++) {
    const int PN = shape ? 3 : 5, PP = shape ? 13 : 12;
    uint8_t *u8 = mp_malloc((size_t)5 * PP * PP);
    for (int i = 0; i < PN * PP * PP; i++) u8[i] = (uint8_t)(mp_rng_u32(r) & 255);
    const uint8_t *src[5] = {u8, u8 + PP * PP, NULL, u8 + 3 * PP * PP, u8 + 4 * PP * PP};
    if (shape) src[1] = NULL, src[2] = u8 + 2 * PP * PP;
    uint32_t bits[5] = {0, 1 | 4, 2 | 12, 3 | 8, 2 | 12};
    float *x1 = T(PN * PP * PP), *x2 = T(PN * PP * PP);
    for (int rot = 0; rot < 2; rot++) {
      poison(x1, PN * PP * PP);
      f->patches_to_input(be, src, bits, PN, PP, rot, x1);
      g->patches_to_input(ref, src, bits, PN, PP, rot, x2);
      CHECK_NMSE(rot ? (shape ? "patches to input, 3 x 13 x 13, flips + rotations" : "patches to input, flips + rotations")
                     : (shape ? "patches to input, 3 x 13 x 13, flips" : "patches to input, flips"),
                 x1, x2, PN * PP * PP, 1e-30);
    }
    mp_free(u8);
  }
  if (f->gemm_nt) check_gemm_nt(name, be, r);
  if (f->l1_nt) check_l1_nt(name, be, r);
  /* the memory entries: copy, zero, axpy, scale */
  {
    enum { MN = 1001 };
    float *a = T(MN), *c1 = T(MN), *c2 = T(MN);
    fill(a, MN, r), fill(c1, MN, r);
    memcpy(c2, c1, MN * 4);
    f->axpy(be, 0.75f, a, c1, MN);
    g->axpy(ref, 0.75f, a, c2, MN);
    CHECK_NMSE("axpy", c1, c2, MN, 1e-30);
    f->scale(be, -1.5f, c1, MN);
    g->scale(ref, -1.5f, c2, MN);
    CHECK_NMSE("scale", c1, c2, MN, 1e-30);
    f->copy(be, c1, a, MN);
    CHECK_NMSE("copy", c1, a, MN, 1e-30);
    /* the WGAN-GP interpolates: 3 rows of 333 (weights 0, 1 and one between) */
    {
      const float e[3] = {0.0f, 1.0f, 0.3125f + 1e-3f};
      float *m1 = T(MN), *m2 = T(MN);
      poison(m1, MN), poison(m2, MN);
      f->mix_rows(be, a, c2, e, 3, MN / 3, m1);
      g->mix_rows(ref, a, c2, e, 3, MN / 3, m2);
      CHECK_NMSE("mix_rows", m1, m2, MN - MN % 3, 1e-30);
      mp_backend_sync(be);
      if (memcmp(m1, c2, MN / 3 * 4) || memcmp(m1 + MN / 3, a + MN / 3, MN / 3 * 4)) fail_msg("%s: mix_rows weights 0 / 1", name);
      if (!isnan(m1[MN - 1])) fail_msg("%s: mix_rows wrote past its rows", name);
    }
    f->zero(be, c1, MN * 4);
    mp_backend_sync(be);
    for (int i = 0; i < MN; i++) assert_true(c1[i] == 0.0f);
  }
  /* spectral norm: two training power iterations (u, v carried), eval, backward; rows 24,
   * cols 3 x 4 x 4 (a critic's conv).  sigma stays in the backend's memory between the
   * forward and the backward (read here after a sync); the eval forward writes another slot,
   * so the backward must use the one it is given */
  {
    enum { SR = 24, SC = 48 };
    float *w = T(SR * SC), *u1 = T(SR), *u2 = T(SR), *v1 = T(SC), *v2 = T(SC), *ws1 = T(SR * SC), *ws2 = T(SR * SC);
    float *dws = T(SR * SC), *dw1 = T(SR * SC), *dw2 = T(SR * SC);
    double *s1 = TB(sizeof(double)), *e1 = TB(sizeof(double)), s2 = 0, e2 = 0;
    fill(w, SR * SC, r), fill(u1, SR, r), fill(dws, SR * SC, r);
    memcpy(u2, u1, SR * 4);
    for (int it = 0; it < 2; it++) {
      f->sn_forward(be, w, SR, SC, u1, v1, ws1, 1, s1);
      g->sn_forward(ref, w, SR, SC, u2, v2, ws2, 1, &s2);
    }
    mp_backend_sync(be);
    printf("  %-4s spectral norm sigma %.9g (ref %.9g)\n", name, *s1, s2);
    if (!(fabs(*s1 - s2) <= 1e-6 * fabs(s2))) fail_msg("%s: spectral norm sigma differs from ref", name);
    CHECK_NMSE("spectral norm: u", u1, u2, SR, 1e-12);
    CHECK_NMSE("spectral norm: v", v1, v2, SC, 1e-12);
    CHECK_NMSE("spectral norm: W / sigma", ws1, ws2, SR * SC, 1e-12);
    f->sn_backward(be, w, dws, SR, SC, u1, v1, s1, dw1); /* with the training forward's sigma */
    g->sn_backward(ref, w, dws, SR, SC, u2, v2, &s2, dw2);
    CHECK_NMSE("spectral norm backward", dw1, dw2, SR * SC, 1e-12);
    /* eval (u, v kept) with a perturbed W: another sigma; the backward takes the slot given */
    for (int i = 0; i < SR * SC; i += 7) w[i] *= 1.5f;
    f->sn_forward(be, w, SR, SC, u1, v1, ws1, 0, e1);
    g->sn_forward(ref, w, SR, SC, u2, v2, ws2, 0, &e2);
    mp_backend_sync(be);
    if (!(fabs(*e1 - e2) <= 1e-6 * fabs(e2)) || e2 == s2) fail_msg("%s: eval spectral norm sigma differs from ref", name);
    CHECK_NMSE("spectral norm eval: W / sigma", ws1, ws2, SR * SC, 1e-12);
    f->sn_backward(be, w, dws, SR, SC, u1, v1, e1, dw1);
    g->sn_backward(ref, w, dws, SR, SC, u2, v2, &e2, dw2);
    CHECK_NMSE("spectral norm backward (eval sigma)", dw1, dw2, SR * SC, 1e-12);
  }
}

/* Every convolution shape, forward, backward data and backward weights (with and without
 * bias; separately and through the combined conv2d_backward) against ref: NMSE below tol
 * for each. */
static void check_convs(const char *name, mp_backend *be, mp_backend *ref, mp_rng *r, double tol) {
  /* n c h w k r s stride pad_h pad_w */
  static const int shapes[][10] = {
      {2, 3, 16, 16, 8, 3, 3, 1, 1, 1},  /* classifier 3x3 pad 1 */
      {2, 4, 16, 16, 8, 4, 4, 2, 1, 1},  /* GAN 4x4 stride 2 pad 1 */
      {3, 16, 4, 4, 1, 4, 4, 1, 0, 0},   /* D's 4x4 valid */
      {2, 8, 4, 4, 5, 4, 4, 1, 0, 0},    /* one output position, 5 channels: cuda bf16's bias apart */
      {1, 5, 9, 7, 6, 3, 3, 2, 1, 1},    /* odd sizes */
      {2, 6, 9, 11, 5, 1, 7, 1, 0, 3},   /* Inception-v3's 1x7 pad (0, 3) */
      {2, 6, 11, 9, 5, 7, 1, 1, 3, 0},   /* ... 7x1 pad (3, 0) */
      {1, 4, 10, 10, 3, 3, 1, 1, 1, 0},  /* ... 3x1 pad (1, 0) */
      {1, 3, 15, 15, 4, 3, 3, 2, 0, 0},  /* ... 3x3 stride 2 valid */
      {8, 2, 64, 64, 4, 3, 3, 1, 1, 1},  /* 64x64 planes: cuda's bias sums split a channel in slices */
      {3, 16, 20, 40, 16, 3, 3, 1, 1, 1}, /* block 1's 16 -> 16: cuda's own weight gradient, 64 (k, c) pairs, 2 strips */
  };
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int *q = shapes[s];
    mp_conv_desc d;
    assert_int_equal(mp_conv_desc_init_hw(&d, q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8], q[9]), 0);
    size_t nx = mp_conv_x_count(&d), nw = mp_conv_w_count(&d), ny = mp_conv_y_count(&d);
    float *x = T(nx), *w = T(nw), *b = T((size_t)d.k), *dy = T(ny), *y1 = T(ny), *y2 = T(ny), *dx1 = T(nx), *dx2 = T(nx);
    float *dw1 = T(nw), *dw2 = T(nw), *db1 = T((size_t)d.k), *db2 = T((size_t)d.k);
    float *dx3 = T(nx), *dw3 = T(nw), *db3 = T((size_t)d.k);
    for (int bias = 0; bias < 2; bias++) {
      fill(x, nx, r);
      fill(w, nw, r);
      fill(b, (size_t)d.k, r);
      fill(dy, ny, r);
      poison(y1, ny), poison(y2, ny), poison(dx1, nx), poison(dx2, nx);
      poison(dw1, nw), poison(dw2, nw), poison(db1, (size_t)d.k), poison(db2, (size_t)d.k);
      poison(dx3, nx), poison(dw3, nw), poison(db3, (size_t)d.k);
      mp_conv2d_forward(be, &d, x, w, bias ? b : NULL, y1);
      mp_conv2d_forward(ref, &d, x, w, bias ? b : NULL, y2);
      mp_conv2d_backward_data(be, &d, dy, w, dx1);
      mp_conv2d_backward_data(ref, &d, dy, w, dx2);
      mp_conv2d_backward_weights(be, &d, x, dy, dw1, bias ? db1 : NULL);
      mp_conv2d_backward_weights(ref, &d, x, dy, dw2, bias ? db2 : NULL);
      /* the combined entry the nets call (both gradients from one dy) */
      be->iface->conv2d_backward(be, &d, x, dy, w, dx3, dw3, bias ? db3 : NULL);
      mp_backend_sync(be);
      double c2 = mp_nmse(dx3, dx2, nx), c3 = mp_nmse(dw3, dw2, nw), c4 = bias ? mp_nmse(db3, db2, (size_t)d.k) : 0;
      if (!(c2 < tol && c3 < tol && c4 < tol))
        fail_msg("%s: conv2d_backward differs from ref (shape %zu, bias %d: nmse data %.1e weights %.1e bias %.1e, "
                 "tolerance %.0e)", name, s, bias, c2, c3, c4, tol);
      double e1 = mp_nmse(y1, y2, ny), e2 = mp_nmse(dx1, dx2, nx), e3 = mp_nmse(dw1, dw2, nw), e4 = bias ? mp_nmse(db1, db2, (size_t)d.k) : 0;
      printf("  %-4s conv %dx%d s%d p%d,%d %2dx%-2d c%-2d k%-2d bias %d: nmse fwd %.1e data %.1e weights %.1e bias %.1e  [%s]"
             "  [data: %s]  [weights: %s]\n",
             name, d.r, d.s, d.stride, d.pad, d.pad_w, d.h, d.w, d.c, d.k, bias, e1, e2, e3, e4,
             be->iface->describe(be, "conv2d_forward", &d), be->iface->describe(be, "conv2d_backward_data", &d),
             be->iface->describe(be, "conv2d_backward_weights", &d));
      if (!(e1 < tol && e2 < tol && e3 < tol && e4 < tol)) fail_msg("%s differs from ref (shape %zu, bias %d, tolerance %.0e)", name, s, bias, tol);
    }
    T_release_all();
  }
}

/* The backend under test (the test buffers' allocator) and a ref beside it; false, with a
 * message, when the backend's device is absent. */
static bool open_pair(const char *name, mp_backend **be, mp_backend **ref) {
  char err[256];
  if (mp_backend_device_absent(name)) {
    printf("  %-4s skipped: no device visible to this process\n", name);
    return false;
  }
  *be = mp_backend_create(name, err, sizeof err);
  if (!*be) fail_msg("%s", err);
  *ref = mp_backend_create("ref", err, sizeof err);
  g_be = *be;
  return true;
}

/* The cuda backend's own convolution algorithms (wgrad3, gemm) and cuDNN's graph-API engines
 * are used only where, on a shape's first call, they agree with cuDNN's legacy result and are
 * faster: a second backend made with MP_CUDA_CONV_OWN=<algorithm>, or MP_CUDA_CONV_GRAPH=force,
 * takes that one wherever the shape allows (the graph: the fastest engine that agrees), so that
 * check_convs holds each to ref whatever the timings said.  (No-op for other backends.) */
static void check_convs_own(const char *name, mp_backend *be, mp_backend *ref, mp_rng *r, double tol) {
  if (strncmp(name, "cuda", 4) != 0) return;
  /* MP_CUDA_CONV_OWN, MP_CUDA_CONV_GRAPH, label (the own algorithms without the graph engines'
   * first-call timings, which they do not need) */
  static const char *forced[][3] = {{"wgrad3", "off", "own wgrad3"}, {"gemm", "off", "own gemm"},
                                    {"auto", "force", "graph engines"}};
  for (size_t i = 0; i < sizeof forced / sizeof forced[0]; i++) {
    char err[256], label[48];
    setenv("MP_CUDA_CONV_OWN", forced[i][0], 1);
    setenv("MP_CUDA_CONV_GRAPH", forced[i][1], 1);
    mp_backend *own = mp_backend_create(name, err, sizeof err);
    unsetenv("MP_CUDA_CONV_OWN");
    unsetenv("MP_CUDA_CONV_GRAPH");
    if (!own) fail_msg("%s", err);
    g_be = own;
    snprintf(label, sizeof label, "%s, %s", name, forced[i][2]);
    check_convs(label, own, ref, r, tol);
    mp_backend_free(own);
    g_be = be;
  }
}

/* describe(NULL): the backend as a whole on one line that starts with its name (the runs'
 * compute record; on a GPU the card, the library versions and the precision) */
static void check_whole_line(const char *name, mp_backend *be) {
  const char *line = be->iface->describe(be, NULL, NULL);
  if (!line) fail_msg("%s: describe(NULL) gave no line", name);
  size_t n = strcspn(name, ":");
  printf("  %-4s %s\n", name, line);
  if (strncmp(line, name, n) != 0 || strncmp(line + n, ": ", 2) != 0 || strlen(line) < n + 12 ||
      strchr(line, '\n') || strlen(line) >= 512)
    fail_msg("%s: describe(NULL) gave '%s', not one line naming the backend", name, line);
  if (!strncmp(name, "cuda", 4) && (!strstr(line, "cuDNN ") || !strstr(line, "sm_") ||
                                    !strstr(line, !strcmp(name, "cuda:bf16") ? "bf16" : !strcmp(name, "cuda:tf32") ? "TF32" : "fp32")))
    fail_msg("%s: describe(NULL) gave '%s' (no card, cuDNN version or precision)", name, line);
}

static void check_backend(const char *name) {
  mp_backend *be, *ref;
  if (!open_pair(name, &be, &ref)) return;
  check_whole_line(name, be);
  mp_rng r;
  mp_rng_init(&r, 51, MP_RNG_TEST, 0);
  check_convs(name, be, ref, &r, 1e-10); /* fp32 with another summation order: ~1e-13 observed */
  check_convs_own(name, be, ref, &r, 1e-10);
  /* element-wise activations, forward and backward */
  static const char *anames[] = {"relu", "lrelu", "tanh", "sigmoid"};
  enum { NE = 1000 };
  float *x = T(NE), *y1 = T(NE), *y2 = T(NE), *g = T(NE), *d1 = T(NE), *d2 = T(NE);
  for (int kind = 0; kind < 4; kind++) {
    fill(x, NE, &r);
    fill(g, NE, &r);
    x[0] = 0.0f; /* the kink itself: both sides take the negative branch */
    poison(y1, NE), poison(d1, NE);
    be->iface->act_forward(be, kind, 0.2f, x, y1, NE);
    ref->iface->act_forward(ref, kind, 0.2f, x, y2, NE);
    be->iface->act_backward(be, kind, 0.2f, x, y1, g, d1, NE);
    ref->iface->act_backward(ref, kind, 0.2f, x, y2, g, d2, NE);
    mp_backend_sync(be);
    double ef = mp_nmse(y1, y2, NE), eb = mp_nmse(d1, d2, NE);
    printf("  %-4s %-8s nmse fwd %.1e bwd %.1e\n", name, anames[kind], ef, eb);
    if (!(ef < 1e-10 && eb < 1e-10)) fail_msg("%s %s differs from ref", name, anames[kind]);
  }
  check_other_ops(name, be, ref, &r);
  check_gather_rows(name, be, &r);
  check_inception_ops(name, be, &r);
  T_release_all();
  mp_backend_free(be);
  mp_backend_free(ref);
}

/* The strict backend's guard (nn/mp_backend_strict.c), each case in a fresh process (this
 * program run again with --strict-child N: a fork of a process whose oneDNN has started OpenMP
 * threads can hang in them): after an op, its input may be read but not written and its output
 * not touched until a sync; a violation dies of SIGSEGV naming the op.  what: 0 read the input
 * (lives), 1 write the input, 2 read the output (both die), 3 read the output after a sync
 * (lives).  Its exit status: 0, 3 no backend, 4 a wrong value, 5 a violation that lived. */
static int strict_case(int what) {
  char e[256];
  mp_backend *b = mp_backend_create("strict", e, sizeof e);
  if (!b) return 3;
  float *x = b->iface->alloc(b, 1000 * sizeof(float)), *y = b->iface->alloc(b, 1000 * sizeof(float));
  for (int i = 0; i < 1000; i++) x[i] = (float)i - 500.0f; /* a new block is open */
  b->iface->act_forward(b, MP_ACT_RELU, 0, x, y, 1000);
  volatile float v = 0;
  if (what == 0) v = x[7];
  if (what == 1) x[7] = 1.0f;
  if (what == 2) v = y[7];
  if (what == 3) mp_backend_sync(b), v = y[700];
  b->iface->release(b, x), b->iface->release(b, y);
  mp_backend_free(b);
  return what == 0 ? (v == -493.0f ? 0 : 4) : what == 3 ? (v == 200.0f ? 0 : 4) : 5;
}
/* case what in a child; its stderr into err; its exit status, or minus its signal */
static int strict_child(int what, char *err, size_t errlen) {
  int fd[2];
  if (pipe(fd) != 0) fail_msg("pipe");
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 2);
    close(fd[0]);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", what);
    execl("/proc/self/exe", "test_backend", "--strict-child", arg, (char *)NULL);
    _exit(127);
  }
  close(fd[1]);
  size_t n = 0;
  ssize_t r;
  char sink[512]; /* beyond errlen: drained, so that the child never blocks on or dies of a full pipe */
  while ((r = read(fd[0], n + 1 < errlen ? err + n : sink, n + 1 < errlen ? errlen - 1 - n : sizeof sink)) > 0)
    if (n + 1 < errlen) n += (size_t)r;
  err[n] = 0;
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st);
}

static void check_strict_guard(void) {
  static const char *const what[4] = {"read an op's input", "write an op's input", "read an op's output",
                                      "read an op's output after a sync"};
  char err[4096];
  for (int w = 0; w < 4; w++) {
    int st = strict_child(w, err, sizeof err);
    bool dies = w == 1 || w == 2;
    const char *want = w == 1 ? "host code wrote backend memory that a queued op still reads"
                              : "host code touched backend memory that a queued op writes";
    printf("  strict %-34s %s\n", what[w], st == -SIGSEGV ? "SIGSEGV" : st == 0 ? "fine" : "other");
    if (dies && !(st == -SIGSEGV && strstr(err, want) && strstr(err, "act_forward")))
      fail_msg("strict: %s: status %d, stderr '%.300s' (want SIGSEGV and '%s ... act_forward')", what[w], st, err,
               want);
    if (!dies && st != 0) fail_msg("strict: %s: status %d, stderr '%.300s'", what[w], st, err);
  }
}

static void test_backends(void **state) {
  (void)state;
  char list[64];
  snprintf(list, sizeof list, "%s", mp_backend_list());
  for (char *save = NULL, *n = strtok_r(list, " ", &save); n; n = strtok_r(NULL, " ", &save)) check_backend(n);
  /* strict: the ops through its guard (this test's own host accesses included: they must keep
   * the contract a GPU needs), and the guard itself */
  check_backend("strict");
  check_strict_guard();
  char err[256];
  assert_null(mp_backend_create("tpu", err, sizeof err));
  assert_non_null(strstr(err, "not in this build"));
}

/* The cuda backend's reduced precisions against the fp32 ref, with tolerances from their
 * rounding: TF32 (10-bit mantissa operands, fp32 accumulation: ~1e-7 expected) and bf16
 * mixed precision (8-bit mantissa operands and convolution results, fp32 accumulation:
 * ~5e-6 expected); a layout or indexing error gives ~1.  The printed NMSEs are the
 * accuracy cost of each mode per op. */
static void test_reduced_precision(void **state) {
  (void)state;
  if (!strstr(mp_backend_list(), "cuda")) {
    printf("  no cuda backend in this build: skipped\n");
    return;
  }
  static const struct {
    const char *name;
    double tol;
  } modes[] = {{"cuda:tf32", 1e-5}, {"cuda:bf16", 1e-4}};
  for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
    const char *name = modes[m].name;
    mp_backend *be, *ref;
    if (!open_pair(name, &be, &ref)) continue;
    check_whole_line(name, be);
    mp_rng r;
    mp_rng_init(&r, 52, MP_RNG_TEST, 0);
    check_convs(name, be, ref, &r, modes[m].tol);
    check_convs_own(name, be, ref, &r, modes[m].tol);
    /* linear: n 64, in 300, out 40 (cuBLAS in TF32 / bf16 tensor-core modes) */
    enum { LN = 64, LI = 300, LO = 40 };
    float *x = T(LN * LI), *w = T(LO * LI), *bias = T(LO), *y1 = T(LN * LO), *y2 = T(LN * LO), *dy = T(LN * LO);
    float *dx1 = T(LN * LI), *dx2 = T(LN * LI), *dw1 = T(LO * LI), *dw2 = T(LO * LI), *db1 = T(LO), *db2 = T(LO);
    fill(x, LN * LI, &r), fill(w, LO * LI, &r), fill(bias, LO, &r), fill(dy, LN * LO, &r);
    poison(y1, LN * LO), poison(dx1, LN * LI), poison(dw1, LO * LI), poison(db1, LO);
    be->iface->linear_forward(be, x, w, bias, y1, LN, LI, LO);
    ref->iface->linear_forward(ref, x, w, bias, y2, LN, LI, LO);
    be->iface->linear_backward(be, x, w, dy, dx1, dw1, db1, LN, LI, LO);
    ref->iface->linear_backward(ref, x, w, dy, dx2, dw2, db2, LN, LI, LO);
    CHECK_NMSE("linear forward", y1, y2, LN * LO, modes[m].tol);
    CHECK_NMSE("linear backward: dx", dx1, dx2, LN * LI, modes[m].tol);
    CHECK_NMSE("linear backward: dW", dw1, dw2, LO * LI, modes[m].tol);
    CHECK_NMSE("linear backward: db", db1, db2, LO, 1e-10); /* a plain fp32 sum in every mode */
    if (be->iface->gemm_nt) check_gemm_nt(name, be, &r); /* fp32 in every mode */
    if (be->iface->l1_nt) check_l1_nt(name, be, &r);
    T_release_all();
    mp_backend_free(be);
    mp_backend_free(ref);
  }
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--strict-child")) return strict_case(atoi(argv[2]));
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_backends), cmocka_unit_test(test_reduced_precision)};
  return cmocka_run_group_tests_name("backend", tests, NULL, NULL);
}
