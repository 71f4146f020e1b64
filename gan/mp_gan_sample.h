/* mp_gan_sample — `mammopatch gan sample`: synthetic lesion patches from a trained
 * generator into a patch store of the SPEC §4 schema, and the real-vs-synthetic montage
 * (the thesis's Figure 4.1).
 *
 * The generator is a `gan train` run directory (its gan.json gives f and z, its
 * best/generator.h5 the weights) or a `gan sweep` directory (its best run).  Samples are
 * drawn in batches of B, the samples per generator forward of the run's training and FID
 * (gan.json bn_batch: gan.batch / the run's ranks; gan.batch for runs that predate it) —
 * batch q's latents keyed by (seed, MP_RNG_GAN_Z, q * B + j), batch q generated whole on
 * rank q mod K in training mode (batch statistics over B samples, as when the FID chose
 * this generator) — so the store's content does not depend on the number of ranks.
 * Pixels are quantised to uint8 like stored patches ((x + 1) * 127.5, rounded, clamped).
 *
 * The store: every patch label 1, origin (-1, -1), ellipse NaN, all in one view record
 * (patient "SYNTHETIC", laterality U, position "GAN", BI-RADS -1): synthetic patches
 * have no source image (SPEC: view = none).  Attributes: synthetic = 1, the generator's
 * loss, filters, SN/TTUR, its best FID and the sampling seed.  Rank 0 writes it (the
 * batches are gathered round by round: memory bounded by K batches).
 */
#ifndef MP_GAN_SAMPLE_H
#define MP_GAN_SAMPLE_H

#include <mpi.h>
#include <stdint.h>

#include "mp_config.h"

typedef struct {
  const char *generator_dir; /* a gan train run, or a gan sweep directory (its best run) */
  uint64_t n;                /* patches to generate */
  uint64_t seed;             /* sampling seed (latents) */
  const char *out_path;      /* the synthetic store */
  const char *montage_store; /* real patches for the montage (may be NULL: no montage) */
} mp_gan_sample_args;

/* Collective.  MP_EXIT_OK, or MP_EXIT_FAILURE with the reason logged. */
int mp_gan_sample_run(MPI_Comm comm, const mp_config *cfg, const mp_gan_sample_args *a);

#endif
