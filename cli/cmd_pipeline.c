/* `mammopatch pipeline` — every stage of the suite in order on the current allocation,
 * from one configuration file, ending in the report (issue 11; SPEC §1, §11):
 *
 *   synth       (pipeline.cohort = synth) the synthetic cohort from [synth]   OUT/cohort/
 *   preprocess  filters + patches into the patch store                          OUT/patches.h5, OUT/preprocess/
 *   baseline    the baseline classifier jobs (the GAN's FID extractor)          OUT/experiment/runs/baseline/
 *   gan         the GAN sweep (when experiment.variants lists gan)              OUT/gan/
 *   experiment  every variant on every split, aggregated                       OUT/experiment/
 *   report      the report, rendered again from experiment.json                 OUT/experiment/report/
 *
 * OUT/pipeline.json records each stage's status and the configuration keys its outputs
 * depend on.  A rerun skips a stage that is recorded done, whose outputs are there and
 * whose keys are unchanged; an interrupted stage resumes (the experiment and the sweep
 * reuse finished jobs and resume from checkpoints); the synth, preprocess and gan
 * outputs are never overwritten with a different configuration — the pipeline refuses
 * and names the key — since later stages were built on them.  The experiment stage is run
 * again when its keys change (e.g. a variant added): the experiment itself reuses every
 * finished job made with the same train.* / eval.* keys and refuses the others.
 *
 * Everything that can be checked is checked before the first stage starts: unknown keys
 * (refused here, where a single command only warns: a batch job must not run hours
 * with a typo ignored), missing inputs, the site key, the variants, the GAN grid, the
 * batch per rank group, and the prerequisites of the stages asked for with --stage (the
 * sbatch scripts run one or two stages each).
 *
 * SIGTERM / SIGUSR1 (Slurm's warning before the time limit) stop training stages with a
 * checkpoint, and other stages at their end; the pipeline then exits with status 75 and a
 * rerun continues.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_backend.h"
#include "mp_build_config.h"
#include "mp_check.h"
#include "mp_cli.h"
#include "mp_experiment.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_report.h"
#include "mp_signal.h"
#ifdef MP_WITH_PREPROCESS
#include "mp_preprocess.h"
#endif
#ifdef MP_WITH_GAN
#include "mp_gan_sweep.h"
#endif

enum { ST_SYNTH, ST_PREPROCESS, ST_BASELINE, ST_GAN, ST_EXPERIMENT, ST_REPORT, NST };
static const char *const stage_name[NST] = {"synth", "preprocess", "baseline", "gan", "experiment", "report"};
/* The configuration keys (prefixes ending in '.', or whole keys; '-' excludes) each
 * stage's outputs depend on.  Rank-group counts change the wall time, not the results. */
static const char *const stage_keys[NST] = {
    "run.seed synth. pipeline.cohort",
    "preprocess. privacy. pipeline.input pipeline.labels",
    "run.seed train. eval. experiment.split_seed experiment.repeats",
    "run.seed gan. -gan.groups experiment.split_seed",
    "run.seed train. eval. experiment. -experiment.groups",
    "",
};
/* A stage whose recorded configuration differs: refused (its outputs fed later stages and
 * would be silently mixed) or run again (its own reuse logic decides what is kept). */
static const int stage_refuse_change[NST] = {1, 1, 0, 1, 0, 0};

/* what the plan does with a stage */
enum { P_NA, P_NOT_ASKED, P_DONE, P_RUN };

typedef struct {
  mp_session *s;
  bool check; /* --check: plan and refusals only (no backend created, nothing written) */
  const char *out;
  char cohort[4096], store[4096], prep[4096], exp[4096], gan[4096], record[4096]; /* pipeline.out < 4000 */
  char input[4400], labels[4400], extractor[4400];
  cJSON *rec; /* pipeline.json (rank 0) */
} pipeline;

static void pipeline_help(void) {
  printf("Usage: [mpiexec -n K] mammopatch pipeline --config exp.ini [--stage LIST] [--check] [--set KEY=VALUE ...]\n\n"
         "Every stage in order on the current allocation, ending in the report:\n"
         "  synth       (pipeline.cohort = synth) a synthetic cohort from [synth]       OUT/cohort/\n"
         "  preprocess  filters + lesion/normal patches into the patch store            OUT/patches.h5, OUT/preprocess/\n"
         "  baseline    the baseline classifier jobs (the GAN's FID extractor)          OUT/experiment/runs/baseline/\n"
         "  gan         the GAN sweep (when experiment.variants lists gan)              OUT/gan/\n"
         "  experiment  every variant on experiment.repeats splits, aggregated          OUT/experiment/\n"
         "  report      the report                                                      OUT/experiment/report/index.html\n"
         "OUT is pipeline.out; the archive is pipeline.input + pipeline.labels (pipeline.cohort = dicom).\n\n"
         "  --stage LIST  only these stages (comma-separated, e.g. synth,preprocess); the stages before\n"
         "                them must be complete.  Default: all.\n"
         "  --check       make the plan and its refusals (below), print the plan, run nothing, write\n"
         "                nothing; the training backend is not created (the login node of a GPU\n"
         "                cluster has no GPU).  jobs/submit.sh runs it before submitting.\n\n"
         "A rerun skips the stages recorded complete in OUT/pipeline.json with unchanged configuration and\n"
         "continues an interrupted one from its checkpoints.  Refused before any work (status %d): an\n"
         "unknown key, a missing input, an impossible value, a changed configuration for finished synth,\n"
         "preprocess or gan outputs, a stage whose prerequisites are not complete.  SIGTERM or SIGUSR1:\n"
         "checkpoint and exit with status %d; run it again to continue.\n\n%s",
         MP_EXIT_USAGE, MP_EXIT_INTERRUPTED, mp_common_help);
}

/* ---- configuration snapshots ------------------------------------------------------------------ */
static bool key_matches(const char *key, const char *spec) {
  bool hit = false;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", spec);
  for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
    bool neg = *t == '-';
    if (neg) t++;
    size_t n = strlen(t);
    bool m = t[n - 1] == '.' ? strncmp(key, t, n) == 0 : strcmp(key, t) == 0;
    if (m) hit = !neg;
    if (m && neg) return false;
  }
  return hit;
}

/* {"section.key": value} for the keys a stage depends on */
static cJSON *stage_snapshot(const mp_config *cfg, int st) {
  cJSON *all = mp_config_to_json(cfg), *snap = cJSON_CreateObject();
  for (cJSON *sec = all ? all->child : NULL; sec; sec = sec->next)
    for (cJSON *k = sec->child; k; k = k->next) {
      char key[256];
      snprintf(key, sizeof key, "%s.%s", sec->string, k->string);
      if (key_matches(key, stage_keys[st])) cJSON_AddItemToObject(snap, key, cJSON_Duplicate(k, 1));
    }
  cJSON_Delete(all);
  return snap;
}


/* ---- the record ------------------------------------------------------------------------------ */
static cJSON *stage_rec(pipeline *p, int st) {
  cJSON *stages = cJSON_GetObjectItem(p->rec, "stages");
  if (!stages) stages = cJSON_AddObjectToObject(p->rec, "stages");
  cJSON *r = cJSON_GetObjectItem(stages, stage_name[st]);
  if (!r) r = cJSON_AddObjectToObject(stages, stage_name[st]);
  return r;
}

static void set_field(cJSON *o, const char *k, cJSON *v) {
  if (cJSON_GetObjectItem(o, k))
    cJSON_ReplaceItemInObject(o, k, v);
  else
    cJSON_AddItemToObject(o, k, v);
}

/* rank 0: record a stage's state and write pipeline.json (atomically) */
static void record_stage(pipeline *p, int st, const char *status, double seconds) {
  if (p->s->rank != 0) return;
  cJSON *r = stage_rec(p, st);
  set_field(r, "status", cJSON_CreateString(status));
  if (seconds >= 0) set_field(r, "seconds", cJSON_CreateNumber(seconds));
  char when[32];
  time_t t = time(NULL);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
  set_field(r, "at", cJSON_CreateString(when));
  set_field(r, "config", stage_snapshot(p->s->cfg, st));
  set_field(p->rec, "provenance", mp_json_provenance(p->s->cfg, p->s->size));
  char err[512];
  if (mp_json_write_file(p->record, p->rec, err, sizeof err)) MP_ERROR("pipeline: %s", err);
}

static bool file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* Outputs a finished stage leaves (a record saying done is not enough when they are gone). */
static bool outputs_present(const pipeline *p, int st) {
  char a[4600], b[4600];
  switch (st) {
  case ST_SYNTH:
    snprintf(a, sizeof a, "%s/labels.csv", p->cohort);
    snprintf(b, sizeof b, "%s/synth.json", p->cohort);
    return file_exists(a) && file_exists(b);
  case ST_PREPROCESS:
    snprintf(a, sizeof a, "%s/preprocess.json", p->prep);
    return file_exists(p->store) && file_exists(a);
  case ST_BASELINE:
    snprintf(a, sizeof a, "%s/eval.json", p->extractor);
    return file_exists(a);
  case ST_GAN:
    snprintf(a, sizeof a, "%s/sweep.json", p->gan);
    return file_exists(a);
  case ST_EXPERIMENT:
    snprintf(a, sizeof a, "%s/experiment.json", p->exp);
    return file_exists(a);
  default:
    snprintf(a, sizeof a, "%s/report/index.html", p->exp);
    return file_exists(a);
  }
}

/* ---- the checks before any work (rank 0) -------------------------------------------------------- */
static bool lists_gan(const mp_config *cfg) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", mp_config_str(cfg, "experiment.variants"));
  for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
    if (strcmp(t, "gan") == 0) return true;
  return false;
}

static int refuse(char *err, size_t errlen, const char *fmt, ...) MP_PRINTF(3, 4);
static int refuse(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* Applicability, the configuration checks, the record and the plan; 0 or -1 with err. */
static int make_plan(pipeline *p, const bool asked[NST], bool own_sweep, int plan[NST], char *err, size_t errlen) {
  const mp_config *cfg = p->s->cfg;
  if (mp_config_unknown_count(cfg))
    return refuse(err, errlen, "unknown configuration key '%s'%s: a pipeline refuses what a command would ignore",
                  mp_config_unknown_first(cfg), mp_config_unknown_count(cfg) > 1 ? " (and more, warned above)" : "");
  bool synth = strcmp(mp_config_str(cfg, "pipeline.cohort"), "synth") == 0;
  bool gan = lists_gan(cfg);
  bool applies[NST] = {synth, true, gan && own_sweep, gan && own_sweep, true, true};
  if (!synth) {
    struct stat sb;
    const char *in = mp_config_str(cfg, "pipeline.input"), *lab = mp_config_str(cfg, "pipeline.labels");
    if (!in[0]) return refuse(err, errlen, "pipeline.input: required with pipeline.cohort = dicom");
    if (stat(in, &sb) != 0 || !S_ISDIR(sb.st_mode))
      return refuse(err, errlen, "pipeline.input = '%s': not a directory", in);
    if (!lab[0]) return refuse(err, errlen, "pipeline.labels: required with pipeline.cohort = dicom");
    if (access(lab, R_OK) != 0) return refuse(err, errlen, "pipeline.labels = '%s': cannot be read", lab);
  }
  const char *sweep = mp_config_str(cfg, "experiment.gan_sweep");
  if (gan && !own_sweep) {
    char path[4200];
    snprintf(path, sizeof path, "%s/sweep.json", sweep);
    if (!file_exists(path))
      return refuse(err, errlen, "experiment.gan_sweep = '%s': no sweep.json there (a finished `gan sweep`)", sweep);
  }
  if (mp_experiment_check(cfg, p->s->size, true, err, errlen)) return -1;
#ifdef MP_WITH_GAN
  if (applies[ST_GAN] && mp_gan_sweep_check(cfg, p->s->size, err, errlen)) return -1;
#endif

  /* the record of earlier runs */
  if (file_exists(p->record)) {
    char e2[512];
    p->rec = mp_json_read_file(p->record, e2, sizeof e2);
    if (!p->rec) return refuse(err, errlen, "%.1000s: %.500s (remove it to start the pipeline afresh)", p->record, e2);
  } else
    p->rec = cJSON_CreateObject();
  bool done[NST] = {0};
  int last_asked = -1;
  for (int st = 0; st < NST; st++) {
    if (asked[st] && applies[st]) last_asked = st;
    if (!applies[st]) continue;
    const cJSON *r = cJSON_GetObjectItem(cJSON_GetObjectItem(p->rec, "stages"), stage_name[st]);
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItem(r, "status"));
    if (!status || strcmp(status, "done") != 0 || !outputs_present(p, st)) continue;
    cJSON *cur = stage_snapshot(cfg, st);
    char was[256], now[256];
    const char *k = mp_json_first_diff(cJSON_GetObjectItem(r, "config"), cur, was, sizeof was, now, sizeof now);
    if (k && stage_refuse_change[st]) {
      snprintf(err, errlen,
               "%s = %s, but stage %s in %s was made with %s = %s and later stages are built on it: use another "
               "pipeline.out (or remove that stage's outputs)",
               k, now, stage_name[st], p->out, k, was);
      cJSON_Delete(cur);
      return -1;
    }
    if (k) MP_INFO("pipeline: stage %s runs again: %s = %s (was %s)", stage_name[st], k, now, was);
    done[st] = !k;
    cJSON_Delete(cur);
  }
  if (last_asked < 0) { /* e.g. the gan job of a chain whose variants have no gan: nothing to do */
    for (int st = 0; st < NST; st++) plan[st] = applies[st] ? P_NOT_ASKED : P_NA;
    return 0;
  }
  /* stages not asked for before the last one asked for must be complete; a stage runs
   * when asked for and not done, or when an earlier stage runs in this invocation */
  bool upstream_runs = false;
  for (int st = 0; st < NST; st++) {
    if (!applies[st]) {
      plan[st] = P_NA;
      continue;
    }
    if (!asked[st]) {
      if (st < last_asked && !done[st]) {
        snprintf(err, errlen, "stage %s is not complete in %s: run it first (--stage %s)", stage_name[st], p->out,
                 stage_name[st]);
        return -1;
      }
      plan[st] = P_NOT_ASKED;
      continue;
    }
    plan[st] = done[st] && !upstream_runs ? P_DONE : P_RUN;
    upstream_runs |= plan[st] == P_RUN;
  }
  /* a GPU node image has no GDCM: there the pipeline runs from the store made elsewhere */
#if !MP_HAVE_GDCM
  if (plan[ST_SYNTH] == P_RUN) return refuse(err, errlen, "stage synth: not in this build (needs GDCM)");
#endif
#ifndef MP_WITH_PREPROCESS
  if (plan[ST_PREPROCESS] == P_RUN)
    return refuse(err, errlen,
                  "stage preprocess: not in this build (needs GDCM and LAPACKE): run it where it is built, then the "
                  "later stages here");
#endif
  /* preprocess needs the site key */
  if (plan[ST_PREPROCESS] == P_RUN) {
    const char *kf = mp_config_str(cfg, "privacy.site_key_file");
    if (kf[0] && access(kf, R_OK) != 0)
      return refuse(err, errlen, "privacy.site_key_file = '%s': cannot be read", kf);
    const char *env = getenv("MAMMOPATCH_SITE_KEY");
    if (!kf[0] && (!env || !env[0]))
      return refuse(err, errlen,
                    "privacy.site_key_file: no site key (set the key file, or MAMMOPATCH_SITE_KEY in the environment)");
  }
  /* the training stages' backend must exist here (cuda on a node without a GPU, or in a
   * build without it, is refused now, not after the preprocessing) */
  if (!p->check && (plan[ST_BASELINE] == P_RUN || plan[ST_GAN] == P_RUN || plan[ST_EXPERIMENT] == P_RUN)) {
    char e2[512];
    mp_backend *be = mp_backend_create_cfg(cfg, e2, sizeof e2);
    if (!be) return refuse(err, errlen, "train.backend = '%s': %s", mp_config_str(cfg, "train.backend"), e2);
    mp_backend_free(be);
  }
  return 0;
}

/* ---- the stages ----------------------------------------------------------------------------------- */
static int run_stage(pipeline *p, int st) {
  mp_session *s = p->s;
  mp_config *cfg = s->cfg;
  int rc = MP_EXIT_OK;
  char err[1024] = "";
  switch (st) {
  case ST_SYNTH:
#if MP_HAVE_GDCM
    rc = mp_cli_synth(s, p->cohort, true);
#endif
    break;
  case ST_PREPROCESS: {
#ifdef MP_WITH_PREPROCESS
    if (s->rank == 0 && mp_mkdir_p(p->prep, err, sizeof err)) {
      MP_ERROR("%s", err);
      rc = MP_EXIT_FAILURE;
    }
    MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, s->comm));
    mp_preprocess_args a = {.input_dir = p->input, .labels_csv = p->labels, .out_h5 = p->store, .report_dir = p->prep};
    if (rc == MP_EXIT_OK && mp_preprocess_run(s->comm, cfg, &a) != 0) rc = MP_EXIT_FAILURE;
#endif
    break;
  }
  case ST_BASELINE: {
    /* the baseline jobs alone (the experiment stage reuses them) */
    char *variants = mp_strdup(mp_config_str(cfg, "experiment.variants"));
    MP_CHECK(mp_config_set(cfg, "experiment.variants", "baseline", MP_CFG_FROM_CLI, err, sizeof err) == 0, "%s", err);
    mp_experiment_args a = {.store_path = p->store, .out_dir = p->exp};
    rc = mp_experiment_run(s->comm, cfg, &a);
    MP_CHECK(mp_config_set(cfg, "experiment.variants", variants, MP_CFG_FROM_CLI, err, sizeof err) == 0, "%s", err);
    mp_free(variants);
    break;
  }
  case ST_GAN: {
#ifdef MP_WITH_GAN
    mp_gan_sweep_args a = {.store_path = p->store,
                           .out_dir = p->gan,
                           .extractor_dir = p->extractor,
                           .split_seed = (uint64_t)mp_config_int(cfg, "experiment.split_seed")};
    rc = mp_gan_sweep_run(s->comm, cfg, &a);
#endif
    break;
  }
  case ST_EXPERIMENT: {
    mp_experiment_args a = {.store_path = p->store, .out_dir = p->exp};
    rc = mp_experiment_run(s->comm, cfg, &a);
    break;
  }
  default: /* the report, from the experiment's results */
    if (s->rank == 0) {
      char path[4300];
      snprintf(path, sizeof path, "%s/experiment.json", p->exp);
      cJSON *x = mp_json_read_file(path, err, sizeof err);
      if (!x || mp_report_write(p->exp, p->store, cfg, x, err, sizeof err) != 0) {
        MP_ERROR("%s", err);
        rc = MP_EXIT_FAILURE;
      }
      cJSON_Delete(x);
    }
    MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, s->comm));
  }
  return rc;
}

static int parse_stages(const char *list, bool asked[NST]) {
  char buf[256];
  if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf) return -1;
  for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
    int st = 0;
    while (st < NST && strcmp(t, stage_name[st]) != 0) st++;
    if (st == NST) return -1;
    asked[st] = true;
  }
  return 0;
}

int mp_cmd_pipeline(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  bool asked[NST] = {0};
  const char *stages = NULL;
  bool check = false;
  static const struct option opts[] = {
      {"stage", required_argument, 0, 's'}, {"check", no_argument, 0, 'c'}, {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 's': stages = optarg; break;
    case 'c': check = true; break;
    case 'h': return mp_cli_help(&o, pipeline_help);
    default: return mp_cli_usage(&o, NULL);
    }
  }
  if (optind < argc) return mp_cli_usage(&o, "mammopatch pipeline: unexpected argument '%s'\n", argv[optind]);
  if (!o.config_file) return mp_cli_usage(&o, "mammopatch pipeline: --config is required (see --help)\n");
  if (stages && parse_stages(stages, asked))
    return mp_cli_usage(&o,
                        "mammopatch pipeline: --stage '%s': a comma-separated list of synth, preprocess, baseline, gan, "
                        "experiment, report\n",
                        stages);
  if (!stages)
    for (int st = 0; st < NST; st++) asked[st] = true;
  mp_session s;
  /* a stop signal ends the pipeline at the next checkpoint; caught from before MPI starts, so
   * that one during start-up is a stop (exit 75 after the first stage), not a killed rank */
  mp_signal_catch_stop();
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;

  pipeline p = {.s = &s, .check = check, .out = mp_config_str(s.cfg, "pipeline.out")};
  char err[2048] = "";
  int plan[NST] = {0};
  /* the pipeline owns the GAN sweep unless experiment.gan_sweep names a finished one */
  bool own_sweep = !mp_config_str(s.cfg, "experiment.gan_sweep")[0];
  if (!p.out[0] || strlen(p.out) >= 4000) {
    snprintf(err, sizeof err, "pipeline.out: %s", p.out[0] ? "too long" : "the output directory is required");
    rc = -1;
  } else {
    const bool synth = strcmp(mp_config_str(s.cfg, "pipeline.cohort"), "synth") == 0;
    snprintf(p.cohort, sizeof p.cohort, "%s/cohort", p.out);
    if (synth) {
      snprintf(p.input, sizeof p.input, "%s/dicom", p.cohort);
      snprintf(p.labels, sizeof p.labels, "%s/labels.csv", p.cohort);
    } else {
      snprintf(p.input, sizeof p.input, "%s", mp_config_str(s.cfg, "pipeline.input"));
      snprintf(p.labels, sizeof p.labels, "%s", mp_config_str(s.cfg, "pipeline.labels"));
    }
    snprintf(p.store, sizeof p.store, "%s/patches.h5", p.out);
    snprintf(p.prep, sizeof p.prep, "%s/preprocess", p.out);
    snprintf(p.exp, sizeof p.exp, "%s/experiment", p.out);
    snprintf(p.gan, sizeof p.gan, "%s/gan", p.out);
    snprintf(p.record, sizeof p.record, "%s/pipeline.json", p.out);
    snprintf(p.extractor, sizeof p.extractor, "%s/runs/baseline/split-%lld", p.exp,
             mp_config_int(s.cfg, "experiment.split_seed"));
    if (lists_gan(s.cfg) && own_sweep) /* every rank: the experiment reads it */
      MP_CHECK(mp_config_set(s.cfg, "experiment.gan_sweep", p.gan, MP_CFG_FROM_CLI, err, sizeof err) == 0, "%s", err);
    if (s.rank == 0) {
      rc = make_plan(&p, asked, own_sweep, plan, err, sizeof err);
      if (rc == 0 && !check && mp_mkdir_p(p.out, err, sizeof err)) rc = -1;
    }
  }
  MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, s.comm));
  if (rc) {
    if (s.rank == 0) MP_ERROR("pipeline refused before any work: %s", err);
    cJSON_Delete(p.rec);
    mp_session_end(&s);
    return MP_EXIT_USAGE;
  }
  MP_CHECK_MPI(MPI_Bcast(plan, NST, MPI_INT, 0, s.comm));
  if (s.rank == 0) {
    char line[512] = "";
    size_t n = 0;
    static const char *const what[] = {"n/a", "not asked", "done", "run"};
    for (int st = 0; st < NST; st++)
      n += (size_t)snprintf(line + n, sizeof line - n, "%s%s: %s", st ? ", " : "", stage_name[st], what[plan[st]]);
    MP_INFO("pipeline on %d rank%s into %s — %s", s.size, s.size == 1 ? "" : "s", p.out, line);
    bool any = false;
    for (int st = 0; st < NST; st++) any |= plan[st] == P_RUN || plan[st] == P_DONE;
    if (!any) MP_INFO("pipeline: none of the stages asked for applies to this configuration: nothing to do");
  }
  if (check) { /* jobs/submit.sh: refused here, not hours later in the queue */
    if (s.rank == 0)
      MP_INFO("pipeline --check: accepted (the training backend '%s' is created only where the stages run)",
              mp_config_str(s.cfg, "train.backend"));
    cJSON_Delete(p.rec);
    mp_session_end(&s);
    return MP_EXIT_OK;
  }

  int status = MP_EXIT_OK;
  bool experiment_ran = false;
  for (int st = 0; st < NST && status == MP_EXIT_OK; st++) {
    if (plan[st] == P_DONE) MP_INFO("== pipeline: %s — complete, skipped", stage_name[st]);
    if (plan[st] != P_RUN) continue;
    if (st == ST_REPORT && experiment_ran) { /* the experiment stage has just written it */
      MP_INFO("== pipeline: report — written by the experiment stage");
      record_stage(&p, st, "done", 0);
      continue;
    }
    MP_INFO("== pipeline: %s", stage_name[st]);
    record_stage(&p, st, "running", -1);
    double t0 = mp_now();
    int rc2 = run_stage(&p, st);
    /* a stop signal on any rank ends the pipeline after this stage */
    int sig = mp_signal_stop(), anysig = 0;
    MP_CHECK_MPI(MPI_Allreduce(&sig, &anysig, 1, MPI_INT, MPI_MAX, s.comm));
    if (rc2 == MP_EXIT_OK) {
      record_stage(&p, st, "done", mp_now() - t0);
      MP_INFO("== pipeline: %s done in %.1f s", stage_name[st], mp_now() - t0);
      experiment_ran |= st == ST_EXPERIMENT;
      bool more = false; /* a later stage this run was asked for, and that still has work */
      for (int k = st + 1; k < NST; k++) more |= plan[k] == P_RUN;
      if (anysig && more) {
        MP_WARN("pipeline: stopped by signal %d after stage %s; run it again to continue", anysig, stage_name[st]);
        status = MP_EXIT_INTERRUPTED;
      }
    } else {
      record_stage(&p, st, rc2 == MP_EXIT_INTERRUPTED ? "interrupted" : "failed", mp_now() - t0);
      status = rc2 == MP_EXIT_INTERRUPTED || rc2 == MP_EXIT_USAGE ? rc2 : MP_EXIT_FAILURE;
      if (rc2 == MP_EXIT_INTERRUPTED)
        MP_WARN("pipeline: stage %s interrupted (checkpoints written); run it again to continue", stage_name[st]);
      else
        MP_ERROR("pipeline: stage %s failed (status %d); later stages not run", stage_name[st], rc2);
    }
  }
  if (status == MP_EXIT_OK && plan[ST_REPORT] != P_NOT_ASKED)
    MP_INFO("REPORT: %s/report/index.html", p.exp);
  cJSON_Delete(p.rec);
  mp_session_end(&s);
  return status;
}
