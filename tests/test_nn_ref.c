/* The reference convolution kernels: shapes of the SPEC's three convolutions, a
 * hand-computed answer, the adjoint identities that tie forward, backward-data and
 * backward-weights together (<conv(x,w), g> = <x, conv^T(g)> = <w, dW(x,g)>, exact for a
 * linear map, checked in double), and finite differences on single elements. */
#include <math.h>

#include "mp_alloc.h"
#include "mp_ref.h"
#include "mp_rng.h"
#include "mp_test.h"

static void test_shapes(void **state) {
  (void)state;
  mp_conv_desc d;
  assert_int_equal(mp_conv_desc_init(&d, 2, 1, 128, 128, 16, 3, 3, 1, 1), 0); /* classifier 3x3 pad 1 */
  assert_int_equal(d.p, 128);
  assert_int_equal(d.q, 128);
  assert_int_equal(mp_conv_desc_init(&d, 2, 64, 128, 128, 128, 4, 4, 2, 1), 0); /* D: 4x4 stride 2 pad 1 */
  assert_int_equal(d.p, 64);
  assert_int_equal(mp_conv_desc_init(&d, 2, 512, 4, 4, 1, 4, 4, 1, 0), 0); /* D: 4x4 valid */
  assert_int_equal(d.p, 1);
  assert_int_equal(d.q, 1);
  assert_int_equal(mp_conv_y_count(&d), 2);
  assert_int_equal(mp_conv_w_count(&d), 512 * 16);
  assert_int_equal(mp_conv_desc_init(&d, 1, 1, 3, 3, 1, 4, 4, 1, 0), -1); /* kernel larger than the input */
  assert_int_equal(mp_conv_desc_init(&d, 1, 1, 8, 8, 1, 3, 3, 0, 1), -1); /* stride 0 */
  assert_int_equal(mp_conv_desc_init(&d, 1, 1, 8, 8, 1, 3, 3, 1, 3), -1); /* padding >= kernel */
}

static void test_known_answer(void **state) {
  (void)state;
  mp_conv_desc d;
  mp_conv_desc_init(&d, 1, 1, 3, 3, 1, 2, 2, 1, 0);
  float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[4] = {1, 0, 0, -1}, b[1] = {0.5f}, y[4];
  mp_ref_conv2d_forward(&d, x, w, b, y); /* x[i][j] - x[i+1][j+1] + 0.5 = -3.5 */
  for (int i = 0; i < 4; i++) assert_true(y[i] == -3.5f);
  /* stride 2, pad 1, 3x3 ones on a 3x3 of ones: corner windows see 4 ones */
  mp_conv_desc_init(&d, 1, 1, 3, 3, 1, 3, 3, 2, 1);
  float one[9], w9[9], y4[4];
  for (int i = 0; i < 9; i++) one[i] = w9[i] = 1;
  mp_ref_conv2d_forward(&d, one, w9, NULL, y4);
  assert_int_equal(d.p, 2);
  for (int i = 0; i < 4; i++) assert_true(y4[i] == 4.0f);
}

static void fill(float *a, size_t n, mp_rng *r) {
  for (size_t i = 0; i < n; i++) a[i] = (float)(2.0 * mp_rng_uniform_f64(r) - 1.0);
}

static double dot(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

static void check_adjoint_and_fd(int n, int c, int h, int w, int k, int r, int s, int stride, int pad) {
  mp_conv_desc d;
  assert_int_equal(mp_conv_desc_init(&d, n, c, h, w, k, r, s, stride, pad), 0);
  size_t nx = mp_conv_x_count(&d), nw = mp_conv_w_count(&d), ny = mp_conv_y_count(&d);
  float *x = mp_malloc(nx * 4), *wt = mp_malloc(nw * 4), *g = mp_malloc(ny * 4), *y = mp_malloc(ny * 4);
  float *dx = mp_malloc(nx * 4), *dw = mp_malloc(nw * 4), *db = mp_malloc((size_t)k * 4), *bias = mp_malloc((size_t)k * 4);
  mp_rng rng;
  mp_rng_init(&rng, 5, MP_RNG_TEST, (uint64_t)(c * 1000 + h * 10 + stride));
  fill(x, nx, &rng);
  fill(wt, nw, &rng);
  fill(g, ny, &rng);
  fill(bias, (size_t)k, &rng);
  mp_ref_conv2d_forward(&d, x, wt, NULL, y);
  mp_ref_conv2d_backward_data(&d, g, wt, dx);
  mp_ref_conv2d_backward_weights(&d, x, g, dw, db);
  double lhs = dot(y, g, ny), via_x = dot(x, dx, nx), via_w = dot(wt, dw, nw);
  double tol = 1e-5 * (fabs(lhs) + 1.0);
  if (fabs(lhs - via_x) > tol || fabs(lhs - via_w) > tol)
    fail_msg("adjoint identity broken: <y,g> %.9g, <x,dx> %.9g, <w,dw> %.9g", lhs, via_x, via_w);
  /* db = sum of g per output channel */
  for (int kk = 0; kk < k; kk++) {
    double sum = 0;
    for (int nn = 0; nn < n; nn++)
      for (int i = 0; i < d.p * d.q; i++) sum += g[((size_t)nn * k + kk) * d.p * d.q + i];
    assert_true(fabs(sum - db[kk]) < 1e-4);
  }
  /* finite differences of L = <conv(x,w)+b, g> on a few elements (L is linear in each,
   * so a large step is exact up to rounding) */
  const float eps = 0.5f;
  for (int t = 0; t < 6; t++) {
    size_t ix = mp_rng_below(&rng, (uint32_t)nx), iw = mp_rng_below(&rng, (uint32_t)nw);
    float keep = x[ix];
    x[ix] = keep + eps;
    mp_ref_conv2d_forward(&d, x, wt, bias, y);
    double lp = dot(y, g, ny);
    x[ix] = keep - eps;
    mp_ref_conv2d_forward(&d, x, wt, bias, y);
    double lm = dot(y, g, ny);
    x[ix] = keep;
    if (fabs((lp - lm) / (2 * eps) - dx[ix]) > 1e-4 * (1 + fabs(dx[ix]))) fail_msg("dL/dx[%zu] fd %.7g vs %.7g", ix, (lp - lm) / (2 * eps), dx[ix]);
    keep = wt[iw];
    wt[iw] = keep + eps;
    mp_ref_conv2d_forward(&d, x, wt, bias, y);
    lp = dot(y, g, ny);
    wt[iw] = keep - eps;
    mp_ref_conv2d_forward(&d, x, wt, bias, y);
    lm = dot(y, g, ny);
    wt[iw] = keep;
    if (fabs((lp - lm) / (2 * eps) - dw[iw]) > 1e-4 * (1 + fabs(dw[iw]))) fail_msg("dL/dw[%zu] fd %.7g vs %.7g", iw, (lp - lm) / (2 * eps), dw[iw]);
  }
  mp_free(x);
  mp_free(wt);
  mp_free(g);
  mp_free(y);
  mp_free(dx);
  mp_free(dw);
  mp_free(db);
  mp_free(bias);
}

static void test_adjoint_and_fd(void **state) {
  (void)state;
  check_adjoint_and_fd(2, 3, 8, 8, 4, 3, 3, 1, 1);  /* classifier 3x3 pad 1 */
  check_adjoint_and_fd(2, 3, 8, 8, 5, 4, 4, 2, 1);  /* GAN 4x4 stride 2 pad 1 */
  check_adjoint_and_fd(3, 6, 4, 4, 1, 4, 4, 1, 0);  /* D's final 4x4 valid */
  check_adjoint_and_fd(1, 2, 7, 9, 3, 3, 3, 2, 1);  /* odd sizes, stride 2 */
}

/* The transposed convolution of the generator is backward-data of the matching
 * convolution: 8x8 -> 16x16 for 4x4 stride 2 pad 1. */
static void test_transposed_shape(void **state) {
  (void)state;
  mp_conv_desc d; /* the convolution that maps 16x16 -> 8x8 */
  assert_int_equal(mp_conv_desc_init(&d, 1, 2, 16, 16, 3, 4, 4, 2, 1), 0);
  assert_int_equal(d.p, 8);
  float *z = mp_calloc(mp_conv_y_count(&d), 4), *wt = mp_malloc(mp_conv_w_count(&d) * 4), *out = mp_malloc(mp_conv_x_count(&d) * 4);
  for (size_t i = 0; i < mp_conv_w_count(&d); i++) wt[i] = 1.0f;
  z[0] = 1.0f; /* one pixel at (0, 0) spreads over the 4x4 kernel minus the padded row and column */
  mp_ref_conv2d_backward_data(&d, z, wt, out);
  int nonzero = 0;
  for (size_t i = 0; i < mp_conv_x_count(&d); i++) nonzero += out[i] != 0.0f;
  assert_int_equal(nonzero, 2 * 3 * 3); /* rows 0..2, cols 0..2 reachable; both channels */
  mp_free(z);
  mp_free(wt);
  mp_free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_known_answer),
      cmocka_unit_test(test_adjoint_and_fd),
      cmocka_unit_test(test_transposed_shape),
  };
  return cmocka_run_group_tests_name("nn_ref", tests, NULL, NULL);
}
