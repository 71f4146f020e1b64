/* mp_gan_train — `mammopatch gan train`: one GAN configuration of the SPEC §7 sweep.
 *
 *   data      the lesion patches of the split's training part only (SPEC §7), read by
 *             every rank (a few thousand patches); pixels scaled to [-1, 1]
 *   step      D: a real batch and detached fakes G(z) through the critic in one forward
 *             ([real; fake]), the loss's D form (wgan-gp: + the gradient penalty,
 *             lambda = gan.gp_lambda); G: a fresh z and a fresh real batch, C(xr)
 *             recomputed, the loss's G form through the critic's input; one G step after
 *             every gan.n_critic D steps (SPEC §7: 1), an epoch being floor(real / batch)
 *             D steps.  Data parallel:
 *             the global batch gan.batch is cut into K slices, one per rank; one
 *             MPI_Allreduce of the flat gradients (and the losses) per network and step.
 *             Every batch index and latent is keyed by the global step and position, so
 *             the data seen does not depend on K (nor do the penalty's epsilons, one per
 *             sample of the global batch); the relativistic batch means and G's
 *             batch-norm statistics are per rank by default (as the classifier's batch
 *             norm, SPEC §6), or per group of gan.bn_group samples (a divisor of B/K; the
 *             loss is the mean of the groups' losses), which makes a run on K ranks the
 *             run on one (up to rounding) whatever K is, as train.bn_group does for the
 *             classifier.
 *   optimiser SN/TTUR on: spectral norm on every critic conv, Adam D 4e-4 / G 1e-4,
 *             betas (0, 0.9); off: 2e-4 / 2e-4, (0.5, 0.999) [T4.1, T4.2]
 *             (gan.lr_d / gan.lr_g override the rates; tests force a divergence so)
 *   FID       every gan.fid_every epochs and at the end: gan.fid_samples generated
 *             patches (default: as many as real, rounded up to whole global batches so the
 *             set does not depend on K) quantised to uint8 like the real ones,
 *             features from the extractor, FID against the real training lesion
 *             patches (mp_fid); the generator with the lowest FID is kept in best/.
 *             Extractor `inception` when gan.inception_weights names a converted
 *             weights file (nn/mp_inception: pool3, 2048-d; and the Inception Score of
 *             the same generated set from its logits, 10 splits), else `domain`: the
 *             penultimate 512-d layer of the classifier in --extractor DIR (a `train`
 *             directory of the same store, its best/ model).
 *             The real-vs-real FID of two halves of the real set is printed as a floor.
 *             The extractor is identified by the SHA-256 of its weight files (gan.json
 *             fid.extractor_sha256; "fid_extractor" in the run's configuration snapshot):
 *             a checkpoint or a finished run measured with other weights is not continued
 *             or reused, so one curve, one best epoch and one sweep table never mix FIDs
 *             of two extractors.
 *             The training lesions are identified so too (real_lesions_sha256): a run
 *             trained on other patches (another store) is not continued or reused.
 *   diverged  a NaN/Inf loss or weight ends the run with status "diverged" in gan.json
 *             (recorded, not a crash)
 *   resume    DIR/checkpoint/ (critic and generator with their Adam state and SN
 *             vectors, state.json: epoch, step, the losses summed so far, the curve, the
 *             best FID) is written every gan.checkpoint_every epochs and when a stop
 *             signal (SIGTERM/SIGUSR1) arrives — mid-epoch then; a rerun continues from it
 *             bit-identically (every draw is keyed by the step), after checking that it
 *             was made with the same gan.* / run.seed keys and FID extractor (refused,
 *             key named, else)
 * Outputs: DIR/gan.json (provenance, configuration, per-epoch losses and FIDs, best epoch
 * and FID with N and the extractor named, status), DIR/tsne.csv (the t-SNE map of up to
 * 1000 real and 1000 generated feature vectors of the best epoch, eval/mp_tsne; after a
 * resume past the best epoch its features are made again from best/), DIR/best/generator.h5 (lowest FID; the
 * last generator when no FID is computed), DIR/final/{generator,critic}.h5.
 */
#ifndef MP_GAN_TRAIN_H
#define MP_GAN_TRAIN_H

#include <math.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "mp_config.h"
#include "mp_ref.h" /* mp_gan_loss */

typedef struct {
  const char *store_path;
  const char *out_dir;
  const char *extractor_dir; /* classifier train dir for the domain FID; NULL: no FID */
  uint64_t split_seed;
  mp_gan_loss loss;
  int filters;  /* f: 64 or 128 (any multiple of 8 is accepted) */
  bool sn_ttur; /* spectral norm + TTUR together, as the thesis's table */
} mp_gan_train_args;

typedef struct {
  char status[16]; /* completed, diverged, interrupted, failed */
  double best_fid; /* NaN when no FID was computed */
  int best_epoch;
  double floor_fid; /* real-vs-real (two halves) */
  int n_real, n_gen, dim;
  double best_is, best_is_std; /* Inception Score at the best-FID epoch (inception extractor), else NaN */
  int tsne_points[2];          /* real, generated points of DIR/tsne.csv (0: no map) */
  double tsne_perplexity, tsne_kl;
  char tsne_note[256];         /* why there is no map */
} mp_gan_result;

/* Collective.  MP_EXIT_OK (completed), MP_EXIT_FAILURE (diverged: res->status says so,
 * or an error logged), MP_EXIT_INTERRUPTED, MP_EXIT_USAGE.  res may be NULL. */
int mp_gan_train_run(MPI_Comm comm, const mp_config *cfg, const mp_gan_train_args *a, mp_gan_result *res);

/* A generated value in [-1, 1] quantised to uint8 exactly as stored patches are
 * ((x + 1) * 127.5, rounded, clamped): FID samples and synthetic stores alike. */
static inline uint8_t mp_gan_to_u8(float v) {
  float u = (v + 1.0f) * 127.5f;
  return (uint8_t)(u <= 0 ? 0 : u >= 255 ? 255 : lrintf(u));
}

/* Whether DIR holds a finished run (gan.json says "completed" or "diverged", copied into
 * status) of this configuration: 1; 0 when there is none (nothing there, or a run still to
 * finish, whose checkpoint train checks on resume); -1 when the finished run was made with
 * another configuration (err names the key and both values): split, loss, filters, SN/TTUR,
 * run.seed, the FID extractor's weights and the split's lesion patches (both by SHA-256; a
 * record older than that is refused too: what it measured and trained on cannot be placed)
 * and every gan.* key but the sweep grid, the rank groups and the checkpoint interval; -1 too
 * when the extractor's files or the store cannot be read.  Not collective (one rank calls it). */
int mp_gan_run_finished(const char *dir, const mp_config *cfg, const mp_gan_train_args *a, char *status, size_t sl,
                        char *err, size_t errlen);

/* The identity of the lesion patches a run on STORE's split SPLIT_SEED trains on: SHA-256 of
 * their uint8 pixels in split order (gan.json real_lesions_sha256) in hex; 0, or -1 (err).
 * Not collective.  The same split seed of another store, or of a store made again with other
 * settings, gives other patches: a generator trained on those may have seen this split's
 * validation or test lesions. */
int mp_gan_real_lesions_id(const char *store, uint64_t split_seed, char hex[65], char *err, size_t errlen);

const char *mp_gan_loss_name(mp_gan_loss l); /* "wgan-gp", "rsgan", "rasgan", "ralsgan", "rahinge" */
/* 0 and *l set, or -1 for an unknown name */
int mp_gan_loss_parse(const char *name, mp_gan_loss *l);

#endif
