/* mp_fid — Fréchet distance between two feature sets (SPEC §8), in double precision.
 *
 *   FID = |mu_r - mu_g|^2 + Tr(S_r) + Tr(S_g) - 2 Tr((S_r S_g)^1/2)
 *
 * with S the covariance with N - 1.  Tr((S_r S_g)^1/2) is computed as
 * Tr((S_r^1/2 S_g S_r^1/2)^1/2) = sum_i sqrt(max(lambda_i, 0)) from two symmetric
 * eigen-decompositions (LAPACKE_dsyevd): S_r^1/2 = V sqrt(max(L, 0)) V^T, then the
 * eigenvalues of the symmetric S_r^1/2 S_g S_r^1/2.  This never needs scipy's
 * eps*I retry: a rank-deficient covariance (N <= dimension, common for our small lesion
 * class) just has zero eigenvalues: eigenvalues below the rank tolerance d * eps * max
 * count as 0 (round-off negatives included), so a singular set against itself gives 0.
 *
 * The caller names the extractor beside every FID and prints N: FID is biased at small N,
 * and results are flagged rank-deficient when N - 1 < dimension.
 */
#ifndef MP_FID_H
#define MP_FID_H

#include <stdbool.h>
#include <stddef.h>

/* Mean (d) and covariance (d x d, N - 1) of n feature rows of d floats (row-major),
 * accumulated in double.  n >= 2.  Returns 0, or -1 (n < 2). */
int mp_fid_stats(const float *features, size_t n, int d, double *mu, double *sigma);

/* FID from statistics.  Returns 0, or -1 with the reason in err (an eigen-decomposition
 * failed).  *trace_sqrt (may be NULL) gets Tr((S1 S2)^1/2). */
int mp_fid_from_stats(const double *mu1, const double *s1, const double *mu2, const double *s2, int d, double *fid,
                      double *trace_sqrt, char *err, size_t errlen);

typedef struct {
  double fid;
  size_t n1, n2;
  int dim;
  bool rank_deficient; /* min(n1, n2) - 1 < dim: the covariances are singular */
} mp_fid_result;

/* FID of two feature sets (n1 x d and n2 x d floats).  Returns 0, or -1 with err. */
int mp_fid(const float *f1, size_t n1, const float *f2, size_t n2, int d, mp_fid_result *r, char *err, size_t errlen);

#endif
