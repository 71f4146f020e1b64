/* mp_gan_sweep — `mammopatch gan sweep`: the SPEC §7 grid, loss x filters x SN/TTUR
 * (gan.sweep_losses x gan.sweep_filters x gan.sweep_sn_ttur; by default 5 x 2 x 2 = 20
 * runs), spread over rank groups (mp_group_split; gan.groups, by default the most equal
 * groups up to the number of runs), each run data-parallel inside its group
 * (mp_gan_train) into OUT/runs/<loss>-f<F>[-sn]/.
 *
 * A run that diverges is recorded as diverged and the sweep goes on.  Rerun after an
 * interruption: runs whose gan.json says completed or diverged are reused.
 * Rank 0 gathers every run's gan.json and writes OUT/sweep.json (every run's status, best
 * FID and epoch, FID-per-epoch curve; the best run over the sweep and its generator),
 * OUT/sweep.md and OUT/sweep.csv (the thesis's Table 4.4 form: FID per loss x filters x
 * SN/TTUR, the extractor and N named, the real-vs-real floor) and OUT/charts/fid-*.svg
 * (FID versus epoch, the thesis's Figure 4.2 form).
 */
#ifndef MP_GAN_SWEEP_H
#define MP_GAN_SWEEP_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mp_config.h"

typedef struct {
  const char *store_path;
  const char *out_dir;
  const char *extractor_dir; /* classifier train dir for the domain FID (required) */
  uint64_t split_seed;
} mp_gan_sweep_args;

/* Collective.  MP_EXIT_OK when every run completed or diverged, MP_EXIT_FAILURE when a
 * run failed, MP_EXIT_INTERRUPTED after a stop signal, MP_EXIT_USAGE for a bad grid. */
int mp_gan_sweep_run(MPI_Comm comm, const mp_config *cfg, const mp_gan_sweep_args *a);
/* The checks mp_gan_sweep_run makes before any work, for K ranks: the grid
 * (gan.sweep_losses / sweep_filters / sweep_sn_ttur parse, not empty), the rank groups
 * (gan.groups), gan.batch over a group's ranks and gan.bn_group over a rank's share: 0, or -1
 * with the reason naming the key. */
int mp_gan_sweep_check(const mp_config *cfg, int K, char *err, size_t errlen);

#endif
