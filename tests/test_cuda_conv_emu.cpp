/* test_cuda_conv_emu — the cuda backend's own convolution algorithms (nn/mp_cuda_conv.cuh) and
 * its few-channel bf16 staging kernels (nn/mp_cuda_layout.cuh, see check_layout) compiled for
 * the host and run on an emulated GPU, against naive convolutions in double.  Where
 * no GPU is present (CI) this is what holds them to the definitions
 *   y[n][k][p][q]   = sum_c,r,s x[n][c][p st + r - ph][q st + s - pw] w[k][c][r][s]
 *   dx, dw          the adjoints of that in x and in w:
 * wgrad3's indexing, edge handling, warp-shuffle reduction and partial-sum layout (3x3 stride 1),
 * and the gemm path — k_im2col, k_col2im, k_swap01 and conv_gemm_plan's chunking, layouts and
 * GEMM shapes, with a naive row-major GEMM in cuBLAS's place — for every op on stride-1 and
 * stride-2, square and 1x7 kernels, padded and valid, in one chunk and in several.  On a GPU,
 * test_backend holds the compiled algorithms to ref (MP_CUDA_CONV_OWN=wgrad3 / gemm) and the
 * backend compares them with cuDNN's result before using them.
 *
 * The emulation is tests/cuda_emu.h; element-wise kernels get a small grid, so that their
 * grid-stride loops go round.  Outputs start as NaN so that an element left unwritten fails the
 * comparison. */
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "cuda_emu.h"

#include "mp_cuda_conv.cuh"
#include "mp_cuda_layout.cuh"

static int check_wgrad3() {
  /* n c h w k pad_h pad_w: the classifier's 3x3 pad 1; odd channel counts (a lone last k or c
   * pair); one input channel; valid (pad 0) and pad 2; rows longer than a 32-column strip with a
   * partial last strip; more (k, c) pairs than one block's warps; unequal pads; more partials
   * (samples x strips) than the sum's 32 threads per weight */
  static const int shapes[][7] = {{2, 3, 16, 16, 8, 1, 1}, {3, 2, 40, 64, 4, 1, 1}, {2, 5, 9, 37, 3, 0, 0},
                                  {1, 1, 33, 40, 16, 1, 1}, {3, 4, 7, 5, 5, 2, 2}, {1, 16, 6, 70, 16, 1, 1},
                                  {2, 3, 8, 9, 2, 0, 1},   {40, 2, 5, 6, 3, 1, 1}};
  std::mt19937 rng(20261127);
  std::uniform_real_distribution<float> U(-1.0f, 1.0f);
  int bad = 0;
  for (const auto &q : shapes) {
    const int N = q[0], C = q[1], H = q[2], W = q[3], K = q[4], ph = q[5], pw = q[6];
    const int P = H + 2 * ph - 2, Q = W + 2 * pw - 2;
    std::vector<float> x((size_t)N * C * H * W), dy((size_t)N * K * P * Q), dw((size_t)K * C * 9, NAN);
    for (auto &v : x) v = U(rng);
    for (auto &v : dy) v = U(rng);
    const int strips = (Q + 31) / 32, kp = (K + 1) / 2, cp = (C + 1) / 2;
    std::vector<float> part((size_t)N * strips * K * C * 9, NAN);
    const unsigned gx = (unsigned)(strips * ((kp * cp + WG_WARPS - 1) / WG_WARPS));
    const float *xp = x.data(), *dp = dy.data();
    float *pp = part.data(), *wp = dw.data();
    launch({gx, (unsigned)N, 1}, {32 * WG_WARPS, 1, 1}, [=] { k_wgrad3(xp, dp, pp, C, H, W, K, P, Q, ph, pw, kp, cp); });
    const size_t m = (size_t)K * C * 9;
    launch({(unsigned)((m + 31) / 32), 1, 1}, {32, 32, 1}, [=] { k_wgrad3_sum(pp, wp, m, N * strips); });
    double num = 0, den = 0;
    for (int k = 0; k < K; k++)
      for (int c = 0; c < C; c++)
        for (int r = 0; r < 3; r++)
          for (int s = 0; s < 3; s++) {
            double a = 0;
            for (int n = 0; n < N; n++)
              for (int y = 0; y < P; y++)
                for (int xo = 0; xo < Q; xo++) {
                  const int iy = y + r - ph, ix = xo + s - pw;
                  if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                  a += (double)dy[(((size_t)n * K + k) * P + y) * Q + xo] * x[(((size_t)n * C + c) * H + iy) * W + ix];
                }
            const double e = dw[((size_t)k * C + c) * 9 + r * 3 + s] - a;
            num += e * e, den += a * a;
          }
    const double nmse = num / den; /* NaN (an unwritten weight) fails */
    const bool ok = nmse < 1e-12;  /* fp32 products and lane sums, double across partials: ~1e-14 */
    printf("wgrad3 n%d c%d %dx%d k%d pad %d,%d -> %dx%d (%d strips, %d pairs): nmse %.2e %s\n", N, C, H, W, K, ph, pw, P, Q,
           strips, kp * cp, nmse, ok ? "ok" : "FAILED");
    bad += !ok;
  }
  return bad;
}

/* the gemm path's Ops with emulated launches and a naive GEMM */
struct host_ops {
  /* small grids, so that both grid-stride loops (rows over y, elements over x) go round */
  void im2col(const float *x, float *col, const conv_dims &d, int nb) {
    launch({2, 3, 1}, {32, 1, 1}, [=] { k_im2col(x, col, d, nb); });
  }
  void col2im(const float *col, float *dx, const conv_dims &d, int nb) {
    launch({2, 3, 1}, {32, 1, 1}, [=] { k_col2im(col, dx, d, nb); });
  }
  void swap01(const float *in, float *out, int A, int B, size_t L) {
    const unsigned total = (unsigned)(A * B * L);
    launch({3, 1, 1}, {64, 1, 1}, [=] { k_swap01(in, out, (unsigned)A, (unsigned)B, (unsigned)L, total); });
  }
  /* row-major C (M x N) = op(A) op(B) + beta C; C is not read when beta is 0 (as cuBLAS) */
  void gemm(bool ta, bool tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
            float beta) {
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        double acc = 0;
        for (int k = 0; k < K; k++)
          acc += (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                 (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
        float &o = C[(size_t)i * ldc + j];
        o = beta != 0.0f ? (float)(acc + beta * o) : (float)acc;
      }
  }
};

static double nmse(const std::vector<float> &got, const std::vector<double> &want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); i++) {
    const double e = got[i] - want[i];
    num += e * e, den += want[i] * want[i];
  }
  return num / den; /* NaN (an unwritten element) fails */
}

static int check_gemm() {
  /* n c h w k r s stride pad_h pad_w, and the chunk (samples) to run with */
  static const int shapes[][11] = {
      {3, 4, 8, 8, 5, 4, 4, 2, 1, 1, 2},  /* the GANs' 4x4 stride 2 pad 1, two chunks (2 + 1) */
      {2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 2},  /* the classifier's 3x3, one chunk */
      {2, 3, 5, 9, 2, 1, 7, 1, 0, 3, 1},  /* Inception's 1x7 pad (0, 3), one sample a chunk */
      {3, 2, 9, 9, 3, 3, 3, 2, 0, 0, 2},  /* 3x3 stride 2 valid */
      {3, 8, 4, 4, 1, 4, 4, 1, 0, 0, 3},  /* the critic's last 4x4 valid: one output pixel */
      {2, 6, 4, 4, 5, 4, 4, 2, 1, 1, 1},  /* G's 4x4 -> 8x8 as a backward data: 2x2 outputs */
  };
  std::mt19937 rng(20261128);
  std::uniform_real_distribution<float> U(-1.0f, 1.0f);
  int bad = 0;
  for (const auto &q : shapes) {
    const conv_dims d = {q[0], q[1], q[2], q[3], q[4], q[5], q[6], (q[2] + q[8] * 2 - q[5]) / q[7] + 1,
                         (q[3] + q[9] * 2 - q[6]) / q[7] + 1, q[7], q[8], q[9]};
    const int nb = q[10];
    const size_t nx = (size_t)d.n * d.c * d.h * d.w, nw = (size_t)d.k * d.c * d.r * d.s, ny = (size_t)d.n * d.k * d.p * d.q;
    std::vector<float> x(nx), w(nw), dy(ny);
    for (auto &v : x) v = U(rng);
    for (auto &v : w) v = U(rng);
    for (auto &v : dy) v = U(rng);
    std::vector<double> y0(ny, 0.0), dx0(nx, 0.0), dw0(nw, 0.0);
    for (int n = 0; n < d.n; n++)
      for (int k = 0; k < d.k; k++)
        for (int p = 0; p < d.p; p++)
          for (int qq = 0; qq < d.q; qq++)
            for (int c = 0; c < d.c; c++)
              for (int r = 0; r < d.r; r++)
                for (int s = 0; s < d.s; s++) {
                  const int iy = p * d.st + r - d.ph, ix = qq * d.st + s - d.pw;
                  if (iy < 0 || iy >= d.h || ix < 0 || ix >= d.w) continue;
                  const size_t xi = (((size_t)n * d.c + c) * d.h + iy) * d.w + ix, wi = (((size_t)k * d.c + c) * d.r + r) * d.s + s;
                  const size_t yi = (((size_t)n * d.k + k) * d.p + p) * d.q + qq;
                  y0[yi] += (double)x[xi] * w[wi];
                  dx0[xi] += (double)dy[yi] * w[wi];
                  dw0[wi] += (double)dy[yi] * x[xi];
                }
    const size_t crs = (size_t)d.c * d.r * d.s, cols = (size_t)nb * d.p * d.q;
    std::vector<float> col(crs * cols, NAN), sw((size_t)d.k * cols, NAN);
    std::vector<float> y(ny, NAN), dx(nx, NAN), dw(nw, NAN);
    host_ops o;
    conv_gemm_plan(o, 0, d, x.data(), w.data(), y.data(), col.data(), sw.data(), nb);
    conv_gemm_plan(o, 1, d, dy.data(), w.data(), dx.data(), col.data(), sw.data(), nb);
    conv_gemm_plan(o, 2, d, x.data(), dy.data(), dw.data(), col.data(), sw.data(), nb);
    const double e[3] = {nmse(y, y0), nmse(dx, dx0), nmse(dw, dw0)};
    const bool ok = e[0] < 1e-12 && e[1] < 1e-12 && e[2] < 1e-12;
    printf("gemm n%d c%d %dx%d k%d %dx%d s%d pad %d,%d -> %dx%d, %d a chunk: nmse fwd %.1e data %.1e filter %.1e %s\n",
           d.n, d.c, d.h, d.w, d.k, d.r, d.s, d.st, d.ph, d.pw, d.p, d.q, nb, e[0], e[1], e[2], ok ? "ok" : "FAILED");
    bad += !ok;
  }
  return bad;
}

/* bf16 rounding to nearest, ties to even, computed apart from the kernels' bit trick: the two
 * bf16 neighbours of v (truncation and the next one up in magnitude) compared in double */
static uint16_t ref_bf16(float v) {
  unsigned u;
  memcpy(&u, &v, sizeof u);
  if (std::isnan(v)) return 0x7fc0;
  const unsigned lo = u & 0xffff0000u, hi = lo + 0x10000u;
  float flo, fhi;
  memcpy(&flo, &lo, sizeof flo);
  memcpy(&fhi, &hi, sizeof fhi);
  if (std::isinf(v)) return (uint16_t)(u >> 16);
  const double dlo = std::fabs((double)v - flo), dhi = std::isinf(fhi) ? INFINITY : std::fabs((double)fhi - v);
  /* at the top of the range the next one up is infinity: IEEE rounds there past half an ulp */
  const double dhi2 = std::isinf(fhi) ? std::fabs(std::ldexp(1.0, 128) * (flo < 0 ? -1 : 1) - v) : dhi;
  if (dlo < dhi2) return (uint16_t)(lo >> 16);
  if (dhi2 < dlo) return (uint16_t)(hi >> 16);
  return (uint16_t)(((lo >> 16) & 1u) ? hi >> 16 : lo >> 16);
}

/* The few-channel bf16 staging (mp_cuda_layout.cuh): (Z, C, S) fp32 -> (Z, S, C) bf16 and back,
 * for C = 8, 16, 32, with S = 1, 9 (a 3x3 filter), 37 and 64; values include exact ties, both
 * signs of zero, subnormals, the largest finite floats (which round to infinity), infinities
 * and NaNs (quiet, and with only low payload bits).  Every element is compared: bit for bit
 * with ref_bf16 one way (any NaN for a NaN), exactly the other. */
static int check_layout() {
  std::mt19937 rng(20261127);
  std::uniform_real_distribution<float> U(-4.0f, 4.0f);
  static const float special[] = {0.0f, -0.0f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -1.0f - 1.0f / 256, 1e-40f, -3e-39f,
                                  3.4028235e38f, -3.39e38f, INFINITY, -INFINITY, NAN, 65504.0f, 1.00390625f};
  int bad = 0;
  for (int C : {8, 16, 32})
    for (unsigned S : {1u, 9u, 37u, 64u}) {
      const unsigned Z = 3;
      const size_t n = (size_t)Z * C * S, total = (size_t)Z * S;
      std::vector<float> x(n), back(n, NAN);
      for (size_t i = 0; i < n; i++) x[i] = i % 7 == 3 ? special[(i / 7) % (sizeof special / sizeof *special)] : U(rng);
      /* NaNs whose payload is only in the low bits, which plain rounding would carry into an
       * infinity or (all ones) wrap to zero */
      for (unsigned bits : {0x7f800001u, 0xffffffffu, 0xff800100u}) {
        float v;
        memcpy(&v, &bits, sizeof v);
        x[(bits % 5) * 3 % n] = v;
      }
      std::vector<uint16_t> h(n + 8, 0xdead); /* a guard past the end */
      uint16_t *hp = h.data();
      const float *xp = x.data();
      float *bp = back.data();
      auto to = [&] {
        if (C == 8) k_to_nhwc_bf16<8>(xp, hp, S, total);
        if (C == 16) k_to_nhwc_bf16<16>(xp, hp, S, total);
        if (C == 32) k_to_nhwc_bf16<32>(xp, hp, S, total);
      };
      /* back into out, plus bias (NULL: none) */
      auto from = [&](float *out, const float *bias) {
        launch({3, 1, 1}, {32, 1, 1}, [&] {
          if (C == 8) k_from_nhwc_bf16<8>(hp, out, S, total, bias);
          if (C == 16) k_from_nhwc_bf16<16>(hp, out, S, total, bias);
          if (C == 32) k_from_nhwc_bf16<32>(hp, out, S, total, bias);
        });
      };
      launch({2, 1, 1}, {32, 1, 1}, to); /* 64 threads: the grid-stride loop goes round for most sizes */
      from(bp, nullptr);
      size_t wrong_to = 0, wrong_from = 0;
      for (unsigned z = 0; z < Z; z++)
        for (int c = 0; c < C; c++)
          for (unsigned s = 0; s < S; s++) {
            const size_t src = ((size_t)z * C + c) * S + s, dst = ((size_t)z * S + s) * C + c;
            const uint16_t want = ref_bf16(x[src]), got = h[dst];
            const bool nan_ok = std::isnan(x[src]) && (got & 0x7f80) == 0x7f80 && (got & 0x7f);
            wrong_to += !(got == want || nan_ok);
            unsigned wb = (unsigned)got << 16;
            float wf;
            memcpy(&wf, &wb, sizeof wf);
            wrong_from += !(memcmp(&back[src], &wf, sizeof wf) == 0);
          }
      for (size_t i = n; i < n + 8; i++) wrong_to += h[i] != 0xdead;
      /* back with a convolution's bias in the same pass: the bits of the plain way back followed
       * by the separate bias pass (one fp32 addition per element; -0 + 0 and NaNs included) */
      std::vector<float> bias(C), backb(n, NAN);
      for (int c = 0; c < C; c++) bias[c] = c % 5 == 4 ? 0.0f : c % 5 == 3 ? -0.0f : U(rng);
      from(backb.data(), bias.data());
      size_t wrong_bias = 0;
      for (size_t i = 0; i < n; i++) {
        const float want = back[i] + bias[i / S % C];
        wrong_bias += memcmp(&backb[i], &want, sizeof want) != 0 && !(std::isnan(want) && std::isnan(backb[i]));
      }
      const bool ok = !wrong_to && !wrong_from && !wrong_bias;
      printf("  layout C %2d S %2u Z %u: fp32 -> bf16 channels-last %zu wrong, back %zu wrong, back + bias %zu wrong  %s\n",
             C, S, Z, wrong_to, wrong_from, wrong_bias, ok ? "ok" : "FAIL");
      bad += !ok;
    }
  return bad;
}

int main() {
  const int bad = check_wgrad3() + check_gemm() + check_layout();
  return bad ? 1 : 0;
}
