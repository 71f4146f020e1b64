/* mp_evaluate — `mammopatch eval`: a trained model's test-split metrics at patch, view
 * (image) and patient level (SPEC §10).
 *
 * The split is recomputed from the store and the seed recorded in TRAIN_DIR/split.json
 * and checked against the pseudonyms listed there (a different store is refused).  Each
 * rank scores its block of the part's patches with TRAIN_DIR/best (eval mode); rank 0
 * gathers the logits in store order, rolls them up (a view is positive when any patch is, a
 * patient when any view is) and writes:
 *   OUT/eval.json          provenance, threshold and how it was chosen, metrics per level
 *                          (with undefined values flagged), ROC and PR curve points
 *   OUT/eval_patches.csv   store index, view, patient pseudonym, label, probability (the
 *                          sigmoid in double, 17 digits), logit
 * Ranks and thresholds are taken on the logits, not on float probabilities: a float sigmoid
 * is 1.0f for every logit above ~16.6, and the AUCs would tie such patches.  A probability
 * threshold t is the logit threshold log(t / (1 - t)); thresholds are reported as
 * probabilities.
 * Threshold: eval.threshold (0.5 by default), or with eval.threshold_from = validation
 * the one that maximises the patch MCC on the validation split (reported as such).
 */
#ifndef MP_EVALUATE_H
#define MP_EVALUATE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mp_config.h"

typedef struct {
  const char *store_path;
  const char *train_dir; /* holds split.json, train.json and best/ */
  const char *out_dir;   /* default: train_dir */
} mp_eval_args;

/* Collective.  MP_EXIT_OK, or MP_EXIT_FAILURE / MP_EXIT_USAGE with the reason logged. */
int mp_eval_run(MPI_Comm comm, const mp_config *cfg, const mp_eval_args *a);

/* The threshold in scores[0..n) that maximises the MCC against truth (ties: the lowest
 * such threshold); *mcc gets it.  Candidates: every distinct score (n must be > 0). */
double mp_eval_best_mcc_threshold(const float *scores, const uint8_t *truth, size_t n, double *mcc);

#endif
