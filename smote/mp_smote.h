/* mp_smote — deep-learning SMOTE, phase 2 (SPEC §9; the thesis's Algorithm 1):
 * `mammopatch smote features`.
 *
 *   features    every lesion patch of the split's training part through block 1 of the
 *               baseline classifier of the same split (BASELINE/best/block1.h5, eval mode):
 *               16 x 64 x 64 = 65,536 floats each; each rank computes its block of
 *               patches, the features are all-gathered (the kNN compares every pair)
 *   kNN         exact k nearest other lesion patches under cosine, l1 or l2 (mp_knn: rows
 *               over the ranks, ties by index)
 *   synthesis   for base i and its j-th neighbour nb: f = f_i + p (f_nb - f_i), p ~ U(0,1)
 *               from the counter-based RNG keyed by (run.seed and the split seed, MP_RNG_SMOTE,
 *               i * k + j): every split draws its own, as train does; k x n_m vectors,
 *               the same for any number of ranks
 *   output      OUT (HDF5, rank 0): /synthetic/features float32 [k n_m, 16, 64, 64],
 *               /synthetic/base, /synthetic/neighbour (uint32 rows of /real/index),
 *               /synthetic/p float32, /synthetic/distance float64, /real/index uint64 (the
 *               store indices of the n_m training lesion patches), /real/features float32
 *               [n_m, 16, 64, 64] (the segments' ends, for provenance); attributes: distance,
 *               k, split seed, seed, baseline model, store patch count
 * Only training-split patients are bases or neighbours (the split of the store and seed).
 * Fewer than k + 1 training lesion patches: a clear error.
 */
#ifndef MP_SMOTE_H
#define MP_SMOTE_H

#include <mpi.h>
#include <stdint.h>

#include "mp_config.h"
#include "mp_knn.h"

typedef struct {
  const char *store_path;
  const char *baseline_dir; /* a `train` run of the same store and split: its best/block1.h5 */
  uint64_t split_seed;
  mp_dist dist;
  int k;
  const char *out_path;
} mp_smote_args;

/* Collective.  MP_EXIT_OK, MP_EXIT_USAGE (too few lesion patches, bad k), MP_EXIT_FAILURE. */
int mp_smote_features_run(MPI_Comm comm, const mp_config *cfg, const mp_smote_args *a);

#endif
