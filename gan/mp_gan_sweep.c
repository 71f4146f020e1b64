/* mp_gan_sweep — the GAN grid over rank groups (see mp_gan_sweep.h). */
#include "mp_gan_sweep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mp_alloc.h"
#include "mp_backend.h"
#include "mp_check.h"
#include "mp_file.h"
#include "mp_gan_train.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_mpi.h"
#include "mp_signal.h"
#include "mp_strbuf.h"
#include "mp_svg.h"

enum { RUN_NOT = 0, RUN_DONE, RUN_REUSED, RUN_DIVERGED, RUN_FAILED, RUN_INTERRUPTED };

typedef struct {
  mp_gan_loss loss;
  int f;
  bool sn;
  char name[48];
} cell;

/* comma-separated lists of the grid; 0 or -1 with err */
static int parse_grid(const mp_config *cfg, cell **cells, int *n, int *nl, int *nf, int *ns, char *err, size_t errlen) {
  mp_gan_loss L[5];
  int F[8], S[2];
  *nl = *nf = *ns = 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", mp_config_str(cfg, "gan.sweep_losses"));
  for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
    if (*nl == 5 || mp_gan_loss_parse(t, &L[*nl]) != 0)
      return snprintf(err, errlen, "gan.sweep_losses: '%s' is not a loss (wgan-gp, rsgan, rasgan, ralsgan, rahinge)", t),
             -1;
    (*nl)++;
  }
  snprintf(buf, sizeof buf, "%s", mp_config_str(cfg, "gan.sweep_filters"));
  for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
    char *end;
    long v = strtol(t, &end, 10);
    if (*nf == 8 || *end || v < 8 || v % 8 || v > 1024)
      return snprintf(err, errlen, "gan.sweep_filters: '%s' is not a filter count (a multiple of 8)", t), -1;
    F[(*nf)++] = (int)v;
  }
  snprintf(buf, sizeof buf, "%s", mp_config_str(cfg, "gan.sweep_sn_ttur"));
  for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
    if (*ns == 2 || (strcmp(t, "off") && strcmp(t, "on")))
      return snprintf(err, errlen, "gan.sweep_sn_ttur: '%s' is not off or on", t), -1;
    S[(*ns)++] = strcmp(t, "on") == 0;
  }
  if (!*nl || !*nf || !*ns) return snprintf(err, errlen, "the sweep grid is empty"), -1;
  *n = *nl * *nf * *ns;
  *cells = mp_malloc((size_t)*n * sizeof **cells);
  int k = 0;
  for (int i = 0; i < *nl; i++)
    for (int j = 0; j < *nf; j++)
      for (int s = 0; s < *ns; s++) {
        cell *c = &(*cells)[k++];
        c->loss = L[i], c->f = F[j], c->sn = S[s];
        snprintf(c->name, sizeof c->name, "%s-f%d%s", mp_gan_loss_name(L[i]), F[j], S[s] ? "-sn" : "");
      }
  return 0;
}

static double jnum(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Rank 0: sweep.json, sweep.md, sweep.csv, charts. */
/* OUT/charts/NAME.svg: the per-epoch curve `key` of every run */
static int curve_svg(const char *out, const cJSON *runs, const cell *c, int n, const char *key, const char *title,
                     const char *ylabel, const char *name, char *err, size_t errlen) {
  mp_svg_series *s = mp_malloc((size_t)n * sizeof *s);
  double **xy = mp_calloc((size_t)n * 2, sizeof *xy);
  for (int i = 0; i < n; i++) {
    const cJSON *cv = cJSON_GetObjectItem(cJSON_GetArrayItem(runs, i), key);
    int m = cJSON_GetArraySize(cv);
    xy[2 * i] = mp_malloc(((size_t)m + 1) * sizeof(double)), xy[2 * i + 1] = mp_malloc(((size_t)m + 1) * sizeof(double));
    for (int k = 0; k < m; k++) {
      xy[2 * i][k] = cJSON_GetArrayItem(cJSON_GetArrayItem(cv, k), 0)->valuedouble;
      xy[2 * i + 1][k] = cJSON_GetArrayItem(cJSON_GetArrayItem(cv, k), 1)->valuedouble;
    }
    s[i] = (mp_svg_series){c[i].name, mp_svg_color((size_t)c[i].loss), xy[2 * i], xy[2 * i + 1], (size_t)m, c[i].sn, 0};
  }
  mp_strbuf svg = {0};
  mp_svg_chart ch = {name, title, "epoch", ylabel, 0, 0, 0, 0, 640, 360, 0};
  mp_svg_lines(&svg, &ch, s, (size_t)n);
  char path[4400];
  snprintf(path, sizeof path, "%s/charts/%s.svg", out, name);
  int rc = mp_write_file_atomic(path, svg.s, svg.len, err, errlen);
  for (int i = 0; i < 2 * n; i++) mp_free(xy[i]);
  mp_free(xy), mp_free(s);
  mp_strbuf_free(&svg);
  return rc;
}

/* OUT/charts/tsne.svg from the best run's tsne.csv (set,x,y): a scatter, real and generated */
static int tsne_svg(const char *out, const char *rel, char *err, size_t errlen) {
  char path[4400];
  snprintf(path, sizeof path, "%s/%s", out, rel);
  size_t len;
  char *text = mp_read_file(path, &len, err, errlen);
  if (!text) return -1;
  size_t cap = len / 8 + 2, nn[2] = {0, 0};
  double *xy[4];
  for (int k = 0; k < 4; k++) xy[k] = mp_malloc(cap * sizeof(double));
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char set[16];
    double x, y;
    if (sscanf(line, "%15[a-z],%lf,%lf", set, &x, &y) != 3) continue; /* the header */
    int k = strcmp(set, "real") == 0 ? 0 : 1;
    if (nn[k] < cap) xy[2 * k][nn[k]] = x, xy[2 * k + 1][nn[k]] = y, nn[k]++;
  }
  mp_free(text);
  mp_svg_series s[2] = {{"real lesion patches", mp_svg_color(0), xy[0], xy[1], nn[0], 0, 1},
                        {"generated (best run)", mp_svg_color(3), xy[2], xy[3], nn[1], 0, 1}};
  mp_strbuf svg = {0};
  mp_svg_chart ch = {"tsne", "t-SNE map of real and generated lesion features (map distances are not feature distances)",
                     "t-SNE 1", "t-SNE 2", 0, 0, 0, 0, 520, 460, 0};
  mp_svg_lines(&svg, &ch, s, 2);
  snprintf(path, sizeof path, "%s/charts/tsne.svg", out);
  int rc = mp_write_file_atomic(path, svg.s, svg.len, err, errlen);
  for (int k = 0; k < 4; k++) mp_free(xy[k]);
  mp_strbuf_free(&svg);
  return rc;
}

static int write_outputs(const mp_config *cfg, int K, int G, const mp_gan_sweep_args *a, const cell *c, int n,
                         const int *status, int nf, int ns, char *err, size_t errlen) {
  static const char *const st_name[] = {"not run", "completed", "completed", "diverged", "failed", "interrupted"};
  cJSON *d = cJSON_CreateObject(), *runs;
  cJSON_AddItemToObject(d, "provenance", mp_json_provenance(cfg, K));
  cJSON_AddNumberToObject(d, "split_seed", (double)a->split_seed);
  cJSON_AddNumberToObject(d, "rank_groups", G);
  runs = cJSON_AddArrayToObject(d, "runs");
  cJSON **docs = mp_calloc((size_t)n, sizeof *docs);
  int best = -1;
  double best_fid = INFINITY;
  const cJSON *fidinfo = NULL;
  bool any_is = false;
  for (int i = 0; i < n; i++) {
    char path[4400], e2[512];
    snprintf(path, sizeof path, "%s/runs/%s/gan.json", a->out_dir, c[i].name);
    docs[i] = status[i] != RUN_NOT ? mp_json_read_file(path, e2, sizeof e2) : NULL;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "run", c[i].name);
    cJSON_AddStringToObject(r, "loss", mp_gan_loss_name(c[i].loss));
    cJSON_AddNumberToObject(r, "filters", c[i].f);
    cJSON_AddBoolToObject(r, "sn_ttur", c[i].sn);
    cJSON_AddStringToObject(r, "status", st_name[status[i]]);
    const cJSON *f = cJSON_GetObjectItem(docs[i], "fid");
    double bf = jnum(f, "best");
    if (f && !fidinfo) fidinfo = f;
    if (isfinite(bf)) cJSON_AddNumberToObject(r, "best_fid", bf);
    else cJSON_AddNullToObject(r, "best_fid");
    cJSON_AddNumberToObject(r, "best_epoch", jnum(f, "best_epoch"));
    const cJSON *isj = cJSON_GetObjectItem(docs[i], "inception_score");
    if (isfinite(jnum(isj, "mean"))) {
      cJSON_AddNumberToObject(r, "best_is", jnum(isj, "mean"));
      cJSON_AddNumberToObject(r, "best_is_std", jnum(isj, "std"));
      any_is = true;
    }
    cJSON *cv = cJSON_AddArrayToObject(r, "fid_curve"), *ic = cJSON_AddArrayToObject(r, "is_curve");
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(docs[i], "curve")) {
      double p[2] = {jnum(e, "epoch"), jnum(e, "fid")}, q[2] = {jnum(e, "epoch"), jnum(e, "is")};
      if (isfinite(p[1])) cJSON_AddItemToArray(cv, cJSON_CreateDoubleArray(p, 2));
      if (isfinite(q[1])) cJSON_AddItemToArray(ic, cJSON_CreateDoubleArray(q, 2));
    }
    if ((status[i] == RUN_DONE || status[i] == RUN_REUSED) && isfinite(bf) && bf < best_fid) best_fid = bf, best = i;
    cJSON_AddItemToArray(runs, r);
  }
  cJSON *fi = cJSON_AddObjectToObject(d, "fid");
  cJSON_AddStringToObject(fi, "extractor", fidinfo ? cJSON_GetObjectItem(fidinfo, "extractor")->valuestring : "none");
  const cJSON *xs = cJSON_GetObjectItem(fidinfo, "extractor_sha256"); /* one for every run: reuse compares it */
  if (xs) cJSON_AddItemToObject(fi, "extractor_sha256", cJSON_Duplicate(xs, 1));
  cJSON_AddNumberToObject(fi, "dimension", jnum(fidinfo, "dimension"));
  cJSON_AddNumberToObject(fi, "n_real", jnum(fidinfo, "n_real"));
  cJSON_AddNumberToObject(fi, "n_generated", jnum(fidinfo, "n_generated"));
  cJSON_AddBoolToObject(fi, "rank_deficient", cJSON_IsTrue(cJSON_GetObjectItem(fidinfo, "rank_deficient")));
  double floor = jnum(fidinfo, "real_vs_real_floor");
  const long long nr = (long long)jnum(fidinfo, "n_real");
  const double halves[2] = {(double)(nr / 2), (double)(nr - nr / 2)}; /* the floor's two N */
  if (isfinite(floor)) {
    cJSON_AddNumberToObject(fi, "real_vs_real_floor", floor);
    cJSON_AddItemToObject(fi, "real_vs_real_floor_n", cJSON_CreateDoubleArray(halves, 2));
  }
  if (any_is)
    cJSON_AddStringToObject(d, "inception_score", "Inception Score of the best-FID epoch's generated set, 10 splits");
  else
    cJSON_AddStringToObject(d, "inception_score", "not computed: IS needs the inception extractor (gan.inception_weights)");
  if (best >= 0) {
    cJSON *b = cJSON_AddObjectToObject(d, "best");
    char gpath[256];
    snprintf(gpath, sizeof gpath, "runs/%s/best/generator.h5", c[best].name);
    cJSON_AddStringToObject(b, "run", c[best].name);
    cJSON_AddNumberToObject(b, "fid", best_fid);
    cJSON_AddStringToObject(b, "generator", gpath);
    const cJSON *ts = cJSON_GetObjectItem(docs[best], "tsne");
    if (ts) {
      cJSON *t2 = cJSON_Duplicate(ts, 1);
      snprintf(gpath, sizeof gpath, "runs/%s/tsne.csv", c[best].name);
      cJSON_ReplaceItemInObject(t2, "file", cJSON_CreateString(gpath));
      cJSON_AddItemToObject(b, "tsne", t2);
    }
  }
  /* Table 4.4 form: a row per loss, a column per (filters, SN/TTUR) */
  mp_strbuf md = {0}, csv = {0};
  mp_strbuf_printf(&md, "# GAN sweep (Table 4.4 form)\n\nFID of the best epoch (extractor `%s`, %.0f-d; N real %.0f, N "
                        "generated %.0f%s); real-vs-real floor %.2f (two halves of the real set, N %.0f / %.0f). "
                        "%s\n\n"
                        "| loss |",
                   fidinfo ? cJSON_GetObjectItem(fidinfo, "extractor")->valuestring : "none", jnum(fidinfo, "dimension"),
                   jnum(fidinfo, "n_real"), jnum(fidinfo, "n_generated"),
                   cJSON_IsTrue(cJSON_GetObjectItem(fidinfo, "rank_deficient")) ? "; N < dimension: biased" : "", floor,
                   halves[0], halves[1],
                   any_is ? "Cells: FID / IS (Inception Score of the same epoch's generated set, 10 splits)."
                          : "IS: not computed (needs the inception extractor, gan.inception_weights).");
  mp_strbuf_printf(&csv, "run,loss,filters,sn_ttur,status,best_fid,best_epoch,best_is,best_is_std\n");
  for (int j = 0; j < nf * ns; j++)
    mp_strbuf_printf(&md, " f=%d%s |", c[j].f, c[j].sn ? " SN/TTUR" : "");
  mp_strbuf_printf(&md, "\n|---|");
  for (int j = 0; j < nf * ns; j++) mp_strbuf_printf(&md, "---:|");
  for (int i = 0; i < n; i++) {
    if (i % (nf * ns) == 0) mp_strbuf_printf(&md, "\n| %s |", mp_gan_loss_name(c[i].loss));
    double bf = jnum(cJSON_GetObjectItem(docs[i], "fid"), "best");
    double bi = jnum(cJSON_GetObjectItem(docs[i], "inception_score"), "mean");
    double bis = jnum(cJSON_GetObjectItem(docs[i], "inception_score"), "std");
    if (status[i] == RUN_DIVERGED) mp_strbuf_printf(&md, " diverged |");
    else if (isfinite(bf) && isfinite(bi)) mp_strbuf_printf(&md, " %.1f / %.2f%s |", bf, bi, i == best ? " **best**" : "");
    else if (isfinite(bf)) mp_strbuf_printf(&md, " %.1f%s |", bf, i == best ? " **best**" : "");
    else mp_strbuf_printf(&md, " %s |", st_name[status[i]]);
    mp_strbuf_printf(&csv, "%s,%s,%d,%s,%s,", c[i].name, mp_gan_loss_name(c[i].loss), c[i].f, c[i].sn ? "on" : "off",
                     st_name[status[i]]);
    if (isfinite(bf)) mp_strbuf_printf(&csv, "%.6f,%.0f,", bf, jnum(cJSON_GetObjectItem(docs[i], "fid"), "best_epoch"));
    else mp_strbuf_printf(&csv, ",,");
    if (isfinite(bi)) mp_strbuf_printf(&csv, "%.6f,%.6f\n", bi, bis);
    else mp_strbuf_printf(&csv, ",\n");
  }
  mp_strbuf_printf(&md, "\n\n![FID per epoch](charts/fid.svg)\n");
  if (any_is) mp_strbuf_printf(&md, "\n![IS per epoch](charts/is.svg)\n");
  char dir[4400];
  snprintf(dir, sizeof dir, "%s/charts", a->out_dir);
  int rc = mp_mkdir_p(dir, err, errlen);
  /* Figure 4.2 form: FID (and IS) per epoch, a series per run (colour: loss, dashed: SN/TTUR) */
  if (!rc) rc = curve_svg(a->out_dir, runs, c, n, "fid_curve", "FID per epoch (colour: loss; dashed: SN/TTUR)", "FID",
                          "fid", err, errlen);
  if (!rc && any_is)
    rc = curve_svg(a->out_dir, runs, c, n, "is_curve", "Inception Score per epoch (colour: loss; dashed: SN/TTUR)", "IS",
                   "is", err, errlen);
  const cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(d, "best"), "tsne");
  if (!rc && ts) {
    rc = tsne_svg(a->out_dir, cJSON_GetObjectItem(ts, "file")->valuestring, err, errlen);
    if (!rc)
      mp_strbuf_printf(&md, "\n![t-SNE of real and generated lesion features](charts/tsne.svg)\n\nt-SNE map of %.0f real "
                            "and %.0f generated lesion patches' features (best run, its best epoch; perplexity %.1f). "
                            "Distances in the map are not distances in feature space: only neighbourhoods are kept.\n",
                       jnum(ts, "points_real"), jnum(ts, "points_generated"), jnum(ts, "perplexity"));
  }
  char path[4400];
  snprintf(path, sizeof path, "%s/sweep.md", a->out_dir);
  if (!rc) rc = mp_write_file_atomic(path, md.s, md.len, err, errlen);
  snprintf(path, sizeof path, "%s/sweep.csv", a->out_dir);
  if (!rc) rc = mp_write_file_atomic(path, csv.s, csv.len, err, errlen);
  snprintf(path, sizeof path, "%s/sweep.json", a->out_dir);
  if (!rc) rc = mp_json_write_file(path, d, err, errlen);
  if (!rc) MP_INFO("sweep: %s/sweep.md%s%s%s", a->out_dir, best >= 0 ? "; best " : "", best >= 0 ? c[best].name : "",
                   best >= 0 ? "" : " (no run has an FID)");
  for (int i = 0; i < n; i++) cJSON_Delete(docs[i]);
  mp_free(docs);
  mp_strbuf_free(&md), mp_strbuf_free(&csv);
  cJSON_Delete(d);
  return rc;
}

/* The rank groups of an n-run grid on K ranks (*G) and the batch sizes they imply: gan.groups
 * divides K, gan.batch the ranks of a group, gan.bn_group (when set) each rank's share. */
static int check_sizes(const mp_config *cfg, int K, int n, int *G, char *err, size_t errlen) {
  *G = mp_group_count(K, (int)mp_config_int(cfg, "gan.groups"), n);
  if (*G > K || K % *G) return snprintf(err, errlen, "gan.groups = %d must divide the %d ranks", *G, K), -1;
  const long long B = mp_config_int(cfg, "gan.batch"), g = mp_config_int(cfg, "gan.bn_group");
  const int k = K / *G;
  if (B % k) return snprintf(err, errlen, "gan.batch = %lld is not a multiple of the %d ranks per group", B, k), -1;
  if (g > 0 && (B / k) % g)
    return snprintf(err, errlen, "gan.bn_group = %lld does not divide the per-rank batch %lld (gan.batch %lld over %d ranks "
                    "per group)", g, B / k, B, k),
           -1;
  return 0;
}

int mp_gan_sweep_check(const mp_config *cfg, int K, char *err, size_t errlen) {
  cell *c = NULL;
  int n, nl, nf, ns, G;
  int rc = parse_grid(cfg, &c, &n, &nl, &nf, &ns, err, errlen);
  if (!rc) rc = check_sizes(cfg, K, n, &G, err, errlen);
  mp_free(c);
  return rc;
}

int mp_gan_sweep_run(MPI_Comm comm, const mp_config *cfg, const mp_gan_sweep_args *a) {
  int rank, K;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &K);
  char err[1024] = "";
  cell *c = NULL;
  int n = 0, nl, nf, ns;
  int G = 1, rc = parse_grid(cfg, &c, &n, &nl, &nf, &ns, err, sizeof err);
  if (!rc) rc = check_sizes(cfg, K, n, &G, err, sizeof err);
  if (!rc && !a->extractor_dir && !mp_config_str(cfg, "gan.inception_weights")[0])
    rc = -1, snprintf(err, sizeof err, "the sweep needs --extractor (a train directory) or gan.inception_weights");
  if (rc) {
    if (rank == 0) MP_ERROR("%s", err);
    mp_free(c);
    return MP_EXIT_USAGE;
  }
  int *plan = mp_calloc((size_t)n, sizeof *plan), *status = mp_calloc((size_t)n, sizeof *status);
  if (rank == 0) {
    if (mp_mkdir_p(a->out_dir, err, sizeof err) != 0) rc = -1;
    /* a finished run is reused only when this split and configuration made it */
    for (int i = 0; i < n && !rc; i++) {
      char dir[4300], st[16] = "";
      snprintf(dir, sizeof dir, "%s/runs/%s", a->out_dir, c[i].name);
      mp_gan_train_args ta = {a->store_path, dir, a->extractor_dir, a->split_seed, c[i].loss, c[i].f, c[i].sn};
      int f = mp_gan_run_finished(dir, cfg, &ta, st, sizeof st, err, sizeof err);
      if (f < 0) rc = -2; /* made by another configuration: refused (usage) */
      if (f > 0) plan[i] = strcmp(st, "completed") == 0 ? RUN_REUSED : RUN_DIVERGED;
    }
  }
  MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, comm));
  if (rc) {
    if (rank == 0) MP_ERROR("%s", err);
    mp_free(c), mp_free(plan), mp_free(status);
    return rc == -2 ? MP_EXIT_USAGE : MP_EXIT_FAILURE;
  }
  MP_CHECK_MPI(MPI_Bcast(plan, n, MPI_INT, 0, comm));
  int reused = 0;
  for (int i = 0; i < n; i++) reused += plan[i] != RUN_NOT;
  MP_INFO("gan sweep: %d losses x %d filters x %d SN/TTUR = %d runs on %d rank group%s of %d; %d reused", nl, nf, ns, n,
          G, G == 1 ? "" : "s", K / G, reused);
  mp_group grp;
  mp_group_split(comm, G, &grp);
  mp_backend_gpu_plan(cfg, comm, grp.group);
  mp_signal_catch_stop();
  for (int i = grp.group; i < n; i += G) {
    int sig = mp_signal_stop();
    MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, grp.comm));
    if (sig) break;
    int st = plan[i];
    if (st == RUN_NOT) {
      char dir[4300];
      snprintf(dir, sizeof dir, "%s/runs/%s", a->out_dir, c[i].name);
      mp_gan_train_args ta = {a->store_path, dir, a->extractor_dir, a->split_seed, c[i].loss, c[i].f, c[i].sn};
      mp_gan_result res;
      int r2 = mp_gan_train_run(grp.comm, cfg, &ta, &res);
      st = r2 == MP_EXIT_OK                       ? RUN_DONE
           : strcmp(res.status, "diverged") == 0 ? RUN_DIVERGED
           : r2 == MP_EXIT_INTERRUPTED           ? RUN_INTERRUPTED
                                                 : RUN_FAILED;
    }
    if (grp.rank == 0) status[i] = st;
    if (rank == 0)
      MP_INFO("gan sweep: run %d/%d %s: %s", i + 1, n, c[i].name,
              st == RUN_DIVERGED ? "diverged (recorded; the sweep goes on)"
              : st == RUN_REUSED ? "reused"
              : st == RUN_DONE   ? "completed"
                                 : st == RUN_FAILED ? "failed" : "interrupted");
    if (st == RUN_INTERRUPTED) break;
  }
  mp_group_free(&grp);
  mp_barrier_quiet(comm); /* groups done early wait here without taking a core */
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, status, n, MPI_INT, MPI_MAX, comm));
  int failed = 0, unfinished = 0;
  for (int i = 0; i < n; i++) failed += status[i] == RUN_FAILED, unfinished += status[i] == RUN_NOT || status[i] == RUN_INTERRUPTED;
  int result = unfinished ? MP_EXIT_INTERRUPTED : failed ? MP_EXIT_FAILURE : MP_EXIT_OK;
  if (rank == 0 && write_outputs(cfg, K, G, a, c, n, status, nf, ns, err, sizeof err) != 0) {
    MP_ERROR("%s", err);
    result = MP_EXIT_FAILURE;
  }
  MP_CHECK_MPI(MPI_Bcast(&result, 1, MPI_INT, 0, comm));
  mp_free(c), mp_free(plan), mp_free(status);
  return result;
}
