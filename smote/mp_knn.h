/* mp_knn — exact k nearest neighbours among the rows of a feature matrix (SPEC §9 phase 2:
 * every training lesion patch's block-1 features, 16x64x64 = 65,536-d, against the other
 * lesion patches), under l2, cosine or l1 distance.
 *
 * Candidates come from blocked single-precision kernels — SGEMM (OpenBLAS) for l2
 * (|a|^2 + |b|^2 - 2 a.b) and cosine (1 - a.b / (|a| |b|)), a vectorised blocked loop
 * for l1 — over a block of rows against the rows from the block on (the distances are
 * symmetric: each pair is scored once and offered to both rows' lists), so memory is
 * rows_per_block x n floats, never n^2.  The best k + MP_KNN_MARGIN candidates per row are then re-scored
 * in double precision and the k nearest kept, ties broken by the lower index: the result
 * is the double-precision brute force's (unless single-precision error exceeds the gap
 * to the (k + margin)-th candidate, which the margin makes remote).  A row is never its
 * own neighbour; exact duplicates are neighbours at distance 0.  A zero row has cosine
 * distance 1 to everything (its similarity is taken as 0).
 *
 * mp_knn deals the row blocks to the ranks round-robin (block i0 costs n - i0 columns),
 * merges every rank's candidate lists, re-scores each rank's contiguous share of rows and
 * gathers the result on every rank: the same answer for any number of ranks.
 */
#ifndef MP_KNN_H
#define MP_KNN_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { MP_DIST_L2 = 0, MP_DIST_COSINE = 1, MP_DIST_L1 = 2 } mp_dist;
enum { MP_KNN_MARGIN = 8 };

const char *mp_dist_name(mp_dist d); /* "l2", "cosine", "l1" */
int mp_dist_parse(const char *s, mp_dist *d);

/* Rows [r0, r1) of X (n x d, row-major): nbr[(i - r0) * k + j] the j-th nearest other row,
 * dist[...] its distance (double precision; l2 is the Euclidean distance, not squared).
 * Requires n >= k + 1.  Returns 0, or -1 when n < k + 1. */
int mp_knn_rows(const float *X, size_t n, int d, mp_dist dist, int k, size_t r0, size_t r1, uint32_t *nbr,
                double *dists);

/* All rows, distributed over comm's ranks; nbr (n x k) and dists (n x k, may be NULL) on
 * every rank.  Collective.  0, or -1 when n < k + 1 (same on all ranks). */
int mp_knn(MPI_Comm comm, const float *X, size_t n, int d, mp_dist dist, int k, uint32_t *nbr, double *dists);
/* The same with the approximate score blocks computed by a device backend when `be` has the
 * entry (l2, cosine: its GEMM, cuBLAS; l1: its l1_nt, an own kernel), else on the host
 * (OpenBLAS; the blocked l1 loop); the candidates are re-scored exactly in double either way,
 * so the neighbours do not depend on where the scores were computed. */
typedef struct mp_backend mp_backend;
int mp_knn_on(mp_backend *be, MPI_Comm comm, const float *X, size_t n, int d, mp_dist dist, int k, uint32_t *nbr,
              double *dists);

#endif
