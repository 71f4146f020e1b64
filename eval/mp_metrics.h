/* mp_metrics — the binary-classification metrics of SPEC §10, and the view / patient
 * roll-ups.
 *
 * Scores are probabilities; a sample is predicted positive when score >= threshold
 * (0.5 on the sigmoid by default).  ROC AUC is the trapezoid under the ROC curve over the
 * distinct scores (ties contribute a diagonal step, as scikit-learn's roc_auc_score); PR
 * AUC is the average precision sum_n (R_n - R_{n-1}) P_n over the distinct scores in
 * descending order (scikit-learn's average_precision_score).  A metric with a zero
 * denominator is reported as 0 (AUCs: NaN) and flagged, never silently.
 *
 * Roll-ups (SPEC §10): a view is positive when any of its patches is, truly positive
 * when any of its patches is a lesion; a patient likewise over views.  With the group's
 * score = the maximum of its members' scores, "any member >= threshold" is exactly
 * "group score >= threshold", so one function serves predictions and the AUCs.
 */
#ifndef MP_METRICS_H
#define MP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  double n, positives, tp, fp, tn, fn;
  double threshold;
  double accuracy, precision, recall, f1, mcc;
  double roc_auc, pr_auc; /* NaN when undefined */
  /* flags: which values are 0 / NaN because they are undefined on this data */
  bool precision_undefined, recall_undefined, f1_undefined, mcc_undefined, auc_undefined;
} mp_binary_metrics;

/* The threshold metrics from confusion counts (AUCs NaN, flagged undefined: counts
 * carry no ranking). */
void mp_metrics_from_counts(double tp, double fp, double tn, double fn, mp_binary_metrics *m);

/* Metrics of n (score, truth) pairs.  truth: 0 or 1. */
void mp_metrics_compute(const float *score, const uint8_t *truth, size_t n, double threshold, mp_binary_metrics *m);

/* The threshold sweep every ranking metric is built on: one point per distinct score, in
 * descending score order, with the cumulative counts of samples scoring >= that score
 * (predicted positive at threshold = score).  Returns the number of points; *pts is
 * allocated with mp_malloc (caller mp_frees; non-NULL even when n = 0); *positives = P. */
typedef struct {
  float score;
  double tp, fp;
} mp_sweep_point;
size_t mp_metrics_sweep(const float *score, const uint8_t *truth, size_t n, mp_sweep_point **pts, double *positives);

/* Group roll-up: for each group g < ngroups, gscore[g] = max of score[i] over members
 * (group[i] == g), gtruth[g] = any truth[i]; present[g] = 1 when g has a member (may be
 * NULL).  Groups with no member get score 0, truth 0. */
void mp_metrics_rollup(const float *score, const uint8_t *truth, const uint32_t *group, size_t n, size_t ngroups,
                       float *gscore, uint8_t *gtruth, uint8_t *present);

#endif
