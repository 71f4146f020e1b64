/* mp_split: part sizes (50/25/25, no empty part from 3 patients up), every patient with
 * patches in exactly one part, lesion and normal-only patients each split on their own,
 * the same seed gives the same split and another seed another one; and the metrics from
 * counts that train reports. */
#include <math.h>

#include "mp_split.h"
#include "mp_test.h"
#include "mp_metrics.h"

static void test_sizes(void **state) {
  (void)state;
  uint64_t s[3];
  for (uint64_t n = 0; n < 200; n++) {
    mp_split_sizes(n, s);
    assert_int_equal(s[0] + s[1] + s[2], n);
    if (n >= 3) assert_true(s[0] > 0 && s[1] > 0 && s[2] > 0);
    if (n >= 20) assert_true(fabs((double)s[0] / n - 0.5) < 0.05 && fabs((double)s[1] / n - 0.25) < 0.05);
  }
  mp_split_sizes(100, s);
  assert_int_equal(s[0], 50);
  assert_int_equal(s[1], 25);
  assert_int_equal(s[2], 25);
}

static void test_patients(void **state) {
  (void)state;
  enum { NP = 101 };
  uint8_t has[NP], les[NP], a[NP], b[NP], c[NP];
  for (int p = 0; p < NP; p++) has[p] = p % 10 != 9, les[p] = p % 3 == 0;
  mp_split_patients(NP, has, les, 5, a);
  mp_split_patients(NP, has, les, 5, b);
  mp_split_patients(NP, has, les, 6, c);
  assert_memory_equal(a, b, NP);
  assert_true(memcmp(a, c, NP) != 0);
  uint64_t cnt[2][3] = {{0}}, total[2] = {0};
  for (int p = 0; p < NP; p++) {
    if (!has[p]) {
      assert_int_equal(a[p], MP_PART_NONE);
      continue;
    }
    assert_true(a[p] <= MP_PART_TEST);
    cnt[les[p] ? 0 : 1][a[p]]++;
    total[les[p] ? 0 : 1]++;
  }
  for (int w = 0; w < 2; w++) { /* each list cut 50/25/25 on its own */
    uint64_t s[3];
    mp_split_sizes(total[w], s);
    for (int q = 0; q < 3; q++) assert_int_equal(cnt[w][q], s[q]);
  }
}

static void test_metrics(void **state) { /* the counts form train uses */
  (void)state;
  mp_binary_metrics m;
  mp_metrics_from_counts(40, 10, 45, 5, &m);
  /* MCC = (40*45 - 10*5) / sqrt(50 * 45 * 55 * 50) */
  assert_true(fabs(m.mcc - (1800.0 - 50.0) / sqrt(50.0 * 45 * 55 * 50)) < 1e-12);
  assert_true(fabs(m.f1 - 80.0 / 95.0) < 1e-12);
  mp_metrics_from_counts(0, 0, 90, 10, &m); /* nothing predicted positive: undefined, 0, flagged */
  assert_true(m.mcc == 0.0 && m.mcc_undefined && m.precision_undefined && m.f1 == 0.0 && !m.f1_undefined);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_sizes), cmocka_unit_test(test_patients),
                                     cmocka_unit_test(test_metrics)};
  return cmocka_run_group_tests_name("split", tests, NULL, NULL);
}
