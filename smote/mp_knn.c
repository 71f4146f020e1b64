/* mp_knn — exact k nearest neighbours (see mp_knn.h). */
#include "mp_knn.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_backend.h"
#include "mp_check.h"
#include "mp_mpi.h"

enum { ROWS = 256 }; /* rows per block: the score block is ROWS x n floats */

static const char *const names[] = {"l2", "cosine", "l1"};
const char *mp_dist_name(mp_dist d) { return (unsigned)d < 3 ? names[d] : "?"; }
int mp_dist_parse(const char *s, mp_dist *d) {
  for (int i = 0; i < 3; i++)
    if (strcmp(s, names[i]) == 0) return *d = (mp_dist)i, 0;
  return -1;
}

/* the exact (double) distance between two rows (SIMD reductions: the re-scoring of
 * k + margin candidates per row is otherwise a visible share of the time) */
static double exact(const float *a, const float *b, int d, mp_dist dist, double na, double nb) {
  double s = 0;
  if (dist == MP_DIST_L1) {
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < d; i++) s += fabs((double)a[i] - (double)b[i]);
    return s;
  }
  if (dist == MP_DIST_L2) {
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < d; i++) {
      double t = (double)a[i] - (double)b[i];
      s += t * t;
    }
    return sqrt(s);
  }
#pragma omp simd reduction(+ : s)
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

/* insert x into the sorted list best[0..*nb) of capacity c */
static void cand_push(cand *best, int *nb, int c, cand x) {
  if (*nb == c && !cand_less(&x, &best[c - 1])) return;
  int p = *nb < c ? (*nb)++ : c - 1;
  while (p > 0 && cand_less(&x, &best[p - 1])) best[p] = best[p - 1], p--;
  best[p] = x;
}

/* The approximate (single-precision) distance of a score block entry. */
static double approx(mp_dist dist, float sij, const float *nrm2f, const double *nrm, size_t i, size_t j) {
  if (dist == MP_DIST_L1) return sij;
  if (dist == MP_DIST_L2) return (double)nrm2f[i] + nrm2f[j] - 2.0 * sij;
  return nrm[i] > 0 && nrm[j] > 0 ? 1.0 - sij / (nrm[i] * nrm[j]) : 1.0;
}

/* Candidates of every row from the row blocks b with b % K == rank: each block [i0, i0+m)
 * against the columns [i0, n) only — the distance is symmetric, so every pair (i < j) is
 * scored once (half the flops) and offered to both rows' lists: to row i's by the pass
 * over the block's rows, to row j's by the pass over its columns (two passes so that
 * each list has one writer).  cand: n x c, cnt: n, both initialised by the caller. */
static void candidates(mp_backend *be, const float *X, size_t n, int d, mp_dist dist, int c, int rank, int K,
                       const double *nrm, const float *nrm2f, cand *cl, int *cnt) {
  /* on a device backend X and the score block live in its memory (host-visible after a sync):
   * its gemm_nt for l2 and cosine, its l1_nt for l1 */
  bool dev = be && (dist == MP_DIST_L1 ? be->iface->l1_nt != NULL : be->iface->gemm_nt != NULL);
  float *Xd = NULL, *S;
  if (dev) {
    Xd = be->iface->alloc(be, n * (size_t)d * sizeof *Xd);
    be->iface->upload(be, Xd, X, n * (size_t)d * sizeof *Xd);
    S = be->iface->alloc(be, (size_t)ROWS * n * sizeof *S);
  } else {
    S = mp_malloc((size_t)ROWS * n * sizeof *S);
  }
  size_t blk = 0;
  for (size_t i0 = 0; i0 < n; i0 += ROWS, blk++) {
    if ((int)(blk % (size_t)K) != rank) continue;
    int m = (int)(n - i0 < ROWS ? n - i0 : ROWS);
    size_t w = n - i0; /* columns i0 .. n-1: S[i][j - i0] */
    if (dev) {
      if (dist == MP_DIST_L1)
        be->iface->l1_nt(be, m, (int)w, d, Xd + i0 * (size_t)d, d, Xd + i0 * (size_t)d, d, S, (int)w);
      else
        be->iface->gemm_nt(be, m, (int)w, d, Xd + i0 * (size_t)d, d, Xd + i0 * (size_t)d, d, S, (int)w);
      mp_backend_sync(be);
    } else if (dist == MP_DIST_L1) {
#pragma omp parallel for schedule(dynamic, 16)
      for (size_t j = i0; j < n; j++)
        for (int i = 0; i < m; i++)
          if (i0 + (size_t)i < j) S[(size_t)i * w + (j - i0)] = l1f(X + (i0 + (size_t)i) * d, X + j * (size_t)d, d);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)w, d, 1.0f, X + i0 * (size_t)d, d, X + i0 * (size_t)d,
                  d, 0.0f, S, (int)w);
    }
    /* rows of the block: pairs (i, j > i) */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < m; i++) {
      size_t row = i0 + (size_t)i;
      for (size_t j = row + 1; j < n; j++) {
        cand x = {approx(dist, S[(size_t)i * w + (j - i0)], nrm2f, nrm, row, j), (uint32_t)j};
        cand_push(cl + row * (size_t)c, &cnt[row], c, x);
      }
    }
    /* columns: row j receives the block's rows i < j */
#pragma omp parallel for schedule(static)
    for (size_t j = i0 + 1; j < n; j++)
      for (int i = 0; i < m && i0 + (size_t)i < j; i++) {
        cand x = {approx(dist, S[(size_t)i * w + (j - i0)], nrm2f, nrm, i0 + (size_t)i, j), (uint32_t)(i0 + (size_t)i)};
        cand_push(cl + j * (size_t)c, &cnt[j], c, x);
      }
  }
  if (dev) {
    be->iface->release(be, S);
    be->iface->release(be, Xd);
  } else {
    mp_free(S);
  }
}

/* Norms in double (cosine) and single precision squared (the l2 expansion). */
static void norms(const float *X, size_t n, int d, double *nrm, float *nrm2f) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    double s = 0;
    const float *x = X + i * (size_t)d;
#pragma omp simd reduction(+ : s)
    for (int t = 0; t < d; t++) s += (double)x[t] * x[t];
    nrm[i] = sqrt(s), nrm2f[i] = (float)s;
  }
}

/* Re-score rows [r0, r1)'s candidates exactly and keep the k nearest (ties: lower index). */
static void rescore(const float *X, int d, mp_dist dist, int k, int c, const double *nrm, cand *cl, const int *cnt,
                    size_t r0, size_t r1, uint32_t *nbr, double *dists) {
#pragma omp parallel for schedule(static)
  for (size_t row = r0; row < r1; row++) {
    cand *best = cl + row * (size_t)c;
    int nb = cnt[row];
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

int mp_knn_rows(const float *X, size_t n, int d, mp_dist dist, int k, size_t r0, size_t r1, uint32_t *nbr,
                double *dists) {
  if (n < (size_t)k + 1 || k < 1 || k + MP_KNN_MARGIN > 64) return -1;
  const int c = (int)((size_t)k + MP_KNN_MARGIN < n - 1 ? (size_t)k + MP_KNN_MARGIN : n - 1);
  double *nrm = mp_malloc(n * sizeof *nrm);
  float *nrm2f = mp_malloc(n * sizeof *nrm2f);
  cand *cl = mp_malloc(n * (size_t)c * sizeof *cl);
  int *cnt = mp_calloc(n, sizeof *cnt);
  norms(X, n, d, nrm, nrm2f);
  candidates(NULL, X, n, d, dist, c, 0, 1, nrm, nrm2f, cl, cnt);
  rescore(X, d, dist, k, c, nrm, cl, cnt, r0, r1, nbr, dists);
  mp_free(nrm), mp_free(nrm2f), mp_free(cl), mp_free(cnt);
  return 0;
}

int mp_knn(MPI_Comm comm, const float *X, size_t n, int d, mp_dist dist, int k, uint32_t *nbr, double *dists) {
  return mp_knn_on(NULL, comm, X, n, d, dist, k, nbr, dists);
}

int mp_knn_on(mp_backend *be, MPI_Comm comm, const float *X, size_t n, int d, mp_dist dist, int k, uint32_t *nbr,
              double *dists) {
  int rank, K;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &K);
  if (n < (size_t)k + 1 || k < 1 || k + MP_KNN_MARGIN > 64) return -1;
  const int c = (int)((size_t)k + MP_KNN_MARGIN < n - 1 ? (size_t)k + MP_KNN_MARGIN : n - 1);
  double *nrm = mp_malloc(n * sizeof *nrm);
  float *nrm2f = mp_malloc(n * sizeof *nrm2f);
  size_t tab = n * (size_t)c;
  cand *cl = mp_malloc(tab * sizeof *cl), *all = mp_malloc(tab * (size_t)K * sizeof *all);
  int *cnt = mp_calloc(n, sizeof *cnt), *allcnt = mp_malloc(n * (size_t)K * sizeof *allcnt);
  norms(X, n, d, nrm, nrm2f);
  /* each rank: the row blocks b % K == rank (round-robin: block i0 costs n - i0 columns) */
  candidates(be, X, n, d, dist, c, rank, K, nrm, nrm2f, cl, cnt);
  /* every rank's lists, merged per row (a pair was offered by exactly one rank) */
  MP_CHECK(tab * sizeof(cand) < (size_t)INT32_MAX, "candidate table too large");
  MP_CHECK_MPI(MPI_Allgather(cl, (int)(tab * sizeof(cand)), MPI_BYTE, all, (int)(tab * sizeof(cand)), MPI_BYTE, comm));
  MP_CHECK_MPI(MPI_Allgather(cnt, (int)n, MPI_INT, allcnt, (int)n, MPI_INT, comm));
  mp_range r = mp_shard_block(n, K, rank);
  for (size_t row = r.begin; row < r.end; row++) {
    int nb = 0;
    cand *best = cl + row * (size_t)c;
    for (int q = 0; q < K; q++)
      for (int e = 0; e < allcnt[(size_t)q * n + row]; e++) cand_push(best, &nb, c, all[(size_t)q * tab + row * c + e]);
    cnt[row] = nb;
  }
  double *dd = dists ? dists : mp_malloc(n * (size_t)k * sizeof *dd);
  rescore(X, d, dist, k, c, nrm, cl, cnt, r.begin, r.end, nbr + r.begin * (size_t)k, dd + r.begin * (size_t)k);
  int *rc = mp_malloc((size_t)K * sizeof *rc), *off = mp_malloc((size_t)K * sizeof *off);
  for (int q = 0; q < K; q++) {
    mp_range rq = mp_shard_block(n, K, q);
    rc[q] = (int)((rq.end - rq.begin) * (size_t)k), off[q] = (int)(rq.begin * (size_t)k);
  }
  MP_CHECK_MPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, nbr, rc, off, MPI_UINT32_T, comm));
  MP_CHECK_MPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, dd, rc, off, MPI_DOUBLE, comm));
  if (!dists) mp_free(dd);
  mp_free(rc), mp_free(off), mp_free(nrm), mp_free(nrm2f), mp_free(cl), mp_free(all), mp_free(cnt), mp_free(allcnt);
  return 0;
}
