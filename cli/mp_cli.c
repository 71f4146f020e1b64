/* mp_cli — common options and the MPI session of a subcommand (see mp_cli.h). */
#include "mp_cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_file.h"
#include "mp_log.h"
#include "mp_params.h"
#include "mp_progress.h"

const char mp_common_help[] =
    "Common options:\n"
    "  --config FILE      experiment configuration (INI); `mammopatch config --keys` lists the keys\n"
    "  --set KEY=VALUE    override one configuration key, e.g. --set run.seed=7 (repeatable)\n"
    "  -v, --verbose      every rank logs, not only rank 0\n"
    "  -q, --quiet        warnings and errors only\n"
    "  --debug            debug messages\n"
    "  --log-level LEVEL  error|warn|info|debug\n"
    "  -h, --help         this help\n";

/* "--opt VALUE" or "--opt=VALUE": returns the value or NULL; *used = args consumed. */
static const char *mp_opt_value(int argc, char **argv, int i, const char *name, int *used) {
  size_t n = strlen(name);
  if (strncmp(argv[i], name, n) != 0) return NULL;
  if (argv[i][n] == '=') {
    *used = 1;
    return argv[i] + n + 1;
  }
  if (argv[i][n] != '\0') return NULL;
  if (i + 1 >= argc) {
    *used = -1;
    return NULL;
  }
  *used = 2;
  return argv[i + 1];
}

int mp_cli_take_common(int *argc, char **argv, mp_common_opts *o) {
  memset(o, 0, sizeof *o);
  int out = 1;
  for (int i = 1; i < *argc;) {
    const char *a = argv[i];
    int used = 0;
    const char *v;
    if (strcmp(a, "--") == 0) { /* everything after belongs to the command */
      while (i < *argc) argv[out++] = argv[i++];
      break;
    }
    if ((v = mp_opt_value(*argc, argv, i, "--config", &used))) {
      o->config_file = v;
    } else if (used == 0 && (v = mp_opt_value(*argc, argv, i, "--set", &used))) {
      o->sets = mp_realloc(o->sets, (size_t)(o->nsets + 1) * sizeof *o->sets);
      o->sets[o->nsets++] = v;
    } else if (used == 0 && (v = mp_opt_value(*argc, argv, i, "--log-level", &used))) {
      o->log_level = v;
    } else if (used == 0 && (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0)) {
      o->verbose = true;
      used = 1;
    } else if (used == 0 && (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0)) {
      o->quiet = true;
      used = 1;
    } else if (used == 0 && strcmp(a, "--debug") == 0) {
      o->debug = true;
      used = 1;
    }
    if (used < 0) {
      fprintf(stderr, "mammopatch: option %s needs a value\n", a);
      return MP_EXIT_USAGE;
    }
    if (used == 0) {
      argv[out++] = argv[i++];
    } else {
      i += used;
    }
  }
  argv[out] = NULL;
  *argc = out;
  return 0;
}

void mp_common_opts_free(mp_common_opts *o) {
  mp_free(o->sets);
  o->sets = NULL;
}

void mp_cli_add_sets(mp_common_opts *o, const char *const *extra, int n) {
  if (n <= 0) return;
  o->sets = mp_realloc(o->sets, (size_t)(o->nsets + n) * sizeof *o->sets);
  for (int i = 0; i < n; i++) o->sets[o->nsets++] = extra[i];
}

int mp_cli_help(mp_common_opts *o, void (*help)(void)) {
  if (mp_launcher_rank() == 0) help();
  mp_common_opts_free(o);
  return MP_EXIT_OK;
}

int mp_cli_usage(mp_common_opts *o, const char *fmt, ...) {
  if (fmt && mp_launcher_rank() == 0) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
  }
  mp_common_opts_free(o);
  return MP_EXIT_USAGE;
}

bool mp_cli_uint(const char *text, uint64_t lo, uint64_t hi, uint64_t *out) {
  if (!text || !*text) return false;
  uint64_t v = 0;
  for (const char *c = text; *c; c++) {
    if (*c < '0' || *c > '9') return false; /* no sign, space or suffix */
    const uint64_t d = (uint64_t)(*c - '0');
    if (d > hi || v > (hi - d) / 10) return false; /* v * 10 + d beyond hi (no wrap-around) */
    v = v * 10 + d;
  }
  if (v < lo) return false;
  *out = v;
  return true;
}

bool mp_cli_int(const char *text, int lo, int hi, int *out) {
  uint64_t v;
  if (lo < 0 || hi < lo || !mp_cli_uint(text, (uint64_t)lo, (uint64_t)hi, &v)) return false;
  *out = (int)v;
  return true;
}

bool mp_cli_seed(const char *text, uint64_t *out) { return mp_cli_uint(text, 0, MP_SEED_MAX, out); }

int mp_launcher_rank(void) {
  static const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) return atoi(v);
  }
  return 0;
}

/* Rank 0 reads the file and broadcasts its text; NULL text means it could not be
 * read, and every rank then fails the same way. */
static int mp_session_config(mp_session *s, const mp_common_opts *o) {
  char err[1024] = "";
  s->cfg = mp_params_new();
  int bad = 0;
  if (o->config_file) {
    char *text = NULL;
    if (s->rank == 0) {
      char why[512];
      text = mp_read_file(o->config_file, NULL, why, sizeof why);
      if (!text) MP_ERROR("configuration file: %s", why);
    }
    mp_bcast_string(s->comm, 0, &text);
    if (!text) return MP_EXIT_USAGE;
    /* only rank 0's logger speaks, so unknown-key warnings appear once */
    bad = mp_config_load_string(s->cfg, text, o->config_file, err, sizeof err);
    mp_free(text);
    if (bad) {
      if (s->rank == 0) MP_ERROR("%s", err); /* every rank failed the same way */
      return MP_EXIT_USAGE;
    }
  }
  for (int i = 0; i < o->nsets; i++) {
    if (mp_config_set_arg(s->cfg, o->sets[i], err, sizeof err)) {
      if (s->rank == 0) MP_ERROR("%s", err);
      return MP_EXIT_USAGE;
    }
  }
  return 0;
}

int mp_session_start(mp_session *s, int *argc, char ***argv, const mp_common_opts *o) {
  memset(s, 0, sizeof *s);
  s->mpi = mp_mpi_init(argc, argv);
  s->rank = mp_mpi_rank(s->mpi);
  s->size = mp_mpi_size(s->mpi);
  s->comm = mp_mpi_comm(s->mpi);
  int level = MP_LOG_INFO;
  if (o->quiet) level = MP_LOG_WARN;
  if (o->debug) level = MP_LOG_DEBUG;
  if (o->log_level) {
    level = mp_log_level_parse(o->log_level);
    if (level < 0) {
      mp_log_init(s->rank, s->size, MP_LOG_INFO, false);
      MP_ERROR("--log-level '%s': expected error, warn, info or debug", o->log_level);
      mp_mpi_finalize(s->mpi);
      return MP_EXIT_USAGE;
    }
  }
  mp_log_init(s->rank, s->size, (mp_log_level)level, o->verbose);
  int rc = mp_session_config(s, o);
  if (rc) {
    mp_config_free(s->cfg);
    mp_mpi_finalize(s->mpi);
    memset(s, 0, sizeof *s);
    return rc;
  }
  /* the configuration may refine logging unless the command line said otherwise */
  if (!o->log_level && !o->quiet && !o->debug && mp_config_origin(s->cfg, "log.level") != MP_CFG_FROM_DEFAULT)
    level = mp_log_level_parse(mp_config_str(s->cfg, "log.level"));
  mp_log_init(s->rank, s->size, (mp_log_level)level, o->verbose || mp_config_bool(s->cfg, "log.all_ranks"));
  mp_progress_set_default_interval(mp_config_real(s->cfg, "log.progress_interval"));
  return 0;
}

void mp_session_end(mp_session *s) {
  mp_config_free(s->cfg);
  mp_mpi_finalize(s->mpi);
  memset(s, 0, sizeof *s);
}
