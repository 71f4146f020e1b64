/* metrics_tool — prints mp_metrics_compute on fixed cases as JSON lines (scores, truth,
 * threshold and every metric with its flags) for tests/eval/check_metrics.py, which
 * recomputes them with scikit-learn.  Cases: continuous random scores, quantised scores
 * (many ties), imbalanced, no positives, all positives, nothing predicted positive, one
 * sample, another threshold. */
#include <math.h>
#include <stdio.h>

#include "mp_alloc.h"
#include "mp_metrics.h"
#include "mp_rng.h"

static void emit(const char *name, const float *s, const uint8_t *t, size_t n, double thr) {
  mp_binary_metrics m;
  mp_metrics_compute(s, t, n, thr, &m);
  char ra[40] = "null", pa[40] = "null";
  if (!isnan(m.roc_auc)) snprintf(ra, sizeof ra, "%.17g", m.roc_auc);
  if (!isnan(m.pr_auc)) snprintf(pa, sizeof pa, "%.17g", m.pr_auc);
  printf("{\"case\": \"%s\", \"threshold\": %.17g, \"scores\": [", name, thr);
  for (size_t i = 0; i < n; i++) printf("%s%.9g", i ? ", " : "", s[i]);
  printf("], \"truth\": [");
  for (size_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", t[i]);
  printf("], \"accuracy\": %.17g, \"precision\": %.17g, \"recall\": %.17g, \"f1\": %.17g, \"mcc\": %.17g, "
         "\"roc_auc\": %s, \"pr_auc\": %s, \"tp\": %.0f, \"fp\": %.0f, \"tn\": %.0f, \"fn\": %.0f, "
         "\"precision_undefined\": %d, \"recall_undefined\": %d, \"f1_undefined\": %d, \"mcc_undefined\": %d, "
         "\"auc_undefined\": %d}\n",
         m.accuracy, m.precision, m.recall, m.f1, m.mcc, ra, pa,
         m.tp, m.fp, m.tn, m.fn, m.precision_undefined, m.recall_undefined, m.f1_undefined, m.mcc_undefined,
         m.auc_undefined);
}

int main(void) {
  enum { N = 1000 };
  static float s[N];
  static uint8_t t[N];
  mp_rng r;
  mp_rng_init(&r, 81, MP_RNG_TEST, 0);
  for (int i = 0; i < N; i++) { /* informative but noisy scores */
    t[i] = mp_rng_uniform_f64(&r) < 0.3;
    double z = (t[i] ? 0.8 : -0.5) + mp_rng_normal(&r);
    s[i] = (float)(1.0 / (1.0 + exp(-z)));
  }
  emit("continuous", s, t, N, 0.5);
  emit("continuous, threshold 0.3", s, t, N, 0.3);
  static float q[N];
  for (int i = 0; i < N; i++) q[i] = roundf(s[i] * 10) / 10; /* 11 distinct values: ties */
  emit("quantised (ties)", q, t, N, 0.5);
  static uint8_t rare[N];
  for (int i = 0; i < N; i++) rare[i] = i % 97 == 0;
  emit("imbalanced (1%)", s, rare, N, 0.5);
  static uint8_t zero[N], one[N];
  for (int i = 0; i < N; i++) zero[i] = 0, one[i] = 1;
  emit("no positives", s, zero, N, 0.5);
  emit("all positives", s, one, N, 0.5);
  emit("nothing predicted positive", s, t, N, 1.5);
  float s1 = 0.7f;
  uint8_t t1 = 1;
  emit("one sample", &s1, &t1, 1, 0.5);
  return 0;
}
