/* mp_metrics — SPEC §10 metrics (see mp_metrics.h). */
#include "mp_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"

typedef struct {
  float s;
  uint8_t t;
} pair;

static int by_score_desc(const void *a, const void *b) {
  float x = ((const pair *)a)->s, y = ((const pair *)b)->s;
  return x > y ? -1 : x < y;
}

size_t mp_metrics_sweep(const float *score, const uint8_t *truth, size_t n, mp_sweep_point **pts, double *positives) {
  pair *a = mp_malloc((n ? n : 1) * sizeof *a);
  double P = 0;
  for (size_t i = 0; i < n; i++) a[i] = (pair){score[i], truth[i] != 0}, P += truth[i] != 0;
  qsort(a, n, sizeof *a, by_score_desc);
  mp_sweep_point *o = mp_malloc((n ? n : 1) * sizeof *o);
  size_t k = 0;
  double tp = 0, fp = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && a[j].s == a[i].s) tp += a[j].t, fp += !a[j].t, j++; /* ties: one threshold */
    o[k++] = (mp_sweep_point){a[i].s, tp, fp};
    i = j;
  }
  mp_free(a);
  *pts = o;
  *positives = P;
  return k;
}

void mp_metrics_from_counts(double tp, double fp, double tn, double fn, mp_binary_metrics *m) {
  memset(m, 0, sizeof *m);
  m->tp = tp, m->fp = fp, m->tn = tn, m->fn = fn;
  m->n = tp + fp + tn + fn;
  m->positives = m->tp + m->fn;
  m->accuracy = m->n > 0 ? (m->tp + m->tn) / m->n : 0;
  m->precision_undefined = m->tp + m->fp == 0;
  m->precision = m->precision_undefined ? 0 : m->tp / (m->tp + m->fp);
  m->recall_undefined = m->positives == 0;
  m->recall = m->recall_undefined ? 0 : m->tp / m->positives;
  double f1den = 2 * m->tp + m->fp + m->fn;
  m->f1_undefined = f1den == 0;
  m->f1 = m->f1_undefined ? 0 : 2 * m->tp / f1den;
  double den = (m->tp + m->fp) * (m->tp + m->fn) * (m->tn + m->fp) * (m->tn + m->fn);
  m->mcc_undefined = den == 0;
  m->mcc = m->mcc_undefined ? 0 : (m->tp * m->tn - m->fp * m->fn) / sqrt(den);
  m->auc_undefined = true;
  m->roc_auc = m->pr_auc = NAN;
}

void mp_metrics_compute(const float *score, const uint8_t *truth, size_t n, double thr, mp_binary_metrics *m) {
  double c[4] = {0}; /* tp fp tn fn */
  for (size_t i = 0; i < n; i++) {
    bool p = score[i] >= thr, t = truth[i] != 0;
    c[p ? (t ? 0 : 1) : (t ? 3 : 2)]++;
  }
  mp_metrics_from_counts(c[0], c[1], c[2], c[3], m);
  m->threshold = thr;
  /* AUCs over the distinct scores, descending */
  double P = m->positives, N = (double)n - P;
  m->auc_undefined = P == 0 || N == 0;
  if (m->auc_undefined) {
    m->roc_auc = m->pr_auc = NAN;
    return;
  }
  mp_sweep_point *pt;
  size_t k = mp_metrics_sweep(score, truth, n, &pt, &P);
  double roc = 0, ap = 0, prev_tpr = 0, prev_fpr = 0;
  for (size_t i = 0; i < k; i++) {
    double tpr = pt[i].tp / P, fpr = pt[i].fp / N;
    roc += (fpr - prev_fpr) * (tpr + prev_tpr) / 2; /* trapezoid: ties are a diagonal */
    ap += (tpr - prev_tpr) * (pt[i].tp / (pt[i].tp + pt[i].fp));
    prev_tpr = tpr, prev_fpr = fpr;
  }
  mp_free(pt);
  m->roc_auc = roc;
  m->pr_auc = ap;
}

void mp_metrics_rollup(const float *score, const uint8_t *truth, const uint32_t *group, size_t n, size_t ngroups,
                       float *gscore, uint8_t *gtruth, uint8_t *present) {
  uint8_t *seen = present ? present : mp_malloc(ngroups ? ngroups : 1);
  memset(seen, 0, ngroups);
  memset(gtruth, 0, ngroups);
  for (size_t g = 0; g < ngroups; g++) gscore[g] = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t g = group[i];
    if (!seen[g] || score[i] > gscore[g]) gscore[g] = score[i];
    seen[g] = 1;
    if (truth[i]) gtruth[g] = 1;
  }
  if (!present) mp_free(seen);
}
