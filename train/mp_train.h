/* mp_train — data-parallel classifier training from the patch store (SPEC §5, §6, §11).
 *
 *   split       mp_split on the store's patients (split.json: pseudonyms only)
 *   data        each rank loads its block of the training patches (uint8) once; every
 *               epoch the sampler fixes the global batches (counter-based RNG: the same
 *               sequence for any number of ranks K) and one MPI_Alltoallv hands each rank
 *               the patches of its B/K slice of every batch, in step order
 *   step        augmentation (flips, optional 90-degree rotations, keyed by the global
 *               step and batch position), forward/backward on B/K samples, one
 *               MPI_Allreduce of the flat gradients of both networks, Adam
 *   epoch end   batch-norm running statistics averaged over ranks; validation
 *               (patch-level loss, MCC, F1, accuracy at 0.5); the best-MCC model kept
 *   checkpoints every train.checkpoint_every steps, at epoch ends and on SIGTERM/SIGUSR1:
 *               DIR/checkpoints/step-N/{block1.h5, rest.h5, state.json, COMPLETE}, written
 *               to a temporary directory and renamed; --resume takes the newest complete
 *               one and ends bit-identical (CPU) to an uninterrupted run
 *   end         the best model on the test split, once; DIR/train.json
 */
#ifndef MP_TRAIN_H
#define MP_TRAIN_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "mp_config.h"

typedef struct {
  const char *store_path;
  const char *out_dir;
  const char *variant; /* "baseline", "gan" (with synthetic_store), "smote-cosine|l1|l2" (smote_*) */
  const char *synthetic_store; /* gan: synthetic lesion patches (`gan sample`) joining the training part */
  const char *smote_features;  /* smote-*: `smote features` file (synthetic block-1 vectors) */
  const char *smote_block1;    /* smote-*: the baseline train dir whose best/block1.h5 is frozen */
  uint64_t split_seed;
  bool resume;
} mp_train_args;

/* Collective.  Returns MP_EXIT_OK, MP_EXIT_INTERRUPTED (a signal: checkpoint written),
 * or MP_EXIT_FAILURE / MP_EXIT_USAGE with the reason logged (same on every rank). */
int mp_train_run(MPI_Comm comm, const mp_config *cfg, const mp_train_args *a);

/* Patch-level confusion counts (reduced over ranks) and the summed BCE loss; the metrics
 * come from eval/mp_metrics (mp_metrics_from_counts). */
typedef struct {
  double tp, fp, tn, fn, loss_sum;
} mp_confusion;

#endif
