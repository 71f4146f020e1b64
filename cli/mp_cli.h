/* mp_cli — what every `mammopatch` subcommand shares: the common options, the MPI
 * session (context + logger + configuration), and the subcommand table.
 *
 * Common options, accepted by every subcommand anywhere on its command line:
 *   --config FILE      experiment configuration (INI); read by rank 0, broadcast
 *   --set KEY=VALUE    override one configuration key (repeatable)
 *   -v, --verbose      every rank logs, not only rank 0
 *   -q, --quiet        warnings and errors only
 *   --debug            debug messages
 *   --log-level L      error|warn|info|debug
 */
#ifndef MP_CLI_H
#define MP_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "mp_check.h" /* MP_PRINTF, MP_EXIT_* */
#include "mp_config.h"
#include "mp_mpi.h"

typedef struct {
  const char *config_file;
  const char **sets; /* --set assignments, in order */
  int nsets;
  bool verbose, quiet, debug;
  const char *log_level;
} mp_common_opts;

/* Remove the common options from argv (argv[0] is kept), filling o.  Returns 0, or
 * MP_EXIT_USAGE after printing a message when an option lacks its value. */
int mp_cli_take_common(int *argc, char **argv, mp_common_opts *o);
void mp_common_opts_free(mp_common_opts *o);
/* Append assignments after the user's --set ones (so they win): for command-line
 * options that are configuration keys.  The strings must outlive o. */
void mp_cli_add_sets(mp_common_opts *o, const char *const *extra, int n);

typedef struct {
  mp_ctx *mpi;
  mp_config *cfg;
  int rank, size;
  MPI_Comm comm;
} mp_session;

/* MPI_Init, logger, configuration (defaults < --config file < --set).  On a bad
 * configuration every rank returns MP_EXIT_USAGE (rank 0 has printed why) after
 * finalizing MPI; on success returns 0 and the caller must call mp_session_end. */
int mp_session_start(mp_session *s, int *argc, char ***argv, const mp_common_opts *o);
void mp_session_end(mp_session *s);

/* The rank of this process as the launcher tells it (before MPI_Init), 0 if unknown.
 * Used to print help text once under mpiexec/srun. */
int mp_launcher_rank(void);

/* A subcommand: fn(argc, argv) with argv[0] = its name; returns the exit code. */
typedef struct {
  const char *name;
  const char *summary;
  int (*fn)(int argc, char **argv);
} mp_command;

int mp_cmd_info(int argc, char **argv);
int mp_cmd_config(int argc, char **argv);
int mp_cmd_pseudonym(int argc, char **argv);
int mp_cmd_synth(int argc, char **argv);      /* built with GDCM */
int mp_cmd_preprocess(int argc, char **argv); /* built with GDCM and LAPACKE */
int mp_cmd_train(int argc, char **argv);
int mp_cmd_eval(int argc, char **argv);
int mp_cmd_experiment(int argc, char **argv);
int mp_cmd_report(int argc, char **argv);
int mp_cmd_smote(int argc, char **argv);      /* built with OpenBLAS */
int mp_cmd_gan(int argc, char **argv);        /* built with LAPACKE/OpenBLAS */
int mp_cmd_predict(int argc, char **argv);    /* built with the preprocess component */
int mp_cmd_pipeline(int argc, char **argv);

/* The synth stage inside a session (the synth command and the pipeline): the cohort from
 * the session's [synth] keys into out/, out/synth.json; MP_EXIT_OK or MP_EXIT_FAILURE. */
int mp_cli_synth(mp_session *s, const char *out, bool preview);

/* The two early exits every subcommand's option parsing has; both free o.
 * mp_cli_help: help() on launcher rank 0, MP_EXIT_OK.  mp_cli_usage: the printf-style
 * message (fmt may be NULL: getopt has already said why) on launcher rank 0's stderr,
 * MP_EXIT_USAGE. */
int mp_cli_help(mp_common_opts *o, void (*help)(void));
int mp_cli_usage(mp_common_opts *o, const char *fmt, ...) MP_PRINTF(2, 3);

/* A number from the command line: decimal digits only (no sign, space or suffix: "12abc"
 * and "-3" are refused, not read as 12 or wrapped around), within [lo, hi].  true and *out
 * set, else false and *out untouched.  mp_cli_int: the same for an int, 0 <= lo <= hi. */
bool mp_cli_uint(const char *text, uint64_t lo, uint64_t hi, uint64_t *out);
bool mp_cli_int(const char *text, int lo, int hi, int *out);
/* A seed (--split-seed, --seed): mp_cli_uint up to MP_SEED_MAX (2^53: exact as the JSON
 * number outputs record). */
bool mp_cli_seed(const char *text, uint64_t *out);

/* The common-options paragraph for each subcommand's --help. */
extern const char mp_common_help[];

#endif
