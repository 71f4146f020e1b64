/* `mammopatch train` — data-parallel classifier training (see train/mp_train.h). */
#include <getopt.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "mp_check.h"
#include "mp_cli.h"
#include "mp_log.h"
#include "mp_signal.h"
#include "mp_train.h"

static void train_help(void) {
  printf("Usage: [mpiexec -n K] mammopatch train --store patches.h5 --split-seed S --out DIR\n"
         "                      [--variant baseline | --variant gan --synthetic synthetic.h5 |\n"
         "                       --variant smote-DIST --smote smote.h5 --block1 BASELINE_DIR] [--resume]\n"
         "                      [--config F]\n\n"
         "Split the store's patients 50/25/25 (SPEC §5; DIR/split.json, pseudonyms only), train the\n"
         "SPEC §6 classifier data-parallel over the K ranks (the global batch is the same for any K),\n"
         "validate every epoch (patch-level loss, MCC, F1), keep the best-validation model in DIR/best/,\n"
         "write checkpoints to DIR/checkpoints/, evaluate the best model once on the test split and\n"
         "write DIR/train.json (curve, best epoch, test metrics, configuration and version).\n\n"
         "  --store FILE       the patch store written by `mammopatch preprocess`\n"
         "  --split-seed S     seed of the patient-level split (repeat r of an experiment: S + r)\n"
         "  --out DIR          output directory\n"
         "  --variant NAME     baseline (default), or gan: the synthetic lesion patches of --synthetic\n"
         "                     (`gan sample`, SPEC §7: 2 x the training lesions) join the training part;\n"
         "                     or smote-cosine|l1|l2: SPEC §9 phase 3, BASELINE_DIR's block 1 frozen, the rest\n"
         "                     trained on its embeddings plus the synthetic vectors of --smote\n"
         "  --resume           continue from the newest complete checkpoint under DIR\n\n"
         "SIGTERM or SIGUSR1 (Slurm's pre-emption warning) writes a checkpoint and exits with status\n"
         "%d; run again with --resume.  Parameters are [train] keys: mammopatch config --keys\n\n%s",
         MP_EXIT_INTERRUPTED, mp_common_help);
}

int mp_cmd_train(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  mp_train_args a = {.variant = "baseline"};
  const char *seed = NULL;
  static const struct option opts[] = {{"store", required_argument, 0, 's'},   {"split-seed", required_argument, 0, 'S'},
                                       {"out", required_argument, 0, 'o'},     {"variant", required_argument, 0, 'v'},
                                       {"resume", no_argument, 0, 'r'},        {"synthetic", required_argument, 0, 'y'},
                                       {"smote", required_argument, 0, 'm'},   {"block1", required_argument, 0, 'B'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 's': a.store_path = optarg; break;
    case 'S': seed = optarg; break;
    case 'o': a.out_dir = optarg; break;
    case 'v': a.variant = optarg; break;
    case 'r': a.resume = true; break;
    case 'y': a.synthetic_store = optarg; break;
    case 'm': a.smote_features = optarg; break;
    case 'B': a.smote_block1 = optarg; break;
    case 'h': return mp_cli_help(&o, train_help);
    default: return mp_cli_usage(&o, NULL);
    }
  }
  bool seed_ok = mp_cli_seed(seed, &a.split_seed);
  if (optind < argc) return mp_cli_usage(&o, "mammopatch train: unexpected argument '%s'\n", argv[optind]);
  if (!a.store_path || !a.out_dir || !seed_ok) {
    return mp_cli_usage(&o,
                        "mammopatch train: --store, --split-seed (a non-negative integer) and --out are required "
                        "(see --help)\n");
  }
  mp_session s;
  mp_signal_catch_stop(); /* before MPI starts: a signal then is a stop, not a kill */
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  int status = mp_train_run(s.comm, s.cfg, &a);
  if (status == MP_EXIT_OK) {
    char best[4200];
    snprintf(best, sizeof best, "%s/best/COMPLETE", a.out_dir);
    if (access(best, F_OK) == 0)
      MP_INFO("training done: %s/train.json, best model in %s/best/", a.out_dir, a.out_dir);
    else /* train.max_steps before the first epoch's end: no validation yet, so no best model */
      MP_INFO("training done: %s/train.json; no best model (no epoch finished)", a.out_dir);
  }
  mp_session_end(&s);
  return status;
}
