/* mp_experiment — `mammopatch experiment` (see mp_experiment.h). */
#include "mp_experiment.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mp_alloc.h"
#include "mp_backend.h"
#include "mp_check.h"
#include "mp_evaluate.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_params.h"
#include "mp_mpi.h"
#include "mp_report.h"
#include "mp_signal.h"
#include "mp_store.h"
#include "mp_strbuf.h"
#include "mp_train.h"
#ifdef MP_WITH_SMOTE
#include "mp_smote.h"
#endif
#ifdef MP_WITH_GAN
#include "mp_gan_sample.h"
#include "mp_gan_train.h"
#endif

/* ---- variants --------------------------------------------------------------------------------- */
static const char *const known_variants[] = {"baseline", "gan", "smote-cosine", "smote-l1", "smote-l2"};

int mp_experiment_variant_known(const char *v) {
  for (size_t i = 0; i < sizeof known_variants / sizeof *known_variants; i++)
    if (strcmp(v, known_variants[i]) == 0) return 1;
  return 0;
}

/* what this build can train (smote-* arrives with its stage; gan needs the gan component) */
int mp_experiment_variant_available(const char *v) {
#ifdef MP_WITH_GAN
  if (strcmp(v, "gan") == 0) return 1;
#endif
#ifdef MP_WITH_SMOTE
  if (strncmp(v, "smote-", 6) == 0) return 1;
#endif
  return strcmp(v, "baseline") == 0;
}

void mp_experiment_mean_std(const double *v, size_t n, double *mean, double *std, size_t *count) {
  double s = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (isfinite(v[i])) s += v[i], k++;
  *count = k;
  *mean = k ? s / (double)k : NAN;
  if (k < 2) {
    *std = NAN;
    return;
  }
  double q = 0;
  for (size_t i = 0; i < n; i++)
    if (isfinite(v[i])) q += (v[i] - *mean) * (v[i] - *mean);
  *std = sqrt(q / (double)(k - 1));
}

/* A table to df 30 (scipy.stats.t.ppf(0.975, df), 10 digits); beyond it the Cornish-Fisher expansion
 * of t about the normal quantile z, four terms (error < 3e-8 at df 31, falling as df^-5). */
double mp_experiment_t975(int df) {
  static const double tab[30] = {
      12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581837, 2.446911849,
      2.364624251, 2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830,
      2.160368656, 2.144786688, 2.131449546, 2.119905299, 2.109815578, 2.100922040,
      2.093024054, 2.085963447, 2.079613845, 2.073873068, 2.068657610, 2.063898562,
      2.059538553, 2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456};
  if (df < 1) return NAN;
  if (df <= 30) return tab[df - 1];
  const double z = 1.959963984540054, z2 = z * z, n = df;
  const double g1 = (z2 + 1) * z / 4, g2 = ((5 * z2 + 16) * z2 + 3) * z / 96;
  const double g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384;
  const double g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160;
  return z + g1 / n + g2 / (n * n) + g3 / (n * n * n) + g4 / (n * n * n * n);
}

/* ---- jobs ----------------------------------------------------------------------------------- */
enum { JOB_NOT_RUN = MP_JOB_NOT_RUN, JOB_DONE, JOB_REUSED, JOB_FAILED, JOB_INTERRUPTED };
static const char *const job_status_name[] = {"not run", "done", "reused", "failed", "interrupted"};
typedef mp_experiment_job job;

static const char *const levels[3] = {"patch", "view", "patient"};
static const char *const metrics[7] = {"accuracy", "precision", "recall", "f1", "mcc", "roc_auc", "pr_auc"};
enum { NLEVELS = 3, NMETRICS = 7 };

/* Parse experiment.variants into v[] (at most 8); 0, or -1 with the reason. */
static int parse_variants(const char *list, char v[][32], int *nv, char *err, size_t errlen) {
  *nv = 0;
  const char *p = list;
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    if (!*p) break;
    size_t n = strcspn(p, ", ");
    if (n >= 32 || *nv == 8) {
      snprintf(err, errlen, "experiment.variants: '%.*s' is not a variant (or too many listed)", (int)n, p);
      return -1;
    }
    memcpy(v[*nv], p, n);
    v[*nv][n] = 0;
    p += n;
    if (!mp_experiment_variant_known(v[*nv])) {
      snprintf(err, errlen, "experiment.variants: unknown variant '%s' (baseline, gan, smote-cosine, smote-l1, smote-l2)",
               v[*nv]);
      return -1;
    }
    if (!mp_experiment_variant_available(v[*nv])) {
      snprintf(err, errlen,
               "experiment.variants: variant '%s' is not built in this build (baseline%s%s)", v[*nv],
               mp_experiment_variant_available("gan") ? ", gan" : "",
               mp_experiment_variant_available("smote-l2") ? ", smote-cosine, smote-l1, smote-l2" : "");
      return -1;
    }
    for (int i = 0; i < *nv; i++)
      if (strcmp(v[i], v[*nv]) == 0) {
        snprintf(err, errlen, "experiment.variants: '%s' is listed twice", v[i]);
        return -1;
      }
    (*nv)++;
  }
  if (*nv == 0) {
    snprintf(err, errlen, "experiment.variants is empty");
    return -1;
  }
  return 0;
}

/* The first key of `section` (as "section.key"), other than those starting with one of the
 * `skip` prefixes, where two config JSON objects differ (a key absent from `was`, made before
 * the key existed, and at its default in `now` is no difference); 0 when equal. */
static int section_diff(const cJSON *was, const cJSON *now, const char *section, const char *const *skip, int nskip,
                        char *key, size_t keylen) {
  const cJSON *a = cJSON_GetObjectItem(was, section), *b = cJSON_GetObjectItem(now, section), *x;
  for (int pass = 0; pass < 2; pass++)
    cJSON_ArrayForEach(x, (pass ? b : a)) {
      bool skipped = false;
      for (int i = 0; i < nskip && !skipped; i++) skipped = strncmp(x->string, skip[i], strlen(skip[i])) == 0;
      const cJSON *y = cJSON_GetObjectItem(pass ? a : b, x->string);
      snprintf(key, keylen, "%s.%s", section, x->string);
      /* a key newer than the record (absent from was) at its default: no difference */
      if (!skipped && (!y || !cJSON_Compare(x, y, 1)) && !(pass && !y && mp_params_is_default(key, x))) return 1;
    }
  return 0;
}

/* The configuration a job's outputs depend on beyond run.* / train.*: a smote job's
 * neighbours (experiment.smote_k); a gan job's sweep and every gan.* key that shapes the
 * generator it trains or samples (not the sweep grid, the rank groups or the checkpoint
 * interval).  The first differing key, as section_diff. */
static int variant_diff(const char *variant, const cJSON *was, const cJSON *now, char *key, size_t keylen) {
  static const char *const gan_skip[] = {"sweep_", "groups", "checkpoint_every"};
  const char *ek = strncmp(variant, "smote-", 6) == 0 ? "smote_k" : strcmp(variant, "gan") == 0 ? "gan_sweep" : NULL;
  if (!ek) return 0;
  const cJSON *x = cJSON_GetObjectItem(cJSON_GetObjectItem(was, "experiment"), ek),
              *y = cJSON_GetObjectItem(cJSON_GetObjectItem(now, "experiment"), ek);
  if (!x || !y || !cJSON_Compare(x, y, 1)) return snprintf(key, keylen, "experiment.%s", ek), 1;
  return strcmp(variant, "gan") == 0 && section_diff(was, now, "gan", gan_skip, 3, key, keylen);
}

/* Can job j's directory be reused (1), must it run (0: nothing there, or unfinished and
 * compatible: train resumes), or was it made by another configuration (-1, err)? */
static int job_reusable(const job *j, const mp_config *cfg, const char *store_path, uint64_t store_patches, char *err,
                        size_t errlen) {
  char path[4300], e2[512];
  snprintf(path, sizeof path, "%s/train.json", j->dir);
  struct stat sb;
  if (stat(path, &sb) != 0) return 0;
  cJSON *tj = mp_json_read_file(path, e2, sizeof e2);
  if (!tj) return 0; /* unreadable (a crash mid-write cannot happen: atomic); train rewrites it */
  cJSON *now = mp_config_to_json(cfg);
  const cJSON *was = cJSON_GetObjectItem(cJSON_GetObjectItem(tj, "provenance"), "config");
  static const char *const sections[] = {"run", "train"};
  char key[128];
  int rc = 0;
  for (int s = 0; s < 2 && rc == 0; s++)
    if (section_diff(was, now, sections[s], NULL, 0, key, sizeof key)) {
      snprintf(err, errlen,
               "'%s' was trained with a different %s than this run's: use another --out, or remove that directory",
               j->dir, key);
      rc = -1;
    }
  if (rc == 0 && variant_diff(j->variant, was, now, key, sizeof key)) {
    snprintf(err, errlen,
             "'%s' was made with a different %s than this run's: use another --out, or remove that directory", j->dir,
             key);
    rc = -1;
  }
  const cJSON *status = cJSON_GetObjectItem(tj, "status");
  /* finished: "completed", "completed (early stop)" or "stopped at train.max_steps" (with this
   * configuration, a resume would train no further) */
  int completed = cJSON_IsString(status) && (strncmp(status->valuestring, "completed", 9) == 0 ||
                                             strcmp(status->valuestring, "stopped at train.max_steps") == 0);
  if (rc == 0 && completed) {
    snprintf(path, sizeof path, "%s/eval.json", j->dir);
    cJSON *ej = stat(path, &sb) == 0 ? mp_json_read_file(path, e2, sizeof e2) : NULL;
    if (ej) {
      const cJSON *ewas = cJSON_GetObjectItem(cJSON_GetObjectItem(ej, "provenance"), "config");
      const cJSON *np = cJSON_GetObjectItem(cJSON_GetObjectItem(ej, "store"), "patches");
      if (section_diff(ewas, now, "eval", NULL, 0, key, sizeof key))
        rc = 0; /* evaluated differently: evaluate again (cheap), keep the training */
      else if (!cJSON_IsNumber(np) || (uint64_t)np->valuedouble != store_patches) {
        snprintf(err, errlen, "'%s' was evaluated on another store than '%s': use another --out", j->dir, store_path);
        rc = -1;
      } else
        rc = 1;
      cJSON_Delete(ej);
    }
    if (rc == 0) rc = 2; /* trained, not (or differently) evaluated: eval only */
  }
  cJSON_Delete(now);
  cJSON_Delete(tj);
  return rc;
}

/* ---- aggregation at rank 0 -------------------------------------------------------------------- */
static double num_or_nan(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static cJSON *num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

/* "a", "a and b", "a, b and c" */
static void join_words(mp_strbuf *b, const char *const *w, int n) {
  for (int i = 0; i < n; i++) mp_strbuf_printf(b, "%s%s", i == 0 ? "" : i == n - 1 ? " and " : ", ", w[i]);
}

/* whether the interval [lo, hi] (NaN: none) excludes 0 */
static bool excludes_zero(double lo, double hi) { return isfinite(lo) && (lo > 0 || hi < 0); }

/* Paired differences within this of each other are "identical on every split": the same
 * difference on each split up to the rounding of the subtractions (~1e-16 for metrics in
 * [-1, 1]; two splits' differences that truly differ, ratios of counts below 10^6, differ
 * by more).  Their sample std is 0, or rounding noise, and a Student-t interval of (next
 * to) no width would "exclude 0" on no evidence: there is no variance estimate, and no
 * interval is made. */
#define NO_VARIANCE_TOL 1e-12

/* experiment.json's note on its differences_from_baseline */
static const char differences_note[] =
    "paired by split seed: variant minus baseline; ci95: the 95% interval of the mean difference, mean ± t(0.975, "
    "pairs - 1) std / sqrt(pairs), null with fewer than 2 pairs or with no_variance; excludes_zero: that interval "
    "excludes 0 (false without one); no_variance: the difference is identical on all pairs (within 1e-12; std 0), so "
    "there is no variance estimate and no interval";

/* The highlights in the thesis's form (§4 "highlights of evaluation"), each followed by which of
 * its differences are clear of split-to-split variation: those whose 95% interval of the mean
 * paired difference (Student t, pairs - 1 df; lo/hi, NaN without one) excludes 0.  With few
 * splits a difference of a few points is usually not, and the sentence says so rather than
 * let "improves" stand alone.  A difference identical on every split (nov: no variance
 * estimate, no interval) is named as such, never as clear. */
static void highlight_variant(cJSON *out, const char *v, const double diff_mean[NLEVELS][NMETRICS],
                              const double diff_std[NLEVELS][NMETRICS], const double lo[NLEVELS][NMETRICS],
                              const double hi[NLEVELS][NMETRICS], const bool nov[NLEVELS][NMETRICS], size_t pairs) {
  static const int order[4] = {3, 2, 1, 4}; /* f1, recall, precision, mcc */
  static const char *const pretty[NMETRICS] = {"accuracy", "precision", "recall", "F1", "MCC", "ROC AUC", "PR AUC"};
  static const char *const lvl_word[NLEVELS] = {"patch-wise", "view-wise", "patient-wise"};
  mp_strbuf b = {0}, clear = {0}, sames = {0};
  char same[8][128]; /* per (sign, metric of order[]) with identical differences: "the recall for view-wise
                        and patient-wise classification" (nnov of them in all) */
  mp_strbuf_printf(&b, "%s vs baseline (%zu paired split%s):", v, pairs, pairs == 1 ? "" : "s");
  int clauses = 0, listed = 0, nclear = 0, nsame = 0, nnov = 0;
  for (int sign = 1; sign >= -1; sign -= 2)
    for (int k = 0; k < 4; k++) {
      int m = order[k], nl = 0, ns = 0;
      const char *w[NLEVELS], *ws[NLEVELS];
      char nums[NLEVELS][48];
      for (int l = 0; l < NLEVELS; l++) {
        double d = diff_mean[l][m];
        if (!isfinite(d) || d * sign < 5e-4) continue; /* below 0.05 points: printed as 0.0, not a change */
        w[nl] = lvl_word[l];
        if (isfinite(diff_std[l][m]))
          snprintf(nums[nl], sizeof nums[nl], "%.1f ± %.1f", fabs(d) * 100, diff_std[l][m] * 100);
        else
          snprintf(nums[nl], sizeof nums[nl], "%.1f", fabs(d) * 100);
        nl++, listed++;
        if (pairs >= 2 && nov[l][m]) /* the same on every split: no variance estimate, no interval */
          ws[ns++] = lvl_word[l], nnov++;
        else if (excludes_zero(lo[l][m], hi[l][m]))
          mp_strbuf_printf(&clear, "%s the %s for %s classification (%.1f to %.1f)", nclear++ ? ";" : "", pretty[m],
                           lvl_word[l], lo[l][m] * 100, hi[l][m] * 100);
      }
      if (!nl) continue;
      if (ns) {
        mp_strbuf t = {0};
        mp_strbuf_printf(&t, "the %s for ", pretty[m]);
        join_words(&t, ws, ns);
        snprintf(same[nsame++], sizeof same[0], "%s classification", mp_strbuf_str(&t));
        mp_strbuf_free(&t);
      }
      mp_strbuf_printf(&b, "%s %s the %s for ", clauses ? ";" : "", sign > 0 ? "improves" : "lowers", pretty[m]);
      join_words(&b, w, nl);
      mp_strbuf_printf(&b, " classification by ");
      const char *np[NLEVELS] = {nums[0], nums[1], nums[2]};
      join_words(&b, np, nl);
      mp_strbuf_printf(&b, " percentage points%s", nl > 1 ? " respectively" : "");
      clauses++;
    }
  if (!clauses) mp_strbuf_printf(&b, " no difference in F1, recall, precision or MCC at any level");
  mp_strbuf_printf(&b, ".");
  const int nint = listed - nnov; /* the listed differences with an interval */
  if (clauses && pairs < 2)
    mp_strbuf_printf(&b, " With one split these are single differences with no interval: more splits "
                         "(experiment.repeats) are needed to tell an effect from split-to-split variation.");
  if (clauses && pairs >= 2 && nsame) {
    const char *sw[8];
    for (int i = 0; i < nsame; i++) sw[i] = same[i];
    join_words(&sames, sw, nsame);
    mp_strbuf_printf(&b, " %s in %s %s identical on all %zu splits; no variance estimate, so no interval and no "
                         "claim that %s clear of split-to-split variation.",
                     nnov == 1 ? "The difference" : "The differences", mp_strbuf_str(&sames),
                     nnov == 1 ? "is" : "are each", pairs, nnov == 1 ? "it is" : "they are");
  }
  if (clauses && pairs >= 2 && nint > 0 && !nclear)
    mp_strbuf_printf(&b, " None of %s is clear of split-to-split variation: no 95%% interval of a mean paired "
                         "difference (Student t, %zu df) excludes 0.", nsame ? "the others" : "these", pairs - 1);
  else if (clauses && pairs >= 2 && nint > 0)
    mp_strbuf_printf(&b, " %s clear of split-to-split variation (95%% interval of the mean paired difference, Student t, "
                         "%zu df, in percentage points, excluding 0):%s%s.",
                     nclear == nint ? (nint == 1 ? (nsame ? "The other is" : "It is")
                                                 : (nsame ? "Each of the others is" : "Each of these is"))
                                    : (nclear == 1 ? "Only one is" : "Only these are"),
                     pairs - 1, mp_strbuf_str(&clear),
                     nclear == nint ? "" : "; the others' intervals contain 0");
  cJSON_AddItemToArray(out, cJSON_CreateString(mp_strbuf_str(&b)));
  mp_strbuf_free(&sames);
  mp_strbuf_free(&clear);
  mp_strbuf_free(&b);
}

/* The paired differences from the baseline (when a "baseline" variant is listed) and the
 * highlights of the per-split numbers vals[v][r][l][m] (NaN: none), into d as
 * "differences_from_baseline" and "highlights". */
static void add_differences(cJSON *d, const double *vals, char variants[][32], int nv, int R) {
#define VAL(v, r, l, m) vals[((((size_t)(v) * R + (r)) * NLEVELS + (l)) * NMETRICS) + (m)]
  double *col = mp_malloc(((size_t)R + 1) * sizeof *col);
  int base = -1;
  for (int v = 0; v < nv; v++)
    if (strcmp(variants[v], "baseline") == 0) base = v;
  cJSON *dif = cJSON_AddObjectToObject(d, "differences_from_baseline");
  cJSON *hl = cJSON_AddArrayToObject(d, "highlights");
  for (int v = 0; v < nv && base >= 0; v++) {
    if (v == base) continue;
    cJSON *dv = cJSON_AddObjectToObject(dif, variants[v]);
    double dm[NLEVELS][NMETRICS], ds[NLEVELS][NMETRICS], lo[NLEVELS][NMETRICS], hi[NLEVELS][NMETRICS];
    bool nov[NLEVELS][NMETRICS];
    size_t pairs = 0;
    for (int l = 0; l < NLEVELS; l++) {
      cJSON *dl = cJSON_AddObjectToObject(dv, levels[l]);
      for (int m = 0; m < NMETRICS; m++) {
        int higher = 0, lower = 0, equal = 0;
        double dmin = INFINITY, dmax = -INFINITY;
        for (int r = 0; r < R; r++) {
          col[r] = VAL(v, r, l, m) - VAL(base, r, l, m); /* NaN unless both exist */
          if (isfinite(col[r]))
            higher += col[r] > 0, lower += col[r] < 0, equal += col[r] == 0, dmin = fmin(dmin, col[r]),
                dmax = fmax(dmax, col[r]);
        }
        size_t n;
        mp_experiment_mean_std(col, (size_t)R, &dm[l][m], &ds[l][m], &n);
        if (n > pairs) pairs = n;
        /* the same difference on every pair: its std is 0 (or rounding noise) and a t interval
         * of no width would claim a difference "clear of variation" on no evidence */
        nov[l][m] = n >= 2 && dmax - dmin <= NO_VARIANCE_TOL;
        if (nov[l][m]) ds[l][m] = 0;
        cJSON *c = cJSON_AddObjectToObject(dl, metrics[m]);
        cJSON_AddNumberToObject(c, "pairs", (double)n);
        cJSON_AddItemToObject(c, "mean", num_or_null(dm[l][m]));
        cJSON_AddItemToObject(c, "std", num_or_null(ds[l][m]));
        /* the 95% interval of the mean paired difference: mean ± t_{0.975, n-1} std / sqrt(n) */
        lo[l][m] = hi[l][m] = NAN;
        if (n >= 2 && isfinite(ds[l][m]) && !nov[l][m]) {
          double half = mp_experiment_t975((int)n - 1) * ds[l][m] / sqrt((double)n);
          lo[l][m] = dm[l][m] - half, hi[l][m] = dm[l][m] + half;
          cJSON *ci = cJSON_AddArrayToObject(c, "ci95");
          cJSON_AddItemToArray(ci, cJSON_CreateNumber(lo[l][m]));
          cJSON_AddItemToArray(ci, cJSON_CreateNumber(hi[l][m]));
        } else {
          cJSON_AddNullToObject(c, "ci95");
        }
        cJSON_AddBoolToObject(c, "excludes_zero", excludes_zero(lo[l][m], hi[l][m]));
        cJSON_AddBoolToObject(c, "no_variance", nov[l][m]);
        cJSON_AddNumberToObject(c, "higher", higher);
        cJSON_AddNumberToObject(c, "lower", lower);
        cJSON_AddNumberToObject(c, "equal", equal);
      }
    }
    if (pairs)
      highlight_variant(hl, variants[v], (const double(*)[NMETRICS])dm, (const double(*)[NMETRICS])ds,
                        (const double(*)[NMETRICS])lo, (const double(*)[NMETRICS])hi, (const bool(*)[NMETRICS])nov,
                        pairs);
  }
  if (cJSON_GetArraySize(hl) == 0) {
    /* no augmented variant yet: say what the baseline reached, and that */
    mp_strbuf b = {0};
    int v = base >= 0 ? base : 0;
    mp_strbuf_printf(&b, "%s over %d split%s (mean ± std):", variants[v], R, R == 1 ? "" : "s");
    for (int l = 0; l < NLEVELS; l++) {
      double mean[2], sd[2];
      size_t n;
      for (int k = 0; k < 2; k++) {
        int m = k == 0 ? 3 : 4;
        for (int r = 0; r < R; r++) col[r] = VAL(v, r, l, m);
        mp_experiment_mean_std(col, (size_t)R, &mean[k], &sd[k], &n);
      }
      mp_strbuf_printf(&b, "%s %s F1 %.3f ± %.3f, MCC %.3f ± %.3f", l ? ";" : "", levels[l], mean[0], sd[0], mean[1],
                       sd[1]);
    }
    mp_strbuf_printf(&b, ". No augmented variant was evaluated, so there is no difference to report.");
    cJSON_AddItemToArray(hl, cJSON_CreateString(mp_strbuf_str(&b)));
    mp_strbuf_free(&b);
  }
#undef VAL
  mp_free(col);
}

cJSON *mp_experiment_aggregate(const mp_config *cfg, int K, int G, const char *store_path, const mp_experiment_job *jobs,
                               const int *status, const double *secs, int nj, int nv, int R, uint64_t seed0) {
  char variants[8][32];
  if (nv > 8) nv = 8;
  for (int v = 0; v < nv; v++) snprintf(variants[v], sizeof variants[v], "%s", jobs[v].variant);
  cJSON *d = cJSON_CreateObject();
  cJSON_AddItemToObject(d, "provenance", mp_json_provenance(cfg, K));
  cJSON_AddStringToObject(d, "store", store_path);
  cJSON_AddNumberToObject(d, "repeats", R);
  cJSON_AddNumberToObject(d, "first_split_seed", (double)seed0);
  cJSON_AddNumberToObject(d, "rank_groups", G);
  cJSON_AddNumberToObject(d, "ranks_per_group", K / G);
  cJSON *va = cJSON_AddArrayToObject(d, "variants");
  for (int v = 0; v < nv; v++) cJSON_AddItemToArray(va, cJSON_CreateString(variants[v]));
  cJSON_AddStringToObject(d, "std", "sample standard deviation over splits (n - 1); null with fewer than 2 splits");
  cJSON_AddStringToObject(d, "differences", differences_note);
  /* per-split raw numbers; vals[v][r][l][m] */
  size_t nval = (size_t)nv * R * NLEVELS * NMETRICS;
  double *vals = mp_malloc(nval * sizeof *vals);
  for (size_t i = 0; i < nval; i++) vals[i] = NAN;
#define VAL(v, r, l, m) vals[((((size_t)(v) * R + (r)) * NLEVELS + (l)) * NMETRICS) + (m)]
  cJSON *res = cJSON_AddArrayToObject(d, "results");
  for (int j = 0; j < nj; j++) {
    int v = j % nv, r = j / nv;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "variant", jobs[j].variant);
    cJSON_AddNumberToObject(o, "split_seed", (double)jobs[j].seed);
    cJSON_AddStringToObject(o, "status", job_status_name[status[j]]);
    cJSON_AddNumberToObject(o, "rank_group", jobs[j].group);
    cJSON_AddNumberToObject(o, "seconds", secs[j]);
    char rel[128];
    snprintf(rel, sizeof rel, "runs/%s/split-%llu", jobs[j].variant, (unsigned long long)jobs[j].seed);
    cJSON_AddStringToObject(o, "dir", rel); /* relative to the experiment directory */
    if (status[j] == JOB_DONE || status[j] == JOB_REUSED) {
      char path[4300], err[512];
      snprintf(path, sizeof path, "%s/eval.json", jobs[j].dir);
      cJSON *e = mp_json_read_file(path, err, sizeof err);
      if (!e) {
        MP_ERROR("%s", err);
        cJSON_ReplaceItemInObject(o, "status", cJSON_CreateString("failed"));
      } else {
        const cJSON *th = cJSON_GetObjectItem(e, "threshold"), *test = cJSON_GetObjectItem(e, "test");
        cJSON_AddItemToObject(o, "threshold", cJSON_Duplicate(th, 1));
        cJSON *lv = cJSON_AddObjectToObject(o, "test");
        for (int l = 0; l < NLEVELS; l++) {
          const cJSON *src = cJSON_GetObjectItem(test, levels[l]);
          cJSON *dst = cJSON_AddObjectToObject(lv, levels[l]);
          static const char *const keep[] = {"n", "positives", "confusion", "undefined"};
          for (int k = 0; k < 4; k++)
            if (cJSON_GetObjectItem(src, keep[k]))
              cJSON_AddItemToObject(dst, keep[k], cJSON_Duplicate(cJSON_GetObjectItem(src, keep[k]), 1));
          for (int m = 0; m < NMETRICS; m++) {
            double x = num_or_nan(src, metrics[m]);
            VAL(v, r, l, m) = x;
            cJSON_AddItemToObject(dst, metrics[m], num_or_null(x));
          }
        }
        cJSON_Delete(e);
      }
      /* what trained it (train.json's compute record; absent in runs that predate it) */
      snprintf(path, sizeof path, "%s/train.json", jobs[j].dir);
      cJSON *tj = mp_json_read_file(path, NULL, 0);
      const cJSON *cmp = cJSON_GetObjectItem(tj, "compute");
      if (cJSON_IsObject(cmp)) cJSON_AddItemToObject(o, "compute", cJSON_Duplicate(cmp, 1));
      cJSON_Delete(tj);
    }
    cJSON_AddItemToArray(res, o);
  }
  /* mean ± std per variant, level, metric */
  cJSON *sum = cJSON_AddObjectToObject(d, "summary");
  double *col = mp_malloc(((size_t)R + 1) * sizeof *col);
  for (int v = 0; v < nv; v++) {
    cJSON *sv = cJSON_AddObjectToObject(sum, variants[v]);
    for (int l = 0; l < NLEVELS; l++) {
      cJSON *sl = cJSON_AddObjectToObject(sv, levels[l]);
      for (int m = 0; m < NMETRICS; m++) {
        double mean, sd, lo = INFINITY, hi = -INFINITY;
        size_t n;
        for (int r = 0; r < R; r++) {
          col[r] = VAL(v, r, l, m);
          if (isfinite(col[r])) lo = fmin(lo, col[r]), hi = fmax(hi, col[r]);
        }
        mp_experiment_mean_std(col, (size_t)R, &mean, &sd, &n);
        cJSON *c = cJSON_AddObjectToObject(sl, metrics[m]);
        cJSON_AddNumberToObject(c, "n", (double)n);
        cJSON_AddItemToObject(c, "mean", num_or_null(mean));
        cJSON_AddItemToObject(c, "std", num_or_null(sd));
        cJSON_AddItemToObject(c, "min", num_or_null(n ? lo : NAN));
        cJSON_AddItemToObject(c, "max", num_or_null(n ? hi : NAN));
      }
    }
  }
  /* paired differences from the baseline, and the highlights */
  add_differences(d, vals, variants, nv, R);
#undef VAL
  mp_free(col);
  mp_free(vals);
  return d;
}

int mp_experiment_upgrade(cJSON *x, char *err, size_t errlen) {
  const cJSON *dif = cJSON_GetObjectItem(x, "differences_from_baseline"), *dv, *dl, *c;
  bool old = false;
  cJSON_ArrayForEach(dv, dif) cJSON_ArrayForEach(dl, dv) cJSON_ArrayForEach(c, dl) old |=
      !cJSON_GetObjectItem(c, "no_variance");
  if (!old) return 0;
  const cJSON *va = cJSON_GetObjectItem(x, "variants"), *res = cJSON_GetObjectItem(x, "results"), *e;
  const int nv = cJSON_GetArraySize(va), R = (int)num_or_nan(x, "repeats");
  const double seed0 = num_or_nan(x, "first_split_seed");
  if (nv < 1 || nv > 8 || !(R >= 1 && R <= 1000) || !isfinite(seed0) || !cJSON_IsArray(res))
    return snprintf(err, errlen, "experiment.json lacks its variants, repeats, first split seed or results"), -1;
  char variants[8][32];
  for (int v = 0; v < nv; v++) {
    const cJSON *n = cJSON_GetArrayItem(va, v);
    if (!cJSON_IsString(n)) return snprintf(err, errlen, "experiment.json: variants[%d] is not a name", v), -1;
    snprintf(variants[v], sizeof variants[v], "%s", n->valuestring);
  }
  size_t nval = (size_t)nv * R * NLEVELS * NMETRICS;
  double *vals = mp_malloc(nval * sizeof *vals);
  for (size_t i = 0; i < nval; i++) vals[i] = NAN;
  cJSON_ArrayForEach(e, res) { /* the per-split numbers, exactly as the record holds them */
    const cJSON *test = cJSON_GetObjectItem(e, "test"), *vn = cJSON_GetObjectItem(e, "variant");
    const double r = num_or_nan(e, "split_seed") - seed0;
    int v = -1;
    for (int k = 0; k < nv && cJSON_IsString(vn); k++)
      if (strcmp(variants[k], vn->valuestring) == 0) v = k;
    if (!test || v < 0 || !(r >= 0 && r < R)) continue;
    for (int l = 0; l < NLEVELS; l++)
      for (int m = 0; m < NMETRICS; m++)
        vals[((((size_t)v * R + (size_t)r) * NLEVELS + l) * NMETRICS) + m] =
            num_or_nan(cJSON_GetObjectItem(test, levels[l]), metrics[m]);
  }
  cJSON *fresh = cJSON_CreateObject();
  add_differences(fresh, vals, variants, nv, R);
  mp_free(vals);
  static const char *const keys[] = {"differences_from_baseline", "highlights"};
  for (int k = 0; k < 2; k++) {
    cJSON *item = cJSON_DetachItemFromObject(fresh, keys[k]);
    if (cJSON_GetObjectItem(x, keys[k])) cJSON_ReplaceItemInObject(x, keys[k], item);
    else cJSON_AddItemToObject(x, keys[k], item);
  }
  cJSON_Delete(fresh);
  if (cJSON_GetObjectItem(x, "differences")) cJSON_ReplaceItemInObject(x, "differences", cJSON_CreateString(differences_note));
  return 1;
}

#ifdef MP_WITH_GAN
/* The gan variant's job for one split (SPEC §7): the generator of the configuration the
 * sweep in experiment.gan_sweep chose — the sweep's own best run when the sweep was made
 * on this split (the same lesion patches: mp_gan_real_lesions_id), else that configuration
 * trained on this split's training lesions (FID extractor: this split's baseline) into
 * JOB/gan/ — then 2 x (training lesion patches) synthetic patches into JOB/synthetic.h5,
 * then the classifier with them.  Collective over the group.  Returns an MP_EXIT_* status. */
static int gan_job(MPI_Comm gc, const mp_config *cfg, const char *store, const char *out_dir, const job *j) {
  int rank;
  MPI_Comm_rank(gc, &rank);
  const char *sweep = mp_config_str(cfg, "experiment.gan_sweep");
  char base[4300], gdir[4400], syn[4400], err[1024] = "", best_run[4400] = "";
  snprintf(base, sizeof base, "%s/runs/baseline/split-%llu", out_dir, (unsigned long long)j->seed);
  snprintf(gdir, sizeof gdir, "%s/gan", j->dir);
  snprintf(syn, sizeof syn, "%s/synthetic.h5", j->dir);
  /* rank 0 reads the sweep's choice and the baseline's lesion count */
  double info[5] = {0, 0, 0, 0, 0}; /* ok, loss, filters, sn, sweep split == this split; */
  double lesions = 0;
  if (rank == 0) {
    char path[4500];
    if (mp_mkdir_p(j->dir, err, sizeof err) != 0) MP_ERROR("%s", err);
    snprintf(path, sizeof path, "%s/sweep.json", sweep);
    cJSON *sw = mp_json_read_file(path, err, sizeof err), *gj = NULL, *tj = NULL;
    const cJSON *b = cJSON_GetObjectItem(cJSON_GetObjectItem(sw, "best"), "run");
    if (cJSON_IsString(b)) {
      snprintf(best_run, sizeof best_run, "%s/runs/%s", sweep, b->valuestring);
      snprintf(path, sizeof path, "%s/gan.json", best_run);
      gj = mp_json_read_file(path, err, sizeof err);
    } else if (sw && snprintf(err, sizeof err, "'%s/sweep.json' names no best run", sweep) < 0)
      err[0] = 0;
    mp_gan_loss L;
    if (gj && mp_gan_loss_parse(cJSON_GetObjectItem(gj, "loss")->valuestring, &L) == 0) {
      info[0] = 1, info[1] = L, info[2] = cJSON_GetObjectItem(gj, "filters")->valuedouble;
      info[3] = cJSON_IsTrue(cJSON_GetObjectItem(gj, "sn_ttur"));
      info[4] = cJSON_GetObjectItem(gj, "split_seed")->valuedouble == (double)j->seed;
    }
    /* the same split seed is this split only when it gave the same lesion patches: a sweep made
     * on another store (or one made again with other settings) trained on other patches, maybe
     * this split's validation or test lesions among them */
    if (info[4]) {
      const cJSON *rl = cJSON_GetObjectItem(gj, "real_lesions_sha256");
      char here[65], e2[512];
      if (mp_gan_real_lesions_id(store, j->seed, here, e2, sizeof e2) != 0)
        info[0] = 0, snprintf(err, sizeof err, "%s", e2);
      else if (!cJSON_IsString(rl) || strcmp(rl->valuestring, here) != 0) {
        info[4] = 0;
        MP_WARN("gan variant, split %llu: the sweep's run %s %s: its configuration is trained on this split's "
                "lesions instead", (unsigned long long)j->seed, best_run,
                cJSON_IsString(rl) ? "trained on other lesion patches (another store?)"
                                   : "does not record the lesion patches it trained on (an older run)");
      }
    }
    snprintf(path, sizeof path, "%s/train.json", base);
    tj = info[0] ? mp_json_read_file(path, err, sizeof err) : NULL;
    const cJSON *nl = cJSON_GetObjectItem(tj, "train_lesion_patches");
    if (cJSON_IsNumber(nl)) lesions = nl->valuedouble;
    else info[0] = 0;
    cJSON_Delete(sw), cJSON_Delete(gj), cJSON_Delete(tj);
  }
  MP_CHECK_MPI(MPI_Bcast(info, 5, MPI_DOUBLE, 0, gc));
  MP_CHECK_MPI(MPI_Bcast(&lesions, 1, MPI_DOUBLE, 0, gc));
  if (!info[0]) {
    if (rank == 0) MP_ERROR("gan variant, split %llu: %s", (unsigned long long)j->seed, err[0] ? err : "no generator");
    return MP_EXIT_FAILURE;
  }
  char *gen = rank == 0 ? mp_strdup(info[4] ? best_run : gdir) : NULL; /* others: a copy arrives */
  mp_bcast_string(gc, 0, &gen);
  int rc = MP_EXIT_OK;
  if (!info[4]) { /* train the chosen configuration on this split (reused when this configuration finished it) */
    mp_gan_train_args ga = {store, gdir, base, j->seed, (mp_gan_loss)info[1], (int)info[2], info[3] != 0};
    char st[16] = "";
    int done = rank == 0 ? mp_gan_run_finished(gdir, cfg, &ga, st, sizeof st, err, sizeof err) : 0;
    if (done > 0 && strcmp(st, "completed") != 0) { /* diverged: no generator to sample */
      snprintf(err, sizeof err, "%.600s diverged", gdir);
      done = -1;
    }
    MP_CHECK_MPI(MPI_Bcast(&done, 1, MPI_INT, 0, gc));
    if (done < 0) {
      if (rank == 0) MP_ERROR("gan variant, split %llu: %s", (unsigned long long)j->seed, err);
      mp_free(gen);
      return MP_EXIT_FAILURE;
    }
    if (!done) rc = mp_gan_train_run(gc, cfg, &ga, NULL);
  }
  if (rc == MP_EXIT_OK) {
    mp_gan_sample_args sa = {gen, (uint64_t)(2 * lesions), j->seed, syn, store}; /* + the montage */
    rc = mp_gan_sample_run(gc, cfg, &sa);
  }
  if (rc == MP_EXIT_OK) {
    mp_train_args ta = {.store_path = store, .out_dir = j->dir, .variant = "gan", .split_seed = j->seed,
                        .resume = true, .synthetic_store = syn};
    rc = mp_train_run(gc, cfg, &ta);
  }
  mp_free(gen);
  return rc;
}
#endif

#ifdef MP_WITH_SMOTE
/* A smote-<dist> job for one split (SPEC §9): phase 2 on this split's baseline (its block 1)
 * into JOB/smote.h5, then phase 3 (that block 1 frozen) into JOB.  Collective over the
 * group.  Returns an MP_EXIT_* status. */
static int smote_job(MPI_Comm gc, const mp_config *cfg, const char *store, const char *out_dir, const job *j) {
  char base[4300], feat[4400], err[256];
  snprintf(base, sizeof base, "%s/runs/baseline/split-%llu", out_dir, (unsigned long long)j->seed);
  snprintf(feat, sizeof feat, "%s/smote.h5", j->dir);
  int rank, rc = 0;
  MPI_Comm_rank(gc, &rank);
  if (rank == 0 && mp_mkdir_p(j->dir, err, sizeof err) != 0) MP_ERROR("%s", err), rc = -1;
  MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, gc));
  if (rc) return MP_EXIT_FAILURE;
  mp_smote_args sa = {store, base, j->seed, MP_DIST_COSINE, (int)mp_config_int(cfg, "experiment.smote_k"), feat};
  mp_dist_parse(j->variant + 6, &sa.dist);
  int r = mp_smote_features_run(gc, cfg, &sa);
  if (r != MP_EXIT_OK) return r;
  mp_train_args ta = {.store_path = store, .out_dir = j->dir, .variant = j->variant, .split_seed = j->seed,
                      .resume = true, .smote_features = feat, .smote_block1 = base};
  return mp_train_run(gc, cfg, &ta);
}
#endif

/* ---- the run ------------------------------------------------------------------------------------ */
/* The configuration checks of a run on K ranks (see mp_experiment_check); the parsed
 * variants, their number, the groups and whether gan / smote variants are listed. */
static int check_config(const mp_config *cfg, int K, bool need_sweep, char variants[][32], int *nv, int *G,
                        int *has_gan, int *has_smote, char *err, size_t errlen) {
  const int R = (int)mp_config_int(cfg, "experiment.repeats");
  *has_gan = *has_smote = 0;
  *G = 1;
  if (parse_variants(mp_config_str(cfg, "experiment.variants"), variants, nv, err, errlen)) return -1;
  for (int v = 0; v < *nv; v++)
    *has_gan |= strcmp(variants[v], "gan") == 0, *has_smote |= strncmp(variants[v], "smote-", 6) == 0;
  const int nj = R * *nv;
  /* gan and smote need their split's baseline first: a split's jobs share a group, so
   * by default there are no more groups than splits */
  *G = mp_group_count(K, (int)mp_config_int(cfg, "experiment.groups"), *has_gan || *has_smote ? R : nj);
  if (*G > K || K % *G)
    return snprintf(err, errlen, "experiment.groups = %d must divide the %d ranks into equal groups", *G, K), -1;
  if (mp_config_int(cfg, "train.batch") % (K / *G))
    return snprintf(err, errlen, "train.batch = %lld is not a multiple of the %d ranks per group (experiment.groups = %d)",
                    mp_config_int(cfg, "train.batch"), K / *G, *G),
           -1;
  const long long bg = mp_config_int(cfg, "train.bn_group"), b = mp_config_int(cfg, "train.batch") / (K / *G);
  if (bg > 0 && b % bg)
    return snprintf(err, errlen, "train.bn_group = %lld does not divide the per-rank batch %lld (train.batch over the %d "
                    "ranks per group, experiment.groups = %d)", bg, b, K / *G, *G),
           -1;
  if (*has_smote && strcmp(variants[0], "baseline") != 0)
    return snprintf(err, errlen, "experiment.variants: the smote-* variants need baseline listed first (its block 1)"),
           -1;
  if (*has_gan && strcmp(variants[0], "baseline") != 0)
    return snprintf(err, errlen, "experiment.variants: the gan variant needs baseline listed first (its FID extractor)"),
           -1;
  if (*has_gan && need_sweep && !mp_config_str(cfg, "experiment.gan_sweep")[0])
    return snprintf(err, errlen,
                    "experiment.gan_sweep: the gan variant needs a finished `gan sweep` directory (its best "
                    "configuration makes each split's synthetic lesions)"),
           -1;
  return 0;
}

int mp_experiment_check(const mp_config *cfg, int K, bool need_sweep, char *err, size_t errlen) {
  char variants[8][32];
  int nv, G, has_gan, has_smote;
  return check_config(cfg, K, need_sweep, variants, &nv, &G, &has_gan, &has_smote, err, errlen);
}

int mp_experiment_run(MPI_Comm comm, const mp_config *cfg, const mp_experiment_args *a) {
  int rank, K;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &K);
  char err[1024] = "";
  char variants[8][32];
  int nv = 0, G, has_gan, has_smote;
  const int R = (int)mp_config_int(cfg, "experiment.repeats");
  const uint64_t seed0 = (uint64_t)mp_config_int(cfg, "experiment.split_seed");
  if (check_config(cfg, K, true, variants, &nv, &G, &has_gan, &has_smote, err, sizeof err)) {
    if (rank == 0) MP_ERROR("%s", err);
    return MP_EXIT_USAGE;
  }
  const int nj = R * nv;
  job *jobs = mp_malloc((size_t)nj * sizeof *jobs);
  for (int j = 0; j < nj; j++) {
    job *x = &jobs[j];
    snprintf(x->variant, sizeof x->variant, "%s", variants[j % nv]);
    x->seed = seed0 + (uint64_t)(j / nv);
    /* gan and smote need their split's baseline first: a split's jobs share a group */
    x->group = has_gan || has_smote ? (j / nv) % G : j % G;
    if (snprintf(x->dir, sizeof x->dir, "%s/runs/%s/split-%llu", a->out_dir, x->variant,
                 (unsigned long long)x->seed) >= (int)sizeof x->dir) {
      if (rank == 0) MP_ERROR("--out is too long");
      mp_free(jobs);
      return MP_EXIT_USAGE;
    }
  }
  /* before any work: the store opens, the output directory is writable, and every job
   * directory already there was made by this configuration */
  int *plan = mp_malloc((size_t)nj * sizeof *plan); /* 0 run (resume), 1 reuse, 2 eval only */
  int rc = 0;
  if (rank == 0) {
    mp_store *st = mp_store_open(a->store_path, err, sizeof err);
    uint64_t np = st ? mp_store_count(st) : 0;
    if (st) mp_store_close(st);
    if (!st) rc = -1;
    if (!rc && mp_mkdir_p(a->out_dir, err, sizeof err) != 0) rc = -1;
    for (int j = 0; j < nj && !rc; j++) {
      plan[j] = job_reusable(&jobs[j], cfg, a->store_path, np, err, sizeof err);
      if (plan[j] < 0) rc = -1;
    }
  }
  MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, comm));
  if (rc) {
    if (rank == 0) MP_ERROR("%s", err);
    mp_free(jobs), mp_free(plan);
    return MP_EXIT_USAGE;
  }
  MP_CHECK_MPI(MPI_Bcast(plan, nj, MPI_INT, 0, comm));
  int reused = 0;
  for (int j = 0; j < nj; j++) reused += plan[j] == 1;
  MP_INFO("experiment: %d variant%s x %d split%s (seeds %llu..%llu) = %d jobs on %d rank group%s of %d; %d reused",
          nv, nv == 1 ? "" : "s", R, R == 1 ? "" : "s", (unsigned long long)seed0,
          (unsigned long long)(seed0 + (uint64_t)R - 1), nj, G, G == 1 ? "" : "s", K / G, reused);
  /* the groups: contiguous ranks (a node's ranks stay together) */
  mp_group grp;
  mp_group_split(comm, G, &grp);
  mp_backend_gpu_plan(cfg, comm, grp.group);
  const int g = grp.group, grank = grp.rank;
  MPI_Comm gc = grp.comm;
  mp_signal_catch_stop();
  int *status = mp_malloc((size_t)nj * sizeof *status);
  double *secs = mp_malloc((size_t)nj * sizeof *secs);
  memset(status, 0, (size_t)nj * sizeof *status);
  for (int j = 0; j < nj; j++) secs[j] = 0;
  for (int j = 0; j < nj; j++) {
    if (jobs[j].group != g) continue;
    int sig = mp_signal_stop();
    MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, gc));
    if (sig) break; /* a signal between jobs: stop before starting another */
    double t0 = mp_now();
    int st = JOB_REUSED;
    if (plan[j] != 1) {
      int r2 = MP_EXIT_OK;
#ifdef MP_WITH_GAN
      if (plan[j] == 0 && strcmp(jobs[j].variant, "gan") == 0) r2 = gan_job(gc, cfg, a->store_path, a->out_dir, &jobs[j]);
      else
#endif
#ifdef MP_WITH_SMOTE
      if (plan[j] == 0 && strncmp(jobs[j].variant, "smote-", 6) == 0)
        r2 = smote_job(gc, cfg, a->store_path, a->out_dir, &jobs[j]);
      else
#endif
      if (plan[j] == 0) {
        mp_train_args ta = {.store_path = a->store_path, .out_dir = jobs[j].dir, .variant = jobs[j].variant,
                            .split_seed = jobs[j].seed, .resume = true};
        r2 = mp_train_run(gc, cfg, &ta);
      }
      if (r2 == MP_EXIT_OK) {
        mp_eval_args ea = {a->store_path, jobs[j].dir, NULL};
        r2 = mp_eval_run(gc, cfg, &ea);
      }
      st = r2 == MP_EXIT_OK ? JOB_DONE : r2 == MP_EXIT_INTERRUPTED ? JOB_INTERRUPTED : JOB_FAILED;
    }
    if (grank == 0) status[j] = st, secs[j] = mp_now() - t0;
    if (rank == 0)
      MP_INFO("experiment: job %d/%d (%s, split %llu) %s in %.0f s", j + 1, nj, jobs[j].variant,
              (unsigned long long)jobs[j].seed, job_status_name[st], mp_now() - t0);
    if (st == JOB_INTERRUPTED) break;
  }
  mp_group_free(&grp);
  mp_barrier_quiet(comm); /* groups done early wait here without taking a core */
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, status, nj, MPI_INT, MPI_MAX, comm));
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, secs, nj, MPI_DOUBLE, MPI_MAX, comm));
  int n_ok = 0, n_failed = 0, n_int = 0;
  for (int j = 0; j < nj; j++) {
    n_ok += status[j] == JOB_DONE || status[j] == JOB_REUSED;
    n_failed += status[j] == JOB_FAILED;
    n_int += status[j] == JOB_INTERRUPTED || status[j] == JOB_NOT_RUN;
  }
  int result = n_int ? MP_EXIT_INTERRUPTED : n_failed ? MP_EXIT_FAILURE : MP_EXIT_OK;
  if (rank == 0) {
    cJSON *d = mp_experiment_aggregate(cfg, K, G, a->store_path, jobs, status, secs, nj, nv, R, seed0);
    cJSON_AddStringToObject(d, "status", n_int ? "interrupted (rerun to continue)" : n_failed ? "some jobs failed"
                                                                                             : "complete");
    char path[4300];
    snprintf(path, sizeof path, "%s/experiment.json", a->out_dir);
    if (mp_json_write_file(path, d, err, sizeof err) != 0) {
      MP_ERROR("%s", err);
      result = MP_EXIT_FAILURE;
    }
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItem(d, "highlights")) MP_INFO("%s", h->valuestring);
    if (n_ok > 0) {
      if (mp_report_write(a->out_dir, a->store_path, cfg, d, err, sizeof err) != 0) {
        MP_ERROR("report: %s", err);
        result = MP_EXIT_FAILURE;
      } else
        MP_INFO("report: %s/report/index.html (and report.md, CSV, JSON)", a->out_dir);
    }
    MP_INFO("experiment: %d of %d jobs with results, %d failed, %d not finished; %s", n_ok, nj, n_failed, n_int, path);
    cJSON_Delete(d);
  }
  MP_CHECK_MPI(MPI_Bcast(&result, 1, MPI_INT, 0, comm));
  mp_free(jobs), mp_free(plan), mp_free(status), mp_free(secs);
  return result;
}
