/* `mammopatch experiment` — repeated splits x variants over rank groups, aggregated at
 * rank 0, ending in the report (see eval/mp_experiment.h); `mammopatch report` renders
 * the report again from a finished experiment directory (eval/mp_report.h). */
#include <getopt.h>
#include <stdio.h>

#include "mp_check.h"
#include "mp_cli.h"
#include "mp_experiment.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_report.h"
#include "mp_signal.h"

static void experiment_help(void) {
  printf("Usage: [mpiexec -n K] mammopatch experiment --store patches.h5 --out DIR [--config F]\n\n"
         "Train and evaluate every classifier variant (experiment.variants; this build: baseline) on\n"
         "experiment.repeats patient-level splits (seeds experiment.split_seed, +1, ...; SPEC §5), the\n"
         "(variant, split) jobs spread over experiment.groups rank groups, each group data-parallel.\n"
         "Each job: `train` then `eval` into DIR/runs/VARIANT/split-SEED/.  Rank 0 gathers every result\n"
         "into DIR/experiment.json (per-split numbers, mean ± std, paired differences from the baseline,\n"
         "highlights) and writes the report: DIR/report/index.html (self-contained), report.md, CSV.\n\n"
         "Run it again after an interruption: finished jobs are reused (when made by the same\n"
         "configuration and store), unfinished ones resume from their newest checkpoint.  SIGTERM or\n"
         "SIGUSR1 checkpoints every group and exits with status %d.\n\n%s",
         MP_EXIT_INTERRUPTED, mp_common_help);
}

int mp_cmd_experiment(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  mp_experiment_args a = {0};
  static const struct option opts[] = {{"store", required_argument, 0, 's'},
                                       {"out", required_argument, 0, 'o'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 's': a.store_path = optarg; break;
    case 'o': a.out_dir = optarg; break;
    case 'h': return mp_cli_help(&o, experiment_help);
    default: return mp_cli_usage(&o, NULL);
    }
  }
  if (!a.store_path || !a.out_dir || optind < argc) {
    return mp_cli_usage(&o, "mammopatch experiment: --store and --out are required (see --help)\n");
  }
  mp_session s;
  mp_signal_catch_stop(); /* before MPI starts: a signal then is a stop, not a kill */
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  int status = mp_experiment_run(s.comm, s.cfg, &a);
  mp_session_end(&s);
  return status;
}

static void report_help(void) {
  printf("Usage: mammopatch report --experiment DIR --store patches.h5 [--config F]\n\n"
         "Write DIR/report/ again (index.html, report.md, CSV, JSON, charts/, montage.png) from\n"
         "DIR/experiment.json, the jobs' results and the store, e.g. after a change of the report's\n"
         "code.  The configuration section shows the configuration the experiment recorded in\n"
         "experiment.json and the version that made it, whatever is given here; no key given here\n"
         "changes a number.  experiment.gan_sweep given here (--config / --set) says where the\n"
         "experiment's GAN sweep is now, when it has moved: the report reads it from there and says\n"
         "so.  An experiment.json written before the no_variance flag has its differences and\n"
         "highlights made again from its per-split numbers (the report's copy; DIR/experiment.json\n"
         "is left as it is).\n\n%s",
         mp_common_help);
}

int mp_cmd_report(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  const char *dir = NULL, *store = NULL;
  static const struct option opts[] = {{"experiment", required_argument, 0, 'e'},
                                       {"store", required_argument, 0, 's'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'e': dir = optarg; break;
    case 's': store = optarg; break;
    case 'h': return mp_cli_help(&o, report_help);
    default: return mp_cli_usage(&o, NULL);
    }
  }
  if (!dir || !store || optind < argc) {
    return mp_cli_usage(&o, "mammopatch report: --experiment and --store are required (see --help)\n");
  }
  mp_session s;
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  int status = MP_EXIT_OK;
  if (s.rank == 0) {
    char path[4200], err[1024] = "";
    snprintf(path, sizeof path, "%s/experiment.json", dir);
    cJSON *x = mp_json_read_file(path, err, sizeof err);
    int up = x ? mp_experiment_upgrade(x, err, sizeof err) : 0;
    if (up > 0)
      MP_WARN("report: %s predates the no_variance flag: its differences and highlights made again from its "
              "per-split numbers (in the report; %s itself is unchanged)", path, path);
    else if (up < 0)
      MP_WARN("report: %s: %s (its differences and highlights shown as recorded)", path, err);
    if (x) err[0] = 0;
    if (!x || mp_report_write(dir, store, s.cfg, x, err, sizeof err) != 0) {
      MP_ERROR("%s", err);
      status = MP_EXIT_FAILURE;
    } else
      MP_INFO("report: %s/report/index.html", dir);
    cJSON_Delete(x);
  }
  mp_session_end(&s);
  return status;
}
