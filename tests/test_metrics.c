/* mp_metrics roll-ups on hand-made cases (SPEC §10): a view is positive when any of its
 * patches is predicted positive, truly positive when any patch is a lesion; a patient
 * likewise over views; groups without members are reported absent. */
#include <math.h>

#include "mp_metrics.h"
#include "mp_test.h"

static void test_rollup(void **state) {
  (void)state;
  /* 7 patches in 4 views (view 3 has none); views 0, 1 -> patient 0, view 2 -> patient 1 */
  const float score[7] = {0.1f, 0.7f, 0.2f, 0.3f, 0.4f, 0.9f, 0.05f};
  const uint8_t truth[7] = {0, 0, 1, 0, 0, 1, 0};
  const uint32_t view[7] = {0, 0, 0, 1, 1, 2, 2};
  float vs[4];
  uint8_t vt[4], present[4];
  mp_metrics_rollup(score, truth, view, 7, 4, vs, vt, present);
  assert_true(vs[0] == 0.7f && vt[0] == 1); /* a false positive patch and a missed lesion: view TP */
  assert_true(vs[1] == 0.4f && vt[1] == 0); /* negative view, predicted negative */
  assert_true(vs[2] == 0.9f && vt[2] == 1);
  assert_true(present[0] && present[1] && present[2] && !present[3]);
  const uint32_t patient[3] = {0, 0, 1};
  float ps[2];
  uint8_t pt[2];
  mp_metrics_rollup(vs, vt, patient, 3, 2, ps, pt, NULL);
  assert_true(ps[0] == 0.7f && pt[0] == 1 && ps[1] == 0.9f && pt[1] == 1);
  /* view-level metrics at 0.5: views 0 (TP), 1 (TN), 2 (TP) */
  mp_binary_metrics m;
  mp_metrics_compute(vs, vt, 3, 0.5, &m);
  assert_true(m.tp == 2 && m.tn == 1 && m.fp == 0 && m.fn == 0);
  assert_true(m.mcc == 1.0 && !m.mcc_undefined && m.roc_auc == 1.0);
  /* patient level: both positive -> MCC undefined (no negatives), flagged, AUC undefined */
  mp_metrics_compute(ps, pt, 2, 0.5, &m);
  assert_true(m.mcc == 0.0 && m.mcc_undefined && m.auc_undefined && isnan(m.roc_auc));
  assert_true(m.recall == 1.0 && m.precision == 1.0 && m.f1 == 1.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_rollup)};
  return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
