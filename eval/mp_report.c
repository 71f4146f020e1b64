/* mp_report — the experiment report (see mp_report.h).
 *
 * Everything is derived from DIR/experiment.json, the jobs' eval.json / train.json and
 * the patch store (file counts, patch statistics, montage pixels); nothing here
 * recomputes a metric.  The HTML is written for print as well as screen (plain tables,
 * fixed-size SVG), and carries no script: the charts are static SVG. */
#include "mp_report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_build_config.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_png.h"
#include "mp_store.h"
#include "mp_svg.h"

static const char *const levels[3] = {"patch", "view", "patient"};
static const char *const metrics[7] = {"accuracy", "precision", "recall", "f1", "mcc", "roc_auc", "pr_auc"};
static const char *const pretty[7] = {"accuracy", "precision", "recall", "F1", "MCC", "ROC AUC", "PR AUC"};
enum { NLEVELS = 3, NMETRICS = 7 };

void mp_report_base64(mp_strbuf *out, const unsigned char *p, size_t n) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char q[4];
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    q[0] = t[v >> 18 & 63], q[1] = t[v >> 12 & 63];
    q[2] = i + 1 < n ? t[v >> 6 & 63] : '=';
    q[3] = i + 2 < n ? t[v & 63] : '=';
    mp_strbuf_append(out, q, 4);
  }
}

/* ---- small helpers ------------------------------------------------------------------------------ */
static double num(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void fmt(char *b, size_t n, double v, int dec) {
  if (isfinite(v)) snprintf(b, n, "%.*f", dec, v);
  else snprintf(b, n, "—");
}

/* "0.912 ± 0.031" (or just the mean with one split) */
static void fmt_pm(char *b, size_t n, const cJSON *c, double scale, int dec) {
  double m = num(c, "mean") * scale, s = num(c, "std") * scale;
  if (!isfinite(m)) snprintf(b, n, "—");
  else if (!isfinite(s)) snprintf(b, n, "%.*f", dec, m);
  else snprintf(b, n, "%.*f ± %.*f", dec, m, dec, s);
}

static int write_text(const char *dir, const char *name, const char *text, char *err, size_t errlen) {
  char path[4400];
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
    snprintf(err, errlen, "path too long");
    return -1;
  }
  return mp_write_file_atomic(path, text, strlen(text), err, errlen);
}

/* One job with results: its documents. */
typedef struct {
  const cJSON *res; /* the experiment.json results[] entry */
  cJSON *eval, *train;
  const char *variant;
  double seed;
  int vi; /* variant index */
} run;

/* What computed a set of runs (each one's compute record, mp_backend_compute_json): every
 * distinct engine line with the number of runs it computed, their ranks, batch-norm statistics
 * groups (the record's bn_batch) and gradient means, so a reader sees the hardware, libraries,
 * precision and layout behind the numbers (or that they were mixed).
 * rec[i]: run i's record-bearing file (train.json, gan.json) or NULL where it could not be read
 * (not counted); runs made before the record existed are counted as unrecorded.  noun: "job" or
 * "run"; file: the record's file, named where there are more engines than listed; id: the note's
 * HTML id; what: how the note begins ("Trained on "). */
static void compute_note(mp_strbuf *h, mp_strbuf *md, const cJSON *const *rec, int n, const char *noun,
                         const char *file, const char *id, const char *what) {
  enum { MAXE = 16 };
  const char *line[MAXE];
  int jobs[MAXE], ne = 0, other = 0, unrec = 0;
  char how[MAXE][160];
  for (int i = 0; i < n; i++) {
    const cJSON *c = cJSON_GetObjectItem(rec[i], "compute"), *eng = cJSON_GetObjectItem(c, "engines");
    if (!cJSON_IsArray(eng) || !cJSON_GetArraySize(eng)) {
      unrec += rec[i] != NULL;
      continue;
    }
    const cJSON *g;
    cJSON_ArrayForEach(g, eng) {
      const char *l = cJSON_GetStringValue(cJSON_GetObjectItem(g, "engine"));
      if (!l) continue;
      int k = 0;
      while (k < ne && strcmp(line[k], l) != 0) k++;
      if (k == ne && ne == MAXE) {
        other++;
        continue;
      }
      const char *gm = cJSON_GetStringValue(cJSON_GetObjectItem(c, "gradient_mean"));
      const double bn = num(rec[i], "bn_batch"); /* samples per batch-norm statistics group (NAN: older runs) */
      char mine[160], bns[64] = "";
      if (bn > 0) snprintf(bns, sizeof bns, ", batch-norm statistics over %.0f sample%s", bn, bn == 1 ? "" : "s");
      snprintf(mine, sizeof mine, "%.0f rank%s a %s%s, gradients: %s", num(c, "ranks"), num(c, "ranks") == 1 ? "" : "s",
               noun, bns, gm ? gm : "not recorded");
      if (k == ne) line[ne] = l, jobs[ne] = 0, snprintf(how[ne], sizeof how[ne], "%s", mine), ne++;
      else if (strcmp(how[k], mine) != 0)
        snprintf(how[k], sizeof how[k], "ranks, batch-norm groups or gradient means differ between %ss", noun);
      jobs[k]++;
    }
  }
  if (!ne && !unrec) return;
  if (!ne) {
    char these[64];
    if (unrec == 1) snprintf(these, sizeof these, "this %s", noun);
    else snprintf(these, sizeof these, "these %d %ss", unrec, noun);
    mp_strbuf_printf(h, "<p class=\"note\" id=\"%s\">What computed %s is not recorded (made before mammopatch "
                        "recorded it).</p>\n", id, these);
    mp_strbuf_printf(md, "\nWhat computed %s is not recorded (made before mammopatch recorded it).\n", these);
    return;
  }
  mp_strbuf_printf(h, "<p class=\"note\" id=\"%s\">%s", id, what);
  mp_strbuf_printf(md, "\n%s", what);
  for (int k = 0; k < ne; k++) {
    mp_strbuf_printf(h, "%s<code>", k ? "; " : "");
    mp_svg_escape(h, line[k]);
    mp_strbuf_printf(h, "</code> (%d %s%s; %s)", jobs[k], noun, jobs[k] == 1 ? "" : "s", how[k]);
    mp_strbuf_printf(md, "%s`%s` (%d %s%s; %s)", k ? "; " : "", line[k], jobs[k], noun, jobs[k] == 1 ? "" : "s", how[k]);
  }
  if (other) { /* beyond MAXE distinct lines: named in the runs' own records */
    mp_strbuf_printf(h, "; and more engines (see each %s's %s)", noun, file);
    mp_strbuf_printf(md, "; and more engines (see each %s's %s)", noun, file);
  }
  if (unrec) {
    mp_strbuf_printf(h, "; %d %s%s without a record (made before mammopatch recorded it)", unrec, noun, unrec == 1 ? "" : "s");
    mp_strbuf_printf(md, "; %d %s%s without a record (made before mammopatch recorded it)", unrec, noun,
                     unrec == 1 ? "" : "s");
  }
  char mixed[200] = "";
  if (ne > 1)
    snprintf(mixed, sizeof mixed, " More than one engine computed these %ss: differences between %ss may come from that "
                                  "alone (rounding, precision).", noun, noun);
  mp_strbuf_printf(h, ".%s</p>\n", mixed);
  mp_strbuf_printf(md, ".%s\n", mixed);
}

/* ---- preprocessing (Table 3.2 form) and patch statistics from the store -------------------------- */
/* the store's outcome counts (mp_store_outcomes), every one but accepted, in their order */
enum { NCRIT = MP_STORE_OUTCOMES - 1 };

typedef struct {
  int have_files;
  double found, discarded[NCRIT];
  uint64_t patches, lesion, normal, views, patients, les_birads[3], pat_lesion, pat_normal_only;
} store_stats;

static int read_store(const char *path, store_stats *s, uint8_t **montage, int *mw, int *mh, char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  mp_store *st = mp_store_open(path, err, errlen);
  if (!st) return -1;
  cJSON *at = mp_store_attributes(st);
  s->have_files = cJSON_IsNumber(cJSON_GetObjectItem(at, "files_found"));
  s->found = num(at, "files_found");
  for (int i = 0; i < NCRIT; i++) {
    char name[64];
    mp_store_outcome_attr(i + 1, name, sizeof name);
    s->discarded[i] = num(at, name);
  }
  cJSON_Delete(at);
  uint64_t n = mp_store_count(st);
  uint8_t *lab = mp_malloc(n + 1);
  uint32_t *view = mp_malloc((n + 1) * sizeof *view);
  mp_store_tables tb;
  int rc = mp_store_read_labels(st, lab) | mp_store_read_views(st, view) | mp_store_read_tables(st, &tb);
  if (rc) {
    snprintf(err, errlen, "cannot read the tables of '%s'", path);
    mp_free(lab), mp_free(view), mp_store_close(st);
    return -1;
  }
  s->patches = n, s->views = tb.nviews, s->patients = tb.npatients;
  uint8_t *pl = mp_malloc(tb.npatients + 1), *pn = mp_malloc(tb.npatients + 1);
  memset(pl, 0, tb.npatients + 1), memset(pn, 0, tb.npatients + 1);
  for (uint64_t i = 0; i < n; i++) {
    uint32_t p = tb.view_patient[view[i]];
    if (lab[i]) {
      s->lesion++, pl[p] = 1;
      int b = tb.view_birads[view[i]];
      if (b >= 0 && b <= 2) s->les_birads[b]++;
    } else
      s->normal++, pn[p] = 1;
  }
  for (uint64_t p = 0; p < tb.npatients; p++) s->pat_lesion += pl[p], s->pat_normal_only += pn[p] && !pl[p];
  /* montage: up to 16 lesion and 16 normal patches, evenly spaced over the store, as
   * 4 rows of 8 (lesions on top) with 4-pixel gaps and a 12-pixel band between */
  int P = mp_store_patch_size(st);
  uint64_t pick[32];
  int npick[2] = {0, 0};
  for (int c = 1; c >= 0; c--) {
    uint64_t have = c ? s->lesion : s->normal, want = have < 16 ? have : 16, k = 0, seen = 0;
    for (uint64_t i = 0; i < n && k < want; i++)
      if ((lab[i] != 0) == c) {
        if (seen == k * have / want) pick[(1 - c) * 16 + k++] = i;
        seen++;
      }
    npick[1 - c] = (int)k;
  }
  uint8_t *px = mp_malloc(((size_t)npick[0] + npick[1] + 1) * P * P);
  int got = 0;
  for (int c = 0; c < 2; c++)
    for (int k = 0; k < npick[c]; k++) {
      uint64_t idx = pick[c * 16 + k];
      if (mp_store_read_pixels_at(st, &idx, 1, px + (size_t)got * P * P) != 0) memset(px + (size_t)got * P * P, 0, (size_t)P * P);
      got++;
    }
  *montage = npick[0] + npick[1] ? mp_report_montage(px, npick[0], px + (size_t)npick[0] * P * P, npick[1], P, mw, mh)
                                 : NULL;
  mp_free(px);
  mp_free(pl), mp_free(pn), mp_free(lab), mp_free(view);
  mp_store_tables_free(&tb);
  mp_store_close(st);
  return 0;
}

uint8_t *mp_report_montage(const uint8_t *top, int ntop, const uint8_t *bottom, int nbottom, int P, int *w, int *h) {
  const int cols = 8, gap = 4, band = 12;
  int rt = (ntop + cols - 1) / cols, rb = (nbottom + cols - 1) / cols;
  *w = cols * P + (cols + 1) * gap;
  *h = (rt + rb) * (P + gap) + gap + (rt && rb ? band : 0);
  uint8_t *m = mp_malloc((size_t)*w * *h);
  memset(m, 255, (size_t)*w * *h);
  for (int part = 0; part < 2; part++)
    for (int k = 0; k < (part ? nbottom : ntop); k++) {
      const uint8_t *src = (part ? bottom : top) + (size_t)k * P * P;
      int r = (part ? rt : 0) + k / cols, x0 = gap + (k % cols) * (P + gap);
      int y0 = gap + r * (P + gap) + (part && rt ? band : 0);
      for (int y = 0; y < P; y++) memcpy(m + (size_t)(y0 + y) * *w + x0, src + (size_t)y * P, (size_t)P);
    }
  return m;
}

/* ---- charts ------------------------------------------------------------------------------------- */
/* ROC or PR curves of one level: a series per (variant, split); coloured by variant, or by
 * split when there is one variant. */
static void curve_chart(mp_strbuf *o, const run *runs, int nr, int nv, int level, int pr) {
  mp_svg_series *s = mp_malloc(((size_t)nr + 1) * sizeof *s);
  double **buf = mp_malloc(((size_t)nr + 1) * 2 * sizeof *buf);
  char(*names)[64] = mp_malloc(((size_t)nr + 1) * sizeof *names);
  int ns = 0;
  for (int i = 0; i < nr; i++) {
    const cJSON *pts =
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(runs[i].eval, "test"), levels[level]), pr ? "pr" : "roc");
    int n = cJSON_GetArraySize(pts);
    if (n == 0) continue;
    double *x = mp_malloc((size_t)n * sizeof *x), *y = mp_malloc((size_t)n * sizeof *y);
    for (int k = 0; k < n; k++) {
      const cJSON *p = cJSON_GetArrayItem(pts, k);
      x[k] = cJSON_GetArrayItem(p, 0)->valuedouble, y[k] = cJSON_GetArrayItem(p, 1)->valuedouble;
    }
    snprintf(names[ns], sizeof names[ns], "%s s%.0f", runs[i].variant, runs[i].seed);
    buf[2 * ns] = x, buf[2 * ns + 1] = y;
    s[ns] = (mp_svg_series){names[ns], mp_svg_color((size_t)(nv == 1 ? i : runs[i].vi)), x, y, (size_t)n, 0, 0};
    ns++;
  }
  char title[96];
  snprintf(title, sizeof title, "%s curve, %s level (test splits)", pr ? "Precision-recall" : "ROC", levels[level]);
  mp_svg_chart c = {pr ? "pr" : "roc", title, pr ? "recall" : "false positive rate",
                    pr ? "precision" : "true positive rate", 0, 1, 0, 1.02, 0, 0, !pr};
  if (ns) mp_svg_lines(o, &c, s, (size_t)ns);
  for (int i = 0; i < 2 * ns; i++) mp_free(buf[i]);
  mp_free(buf), mp_free(s), mp_free(names);
}

/* Training curves: loss (training solid, validation dashed) or validation MCC per epoch. */
static void training_chart(mp_strbuf *o, const run *runs, int nr, int nv, int mcc) {
  mp_svg_series *s = mp_malloc(((size_t)nr * 2 + 1) * sizeof *s);
  double **buf = mp_malloc(((size_t)nr * 4 + 1) * sizeof *buf);
  char(*names)[64] = mp_malloc(((size_t)nr * 2 + 1) * sizeof *names);
  int ns = 0, nb = 0;
  for (int i = 0; i < nr; i++) {
    const cJSON *curve = cJSON_GetObjectItem(runs[i].train, "curve");
    int n = cJSON_GetArraySize(curve);
    if (!n) continue;
    for (int k = 0; k < (mcc ? 1 : 2); k++) {
      double *x = mp_malloc((size_t)n * sizeof *x), *y = mp_malloc((size_t)n * sizeof *y);
      for (int e = 0; e < n; e++) {
        const cJSON *ep = cJSON_GetArrayItem(curve, e), *val = cJSON_GetObjectItem(ep, "validation");
        x[e] = num(ep, "epoch");
        y[e] = mcc ? num(val, "mcc") : k == 0 ? num(ep, "train_loss") : num(val, "loss");
      }
      snprintf(names[ns], sizeof names[ns], "%s s%.0f%s", runs[i].variant, runs[i].seed,
               mcc ? "" : k == 0 ? " train" : " val");
      buf[nb++] = x, buf[nb++] = y;
      s[ns] = (mp_svg_series){names[ns], mp_svg_color((size_t)(nv == 1 ? i : runs[i].vi)), x, y, (size_t)n, k == 1, 0};
      ns++;
    }
  }
  mp_svg_chart c = {"training",
                    mcc ? "Validation MCC per epoch" : "Loss per epoch (training solid, validation dashed)",
                    "epoch",
                    mcc ? "validation MCC" : "binary cross-entropy",
                    0,
                    0,
                    mcc ? -0.05 : 0,
                    mcc ? 1.02 : 0,
                    0,
                    0,
                    0};
  if (ns) mp_svg_lines(o, &c, s, (size_t)ns);
  for (int i = 0; i < nb; i++) mp_free(buf[i]);
  mp_free(buf), mp_free(s), mp_free(names);
}

/* Bars: metric m's mean ± std per level, one bar per variant. */
static void bar_chart(mp_strbuf *o, const cJSON *summary, const char *const *vnames, int nv, int m) {
  double v[NLEVELS * 8], e[NLEVELS * 8];
  const char *colors[8];
  for (int k = 0; k < nv; k++) colors[k] = mp_svg_color((size_t)k);
  for (int l = 0; l < NLEVELS; l++)
    for (int k = 0; k < nv; k++) {
      const cJSON *c = cJSON_GetObjectItem(
          cJSON_GetObjectItem(cJSON_GetObjectItem(summary, vnames[k]), levels[l]), metrics[m]);
      v[l * nv + k] = num(c, "mean"), e[l * nv + k] = num(c, "std");
    }
  char title[64];
  snprintf(title, sizeof title, "%s by level (mean ± std over splits)", pretty[m]);
  mp_svg_chart c = {"bar", title, "level", pretty[m], 0, 0, m == 4 ? -0.05 : 0, 1.05, 0, 0, 0};
  mp_svg_bars(o, &c, levels, NLEVELS, vnames, colors, (size_t)nv, v, e);
}

/* An <img> with the PNG file embedded (data: URI); width and height given when > 0.
 * 0, or -1 with err when the file cannot be read. */
static int embed_png(mp_strbuf *h, const char *path, const char *cls, const char *alt, int w, int ht, char *err,
                     size_t errlen) {
  size_t len = 0;
  char *png = mp_read_file(path, &len, err, errlen);
  if (!png) return -1;
  mp_strbuf_printf(h, "<img class=\"%s\" alt=\"%s\"", cls, alt);
  if (w > 0 && ht > 0) mp_strbuf_printf(h, " width=\"%d\" height=\"%d\"", w, ht);
  mp_strbuf_printf(h, " src=\"data:image/png;base64,");
  mp_report_base64(h, (const unsigned char *)png, len);
  mp_strbuf_printf(h, "\">");
  mp_free(png);
  return 0;
}

/* ---- the configuration the experiment recorded -------------------------------------------------- */
/* A recorded configuration value (as mp_config_to_json writes it) as INI text. */
static void ini_value(char *b, size_t n, const cJSON *v) {
  if (cJSON_IsBool(v)) snprintf(b, n, "%s", cJSON_IsTrue(v) ? "true" : "false");
  else if (cJSON_IsNumber(v)) {
    double d = v->valuedouble;
    if (d == floor(d) && fabs(d) < 9007199254740992.0) snprintf(b, n, "%.0f", d);
    else {
      snprintf(b, n, "%.15g", d);
      if (strtod(b, NULL) != d) snprintf(b, n, "%.17g", d);
    }
  } else if (cJSON_IsString(v)) snprintf(b, n, "%s", v->valuestring);
  else {
    char *t = cJSON_PrintUnformatted(v);
    snprintf(b, n, "%s", t ? t : "");
    free(t);
  }
}

/* The configuration recorded in experiment.json (provenance.config: {"section": {"name":
 * value}}) as INI text, in the order of this build's schema with its help lines (taken
 * from cfg, whose values are not used).  A schema key the record lacks (newer than the
 * experiment) is shown at its default and marked so (its default keeps the behaviour the
 * experiment had, mp_params_is_default); a recorded key this build does not know is kept,
 * marked, after the rest.  Caller frees with mp_free. */
static void recorded_value(void *ctx, const mp_cfg_key *k, char *val, size_t cap, char *note, size_t ncap) {
  const char *dot = strchr(k->key, '.');
  char section[128];
  snprintf(section, sizeof section, "%.*s", (int)(dot - k->key), k->key);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ctx, section), dot + 1);
  if (v) {
    ini_value(val, cap, v);
  } else {
    snprintf(note, ncap, "(not in the record: a key newer than the experiment; its default keeps what it ran with)");
    snprintf(val, cap, "%s", k->def);
  }
}

static char *recorded_ini(const cJSON *rec, const mp_config *cfg) {
  size_t n = 0;
  const mp_cfg_key *schema = mp_config_schema(cfg, &n);
  char *known_part = mp_config_ini_with(cfg, recorded_value, (void *)rec), val[1024];
  mp_strbuf o = {0};
  mp_strbuf_printf(&o, "%s", known_part);
  mp_free(known_part);
  /* recorded keys this build's schema does not know */
  const cJSON *sec, *v;
  int unknown = 0;
  cJSON_ArrayForEach(sec, rec) cJSON_ArrayForEach(v, sec) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", sec->string, v->string);
    bool known = false;
    for (size_t i = 0; i < n && !known; i++) known = strcmp(schema[i].key, key) == 0;
    if (known) continue;
    if (!unknown++) mp_strbuf_printf(&o, "\n; recorded keys this version of mammopatch does not know:\n");
    ini_value(val, sizeof val, v);
    mp_strbuf_printf(&o, "[%s]\n%s = %s\n", sec->string, v->string, val);
  }
  char *out = mp_strdup(mp_strbuf_str(&o));
  mp_strbuf_free(&o);
  return out;
}

/* Whether two paths name the same file (the same text, or the same real path). */
static bool same_path(const char *a, const char *b) {
  if (strcmp(a, b) == 0) return true;
  char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
  bool same = ra && rb && strcmp(ra, rb) == 0;
  free(ra), free(rb);
  return same;
}

/* The GAN section: the sweep's table (Table 4.4 form), its FID-per-epoch chart (Figure
 * 4.2 form) and real vs synthetic lesion patches (Figure 4.1 form) of the first gan job.
 * sweep: where its files are read from; recorded: the experiment's experiment.gan_sweep,
 * named beside it when it is another directory (a sweep moved since, given to `report`). */
static void gan_section(mp_strbuf *h, mp_strbuf *md, const char *sweep, const char *recorded, const char *dir,
                        const run *runs, int nr) {
  char path[4400], e2[512];
  snprintf(path, sizeof path, "%s/sweep.json", sweep);
  cJSON *sw = mp_json_read_file(path, e2, sizeof e2);
  mp_strbuf_printf(h, "<section id=\"gan\"><h2>GAN augmentation</h2>\n");
  mp_strbuf_printf(md, "\n## GAN augmentation\n\n");
  if (!same_path(sweep, recorded)) {
    mp_strbuf_printf(h, "<p class=\"note\" id=\"gan-source\">The sweep's results are read from ");
    mp_svg_escape(h, sweep);
    mp_strbuf_printf(h, " (experiment.gan_sweep given to <code>mammopatch report</code>); the experiment ran with "
                        "experiment.gan_sweep = ");
    mp_svg_escape(h, recorded);
    mp_strbuf_printf(h, ".</p>\n");
    mp_strbuf_printf(md, "The sweep's results are read from `%s` (experiment.gan_sweep given to `mammopatch report`); "
                         "the experiment ran with experiment.gan_sweep = `%s`.\n\n", sweep, recorded);
  }
  if (!sw) {
    mp_strbuf_printf(h, "<p>The sweep in ");
    mp_svg_escape(h, sweep);
    mp_strbuf_printf(h, " could not be read.</p></section>\n");
    return;
  }
  const cJSON *fi = cJSON_GetObjectItem(sw, "fid"), *r;
  const char *ex = cJSON_IsString(cJSON_GetObjectItem(fi, "extractor")) ? cJSON_GetObjectItem(fi, "extractor")->valuestring
                                                                         : "?";
  bool has_is = false;
  cJSON_ArrayForEach(r, cJSON_GetObjectItem(sw, "runs")) has_is |= isfinite(num(r, "best_is"));
  /* SPEC §8: N beside every FID, flagged below the feature dimension, and the floor's own N */
  const bool deficient = cJSON_IsTrue(cJSON_GetObjectItem(fi, "rank_deficient"));
  const char *flag = deficient ? " (N below the feature dimension: singular covariances, FID biased upward)" : "";
  const cJSON *fn = cJSON_GetObjectItem(fi, "real_vs_real_floor_n");
  char fl[64] = "";
  if (cJSON_GetArraySize(fn) == 2)
    snprintf(fl, sizeof fl, " (two halves, N %.0f / %.0f)", cJSON_GetArrayItem(fn, 0)->valuedouble,
             cJSON_GetArrayItem(fn, 1)->valuedouble);
  mp_strbuf_printf(h, "<table id=\"gan-sweep\"><caption>Sweep (Table 4.4 form): best FID per run, extractor %s "
                      "(%.0f-d), N real %.0f / generated %.0f%s, real-vs-real floor %.2f%s, split %.0f. %s</caption><tr>"
                      "<th>loss</th><th>filters</th><th>SN/TTUR</th><th>status</th><th>best FID</th><th>IS</th>"
                      "<th>epoch</th></tr>\n",
                   ex, num(fi, "dimension"), num(fi, "n_real"), num(fi, "n_generated"), flag,
                   num(fi, "real_vs_real_floor"), fl, num(sw, "split_seed"),
                   has_is ? "IS: Inception Score (± std over 10 splits) of the best-FID epoch's generated set."
                          : "IS: not computed (needs the inception extractor, gan.inception_weights).");
  mp_strbuf_printf(md, "Sweep: extractor `%s` (%.0f-d), N real %.0f / generated %.0f%s, real-vs-real floor %.2f%s.\n\n"
                       "| loss | filters | SN/TTUR | status | best FID | IS |\n|---|---:|---|---|---:|---:|\n",
                   ex, num(fi, "dimension"), num(fi, "n_real"), num(fi, "n_generated"), flag,
                   num(fi, "real_vs_real_floor"), fl);
  cJSON_ArrayForEach(r, cJSON_GetObjectItem(sw, "runs")) {
    char f[32], is[64] = "—";
    fmt(f, sizeof f, num(r, "best_fid"), 1);
    if (isfinite(num(r, "best_is"))) snprintf(is, sizeof is, "%.2f ± %.2f", num(r, "best_is"), num(r, "best_is_std"));
    const char *loss = cJSON_GetObjectItem(r, "loss")->valuestring, *st = cJSON_GetObjectItem(r, "status")->valuestring;
    int sn = cJSON_IsTrue(cJSON_GetObjectItem(r, "sn_ttur"));
    mp_strbuf_printf(h, "<tr><td>%s</td><td>%.0f</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%.0f</td></tr>\n",
                     loss, num(r, "filters"), sn ? "on" : "off", st, f, is, num(r, "best_epoch"));
    mp_strbuf_printf(md, "| %s | %.0f | %s | %s | %s | %s |\n", loss, num(r, "filters"), sn ? "on" : "off", st, f, is);
  }
  mp_strbuf_printf(h, "</table>\n");
  /* what trained the sweep's runs (each run's gan.json), and where the GAN ran on a device, the
   * host backend that computed the FID's Inception features (its extractor_engine) */
  {
    const cJSON *ra = cJSON_GetObjectItem(sw, "runs");
    int k = 0;
    cJSON **gj = mp_calloc((size_t)cJSON_GetArraySize(ra) + 1, sizeof *gj);
    cJSON_ArrayForEach(r, ra) {
      const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(r, "run"));
      if (!name) continue;
      snprintf(path, sizeof path, "%s/runs/%s/gan.json", sweep, name);
      gj[k++] = mp_json_read_file(path, e2, sizeof e2); /* NULL (not counted): a run that wrote none */
    }
    compute_note(h, md, (const cJSON *const *)gj, k, "run", "gan.json", "gan-compute", "The sweep's runs trained on ");
    const char *xe = NULL;
    bool mixed_x = false;
    for (int i = 0; i < k; i++) {
      const char *xl = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(gj[i], "compute"), "extractor_engine"));
      if (xl && xe && strcmp(xl, xe) != 0) mixed_x = true;
      if (xl && !xe) xe = xl;
    }
    if (xe) {
      mp_strbuf_printf(h, "<p class=\"note\" id=\"gan-extractor\">The FID's %s features were computed on <code>", ex);
      mp_svg_escape(h, xe);
      mp_strbuf_printf(h, "</code>%s.</p>\n", mixed_x ? " and other host engines (see each run's gan.json)" : "");
      mp_strbuf_printf(md, "The FID's %s features were computed on `%s`%s.\n", ex, xe,
                       mixed_x ? " and other host engines (see each run's gan.json)" : "");
    }
    for (int i = 0; i < k; i++) cJSON_Delete(gj[i]);
    mp_free(gj);
  }
  const cJSON *b = cJSON_GetObjectItem(sw, "best");
  if (b) {
    mp_strbuf_printf(h, "<p>Best over the sweep: ");
    mp_svg_escape(h, cJSON_GetObjectItem(b, "run")->valuestring);
    mp_strbuf_printf(h, " (FID %.2f); its configuration makes every split's synthetic lesions.</p>\n", num(b, "fid"));
  }
  /* the sweep's charts: FID (and IS) per epoch, the t-SNE map of the best run */
  static const char *const charts[] = {"fid", "is", "tsne"};
  for (int k = 0; k < 3; k++) {
    size_t len = 0;
    snprintf(path, sizeof path, "%s/charts/%s.svg", sweep, charts[k]);
    char *svg = mp_read_file(path, &len, e2, sizeof e2);
    if (!svg) continue;
    mp_strbuf_printf(h, "<figure>");
    mp_strbuf_append(h, svg, len), mp_free(svg);
    if (k == 2) {
      const cJSON *ts = cJSON_GetObjectItem(b, "tsne");
      mp_strbuf_printf(h, "<figcaption class=\"note\">t-SNE map of %.0f real and %.0f generated lesion patches' %s "
                          "features (the best run at its best epoch; exact t-SNE, perplexity %.1f). Distances in the map "
                          "are not distances in feature space: t-SNE keeps neighbourhoods, not distances or cluster "
                          "sizes.</figcaption>",
                       num(ts, "points_real"), num(ts, "points_generated"), ex, num(ts, "perplexity"));
      mp_strbuf_printf(md, "\nt-SNE map of real and generated lesion features: %s/charts/tsne.svg (distances in the map "
                           "are not distances in feature space).\n", sweep);
    }
    mp_strbuf_printf(h, "</figure>\n");
  }
  for (int i = 0; i < nr; i++) {
    if (strcmp(runs[i].variant, "gan") != 0) continue;
    snprintf(path, sizeof path, "%s/%s/synthetic.h5.montage.png", dir, cJSON_GetObjectItem(runs[i].res, "dir")->valuestring);
    mp_strbuf_printf(h, "<figure>");
    if (embed_png(h, path, "montage", "real and synthetic lesion patches", 0, 0, e2, sizeof e2) == 0)
      mp_strbuf_printf(h, "<figcaption class=\"note\">Real lesion patches (top) and synthetic ones (bottom) of split "
                          "%.0f (Figure 4.1 form).</figcaption>",
                       runs[i].seed);
    mp_strbuf_printf(h, "</figure>\n");
    break;
  }
  mp_strbuf_printf(h, "</section>\n");
  cJSON_Delete(sw);
}

/* ---- the report ------------------------------------------------------------------------------- */
static const char *css =
    "body{font-family:sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;color:#222}"
    "h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.6em 0 1.2em}th,td{border:1px solid #ccc;padding:.25em .6em;"
    "text-align:right;font-variant-numeric:tabular-nums}th:first-child,td:first-child{text-align:left}"
    "caption{text-align:left;font-weight:bold;padding:.3em 0}.charts{display:flex;flex-wrap:wrap;gap:12px}"
    ".note{color:#555;font-size:.92em}pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.85em}"
    "img.montage{max-width:100%;image-rendering:pixelated;border:1px solid #ccc}"
    "ul.highlights li{margin:.3em 0}";

int mp_report_write(const char *dir, const char *store_path, const mp_config *cfg, const cJSON *x, char *err,
                    size_t errlen) {
  char rdir[4300], cdir[4400];
  if (snprintf(rdir, sizeof rdir, "%s/report", dir) >= (int)sizeof rdir ||
      snprintf(cdir, sizeof cdir, "%s/charts", rdir) >= (int)sizeof cdir) {
    snprintf(err, errlen, "path too long");
    return -1;
  }
  if (mp_mkdir_p(cdir, err, errlen) != 0) return -1;
  /* variants and the runs with results */
  const cJSON *va = cJSON_GetObjectItem(x, "variants"), *results = cJSON_GetObjectItem(x, "results"), *e;
  const cJSON *summary = cJSON_GetObjectItem(x, "summary"), *diffs = cJSON_GetObjectItem(x, "differences_from_baseline");
  int nv = cJSON_GetArraySize(va) < 8 ? cJSON_GetArraySize(va) : 8;
  int *undef_n = NULL; /* [variant][level][metric]: splits with the metric undefined */
  const char *vnames[8];
  for (int v = 0; v < nv; v++) vnames[v] = cJSON_GetArrayItem(va, v)->valuestring;
  int nres = cJSON_GetArraySize(results), nr = 0;
  run *runs = mp_malloc(((size_t)nres + 1) * sizeof *runs);
  cJSON_ArrayForEach(e, results) {
    if (!cJSON_GetObjectItem(e, "test")) continue;
    char path[4400], e2[512];
    const char *jd = cJSON_GetObjectItem(e, "dir")->valuestring;
    run r = {e, NULL, NULL, cJSON_GetObjectItem(e, "variant")->valuestring, num(e, "split_seed"), 0};
    snprintf(path, sizeof path, "%s/%s/eval.json", dir, jd); /* jd: relative to the experiment */
    r.eval = mp_json_read_file(path, e2, sizeof e2);
    snprintf(path, sizeof path, "%s/%s/train.json", dir, jd);
    r.train = mp_json_read_file(path, e2, sizeof e2);
    for (int v = 0; v < nv; v++)
      if (strcmp(vnames[v], r.variant) == 0) r.vi = v;
    if (r.eval) runs[nr++] = r;
    else cJSON_Delete(r.train);
  }
  store_stats ss;
  uint8_t *montage = NULL;
  int mw = 0, mh = 0;
  int have_store = read_store(store_path, &ss, &montage, &mw, &mh, err, errlen) == 0;
  if (!have_store) MP_WARN("report: the store could not be read (%s): no preprocessing table or montage", err);
  err[0] = 0;
  mp_strbuf h = {0}, md = {0}, csv = {0};
  char a[64], b[64];
  /* what made the experiment: its version and configuration, as experiment.json records
   * them (cfg is the configuration of whoever renders the report: `mammopatch report` may
   * be given another, or none; it only locates a moved GAN sweep) */
  const cJSON *prov = cJSON_GetObjectItem(x, "provenance");
  const cJSON *pv = cJSON_GetObjectItem(prov, "version"), *pg = cJSON_GetObjectItem(prov, "git"),
              *pc = cJSON_GetObjectItem(prov, "created_utc");
  const char *version = cJSON_IsString(pv) ? pv->valuestring : "(unrecorded)",
             *git = cJSON_IsString(pg) ? pg->valuestring : "(unrecorded)",
             *created = cJSON_IsString(pc) ? pc->valuestring : "(unrecorded)";
  const cJSON *rec_cfg = cJSON_GetObjectItem(prov, "config");
  if (!cJSON_IsObject(rec_cfg)) rec_cfg = NULL;
  /* the GAN sweep: shown when the experiment ran with one; read from the directory given
   * to the report when one is (it may have moved), else from the recorded one */
  const cJSON *rs = cJSON_GetObjectItem(cJSON_GetObjectItem(rec_cfg, "experiment"), "gan_sweep");
  const char *rec_sweep = rec_cfg ? (cJSON_IsString(rs) ? rs->valuestring : "") : NULL;
  const char *cmd_sweep = mp_config_str(cfg, "experiment.gan_sweep");
  const char *sweep_from = cmd_sweep[0] || !rec_sweep ? cmd_sweep : rec_sweep;
  const bool sweep_ignored = rec_sweep && !rec_sweep[0] && cmd_sweep[0]; /* the experiment had none */
  if (sweep_ignored)
    MP_WARN("report: experiment.gan_sweep = '%s' is not shown: the experiment ran without a GAN sweep", cmd_sweep);
  int R = (int)num(x, "repeats");
  /* header */
  mp_strbuf_printf(&h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                       "<meta name=\"viewport\" content=\"width=device-width\"><title>mammopatch report</title>"
                       "<style>%s</style></head><body>\n<h1>mammopatch — lesion patch classifier report</h1>\n",
                   css);
  mp_strbuf_printf(&h, "<p class=\"note\" id=\"version\">mammopatch %s (git %s), created %s, %.0f ranks in %.0f "
                       "group(s). Store: ",
                   version, git, created, num(prov, "ranks"), num(x, "rank_groups"));
  mp_svg_escape(&h, store_path);
  mp_strbuf_printf(&h, ". %d split(s) from seed %.0f; status: ", R, num(x, "first_split_seed"));
  mp_svg_escape(&h, cJSON_GetObjectItem(x, "status") ? cJSON_GetObjectItem(x, "status")->valuestring : "complete");
  mp_strbuf_printf(&h, ".</p>\n");
  mp_strbuf_printf(&md, "# mammopatch report\n\nmammopatch %s (git %s), created %s; store `%s`; %d split(s) from seed "
                        "%.0f.\n\n",
                   version, git, created, store_path, R, num(x, "first_split_seed"));
  /* highlights */
  mp_strbuf_printf(&h, "<section id=\"highlights\"><h2>Highlights</h2><ul class=\"highlights\">\n");
  mp_strbuf_printf(&md, "## Highlights\n\n");
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(x, "highlights")) {
    mp_strbuf_printf(&h, "<li>");
    mp_svg_escape(&h, e->valuestring);
    mp_strbuf_printf(&h, "</li>\n");
    mp_strbuf_printf(&md, "- %s\n", e->valuestring);
  }
  mp_strbuf_printf(&h, "</ul><p class=\"note\">Test-split metrics. Differences are paired by split seed (variant minus "
                       "baseline) in percentage points, mean ± sample standard deviation over splits; a difference is "
                       "clear of split-to-split variation when the 95%% interval of its mean (mean ± t(0.975, pairs − 1) "
                       "std / √pairs) excludes 0 (marked * in the tables below). A difference identical on every split "
                       "(marked † in the tables) has no variance estimate and so no interval: it is never marked "
                       "clear.</p></section>\n");
  mp_strbuf_printf(&md, "\nDifferences are paired by split (variant − baseline), percentage points, mean ± sample std; * marks "
                        "a difference whose 95%% interval of the mean (Student t, pairs − 1 df) excludes 0; † marks one "
                        "identical on all splits (no variance estimate, no interval, never *).\n\n");
  /* preprocessing */
  mp_strbuf_printf(&h, "<section id=\"preprocess\"><h2>Preprocessing</h2>\n");
  mp_strbuf_printf(&md, "## Preprocessing\n\n");
  if (have_store && ss.have_files) {
    double rem = ss.found;
    mp_strbuf_printf(&h, "<table id=\"preprocess-table\"><caption>Images discarded per criterion (Table 3.2 form)"
                         "</caption><tr><th>criterion</th><th>discarded</th><th>remaining</th></tr>\n"
                         "<tr><td>files found</td><td></td><td>%.0f</td></tr>\n",
                     ss.found);
    mp_strbuf_printf(&md, "| criterion | discarded | remaining |\n|---|---:|---:|\n| files found | | %.0f |\n", ss.found);
    mp_strbuf_printf(&csv, "criterion,discarded,remaining\nfiles found,,%.0f\n", ss.found);
    for (int i = 0; i < NCRIT; i++) {
      double d = isfinite(ss.discarded[i]) ? ss.discarded[i] : 0;
      rem -= d;
      mp_strbuf_printf(&h, "<tr><td>%s</td><td>%.0f</td><td>%.0f</td></tr>\n", mp_store_outcomes[i + 1].label, d, rem);
      mp_strbuf_printf(&md, "| %s | %.0f | %.0f |\n", mp_store_outcomes[i + 1].label, d, rem);
      mp_strbuf_printf(&csv, "\"%s\",%.0f,%.0f\n", mp_store_outcomes[i + 1].label, d, rem);
    }
    mp_strbuf_printf(&h, "</table>\n");
    if (write_text(rdir, "preprocess.csv", mp_strbuf_str(&csv), err, errlen)) goto fail;
  } else {
    mp_strbuf_printf(&h, "<p id=\"preprocess-missing\">The store's file counts are not available.</p>\n");
    mp_strbuf_printf(&md, "The store's file counts are not available.\n");
  }
  if (have_store) {
    char ratio[32] = "—";
    if (ss.lesion) snprintf(ratio, sizeof ratio, "%.0f : 1", (double)ss.normal / (double)ss.lesion);
    mp_strbuf_printf(&h,
                     "<table id=\"patch-stats\"><caption>Patches (§3.1.3 form)</caption><tr><th></th><th>count</th></tr>"
                     "<tr><td>normal patches (BI-RADS 1 images)</td><td>%llu</td></tr>"
                     "<tr><td>lesion patches</td><td>%llu</td></tr>"
                     "<tr><td>lesion patches from BI-RADS 0</td><td>%llu</td></tr>"
                     "<tr><td>lesion patches from BI-RADS 2</td><td>%llu</td></tr>"
                     "<tr><td>normal : lesion</td><td>%s</td></tr>"
                     "<tr><td>views</td><td>%llu</td></tr><tr><td>patients</td><td>%llu</td></tr>"
                     "<tr><td>patients with lesion patches</td><td>%llu</td></tr>"
                     "<tr><td>patients with only normal patches</td><td>%llu</td></tr></table>\n",
                     (unsigned long long)ss.normal, (unsigned long long)ss.lesion, (unsigned long long)ss.les_birads[0],
                     (unsigned long long)ss.les_birads[2], ratio, (unsigned long long)ss.views,
                     (unsigned long long)ss.patients, (unsigned long long)ss.pat_lesion,
                     (unsigned long long)ss.pat_normal_only);
    mp_strbuf_printf(&md,
                     "\n| patches | count |\n|---|---:|\n| normal | %llu |\n| lesion | %llu |\n| lesion, BI-RADS 0 | %llu |\n"
                     "| lesion, BI-RADS 2 | %llu |\n| normal : lesion | %s |\n| views | %llu |\n| patients | %llu |\n"
                     "| patients with lesion patches | %llu |\n| patients with only normal patches | %llu |\n",
                     (unsigned long long)ss.normal, (unsigned long long)ss.lesion, (unsigned long long)ss.les_birads[0],
                     (unsigned long long)ss.les_birads[2], ratio, (unsigned long long)ss.views,
                     (unsigned long long)ss.patients, (unsigned long long)ss.pat_lesion,
                     (unsigned long long)ss.pat_normal_only);
  }
  mp_strbuf_printf(&h, "</section>\n");
  /* metric tables: per variant and level, mean ± std and every split */
  mp_strbuf_printf(&h, "<section id=\"metrics\"><h2>Test metrics</h2>\n<p class=\"note\">Threshold and how it was "
                       "chosen are recorded per split in results.csv; undefined values (a zero denominator) are "
                       "reported as 0 (AUCs: —) and counted in the last column. PR AUC is the average precision "
                       "(the step-wise area, as scikit-learn's average_precision_score), not the trapezoidal area "
                       "under the precision-recall curve.</p>\n");
  mp_strbuf_printf(&md, "\n## Test metrics (mean ± std over splits)\n\nPR AUC: average precision (step-wise, as "
                        "scikit-learn's average_precision_score). A metric undefined on a split (a zero denominator) is "
                        "reported as 0 and counts so in the mean; an AUC undefined (one class only) is left out of "
                        "it; such splits are listed under each table. (n=K): a mean over K splits, fewer than the "
                        "experiment's (a failed job, or an AUC undefined on a split).\n");
  undef_n = mp_calloc((size_t)nv * NLEVELS * NMETRICS, sizeof *undef_n);
  for (int l = 0; l < NLEVELS; l++) {
    mp_strbuf_printf(&md, "\n### %s level\n\n| variant |", levels[l]);
    for (int m = 0; m < NMETRICS; m++) mp_strbuf_printf(&md, " %s |", pretty[m]);
    mp_strbuf_printf(&md, "\n|---|");
    for (int m = 0; m < NMETRICS; m++) mp_strbuf_printf(&md, "---:|");
    mp_strbuf_printf(&md, "\n");
    for (int v = 0; v < nv; v++) {
      const cJSON *sl = cJSON_GetObjectItem(cJSON_GetObjectItem(summary, vnames[v]), levels[l]);
      mp_strbuf_printf(&md, "| %s |", vnames[v]);
      mp_strbuf_printf(&h, "<table class=\"metrics\" data-variant=\"%s\" data-level=\"%s\"><caption>%s — %s level"
                           "</caption><tr><th>metric</th><th>mean ± std</th><th>min</th><th>max</th>",
                       vnames[v], levels[l], vnames[v], levels[l]);
      for (int i = 0; i < nr; i++)
        if (runs[i].vi == v) mp_strbuf_printf(&h, "<th>split %.0f</th>", runs[i].seed);
      mp_strbuf_printf(&h, "<th>undefined</th></tr>\n");
      for (int m = 0; m < NMETRICS; m++) {
        const cJSON *c = cJSON_GetObjectItem(sl, metrics[m]);
        fmt_pm(a, sizeof a, c, 1, 3);
        /* fewer splits than the experiment's (a failed job, an undefined AUC): say over how many */
        if (isfinite(num(c, "n")) && R > 0 && num(c, "n") < R) {
          size_t al = strlen(a);
          snprintf(a + al, sizeof a - al, " (n=%.0f)", num(c, "n"));
        }
        mp_strbuf_printf(&md, " %s |", a);
        mp_strbuf_printf(&h, "<tr><td>%s</td><td>%s</td>", pretty[m], a);
        fmt(a, sizeof a, num(c, "min"), 3), fmt(b, sizeof b, num(c, "max"), 3);
        mp_strbuf_printf(&h, "<td>%s</td><td>%s</td>", a, b);
        int undef = 0;
        for (int i = 0; i < nr; i++) {
          if (runs[i].vi != v) continue;
          const cJSON *lv = cJSON_GetObjectItem(cJSON_GetObjectItem(runs[i].res, "test"), levels[l]), *u;
          fmt(a, sizeof a, num(lv, metrics[m]), 3);
          mp_strbuf_printf(&h, "<td>%s</td>", a);
          const char *key = m == 5 || m == 6 ? "roc_auc" : metrics[m];
          cJSON_ArrayForEach(u, cJSON_GetObjectItem(lv, "undefined")) undef +=
              cJSON_IsString(u) && strncmp(u->valuestring, key, strlen(key)) == 0;
        }
        mp_strbuf_printf(&h, "<td>%d</td></tr>\n", undef);
        undef_n[((size_t)v * NLEVELS + l) * NMETRICS + m] = undef;
      }
      mp_strbuf_printf(&h, "</table>\n");
      mp_strbuf_printf(&md, "\n");
    }
    const char *sep = "\nUndefined: ";
    for (int v = 0; v < nv; v++) {
      int of = 0;
      for (int i = 0; i < nr; i++) of += runs[i].vi == v;
      for (int m = 0; m < NMETRICS; m++)
        if (undef_n[((size_t)v * NLEVELS + l) * NMETRICS + m]) {
          mp_strbuf_printf(&md, "%s%s %s on %d of %d splits", sep, vnames[v], pretty[m],
                           undef_n[((size_t)v * NLEVELS + l) * NMETRICS + m], of);
          sep = "; ";
        }
    }
    if (sep[0] == ';') mp_strbuf_printf(&md, ".\n");
  }
  /* per-split raw numbers */
  mp_strbuf_free(&csv);
  mp_strbuf_printf(&csv, "variant,split_seed,level,threshold,n,positives,tp,fp,tn,fn");
  for (int m = 0; m < NMETRICS; m++) mp_strbuf_printf(&csv, ",%s", metrics[m]);
  mp_strbuf_printf(&csv, ",undefined\n");
  for (int i = 0; i < nr; i++)
    for (int l = 0; l < NLEVELS; l++) {
      const cJSON *lv = cJSON_GetObjectItem(cJSON_GetObjectItem(runs[i].res, "test"), levels[l]), *u;
      const cJSON *cf = cJSON_GetObjectItem(lv, "confusion");
      mp_strbuf_printf(&csv, "%s,%.0f,%s,%.6g,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f", runs[i].variant, runs[i].seed, levels[l],
                       num(cJSON_GetObjectItem(runs[i].res, "threshold"), "value"), num(lv, "n"), num(lv, "positives"),
                       num(cf, "tp"), num(cf, "fp"), num(cf, "tn"), num(cf, "fn"));
      for (int m = 0; m < NMETRICS; m++) {
        double v = num(lv, metrics[m]);
        if (isfinite(v)) mp_strbuf_printf(&csv, ",%.6f", v);
        else mp_strbuf_printf(&csv, ",");
      }
      mp_strbuf_printf(&csv, ",\"");
      int first = 1;
      cJSON_ArrayForEach(u, cJSON_GetObjectItem(lv, "undefined")) {
        mp_strbuf_printf(&csv, "%s%s", first ? "" : "; ", u->valuestring);
        first = 0;
      }
      mp_strbuf_printf(&csv, "\"\n");
    }
  if (write_text(rdir, "results.csv", mp_strbuf_str(&csv), err, errlen)) goto fail;
  mp_strbuf_free(&csv);
  mp_strbuf_printf(&csv, "variant,level,metric,n,mean,std,min,max,undefined\n");
  for (int v = 0; v < nv; v++)
    for (int l = 0; l < NLEVELS; l++)
      for (int m = 0; m < NMETRICS; m++) {
        const cJSON *c =
            cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(summary, vnames[v]), levels[l]), metrics[m]);
        mp_strbuf_printf(&csv, "%s,%s,%s,%.0f", vnames[v], levels[l], metrics[m], num(c, "n"));
        static const char *const f[4] = {"mean", "std", "min", "max"};
        for (int k = 0; k < 4; k++) {
          double q = num(c, f[k]);
          if (isfinite(q)) mp_strbuf_printf(&csv, ",%.6f", q);
          else mp_strbuf_printf(&csv, ",");
        }
        mp_strbuf_printf(&csv, ",%d\n", undef_n[((size_t)v * NLEVELS + l) * NMETRICS + m]);
      }
  mp_free(undef_n), undef_n = NULL;
  if (write_text(rdir, "summary.csv", mp_strbuf_str(&csv), err, errlen)) goto fail;
  mp_strbuf_free(&csv);
  mp_strbuf_printf(&h, "</section>\n");
  /* differences from the baseline */
  mp_strbuf_printf(&h, "<section id=\"differences\"><h2>Differences from the baseline</h2>\n");
  mp_strbuf_printf(&md, "\n## Differences from the baseline (percentage points)\n\n");
  mp_strbuf_printf(&csv, "variant,level,metric,pairs,mean,std,ci95_lo,ci95_hi,higher,lower,equal,no_variance\n");
  int ndiff = cJSON_GetArraySize(diffs);
  if (!ndiff) {
    mp_strbuf_printf(&h, "<p>No augmented variant was evaluated beside the baseline.</p>\n");
    mp_strbuf_printf(&md, "No augmented variant was evaluated beside the baseline.\n");
  }
  cJSON_ArrayForEach(e, diffs) {
    int nsame = 0, same_pairs = -1; /* cells identical on every split, and over how many (-1: varies) */
    for (int l = 0; l < NLEVELS; l++)
      for (int m = 0; m < NMETRICS; m++) {
        const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(e, levels[l]), metrics[m]);
        if (!cJSON_IsTrue(cJSON_GetObjectItem(c, "no_variance"))) continue;
        int np = (int)num(c, "pairs");
        same_pairs = nsame++ == 0 || same_pairs == np ? np : -1;
      }
    char same_note[160] = "";
    if (nsame && same_pairs >= 0)
      snprintf(same_note, sizeof same_note, "† identical on all %d splits; no variance estimate (no interval)",
               same_pairs);
    else if (nsame)
      snprintf(same_note, sizeof same_note, "† identical on all of its splits (pairs in differences.csv); no "
                                            "variance estimate (no interval)");
    mp_strbuf_printf(&h, "<table class=\"differences\" data-variant=\"%s\"><caption>%s − baseline (percentage points; "
                         "splits higher / lower; * 95%% interval of the mean excludes 0%s%s)</caption><tr><th>level</th>",
                     e->string, e->string, nsame ? "; " : "", same_note);
    mp_strbuf_printf(&md, "%s − baseline:\n\n| level |", e->string);
    for (int m = 0; m < NMETRICS; m++) mp_strbuf_printf(&h, "<th>%s</th>", pretty[m]), mp_strbuf_printf(&md, " %s |", pretty[m]);
    mp_strbuf_printf(&h, "</tr>\n");
    mp_strbuf_printf(&md, "\n|---|");
    for (int m = 0; m < NMETRICS; m++) mp_strbuf_printf(&md, "---:|");
    mp_strbuf_printf(&md, "\n");
    for (int l = 0; l < NLEVELS; l++) {
      mp_strbuf_printf(&h, "<tr><td>%s</td>", levels[l]);
      mp_strbuf_printf(&md, "| %s |", levels[l]);
      for (int m = 0; m < NMETRICS; m++) {
        const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(e, levels[l]), metrics[m]);
        fmt_pm(a, sizeof a, c, 100, 1);
        const bool same = cJSON_IsTrue(cJSON_GetObjectItem(c, "no_variance"));
        const char *star = same ? "†" : cJSON_IsTrue(cJSON_GetObjectItem(c, "excludes_zero")) ? "*" : "";
        if (same)
          mp_strbuf_printf(&h, "<td title=\"identical on all %.0f splits; no variance estimate\">%s%s (%.0f/%.0f)</td>",
                           num(c, "pairs"), a, star, num(c, "higher"), num(c, "lower"));
        else
          mp_strbuf_printf(&h, "<td>%s%s (%.0f/%.0f)</td>", a, star, num(c, "higher"), num(c, "lower"));
        mp_strbuf_printf(&md, " %s%s |", a, star);
        mp_strbuf_printf(&csv, "%s,%s,%s,%.0f", e->string, levels[l], metrics[m], num(c, "pairs"));
        const cJSON *ci = cJSON_GetObjectItem(c, "ci95");
        double cv[4] = {num(c, "mean"), num(c, "std"), NAN, NAN};
        if (cJSON_GetArraySize(ci) == 2) {
          const cJSON *c0 = cJSON_GetArrayItem(ci, 0), *c1 = cJSON_GetArrayItem(ci, 1);
          cv[2] = cJSON_IsNumber(c0) ? c0->valuedouble : NAN, cv[3] = cJSON_IsNumber(c1) ? c1->valuedouble : NAN;
        }
        for (int k = 0; k < 4; k++) {
          if (isfinite(cv[k])) mp_strbuf_printf(&csv, ",%.6f", cv[k]);
          else mp_strbuf_printf(&csv, ",");
        }
        mp_strbuf_printf(&csv, ",%.0f,%.0f,%.0f,%d\n", num(c, "higher"), num(c, "lower"), num(c, "equal"), same);
      }
      mp_strbuf_printf(&h, "</tr>\n");
      mp_strbuf_printf(&md, "\n");
    }
    mp_strbuf_printf(&h, "</table>\n");
    if (nsame) mp_strbuf_printf(&md, "\n%s.\n", same_note);
    mp_strbuf_printf(&md, "\n");
  }
  if (write_text(rdir, "differences.csv", mp_strbuf_str(&csv), err, errlen)) goto fail;
  mp_strbuf_free(&csv);
  mp_strbuf_printf(&h, "</section>\n");
  /* charts: each also written as charts/NAME.svg for report.md */
  mp_strbuf_printf(&h, "<section id=\"charts\"><h2>Charts</h2>\n<div class=\"charts\">\n");
  mp_strbuf_printf(&md, "\n## Charts\n\n");
  for (int k = 0; k < 2 + 2 * NLEVELS + 2; k++) {
    mp_strbuf svg = {0};
    char name[64];
    if (k < 2) {
      bar_chart(&svg, summary, vnames, nv, k == 0 ? 3 : 4);
      snprintf(name, sizeof name, "bars-%s.svg", k == 0 ? "f1" : "mcc");
    } else if (k < 2 + 2 * NLEVELS) {
      int l = (k - 2) / 2, pr = (k - 2) % 2;
      curve_chart(&svg, runs, nr, nv, l, pr);
      snprintf(name, sizeof name, "%s-%s.svg", pr ? "pr" : "roc", levels[l]);
    } else {
      int mcc = k - 2 - 2 * NLEVELS;
      training_chart(&svg, runs, nr, nv, mcc);
      snprintf(name, sizeof name, "training-%s.svg", mcc ? "mcc" : "loss");
    }
    if (!svg.len) continue;
    mp_strbuf_append(&h, svg.s, svg.len);
    mp_strbuf_printf(&md, "![%s](charts/%s)\n", name, name);
    char path[80];
    snprintf(path, sizeof path, "charts/%s", name);
    int rc = write_text(rdir, path, svg.s, err, errlen);
    mp_strbuf_free(&svg);
    if (rc) goto fail;
  }
  mp_strbuf_printf(&h, "</div></section>\n");
  /* training curves as numbers */
  mp_strbuf_printf(&csv, "variant,split_seed,epoch,train_loss,validation_loss,validation_mcc,validation_f1\n");
  for (int i = 0; i < nr; i++) {
    const cJSON *ep;
    cJSON_ArrayForEach(ep, cJSON_GetObjectItem(runs[i].train, "curve")) {
      const cJSON *val = cJSON_GetObjectItem(ep, "validation");
      mp_strbuf_printf(&csv, "%s,%.0f,%.0f,%.6f,%.6f,%.6f,%.6f\n", runs[i].variant, runs[i].seed, num(ep, "epoch"),
                       num(ep, "train_loss"), num(val, "loss"), num(val, "mcc"), num(val, "f1"));
    }
  }
  if (write_text(rdir, "training.csv", mp_strbuf_str(&csv), err, errlen)) goto fail;
  mp_strbuf_free(&csv);
  /* montage */
  mp_strbuf_printf(&h, "<section id=\"patches\"><h2>Patches</h2>\n");
  mp_strbuf_printf(&md, "\n## Patches\n\n");
#if !MP_HAVE_PNG
  if (montage) { /* built without libpng: no montage */
    mp_strbuf_printf(&h, "<p>This build has no libpng: no patch montage.</p>\n");
    mp_free(montage), montage = NULL;
  }
#endif
  if (montage) {
    char path[4400];
    snprintf(path, sizeof path, "%s/montage.png", rdir);
#if MP_HAVE_PNG
    if (mp_png_write(path, montage, mw, mh, 1, err, errlen) != 0) goto fail;
#endif
    mp_strbuf_printf(&h, "<figure>");
    if (embed_png(&h, path, "montage", "real lesion and normal patches", mw, mh, err, errlen) != 0) goto fail;
    mp_strbuf_printf(&h, "<figcaption class=\"note\">Real patches from the store, evenly spaced: lesion patches "
                         "(top rows, %llu in all) and normal patches (bottom rows, %llu in all), %d×%d px, as "
                         "stored.</figcaption></figure>\n",
                     (unsigned long long)ss.lesion, (unsigned long long)ss.normal, mw, mh);
    mp_strbuf_printf(&md, "![real lesion (top) and normal (bottom) patches](montage.png)\n");
  } else {
    mp_strbuf_printf(&h, "<p>No patches to show.</p>\n");
  }
  mp_strbuf_printf(&h, "</section>\n");
  if ((rec_sweep ? rec_sweep : cmd_sweep)[0])
    gan_section(&h, &md, sweep_from, rec_sweep ? rec_sweep : cmd_sweep, dir, runs, nr);
  /* jobs */
  mp_strbuf_printf(&h, "<section id=\"jobs\"><h2>Jobs</h2><table id=\"jobs-table\"><tr><th>variant</th><th>split "
                       "seed</th><th>status</th><th>rank group</th><th>seconds</th><th>best epoch</th><th>training "
                       "patches</th><th>threshold</th></tr>\n");
  mp_strbuf_printf(&md, "\n## Jobs\n\n| variant | split seed | status | seconds | best epoch |\n|---|---:|---|---:|---:|\n");
  cJSON_ArrayForEach(e, results) {
    const run *r = NULL;
    for (int i = 0; i < nr; i++)
      if (runs[i].res == e) r = &runs[i];
    const cJSON *best = r ? cJSON_GetObjectItem(r->train, "best") : NULL;
    fmt(a, sizeof a, num(best, "epoch"), 0);
    fmt(b, sizeof b, num(cJSON_GetObjectItem(e, "threshold"), "value"), 3);
    mp_strbuf_printf(&h, "<tr><td>%s</td><td>%.0f</td><td>%s</td><td>%.0f</td><td>%.0f</td><td>%s</td><td>",
                     cJSON_GetObjectItem(e, "variant")->valuestring, num(e, "split_seed"),
                     cJSON_GetObjectItem(e, "status")->valuestring, num(e, "rank_group"), num(e, "seconds"), a);
    if (r) mp_strbuf_printf(&h, "%.0f", num(r->train, "train_patches"));
    mp_strbuf_printf(&h, "</td><td>%s</td></tr>\n", b);
    mp_strbuf_printf(&md, "| %s | %.0f | %s | %.0f | %s |\n", cJSON_GetObjectItem(e, "variant")->valuestring,
                     num(e, "split_seed"), cJSON_GetObjectItem(e, "status")->valuestring, num(e, "seconds"), a);
  }
  mp_strbuf_printf(&h, "</table>\n");
  {
    const cJSON **rec = mp_malloc(((size_t)nr + 1) * sizeof *rec);
    for (int i = 0; i < nr; i++) rec[i] = runs[i].train;
    compute_note(&h, &md, rec, nr, "job", "train.json", "compute", "Trained on ");
    mp_free(rec);
  }
  mp_strbuf_printf(&h, "</section>\n");
  /* configuration and version: what the experiment ran with, as it recorded it */
  char *ini = rec_cfg ? recorded_ini(rec_cfg, cfg) : mp_config_to_ini(cfg);
  mp_strbuf_printf(&h, "<section id=\"config\"><h2>Configuration</h2><p class=\"note\">");
  if (rec_cfg)
    mp_strbuf_printf(&h, "The configuration this experiment ran with, as experiment.json records it (every key; see "
                         "<code>mammopatch config --keys</code>). Made by mammopatch %s, git %s.",
                     version, git);
  else
    mp_strbuf_printf(&h, "experiment.json records no configuration: shown is the configuration given to the report "
                         "(every key), which need not be the experiment's. Experiment made by mammopatch %s, git %s.",
                     version, git);
  mp_strbuf_printf(&h, "</p>\n");
  mp_strbuf_printf(&md, "\n## Configuration\n\n%s mammopatch %s, git %s.\n",
                   rec_cfg ? "The configuration this experiment ran with, as experiment.json records it; made by"
                           : "experiment.json records no configuration: shown is the configuration given to the "
                             "report, which need not be the experiment's. Experiment made by",
                   version, git);
  /* the report's own: its renderer, and the files it read (no key of the report's own
   * configuration changes a number or how it is shown; experiment.gan_sweep locates the
   * sweep's files) */
  if (strcmp(mp_version(), version) != 0 || strcmp(mp_version_git(), git) != 0) {
    mp_strbuf_printf(&h, "<p class=\"note\" id=\"renderer\">This report was rendered by mammopatch %s, git %s.</p>\n",
                     mp_version(), mp_version_git());
    mp_strbuf_printf(&md, "\nThis report was rendered by mammopatch %s, git %s.\n", mp_version(), mp_version_git());
  }
  const cJSON *rst = cJSON_GetObjectItem(x, "store");
  const bool store_moved = cJSON_IsString(rst) && !same_path(store_path, rst->valuestring);
  const bool sweep_moved = rec_sweep && rec_sweep[0] && !same_path(sweep_from, rec_sweep);
  if (store_moved || sweep_moved || sweep_ignored) {
    mp_strbuf_printf(&h, "<p class=\"note\" id=\"report-settings\">Read by this report, not as recorded:");
    mp_strbuf_printf(&md, "\nRead by this report, not as recorded:");
    if (store_moved) {
      mp_strbuf_printf(&h, " the store ");
      mp_svg_escape(&h, store_path);
      mp_strbuf_printf(&h, " (the experiment used ");
      mp_svg_escape(&h, rst->valuestring);
      mp_strbuf_printf(&h, ")%s", sweep_moved || sweep_ignored ? ";" : ".");
      mp_strbuf_printf(&md, " the store `%s` (the experiment used `%s`)%s", store_path, rst->valuestring,
                       sweep_moved || sweep_ignored ? ";" : ".");
    }
    if (sweep_moved) {
      mp_strbuf_printf(&h, " the GAN sweep's results from ");
      mp_svg_escape(&h, sweep_from);
      mp_strbuf_printf(&h, " (experiment.gan_sweep given to the report; the experiment's is ");
      mp_svg_escape(&h, rec_sweep);
      mp_strbuf_printf(&h, ").");
      mp_strbuf_printf(&md, " the GAN sweep's results from `%s` (experiment.gan_sweep given to the report; the "
                            "experiment's is `%s`).", sweep_from, rec_sweep);
    }
    if (sweep_ignored) {
      mp_strbuf_printf(&h, " experiment.gan_sweep = ");
      mp_svg_escape(&h, cmd_sweep);
      mp_strbuf_printf(&h, " was given to the report, but the experiment ran without a GAN sweep: not shown.");
      mp_strbuf_printf(&md, " experiment.gan_sweep = `%s` was given to the report, but the experiment ran without a "
                            "GAN sweep: not shown.", cmd_sweep);
    }
    mp_strbuf_printf(&h, "</p>\n");
    mp_strbuf_printf(&md, "\n");
  }
  mp_strbuf_printf(&h, "<pre>");
  mp_svg_escape(&h, ini);
  mp_strbuf_printf(&h, "</pre></section>\n</body></html>\n");
  mp_strbuf_printf(&md, "\n```ini\n%s```\n", ini);
  mp_free(ini);
  if (write_text(rdir, "index.html", mp_strbuf_str(&h), err, errlen) ||
      write_text(rdir, "report.md", mp_strbuf_str(&md), err, errlen))
    goto fail;
  {
    char path[4400];
    snprintf(path, sizeof path, "%s/experiment.json", rdir);
    if (mp_json_write_file(path, x, err, errlen)) goto fail;
  }
  mp_strbuf_free(&h), mp_strbuf_free(&md), mp_strbuf_free(&csv);
  for (int i = 0; i < nr; i++) cJSON_Delete(runs[i].eval), cJSON_Delete(runs[i].train);
  mp_free(runs), mp_free(montage);
  return 0;
fail:
  mp_strbuf_free(&h), mp_strbuf_free(&md), mp_strbuf_free(&csv);
  for (int i = 0; i < nr; i++) cJSON_Delete(runs[i].eval), cJSON_Delete(runs[i].train);
  mp_free(runs), mp_free(montage), mp_free(undef_n);
  return -1;
}
