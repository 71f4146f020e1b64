/* mammopatch — the command-line entry point: global --help/--version and the
 * subcommand table.  Only subcommands that work are listed; stages are added here as
 * they are built. */
#include <stdio.h>
#include <unistd.h>
#include <string.h>

#include "mp_build_config.h"
#include "mp_check.h"
#include "mp_cli.h"
#include "mp_json.h"
#include "mp_log.h"

static const mp_command mp_commands[] = {
#if MP_HAVE_GDCM
    {"synth", "write a synthetic mammography cohort (DICOM + labels + truth)", mp_cmd_synth},
#endif
#ifdef MP_WITH_PREPROCESS
    {"preprocess", "DICOM cohort + labels -> filtered images -> lesion/normal patches in one HDF5 store", mp_cmd_preprocess},
#endif
    {"train", "data-parallel classifier training on a patient-level split of the patch store", mp_cmd_train},
    {"eval", "a trained model's test-split metrics at patch, view and patient level", mp_cmd_eval},
#ifdef MP_WITH_GAN
    {"gan", "GAN stage: `gan train` one loss x filters x SN/TTUR configuration (FID-selected generator)", mp_cmd_gan},
#endif
#ifdef MP_WITH_SMOTE
    {"smote", "SMOTE stage: `smote features` block-1 features, exact kNN, synthetic lesion vectors", mp_cmd_smote},
#endif
    {"experiment", "repeated splits x variants over rank groups -> aggregated results and the report", mp_cmd_experiment},
    {"report", "write an experiment's report again (HTML, Markdown, CSV, JSON)", mp_cmd_report},
#ifdef MP_WITH_PREPROCESS
    {"predict", "per-tile lesion probabilities and a heatmap overlay for DICOM mammograms", mp_cmd_predict},
#endif
    {"pipeline", "every stage in order from one configuration (synth/preprocess .. report), resumable", mp_cmd_pipeline},
    {"info", "build configuration, backends, MPI layout and devices", mp_cmd_info},
    {"config", "check an experiment configuration and print the effective values", mp_cmd_config},
    {"pseudonym", "print the keyed pseudonym of patient IDs (site look-up)", mp_cmd_pseudonym},
};
static const size_t mp_ncommands = sizeof mp_commands / sizeof mp_commands[0];

static void mp_usage(FILE *out) {
  fprintf(out,
          "mammopatch %s — breast-lesion patch classification on mammograms, at HPC scale\n\n"
          "Usage: [mpiexec -n K] mammopatch <command> [options]\n"
          "       mammopatch --version | --help\n\n"
          "Commands:\n",
          mp_version());
  for (size_t i = 0; i < mp_ncommands; i++) fprintf(out, "  %-12s %s\n", mp_commands[i].name, mp_commands[i].summary);
  fprintf(out, "\n`mammopatch <command> --help` describes a command.\n\n%s", mp_common_help);
}

/* --version under MPI: every rank reports its build; rank 0 prints it once and checks
 * that all ranks run the same build (a mixed installation on a cluster is a classic
 * source of wrong results). */
static int mp_version_cmd(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  mp_session s;
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  char mine[256];
  snprintf(mine, sizeof mine, "mammopatch %s (git %s)", mp_version(), mp_version_git());
  cJSON *doc = cJSON_CreateString(mine);
  cJSON *all = mp_gather_json(s.comm, 0, doc);
  cJSON_Delete(doc);
  int bad = 0;
  if (s.rank == 0) {
    printf("%s\n", mine);
    for (int r = 0; r < s.size; r++) {
      const char *v = cJSON_GetStringValue(cJSON_GetArrayItem(all, r));
      if (!v || strcmp(v, mine) != 0) {
        fprintf(stderr, "mammopatch: rank %d runs a different build: %s\n", r, v ? v : "?");
        bad = 1;
      }
    }
    if (s.size > 1 && !bad) printf("%d ranks agree\n", s.size);
    cJSON_Delete(all);
  }
  MP_CHECK_MPI(MPI_Bcast(&bad, 1, MPI_INT, 0, s.comm));
  mp_session_end(&s);
  return bad ? MP_EXIT_FAILURE : MP_EXIT_OK;
}

int main(int argc, char **argv) {
  /* every rank parses the same command line: getopt's own complaints from rank 0 only */
  if (mp_launcher_rank() != 0) opterr = 0;
  if (argc < 2) {
    if (mp_launcher_rank() == 0) mp_usage(stderr);
    return MP_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
    if (mp_launcher_rank() == 0) mp_usage(stdout);
    return MP_EXIT_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) return mp_version_cmd(argc - 1, argv + 1);
  for (size_t i = 0; i < mp_ncommands; i++)
    if (strcmp(cmd, mp_commands[i].name) == 0) return mp_commands[i].fn(argc - 1, argv + 1);
  if (mp_launcher_rank() == 0) {
    fprintf(stderr, "mammopatch: unknown command '%s'\n\n", cmd);
    mp_usage(stderr);
  }
  return MP_EXIT_USAGE;
}
