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
#include "mp_signal.h"

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

/* The commands this build leaves out, with the libraries they need (the component rules of
 * synth/, preprocess/, eval/, gan/ and smote/ CMakeLists).  A GPU node's image has no GDCM: a
 * user there who types `preprocess` learns what it needs and where to run it, not that no such
 * command exists. */
#define MP_NEED_PREPROCESS "GDCM (libgdcm-dev), LAPACKE and OpenBLAS"
static const struct {
  const char *name, *needs;
} mp_absent[] = {
#if !MP_HAVE_GDCM
    {"synth", "GDCM (libgdcm-dev)"},
#endif
#ifndef MP_WITH_PREPROCESS
    {"preprocess", MP_NEED_PREPROCESS},
#endif
#ifndef MP_WITH_GAN
    {"gan", "LAPACKE and OpenBLAS (the FID)"},
#endif
#ifndef MP_WITH_SMOTE
    {"smote", "OpenBLAS (the kNN)"},
#endif
#ifndef MP_WITH_PREPROCESS
    {"predict", MP_NEED_PREPROCESS},
#endif
    {NULL, NULL}, /* keeps the array non-empty in a full build */
};

static void mp_usage(FILE *out) {
  fprintf(out,
          "mammopatch %s — breast-lesion patch classification on mammograms, at HPC scale\n\n"
          "Usage: [mpiexec -n K] mammopatch <command> [options]\n"
          "       mammopatch --version | --help\n\n"
          "Commands:\n",
          mp_version());
  for (size_t i = 0; i < mp_ncommands; i++) fprintf(out, "  %-12s %s\n", mp_commands[i].name, mp_commands[i].summary);
  if (mp_absent[0].name) {
    fprintf(out, "\nNot in this build:");
    for (size_t i = 0; mp_absent[i].name; i++) fprintf(out, "%s %s", i ? "," : "", mp_absent[i].name);
    fprintf(out, " (`mammopatch <command>` says what each needs)\n");
  }
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
  /* before MPI, OpenMP or CUDA start a thread: SIGTERM and SIGUSR1 go to one thread of their
   * own, never to one that computes (mp_signal.h) */
  mp_signal_init();
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
  for (size_t i = 0; mp_absent[i].name; i++)
    if (strcmp(cmd, mp_absent[i].name) == 0) {
      if (mp_launcher_rank() == 0)
        fprintf(stderr,
                "mammopatch: '%s' is not in this build: it needs %s (`mammopatch info` lists the "
                "libraries this build has). Run it on a machine whose build has it; what it writes "
                "can be read here.\n",
                cmd, mp_absent[i].needs);
      return MP_EXIT_USAGE;
    }
  if (mp_launcher_rank() == 0) {
    fprintf(stderr, "mammopatch: unknown command '%s'\n\n", cmd);
    mp_usage(stderr);
  }
  return MP_EXIT_USAGE;
}
