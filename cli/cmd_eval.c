/* `mammopatch eval` — test-split metrics of a trained model (see eval/mp_evaluate.h). */
#include <getopt.h>
#include <stdio.h>

#include "mp_check.h"
#include "mp_cli.h"
#include "mp_evaluate.h"

static void eval_help(void) {
  printf("Usage: [mpiexec -n K] mammopatch eval --store patches.h5 --train-dir DIR [--out DIR2] [--config F]\n\n"
         "Score the test split recorded in DIR/split.json with DIR/best (the best-validation model of\n"
         "`mammopatch train`), and report accuracy, precision, recall, F1, MCC, ROC AUC and PR AUC at\n"
         "patch, view (any patch positive) and patient (any view positive) level (SPEC §10), with the\n"
         "threshold and how it was chosen (eval.threshold, default 0.5; or eval.threshold_from =\n"
         "validation: the validation split's MCC-optimal threshold).  Writes eval.json (metrics, ROC\n"
         "and PR curves, undefined values flagged) and eval_patches.csv into DIR2 (default DIR).\n\n%s",
         mp_common_help);
}

int mp_cmd_eval(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  mp_eval_args a = {0};
  static const struct option opts[] = {{"store", required_argument, 0, 's'}, {"train-dir", required_argument, 0, 't'},
                                       {"out", required_argument, 0, 'o'},   {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 's': a.store_path = optarg; break;
    case 't': a.train_dir = optarg; break;
    case 'o': a.out_dir = optarg; break;
    case 'h': return mp_cli_help(&o, eval_help);
    default: return mp_cli_usage(&o, NULL);
    }
  }
  if (!a.store_path || !a.train_dir || optind < argc) {
    return mp_cli_usage(&o, "mammopatch eval: --store and --train-dir are required (see --help)\n");
  }
  mp_session s;
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  int status = mp_eval_run(s.comm, s.cfg, &a);
  mp_session_end(&s);
  return status;
}
