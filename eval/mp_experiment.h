/* mp_experiment — `mammopatch experiment`: R patient-level splits x the variants, spread
 * over rank groups, gathered and aggregated at rank 0 (SPEC §10, §11), ending in the
 * report (mp_report).
 *
 * Jobs: job j = (variant v, split seed s + r) for r < experiment.repeats, v in
 * experiment.variants, in the order (r, v).  The K ranks are cut into G equal groups of
 * contiguous ranks (MPI_Comm_split; G = experiment.groups, or by default the largest
 * divisor of K that is <= the number of jobs); group g runs jobs g, g + G, ... one after
 * the other, each data-parallel inside the group: `train` then `eval` into
 * OUT/runs/<variant>/split-<seed>/.  The results do not depend on G (train and eval are
 * K-independent), only the wall time does.
 *
 * Rerun: a job whose train.json says "completed" and whose eval.json exists is reused
 * (after checking its configuration equals this run's for every train.* / eval.* /
 * run.seed key, and its store); an unfinished one resumes from its newest checkpoint.
 * SIGTERM / SIGUSR1 stop every group at its next step with a checkpoint (exit 75).
 * A job that fails is recorded as failed; the others go on.
 *
 * Rank 0 then reads every job's eval.json and train.json (OUT is on a file system all
 * ranks share, as every output directory of the suite) and writes OUT/experiment.json:
 * per-split raw numbers, mean ± sample standard deviation over the splits for every
 * variant, level and metric, each augmented variant's paired difference from the
 * baseline (mean ± std over splits, the 95% Student-t interval of the mean and whether
 * it excludes 0, and on how many splits it was higher / lower; a difference identical on
 * every split is flagged no_variance, with no interval and never "excludes 0"), and the
 * highlights sentences; then the report into OUT/report/.
 */
#ifndef MP_EXPERIMENT_H
#define MP_EXPERIMENT_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "mp_config.h"

typedef struct {
  const char *store_path;
  const char *out_dir;
} mp_experiment_args;

/* Collective over comm.  MP_EXIT_OK when every job succeeded (the report is written in
 * any case when at least one job has results), MP_EXIT_INTERRUPTED after a stop signal,
 * MP_EXIT_FAILURE when a job failed, MP_EXIT_USAGE for a bad configuration. */
int mp_experiment_run(MPI_Comm comm, const mp_config *cfg, const mp_experiment_args *a);
/* The configuration checks mp_experiment_run makes before any work, for a run on K
 * ranks (variants known and built and in a workable order, groups, batch per group;
 * with need_sweep, experiment.gan_sweep set when gan is listed): 0, or -1 with the
 * reason naming the key.  The pipeline calls it before its first stage. */
int mp_experiment_check(const mp_config *cfg, int K, bool need_sweep, char *err, size_t errlen);

/* One (variant, split) job; jobs are ordered (repeat r, variant v): j = r * nvariants + v. */
typedef struct {
  char variant[32];
  uint64_t seed;
  int group;      /* rank group that ran it */
  char dir[4200]; /* OUT/runs/VARIANT/split-SEED: train.json, eval.json, best/ */
} mp_experiment_job;
enum { MP_JOB_NOT_RUN = 0, MP_JOB_DONE, MP_JOB_REUSED, MP_JOB_FAILED, MP_JOB_INTERRUPTED };

/* Rank 0's aggregation: the experiment.json document from the jobs' eval.json files
 * (status[j] one of MP_JOB_*; only DONE / REUSED jobs are read), with per-split numbers,
 * summary (mean ± sample std, min, max), paired differences from the baseline (when a
 * "baseline" variant is among jobs[0..nvariants)) and the highlights. */
cJSON *mp_experiment_aggregate(const mp_config *cfg, int ranks, int groups, const char *store_path,
                               const mp_experiment_job *jobs, const int *status, const double *seconds, int njobs,
                               int nvariants, int repeats, uint64_t first_seed);

/* A record (the document of an experiment.json) written before its differences carried the
 * no_variance flag: its differences_from_baseline and highlights made again from its own
 * per-split numbers (results[].test), as mp_experiment_aggregate makes them now (`mammopatch
 * report` on an older experiment).  1 when it did, 0 when the record needs nothing, -1 with
 * the reason in err when the record lacks what that takes. */
int mp_experiment_upgrade(cJSON *x, char *err, size_t errlen);

/* Mean and sample standard deviation (n - 1) of the finite values among v[0..n);
 * *count gets how many there were.  mean NaN when none, std NaN when fewer than two. */
void mp_experiment_mean_std(const double *v, size_t n, double *mean, double *std, size_t *count);

/* t_{0.975, df}: the two-sided 95% quantile of Student's t with df >= 1 degrees of freedom
 * (NaN for df < 1), within 3e-8 of scipy.stats.t.ppf(0.975, df). */
double mp_experiment_t975(int df);

/* The variant names the suite knows, and whether this build can train each. */
int mp_experiment_variant_known(const char *name);
int mp_experiment_variant_available(const char *name);

#endif
