/* mp_evaluate — `mammopatch eval` (see mp_evaluate.h). */
#include "mp_evaluate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_metrics.h"
#include "mp_models.h"
#include "mp_mpi.h"
#include "mp_split.h"
#include "mp_store.h"

double mp_eval_best_mcc_threshold(const float *scores, const uint8_t *truth, size_t n, double *best_mcc) {
  mp_sweep_point *pt;
  double P;
  size_t k = mp_metrics_sweep(scores, truth, n, &pt, &P);
  /* threshold = a distinct score: predicted positive = every sample at or above it */
  double N = (double)n - P, best = -2, thr = 0.5;
  for (size_t i = 0; i < k; i++) {
    mp_binary_metrics m;
    mp_metrics_from_counts(pt[i].tp, pt[i].fp, N - pt[i].fp, P - pt[i].tp, &m);
    if (m.mcc >= best) best = m.mcc, thr = pt[i].score; /* >=: the lowest of equal-MCC thresholds */
  }
  mp_free(pt);
  if (best_mcc) *best_mcc = best < -1 ? 0 : best;
  return thr;
}

/* logit <-> probability (thresholds are given and reported as probabilities) */
static double to_logit(double p) { return p <= 0 ? -INFINITY : p >= 1 ? INFINITY : log(p / (1 - p)); }
static double to_prob(double z) { return 1.0 / (1.0 + exp(-z)); }

/* Logits of the part's patches idx[0..n) (store order), gathered at rank 0 (NULL
 * elsewhere).  Each rank scores its block. */
static float *score_part(MPI_Comm comm, mp_store *st, mp_net *b1, mp_net *rest, int eb, const uint64_t *idx,
                         uint64_t n) {
  int rank, K;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &K);
  mp_range r = mp_shard_block(n, K, rank);
  uint64_t m = r.end - r.begin;
  int P = mp_store_patch_size(st);
  size_t px = (size_t)P * P;
  uint8_t *pix = mp_malloc((m + 1) * px);
  MP_CHECK(mp_store_read_pixels_at(st, idx + r.begin, m, pix) == 0, "cannot read patches from the store");
  float *x = mp_malloc((size_t)eb * px * sizeof *x), *mine = mp_malloc((m + 1) * sizeof *mine);
  for (uint64_t i = 0; i < m; i += (uint64_t)eb) {
    int k = (int)(m - i < (uint64_t)eb ? m - i : (uint64_t)eb);
    for (size_t e = 0; e < (size_t)k * px; e++) x[e] = (float)pix[i * px + e] / 127.5f - 1.0f;
    const float *y = mp_net_forward(rest, mp_net_forward(b1, x, k, false, 0), k, false, 0);
    for (int j = 0; j < k; j++) mine[i + j] = y[j];
  }
  int *counts = mp_malloc((size_t)K * sizeof *counts), *displs = mp_malloc((size_t)K * sizeof *displs);
  for (int q = 0; q < K; q++) {
    mp_range rq = mp_shard_block(n, K, q);
    counts[q] = (int)(rq.end - rq.begin), displs[q] = (int)rq.begin;
  }
  float *all = rank == 0 ? mp_malloc((n + 1) * sizeof *all) : NULL;
  MP_CHECK_MPI(MPI_Gatherv(mine, (int)m, MPI_FLOAT, all, counts, displs, MPI_FLOAT, 0, comm));
  mp_free(pix), mp_free(x), mp_free(mine), mp_free(counts), mp_free(displs);
  return all;
}

/* ROC and PR curves at the distinct scores (logits), at most ~max_points points each. */
static void add_curves(cJSON *o, const float *s, const uint8_t *t, size_t n, size_t max_points) {
  mp_sweep_point *pt;
  double P;
  size_t k = mp_metrics_sweep(s, t, n, &pt, &P), every = k / max_points + 1;
  double N = (double)n - P;
  if (P == 0 || N == 0) {
    mp_free(pt);
    return;
  }
  cJSON *roc = cJSON_AddArrayToObject(o, "roc"), *pr = cJSON_AddArrayToObject(o, "pr");
  cJSON *p0 = cJSON_CreateArray();
  cJSON_AddItemToArray(p0, cJSON_CreateNumber(0));
  cJSON_AddItemToArray(p0, cJSON_CreateNumber(0));
  cJSON_AddItemToArray(roc, p0);
  for (size_t i = 0; i < k; i++) {
    if (i % every == 0 || i + 1 == k) { /* [fpr, tpr, threshold] and [recall, precision, threshold] */
      double tp = pt[i].tp, fp = pt[i].fp;
      const double th = to_prob(pt[i].score); /* scores are logits; thresholds as probabilities */
      double v1[3] = {fp / N, tp / P, th}, v2[3] = {tp / P, tp / (tp + fp), th};
      cJSON_AddItemToArray(roc, cJSON_CreateDoubleArray(v1, 3));
      cJSON_AddItemToArray(pr, cJSON_CreateDoubleArray(v2, 3));
    }
  }
  mp_free(pt);
}

/* s: logits; thr_z: the threshold as a logit */
static cJSON *level_json(const float *s, const uint8_t *t, size_t n, double thr_z) {
  mp_binary_metrics m;
  mp_metrics_compute(s, t, n, thr_z, &m);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "n", m.n);
  cJSON_AddNumberToObject(o, "positives", m.positives);
  static const char *names[] = {"accuracy", "precision", "recall", "f1", "mcc"};
  double vals[] = {m.accuracy, m.precision, m.recall, m.f1, m.mcc};
  for (int i = 0; i < 5; i++) cJSON_AddNumberToObject(o, names[i], vals[i]);
  if (m.auc_undefined) {
    cJSON_AddNullToObject(o, "roc_auc");
    cJSON_AddNullToObject(o, "pr_auc");
  } else {
    cJSON_AddNumberToObject(o, "roc_auc", m.roc_auc);
    cJSON_AddNumberToObject(o, "pr_auc", m.pr_auc);
  }
  cJSON *c = cJSON_AddObjectToObject(o, "confusion");
  cJSON_AddNumberToObject(c, "tp", m.tp);
  cJSON_AddNumberToObject(c, "fp", m.fp);
  cJSON_AddNumberToObject(c, "tn", m.tn);
  cJSON_AddNumberToObject(c, "fn", m.fn);
  cJSON *u = cJSON_AddArrayToObject(o, "undefined");
  if (m.precision_undefined) cJSON_AddItemToArray(u, cJSON_CreateString("precision (nothing predicted positive): 0"));
  if (m.recall_undefined) cJSON_AddItemToArray(u, cJSON_CreateString("recall (no positives): 0"));
  if (m.f1_undefined) cJSON_AddItemToArray(u, cJSON_CreateString("f1: 0"));
  if (m.mcc_undefined) cJSON_AddItemToArray(u, cJSON_CreateString("mcc (a zero margin of the confusion matrix): 0"));
  if (m.auc_undefined) cJSON_AddItemToArray(u, cJSON_CreateString("roc_auc, pr_auc (one class only): null"));
  add_curves(o, s, t, n, 200);
  return o;
}

/* The split seed recorded by train (rank 0 reads; broadcast); -1 on failure. */
static int read_split(MPI_Comm comm, const char *dir, uint64_t *seed, cJSON **doc, char *err, size_t errlen) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  double v = -1;
  if (rank == 0) {
    char path[4200];
    snprintf(path, sizeof path, "%s/split.json", dir);
    *doc = mp_json_read_file(path, err, errlen);
    const cJSON *s = *doc ? cJSON_GetObjectItem(*doc, "split_seed") : NULL;
    if (cJSON_IsNumber(s)) v = s->valuedouble;
    else if (*doc && snprintf(err, errlen, "'%s' has no split_seed", path) < 0) err[0] = 0;
  }
  MP_CHECK_MPI(MPI_Bcast(&v, 1, MPI_DOUBLE, 0, comm));
  *seed = (uint64_t)v;
  return v < 0 ? -1 : 0;
}

int mp_eval_run(MPI_Comm comm, const mp_config *cfg, const mp_eval_args *a) {
  int rank, K;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &K);
  const char *out = a->out_dir ? a->out_dir : a->train_dir;
  char err[1024] = "";
  uint64_t seed = 0;
  cJSON *split_doc = NULL;
  if (read_split(comm, a->train_dir, &seed, &split_doc, err, sizeof err) != 0) {
    MP_ERROR("%s", err[0] ? err : "cannot read the split");
    cJSON_Delete(split_doc);
    return MP_EXIT_FAILURE;
  }
  mp_backend *be = mp_backend_create_cfg(cfg, err, sizeof err);
  mp_store *st = be ? mp_store_open(a->store_path, err, sizeof err) : NULL;
  int ok = st != NULL;
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm));
  if (!ok) {
    MP_ERROR("%s", err[0] ? err : "cannot open the store on another rank");
    if (st) mp_store_close(st);
    if (be) mp_backend_free(be);
    cJSON_Delete(split_doc);
    return MP_EXIT_FAILURE;
  }
  cJSON *compute = mp_backend_compute_json(be, NULL, comm); /* rank 0: eval.json's "compute" */
  uint64_t n = mp_store_count(st);
  uint8_t *labels = mp_malloc(n + 1);
  uint32_t *views = mp_malloc((n + 1) * sizeof *views);
  mp_store_tables tb;
  MP_CHECK(mp_store_read_labels(st, labels) == 0 && mp_store_read_views(st, views) == 0 &&
               mp_store_read_tables(st, &tb) == 0,
           "cannot read the store's tables");
  uint8_t *part = mp_malloc(tb.npatients + 1);
  mp_split_store_patients(tb.view_patient, tb.npatients, labels, views, n, seed, part, NULL);
  /* the recomputed split must be the one train used */
  int same = 1;
  if (rank == 0) {
    static const char *names[3] = {"train", "validation", "test"};
    for (int q = 0; q < 3 && same; q++) {
      const cJSON *list = cJSON_GetObjectItem(cJSON_GetObjectItem(split_doc, names[q]), "patients"), *e;
      uint64_t listed = 0, mine = 0;
      for (uint64_t p = 0; p < tb.npatients; p++) mine += part[p] == q;
      cJSON_ArrayForEach(e, list) {
        listed++;
        uint64_t p = 0;
        while (p < tb.npatients && strcmp(tb.pseudonym[p], e->valuestring ? e->valuestring : "") != 0) p++;
        if (p == tb.npatients || part[p] != q) same = 0;
      }
      if (listed != mine) same = 0;
    }
  }
  cJSON_Delete(split_doc);
  MP_CHECK_MPI(MPI_Bcast(&same, 1, MPI_INT, 0, comm));
  int status = MP_EXIT_OK;
  mp_net *b1 = NULL, *rest = NULL;
  const int eb = (int)mp_config_int(cfg, "eval.batch");
  if (!same) {
    MP_ERROR("the store '%s' does not give the split recorded in %s/split.json (another store?)", a->store_path,
             a->train_dir);
    status = MP_EXIT_FAILURE;
  } else {
    mp_model_classifier(be, eb, (uint64_t)mp_config_int(cfg, "run.seed"), 0.0f, &b1, &rest);
    char path[4300];
    snprintf(path, sizeof path, "%s/best/block1.h5", a->train_dir);
    int rc = mp_net_load(b1, path, NULL, err, sizeof err);
    snprintf(path, sizeof path, "%s/best/rest.h5", a->train_dir);
    if (!rc) rc = mp_net_load(rest, path, NULL, err, sizeof err);
    MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, comm));
    if (rc) {
      MP_ERROR("%s", err[0] ? err : "cannot load the model on another rank");
      status = MP_EXIT_FAILURE;
    }
  }
  if (status == MP_EXIT_OK) {
    uint64_t *idx[2], cnt[2] = {0, 0};
    for (int q = 0; q < 2; q++) idx[q] = mp_malloc((n + 1) * sizeof(uint64_t));
    for (uint64_t i = 0; i < n; i++) {
      uint8_t q = part[tb.view_patient[views[i]]];
      if (q == MP_PART_VAL) idx[0][cnt[0]++] = i;
      if (q == MP_PART_TEST) idx[1][cnt[1]++] = i;
    }
    double thr = mp_config_real(cfg, "eval.threshold"), thr_z = to_logit(thr), val_mcc = 0;
    bool from_val = strcmp(mp_config_str(cfg, "eval.threshold_from"), "validation") == 0;
    if (from_val) {
      float *vs = score_part(comm, st, b1, rest, eb, idx[0], cnt[0]);
      if (rank == 0 && cnt[0] > 0) {
        uint8_t *vt = mp_malloc(cnt[0] + 1);
        for (uint64_t i = 0; i < cnt[0]; i++) vt[i] = labels[idx[0][i]];
        thr_z = mp_eval_best_mcc_threshold(vs, vt, cnt[0], &val_mcc); /* a validation logit */
        thr = to_prob(thr_z);
        mp_free(vt);
      }
      mp_free(vs);
    }
    float *ts = score_part(comm, st, b1, rest, eb, idx[1], cnt[1]);
    if (rank == 0) {
      uint64_t m = cnt[1];
      uint8_t *tt = mp_malloc(m + 1);
      uint32_t *tv = mp_malloc((m + 1) * sizeof *tv);
      for (uint64_t i = 0; i < m; i++) tt[i] = labels[idx[1][i]], tv[i] = views[idx[1][i]];
      /* views, then patients, from the present groups only */
      float *vs = mp_malloc((tb.nviews + 1) * sizeof *vs), *vsc = mp_malloc((tb.nviews + 1) * sizeof *vsc);
      uint8_t *vt = mp_malloc(tb.nviews + 1), *vp = mp_malloc(tb.nviews + 1), *vtc = mp_malloc(tb.nviews + 1);
      uint32_t *vpat = mp_malloc((tb.nviews + 1) * sizeof *vpat);
      mp_metrics_rollup(ts, tt, tv, m, tb.nviews, vs, vt, vp);
      size_t nv = 0;
      for (uint64_t v = 0; v < tb.nviews; v++)
        if (vp[v]) vsc[nv] = vs[v], vtc[nv] = vt[v], vpat[nv] = tb.view_patient[v], nv++;
      float *ps = mp_malloc((tb.npatients + 1) * sizeof *ps), *psc = mp_malloc((tb.npatients + 1) * sizeof *psc);
      uint8_t *pt = mp_malloc(tb.npatients + 1), *pp = mp_malloc(tb.npatients + 1), *ptc = mp_malloc(tb.npatients + 1);
      mp_metrics_rollup(vsc, vtc, vpat, nv, tb.npatients, ps, pt, pp);
      size_t np = 0;
      for (uint64_t p = 0; p < tb.npatients; p++)
        if (pp[p]) psc[np] = ps[p], ptc[np] = pt[p], np++;
      cJSON *d = cJSON_CreateObject();
      cJSON_AddItemToObject(d, "provenance", mp_json_provenance(cfg, K));
      if (compute) cJSON_AddItemToObject(d, "compute", compute), compute = NULL;
      cJSON_AddStringToObject(d, "model", "best/ (the best-validation-MCC checkpoint of train)");
      cJSON_AddStringToObject(d, "train_dir", a->train_dir);
      cJSON_AddNumberToObject(d, "split_seed", (double)seed);
      cJSON *so = cJSON_AddObjectToObject(d, "store");
      cJSON_AddStringToObject(so, "path", a->store_path);
      cJSON_AddNumberToObject(so, "patches", (double)n);
      cJSON *th = cJSON_AddObjectToObject(d, "threshold");
      cJSON_AddNumberToObject(th, "value", thr);
      cJSON_AddStringToObject(th, "chosen", from_val ? "maximises the patch MCC on the validation split"
                                                     : "fixed (eval.threshold) on the sigmoid");
      if (from_val) cJSON_AddNumberToObject(th, "validation_mcc", val_mcc);
      cJSON *lv = cJSON_AddObjectToObject(d, "test");
      cJSON_AddItemToObject(lv, "patch", level_json(ts, tt, m, thr_z));
      cJSON_AddItemToObject(lv, "view", level_json(vsc, vtc, nv, thr_z));
      cJSON_AddItemToObject(lv, "patient", level_json(psc, ptc, np, thr_z));
      char path[4300];
      if (mp_mkdir_p(out, err, sizeof err) != 0) {
        MP_ERROR("%s", err);
        status = MP_EXIT_FAILURE;
      } else {
        snprintf(path, sizeof path, "%s/eval.json", out);
        if (mp_json_write_file(path, d, err, sizeof err)) MP_ERROR("%s", err), status = MP_EXIT_FAILURE;
        snprintf(path, sizeof path, "%s/eval_patches.csv", out);
        FILE *f = fopen(path, "w");
        if (f) {
          fprintf(f, "store_index,view,patient,label,probability,logit\n");
          for (uint64_t i = 0; i < m; i++)
            fprintf(f, "%llu,%u,%s,%u,%.17g,%.9g\n", (unsigned long long)idx[1][i], tv[i],
                    tb.pseudonym[tb.view_patient[tv[i]]], tt[i], to_prob(ts[i]), (double)ts[i]);
          if (fclose(f) != 0) status = MP_EXIT_FAILURE;
        } else {
          MP_ERROR("cannot write '%s'", path);
          status = MP_EXIT_FAILURE;
        }
      }
      static const char *lvl[3] = {"patch", "view", "patient"};
      for (int l = 0; l < 3; l++) {
        const cJSON *o = cJSON_GetObjectItem(lv, lvl[l]), *auc = cJSON_GetObjectItem(o, "roc_auc");
        char aucs[32] = "undefined";
        if (cJSON_IsNumber(auc)) snprintf(aucs, sizeof aucs, "%.3f", auc->valuedouble);
        MP_INFO("test %-7s n %4.0f (%3.0f positive): MCC %.3f F1 %.3f accuracy %.3f ROC AUC %s", lvl[l],
                cJSON_GetObjectItem(o, "n")->valuedouble, cJSON_GetObjectItem(o, "positives")->valuedouble,
                cJSON_GetObjectItem(o, "mcc")->valuedouble, cJSON_GetObjectItem(o, "f1")->valuedouble,
                cJSON_GetObjectItem(o, "accuracy")->valuedouble, aucs);
      }
      MP_INFO("threshold %.4f (%s); %s/eval.json", thr, from_val ? "validation-MCC optimal" : "fixed", out);
      cJSON_Delete(d);
      mp_free(tt), mp_free(tv), mp_free(vs), mp_free(vsc), mp_free(vt), mp_free(vp), mp_free(vtc), mp_free(vpat);
      mp_free(ps), mp_free(psc), mp_free(pt), mp_free(pp), mp_free(ptc);
    }
    mp_free(ts);
    mp_free(idx[0]), mp_free(idx[1]);
    MP_CHECK_MPI(MPI_Bcast(&status, 1, MPI_INT, 0, comm));
  }
  mp_net_free(b1);
  mp_net_free(rest);
  mp_free(labels), mp_free(views), mp_free(part);
  mp_store_tables_free(&tb);
  mp_store_close(st);
  cJSON_Delete(compute);
  mp_backend_free(be);
  return status;
}
