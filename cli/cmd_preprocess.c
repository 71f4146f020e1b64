/* `mammopatch preprocess` — DICOM cohort to patch store (see preprocess/mp_preprocess.h). */
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include "mp_check.h"
#include "mp_cli.h"
#include "mp_file.h"
#include "mp_log.h"
#include "mp_preprocess.h"

static void mp_preprocess_help(void) {
  printf("Usage: [mpiexec -n K] mammopatch preprocess --input DIR --labels labels.csv --out patches.h5\n"
         "                      [--report DIR] [--site-key-file F] [--config F]\n\n"
         "Read every file under DIR (sorted by path; each rank reads its share of each round),\n"
         "apply the SPEC §2 filters in order, window to 8 bits, extract lesion patches around the\n"
         "radiologist's ellipse marks (BI-RADS 0/2) and normal patches (BI-RADS 1), and write them\n"
         "collectively into one HDF5 patch store.  Every file ends accepted, discarded(reason) or\n"
         "failed(error); nothing is dropped silently.\n\n"
         "  --input DIR        the DICOM tree\n"
         "  --labels FILE      CSV with patient_id, birads and optionally study_uid\n"
         "  --out FILE         the patch store (HDF5, schema 1)\n"
         "  --report DIR       where preprocess.json, preprocess.md and preprocess_files.csv go\n"
         "                     (default: the directory of --out)\n"
         "  --site-key-file F  the secret site key for patient pseudonyms (privacy.site_key_file;\n"
         "                     else $MAMMOPATCH_SITE_KEY)\n\n"
         "Parameters are [preprocess] keys: mammopatch config --keys\n\n%s",
         mp_common_help);
}

int mp_cmd_preprocess(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  mp_preprocess_args a = {0};
  char keyset[4200] = "";
  static const struct option opts[] = {{"input", required_argument, 0, 'i'},  {"labels", required_argument, 0, 'l'},
                                       {"out", required_argument, 0, 'o'},    {"report", required_argument, 0, 'r'},
                                       {"site-key-file", required_argument, 0, 'k'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'i': a.input_dir = optarg; break;
    case 'l': a.labels_csv = optarg; break;
    case 'o': a.out_h5 = optarg; break;
    case 'r': a.report_dir = optarg; break;
    case 'k': snprintf(keyset, sizeof keyset, "privacy.site_key_file=%s", optarg); break;
    case 'h': return mp_cli_help(&o, mp_preprocess_help);
    default: return mp_cli_usage(&o, NULL);
    }
  }
  if (!a.input_dir || !a.labels_csv || !a.out_h5 || optind < argc) {
    return mp_cli_usage(&o, "mammopatch preprocess: --input, --labels and --out are required (see --help)\n");
  }
  const char *extra[1] = {keyset};
  if (keyset[0]) mp_cli_add_sets(&o, extra, 1); /* the command-line key file wins */
  mp_session s;
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  char outdir[4096];
  snprintf(outdir, sizeof outdir, "%s", a.out_h5);
  char *dir = dirname(outdir);
  if (!a.report_dir) a.report_dir = dir;
  char err[512];
  int status = MP_EXIT_OK;
  if (s.rank == 0 && mp_mkdir_p(a.report_dir, err, sizeof err) != 0) {
    MP_ERROR("%s", err);
    status = MP_EXIT_FAILURE;
  }
  MP_CHECK_MPI(MPI_Bcast(&status, 1, MPI_INT, 0, s.comm));
  if (status == MP_EXIT_OK && mp_preprocess_run(s.comm, s.cfg, &a) != 0) status = MP_EXIT_FAILURE;
  if (status == MP_EXIT_OK) MP_INFO("patch store: %s; reports in %s", a.out_h5, a.report_dir);
  mp_session_end(&s);
  return status;
}
