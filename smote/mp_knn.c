/* mp_knn — exact k nearest neighbours (see mp_knn.h). */
#include "mp_knn.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_mpi.h"

enum { ROWS = 64 }; /* rows per block: the score block is ROWS x n floats */

static const char *const names[] = {"l2", "cosine", "l1"};
const char *mp_dist_name(mp_dist d) { return (unsigned)d < 3 ? names[d] : "?"; }
int mp_dist_parse(const char *s, mp_dist *d) {
  for (int i = 0; i < 3; i++)
    if (strcmp(s, names[i]) == 0) return *d = (mp_dist)i, 0;
  return -1;
}

/* the exact (double) distance between two rows */
static double exact(const float *a, const float *b, int d, mp_dist dist, double na, double nb) {
  double s = 0;
  if (dist == MP_DIST_L1) {
    for (int i = 0; i < d; i++) s += fabs((double)a[i] - (double)b[i]);
    return s;
  }
  if (dist == MP_DIST_L2) {
    for (int i = 0; i < d; i++) {
      double t = (double)a[i] - (double)b[i];
      s += t * t;
    }
    return sqrt(s);
  }
  for (int i = 0; i < d; i++) s += (double)a[i] * (double)b[i];
  return na > 0 && nb > 0 ? 1.0 - s / (na * nb) : 1.0;
}

/* single-precision l1 of one row against one row (the candidates' pass) */
static float l1f(const float *a, const float *b, int d) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < d; i++) s += fabsf(a[i] - b[i]);
  return s;
}

typedef struct {
  double v;
  uint32_t j;
} cand;

static int cand_less(const cand *x, const cand *y) { return x->v < y->v || (x->v == y->v && x->j < y->j); }

int mp_knn_rows(const float *X, size_t n, int d, mp_dist dist, int k, size_t r0, size_t r1, uint32_t *nbr,
                double *dists) {
  if (n < (size_t)k + 1 || k < 1) return -1;
  /* norms in double (cosine, and the l2 expansion) */
  double *nrm = mp_malloc(n * sizeof *nrm);
  float *nrm2f = mp_malloc(n * sizeof *nrm2f);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    double s = 0;
    const float *x = X + i * (size_t)d;
    for (int t = 0; t < d; t++) s += (double)x[t] * x[t];
    nrm[i] = sqrt(s), nrm2f[i] = (float)s;
  }
  const int c = (int)((size_t)k + MP_KNN_MARGIN < n - 1 ? (size_t)k + MP_KNN_MARGIN : n - 1);
  float *S = mp_malloc((size_t)ROWS * n * sizeof *S);
  for (size_t i0 = r0; i0 < r1; i0 += ROWS) {
    int m = (int)(r1 - i0 < ROWS ? r1 - i0 : ROWS);
    if (dist == MP_DIST_L1) {
#pragma omp parallel for schedule(dynamic, 16)
      for (size_t j = 0; j < n; j++)
        for (int i = 0; i < m; i++) S[(size_t)i * n + j] = l1f(X + (i0 + (size_t)i) * d, X + j * (size_t)d, d);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)n, d, 1.0f, X + i0 * (size_t)d, d, X, d, 0.0f, S,
                  (int)n);
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < m; i++) {
      size_t row = i0 + (size_t)i;
      float *s = S + (size_t)i * n;
      cand best[64]; /* c <= k + margin: callers' k is small (SPEC: 2) */
      int nb = 0;
      for (size_t j = 0; j < n; j++) {
        if (j == row) continue;
        double v = dist == MP_DIST_L1 ? s[j]
                   : dist == MP_DIST_L2 ? (double)nrm2f[row] + nrm2f[j] - 2.0 * s[j]
                                        : (nrm[row] > 0 && nrm[j] > 0 ? 1.0 - s[j] / (nrm[row] * nrm[j]) : 1.0);
        cand x = {v, (uint32_t)j};
        if (nb == c && !cand_less(&x, &best[c - 1])) continue;
        int p = nb < c ? nb++ : c - 1;
        while (p > 0 && cand_less(&x, &best[p - 1])) best[p] = best[p - 1], p--;
        best[p] = x;
      }
      /* re-score the candidates exactly, keep the k nearest (ties: lower index) */
      for (int q = 0; q < nb; q++)
        best[q].v = exact(X + row * (size_t)d, X + (size_t)best[q].j * d, d, dist, nrm[row], nrm[best[q].j]);
      for (int q = 1; q < nb; q++) {
        cand x = best[q];
        int p = q;
        while (p > 0 && cand_less(&x, &best[p - 1])) best[p] = best[p - 1], p--;
        best[p] = x;
      }
      for (int q = 0; q < k; q++) {
        nbr[(row - r0) * (size_t)k + q] = best[q].j;
        if (dists) dists[(row - r0) * (size_t)k + q] = best[q].v;
      }
    }
  }
  mp_free(S), mp_free(nrm), mp_free(nrm2f);
  return 0;
}

int mp_knn(MPI_Comm comm, const float *X, size_t n, int d, mp_dist dist, int k, uint32_t *nbr, double *dists) {
  int rank, K;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &K);
  if (n < (size_t)k + 1 || k < 1 || k + MP_KNN_MARGIN > 64) return -1;
  mp_range r = mp_shard_block(n, K, rank);
  double *dd = dists ? dists : mp_malloc(n * (size_t)k * sizeof *dd);
  mp_knn_rows(X, n, d, dist, k, r.begin, r.end, nbr + r.begin * (size_t)k, dd + r.begin * (size_t)k);
  int *cnt = mp_malloc((size_t)K * sizeof *cnt), *off = mp_malloc((size_t)K * sizeof *off);
  for (int q = 0; q < K; q++) {
    mp_range rq = mp_shard_block(n, K, q);
    cnt[q] = (int)((rq.end - rq.begin) * (size_t)k), off[q] = (int)(rq.begin * (size_t)k);
  }
  MP_CHECK_MPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, nbr, cnt, off, MPI_UINT32_T, comm));
  MP_CHECK_MPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, dd, cnt, off, MPI_DOUBLE, comm));
  if (!dists) mp_free(dd);
  mp_free(cnt), mp_free(off);
  return 0;
}
