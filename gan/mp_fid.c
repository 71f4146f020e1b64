/* mp_fid — Fréchet distance (see mp_fid.h). */
#include "mp_fid.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"

int mp_fid_stats(const float *x, size_t n, int d, double *mu, double *sigma) {
  if (n < 2) return -1;
  memset(mu, 0, (size_t)d * sizeof *mu);
  for (size_t i = 0; i < n; i++)
    for (int j = 0; j < d; j++) mu[j] += x[i * (size_t)d + j];
  for (int j = 0; j < d; j++) mu[j] /= (double)n;
  /* centred rows in double, in blocks, then sigma += B^T B (dsyrk on the upper triangle) */
  enum { ROWS = 256 };
  double *b = mp_malloc((size_t)ROWS * d * sizeof *b);
  memset(sigma, 0, (size_t)d * d * sizeof *sigma);
  for (size_t i0 = 0; i0 < n; i0 += ROWS) {
    size_t m = n - i0 < ROWS ? n - i0 : ROWS;
    for (size_t i = 0; i < m; i++)
      for (int j = 0; j < d; j++) b[i * d + j] = (double)x[(i0 + i) * (size_t)d + j] - mu[j];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, (int)m, 1.0, b, d, 1.0, sigma, d);
  }
  mp_free(b);
  for (int i = 0; i < d; i++)
    for (int j = i; j < d; j++) {
      double v = sigma[(size_t)i * d + j] / (double)(n - 1);
      sigma[(size_t)i * d + j] = sigma[(size_t)j * d + i] = v;
    }
  return 0;
}

int mp_fid_from_stats(const double *mu1, const double *s1, const double *mu2, const double *s2, int d, double *fid,
                      double *trace_sqrt, char *err, size_t errlen) {
  size_t dd = (size_t)d * d;
  double *v = mp_malloc(dd * sizeof *v), *w = mp_malloc((size_t)d * sizeof *w);
  double *r = mp_malloc(dd * sizeof *r), *t = mp_malloc(dd * sizeof *t);
  memcpy(v, s1, dd * sizeof *v);
  int rc = 0;
  lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', d, v, d, w);
  if (info != 0) {
    snprintf(err, errlen, "dsyevd of the first covariance failed (info %d)", (int)info);
    rc = -1;
  } else {
    /* S1^1/2 = V diag(sqrt(max(w, 0))) V^T = (V D^1/4)(V D^1/4)^T: scale V's columns by
     * the fourth roots, then one symmetric rank-k product */
    /* eigenvalues below the numerical rank tolerance d * eps * max are zero: their round-off
     * (~1e-16) would otherwise come back as fourth roots (~1e-4) */
    double wmax = 0;
    for (int j = 0; j < d; j++) wmax = fmax(wmax, w[j]);
    const double tol = d * DBL_EPSILON * wmax;
    for (int i = 0; i < d; i++)
      for (int j = 0; j < d; j++)
        t[(size_t)i * d + j] = w[j] > tol ? v[(size_t)i * d + j] * sqrt(sqrt(w[j])) : 0.0;
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, d, d, 1.0, t, d, 0.0, r, d);
    for (int i = 0; i < d; i++)
      for (int j = i + 1; j < d; j++) r[(size_t)j * d + i] = r[(size_t)i * d + j];
    /* M = R S2 R, symmetrised against round-off */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, r, d, s2, d, 0.0, t, d);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, t, d, r, d, 0.0, v, d);
    for (int i = 0; i < d; i++)
      for (int j = i + 1; j < d; j++) {
        double a = 0.5 * (v[(size_t)i * d + j] + v[(size_t)j * d + i]);
        v[(size_t)i * d + j] = v[(size_t)j * d + i] = a;
      }
    info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', d, v, d, w);
    if (info != 0) {
      snprintf(err, errlen, "dsyevd of S1^1/2 S2 S1^1/2 failed (info %d)", (int)info);
      rc = -1;
    } else {
      double tr = 0, diff = 0, t1 = 0, t2 = 0;
      double m = 0;
      for (int i = 0; i < d; i++) m = fmax(m, w[i]);
      for (int i = 0; i < d; i++) tr += w[i] > d * DBL_EPSILON * m ? sqrt(w[i]) : 0.0;
      for (int i = 0; i < d; i++) {
        diff += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
        t1 += s1[(size_t)i * d + i], t2 += s2[(size_t)i * d + i];
      }
      *fid = diff + t1 + t2 - 2 * tr;
      if (trace_sqrt) *trace_sqrt = tr;
    }
  }
  mp_free(v), mp_free(w), mp_free(r), mp_free(t);
  return rc;
}

int mp_fid(const float *f1, size_t n1, const float *f2, size_t n2, int d, mp_fid_result *res, char *err,
           size_t errlen) {
  memset(res, 0, sizeof *res);
  res->n1 = n1, res->n2 = n2, res->dim = d;
  res->rank_deficient = (n1 < n2 ? n1 : n2) < (size_t)d + 1;
  if (n1 < 2 || n2 < 2) {
    snprintf(err, errlen, "FID needs at least 2 samples per set (%zu and %zu)", n1, n2);
    return -1;
  }
  size_t dd = (size_t)d * d;
  double *mu1 = mp_malloc((size_t)d * sizeof(double)), *mu2 = mp_malloc((size_t)d * sizeof(double));
  double *s1 = mp_malloc(dd * sizeof(double)), *s2 = mp_malloc(dd * sizeof(double));
  mp_fid_stats(f1, n1, d, mu1, s1);
  mp_fid_stats(f2, n2, d, mu2, s2);
  int rc = mp_fid_from_stats(mu1, s1, mu2, s2, d, &res->fid, NULL, err, errlen);
  mp_free(mu1), mp_free(mu2), mp_free(s1), mp_free(s2);
  return rc;
}
