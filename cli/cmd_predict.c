/* `mammopatch predict` — per-tile lesion probabilities and a heatmap for DICOM images
 * (see eval/mp_predict.h). */
#include <getopt.h>
#include <stdio.h>

#include "mp_check.h"
#include "mp_cli.h"
#include "mp_predict.h"

static void predict_help(void) {
  printf("Usage: [mpiexec -n K] mammopatch predict --model DIR --out OUT image.dcm [more.dcm ...] [--config F]\n\n"
         "The localized explanation: each mammogram windowed and tiled as preprocessing does (128 x 128\n"
         "tiles, background tiles dropped), every tile scored by the classifier in DIR (a train\n"
         "directory: its best/ model; or a directory holding block1.h5 and rest.h5), the view predicted\n"
         "\"lesion\" when any tile reaches eval.threshold.  Writes OUT/view-N/heatmap.png (the mammogram\n"
         "with tiles tinted by probability, positive tiles outlined red, the hottest cyan) and\n"
         "OUT/view-N/predict.json (every tile's probability), and OUT/predict.json for all images.\n"
         "Images are dealt to the ranks round-robin.\n\n%s",
         mp_common_help);
}

int mp_cmd_predict(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  mp_predict_args a = {0};
  static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                       {"out", required_argument, 0, 'o'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'm': a.model_dir = optarg; break;
    case 'o': a.out_dir = optarg; break;
    case 'h': return mp_cli_help(&o, predict_help);
    default: return mp_cli_usage(&o, NULL);
    }
  }
  if (!a.model_dir || !a.out_dir || optind >= argc) {
    return mp_cli_usage(&o,
                        "mammopatch predict: --model, --out and at least one DICOM file are required (see --help)\n");
  }
  a.inputs = (const char *const *)(argv + optind);
  a.ninputs = argc - optind;
  mp_session s;
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  int status = mp_predict_run(s.comm, s.cfg, &a);
  mp_session_end(&s);
  return status;
}
