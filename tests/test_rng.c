/* Tests of mp_rng: Random123 known-answer vectors for Philox4x32-10, the mapping of
 * (seed, stream, index) onto counters, seek/tell, and the distributions. */
#include <math.h>

#include "mp_rng.h"
#include "mp_test.h"

/* Random123 kat_vectors, philox4x32 with 10 rounds: ctr[4] key[2] -> out[4]. */
static const uint32_t kat[][10] = {
    {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
    {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
     0x6d5451fd},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
     0x24126ea1},
};

static void test_philox_kat(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
    uint32_t out[4];
    mp_philox4x32_10(kat[i], kat[i] + 4, out);
    for (int j = 0; j < 4; j++) assert_int_equal(out[j], kat[i][6 + j]);
  }
}

/* The counter layout documented in mp_rng.h: key = seed, ctr = (block, stream, index). */
static void test_counter_layout(void **state) {
  (void)state;
  uint64_t seed = 0x299f31d0a4093822ULL;
  uint32_t stream = 0x85a308d3u;
  uint64_t index = 0x0370734413198a2eULL;
  mp_rng r;
  mp_rng_init(&r, seed, stream, index);
  /* block 0x243f6a88 is word 4*0x243f6a88 */
  mp_rng_seek(&r, 4ULL * 0x243f6a88u);
  for (int j = 0; j < 4; j++) assert_int_equal(mp_rng_u32(&r), kat[2][6 + j]);
  assert_int_equal(mp_rng_at(seed, stream, index, 4ULL * 0x243f6a88u + 2), kat[2][8]);
}

static void test_sequential_equals_stateless(void **state) {
  (void)state;
  mp_rng r;
  mp_rng_init(&r, 42, MP_RNG_SAMPLER, 7);
  for (uint64_t k = 0; k < 1000; k++) assert_int_equal(mp_rng_u32(&r), mp_rng_at(42, MP_RNG_SAMPLER, 7, k));
  assert_int_equal(mp_rng_tell(&r), 1000);
}

static void test_seek_tell(void **state) {
  (void)state;
  mp_rng a, b;
  mp_rng_init(&a, 9, MP_RNG_TEST, 3);
  for (int i = 0; i < 37; i++) mp_rng_u32(&a);
  uint64_t pos = mp_rng_tell(&a);
  assert_int_equal(pos, 37);
  mp_rng_init(&b, 9, MP_RNG_TEST, 3);
  mp_rng_seek(&b, pos);
  assert_int_equal(mp_rng_tell(&b), 37);
  for (int i = 0; i < 100; i++) assert_int_equal(mp_rng_u32(&a), mp_rng_u32(&b));
  /* a normal draw is exactly four words: positions stay restorable */
  double x = mp_rng_normal(&a);
  mp_rng_seek(&b, mp_rng_tell(&a) - 4);
  assert_true(x == mp_rng_normal(&b));
}

/* Different seeds, streams and indices give different sequences. */
static void test_independence(void **state) {
  (void)state;
  uint32_t base = mp_rng_at(1, 1, 1, 0);
  assert_int_not_equal(base, mp_rng_at(2, 1, 1, 0));
  assert_int_not_equal(base, mp_rng_at(1, 2, 1, 0));
  assert_int_not_equal(base, mp_rng_at(1, 1, 2, 0));
  assert_int_not_equal(base, mp_rng_at(1, 1, 1ULL << 32 | 1, 0));
  assert_int_not_equal(base, mp_rng_at(1ULL << 32 | 1, 1, 1, 0));
}

/* What a rank computes for item i does not depend on which items it holds: draws for
 * items 0..99 made in blocks of any size equal the draws made in one pass. */
static void test_rank_independence(void **state) {
  (void)state;
  double one[100];
  for (int i = 0; i < 100; i++) {
    mp_rng r;
    mp_rng_init(&r, 77, MP_RNG_SYNTH, (uint64_t)i);
    one[i] = mp_rng_uniform_f64(&r);
  }
  for (int parts = 2; parts <= 7; parts++) {
    for (int p = parts - 1; p >= 0; p--) { /* reverse order on purpose */
      for (int i = p; i < 100; i += parts) {
        mp_rng r;
        mp_rng_init(&r, 77, MP_RNG_SYNTH, (uint64_t)i);
        assert_true(mp_rng_uniform_f64(&r) == one[i]);
      }
    }
  }
}

static void test_uniform(void **state) {
  (void)state;
  mp_rng r;
  mp_rng_init(&r, 5, MP_RNG_TEST, 0);
  double sum = 0, sumf = 0;
  const int n = 200000;
  for (int i = 0; i < n; i++) {
    double u = mp_rng_uniform_f64(&r);
    float f = mp_rng_uniform(&r);
    assert_true(u >= 0.0 && u < 1.0);
    assert_true(f >= 0.0f && f < 1.0f);
    sum += u;
    sumf += f;
  }
  /* mean 1/2, sd of the mean sqrt(1/12/n) ~ 6.5e-4: 6 sd bound */
  assert_true(fabs(sum / n - 0.5) < 0.004);
  assert_true(fabs(sumf / n - 0.5) < 0.004);
}

/* mp_rng_below: in range, every value reached, counts pass a chi-square test, and
 * a bound that forces rejection (3 * 2^30) stays unbiased. */
static void test_below(void **state) {
  (void)state;
  mp_rng r;
  mp_rng_init(&r, 11, MP_RNG_TEST, 1);
  enum { K = 10, N = 100000 };
  int counts[K] = {0};
  for (int i = 0; i < N; i++) {
    uint32_t v = mp_rng_below(&r, K);
    assert_true(v < K);
    counts[v]++;
  }
  double chi = 0, e = (double)N / K;
  for (int k = 0; k < K; k++) chi += (counts[k] - e) * (counts[k] - e) / e;
  assert_true(chi < 27.9); /* chi-square 9 dof, p = 0.001 */
  uint32_t big = 3u << 30;
  int low = 0;
  for (int i = 0; i < N; i++) {
    uint32_t v = mp_rng_below(&r, big);
    assert_true(v < big);
    low += v < (1u << 30);
  }
  /* P(v < 2^30) = 1/3 exactly when unbiased */
  assert_true(fabs((double)low / N - 1.0 / 3.0) < 0.01);
  assert_int_equal(mp_rng_below(&r, 1), 0);
}

static void test_normal(void **state) {
  (void)state;
  mp_rng r;
  mp_rng_init(&r, 3, MP_RNG_TEST, 2);
  const int n = 200000;
  double s = 0, s2 = 0, s4 = 0;
  for (int i = 0; i < n; i++) {
    double x = mp_rng_normal(&r);
    assert_true(isfinite(x));
    s += x;
    s2 += x * x;
    s4 += x * x * x * x;
  }
  double mean = s / n, var = s2 / n - mean * mean;
  assert_true(fabs(mean) < 0.015);
  assert_true(fabs(var - 1.0) < 0.02);
  assert_true(fabs(s4 / n - 3.0) < 0.1); /* kurtosis of a normal */
}

static void test_shuffle(void **state) {
  (void)state;
  enum { N = 1000 };
  uint32_t a[N], b[N];
  for (uint32_t i = 0; i < N; i++) a[i] = b[i] = i;
  mp_rng r1, r2;
  mp_rng_init(&r1, 8, MP_RNG_SPLIT, 0);
  mp_rng_init(&r2, 8, MP_RNG_SPLIT, 0);
  mp_rng_shuffle_u32(&r1, a, N);
  mp_rng_shuffle_u32(&r2, b, N);
  assert_memory_equal(a, b, sizeof a);
  int seen[N] = {0}, fixed = 0;
  for (int i = 0; i < N; i++) {
    seen[a[i]]++;
    fixed += a[i] == (uint32_t)i;
  }
  for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
  assert_true(fixed < 10); /* a uniform permutation has ~1 fixed point */
  mp_rng_init(&r2, 9, MP_RNG_SPLIT, 0);
  for (uint32_t i = 0; i < N; i++) b[i] = i;
  mp_rng_shuffle_u32(&r2, b, N);
  assert_memory_not_equal(a, b, sizeof a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_philox_kat),      cmocka_unit_test(test_counter_layout),
      cmocka_unit_test(test_sequential_equals_stateless), cmocka_unit_test(test_seek_tell),
      cmocka_unit_test(test_independence),    cmocka_unit_test(test_rank_independence),
      cmocka_unit_test(test_uniform),         cmocka_unit_test(test_below),
      cmocka_unit_test(test_normal),          cmocka_unit_test(test_shuffle),
  };
  return cmocka_run_group_tests_name("rng", tests, NULL, NULL);
}
