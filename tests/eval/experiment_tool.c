/* experiment_tool — runs rank 0's aggregation and the report on job directories made by
 * a test (tests/eval/test_experiment.sh fabricates a second variant from real jobs'
 * results), so the paired differences, the highlights and a multi-variant report are
 * tested before the gan and smote stages exist to produce them.
 *
 * Usage: experiment_tool STORE OUT REPEATS FIRST_SEED VARIANT...
 *        experiment_tool t975          (t_{0.975, df} for df 1..400, for a scipy check)
 *   jobs OUT/runs/VARIANT/split-SEED must hold eval.json and train.json; writes
 *   OUT/experiment.json and OUT/report/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_experiment.h"
#include "mp_json.h"
#include "mp_params.h"
#include "mp_report.h"

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "t975")) { /* the t quantile behind the differences' intervals */
    for (int df = 1; df <= 400; df++) printf("%d %.10g\n", df, mp_experiment_t975(df));
    return 0;
  }
  if (argc < 6) {
    fprintf(stderr, "usage: experiment_tool STORE OUT REPEATS FIRST_SEED VARIANT...\n");
    return 2;
  }
  MPI_Init(&argc, &argv);
  const char *store = argv[1], *out = argv[2];
  int R = atoi(argv[3]), nv = argc - 5;
  uint64_t seed0 = strtoull(argv[4], NULL, 10);
  int nj = R * nv;
  mp_experiment_job *jobs = mp_malloc((size_t)nj * sizeof *jobs);
  int *status = mp_malloc((size_t)nj * sizeof *status);
  double *secs = mp_malloc((size_t)nj * sizeof *secs);
  for (int j = 0; j < nj; j++) {
    snprintf(jobs[j].variant, sizeof jobs[j].variant, "%s", argv[5 + j % nv]);
    jobs[j].seed = seed0 + (uint64_t)(j / nv);
    jobs[j].group = 0;
    snprintf(jobs[j].dir, sizeof jobs[j].dir, "%s/runs/%s/split-%llu", out, jobs[j].variant,
             (unsigned long long)jobs[j].seed);
    status[j] = MP_JOB_REUSED, secs[j] = 0;
  }
  mp_config *cfg = mp_params_new();
  cJSON *d = mp_experiment_aggregate(cfg, 1, 1, store, jobs, status, secs, nj, nv, R, seed0);
  char path[4300], err[1024];
  snprintf(path, sizeof path, "%s/experiment.json", out);
  int rc = mp_json_write_file(path, d, err, sizeof err) || mp_report_write(out, store, cfg, d, err, sizeof err);
  if (rc) fprintf(stderr, "experiment_tool: %s\n", err);
  cJSON_Delete(d);
  mp_config_free(cfg);
  mp_free(jobs), mp_free(status), mp_free(secs);
  MPI_Finalize();
  return rc ? 1 : 0;
}
