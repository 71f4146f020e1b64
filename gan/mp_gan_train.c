/* mp_gan_train — one GAN configuration (see mp_gan_train.h). */
#include "mp_build_config.h"
#include "mp_gan_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_fid.h"
#include "mp_inception.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_signal.h"
#include "mp_strbuf.h"
#include "mp_tsne.h"
#include "mp_models.h"
#include "mp_pseudonym.h" /* mp_sha256_file / _buf: the FID extractor and the real lesions by content */
#include "mp_mpi.h"
#include "mp_rng.h"
#include "mp_split.h"
#include "mp_store.h"

static const char *const loss_names[] = {"wgan-gp", "rsgan", "rasgan", "ralsgan", "rahinge"};

const char *mp_gan_loss_name(mp_gan_loss l) { return (unsigned)l < 5 ? loss_names[l] : "?"; }

int mp_gan_loss_parse(const char *s, mp_gan_loss *l) {
  for (int i = 0; i < 5; i++)
    if (strcmp(s, loss_names[i]) == 0) return *l = (mp_gan_loss)i, 0;
  return -1;
}

typedef struct {
  MPI_Comm comm;
  mp_dp dp; /* the gradient mean: NCCL on the device or MPI in host memory */
  int rank, K, B, b, P; /* global batch, per-rank slice, patch side */
  int grp;              /* samples per statistics group (G's batch norm, the loss's means): b or gan.bn_group */
  size_t px;
  uint64_t seed;
  int nreal;
  uint8_t *real; /* nreal x px */
  mp_backend *be;
  mp_backend *inc_be; /* the Inception extractor's backend when be is a device backend (fp32) */
  cJSON *compute;     /* what computes this session (rank 0; mp_backend_compute_json): gan.json's "compute" */
  mp_net *d, *g, *c1, *c2; /* critic, generator, extractor block 1 and rest (domain) */
  mp_inception *inc;       /* the inception extractor (gan.inception_weights) */
  int z, feat_layer, eb;
  /* which extractor measures the FID, by content (extractor_identity; rank 0): part of the run's
   * snapshot, so FIDs of two extractors never meet in one curve, one checkpoint or one sweep */
  char xid[200];
  cJSON *xsha; /* its files' SHA-256 for gan.json (rank 0) */
  char rid[65]; /* SHA-256 of the real lesion patches it trains on (rank 0): the snapshot's "real_lesions" */
  float *xr; /* b real images, in the backend's memory */
  const uint8_t **src; /* b patch pointers of the current real batch */
  float *zbuf, *flat;
} gan;

/* real patch idx -> x (b images, in the backend's memory): the uint8 patches go through the
 * backend's patch upload (u / 127.5 - 1, no augmentation; on a GPU a quarter of the float bytes
 * from pinned memory, converted on the device) */
static void real_batch(const gan *t, const uint32_t *perm, uint64_t first, float *x) {
  for (int j = 0; j < t->b; j++)
    t->src[j] = t->real + (size_t)perm[(first + (uint64_t)t->rank * t->b + (uint64_t)j) % t->nreal] * t->px;
  t->be->iface->patches_to_input(t->be, t->src, NULL, t->b, t->P, 0, x);
}

/* latents of this rank's slice of global batch `draw` */
static void latents(const gan *t, uint64_t draw, float *z) {
  for (int j = 0; j < t->b; j++) {
    mp_rng r;
    mp_rng_init(&r, t->seed, MP_RNG_GAN_Z, draw * (uint64_t)t->B + (uint64_t)t->rank * t->b + (uint64_t)j);
    for (int k = 0; k < t->z; k++) z[(size_t)j * t->z + k] = (float)mp_rng_normal(&r);
  }
}

/* the epoch's order of the real lesion patches (the same on every rank) */
static void epoch_perm(const gan *t, uint64_t epoch, uint32_t stream, uint32_t *perm) {
  for (int i = 0; i < t->nreal; i++) perm[i] = (uint32_t)i;
  mp_rng r;
  mp_rng_init(&r, t->seed, MP_RNG_SAMPLER, epoch * 2 + stream);
  mp_rng_shuffle_u32(&r, perm, (size_t)t->nreal);
}

/* Mean of a float buffer over ranks (in place). */
static void allreduce_mean(const gan *t, float *v, size_t n) {
  if (t->K == 1) return;
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, t->comm));
  for (size_t i = 0; i < n; i++) v[i] /= (float)t->K;
}

/* Mean over ranks of a net's n gradients and of the `extra` scalars at buf[n..]: the
 * gradients by NCCL on the device where the backend can (the scalars by MPI), else all in
 * one MPI allreduce through buf (n + extra floats). */
static void grads_mean(const gan *t, float *grads, size_t n, float *buf, int extra) {
  if (t->K == 1) return; /* nothing to reduce, and no copy through host memory (on a device backend
                          * that would move every gradient page to the host and back each step) */
  if (t->dp.device) {
    mp_dp_mean(&t->dp, grads, n);
    allreduce_mean(t, buf + n, (size_t)extra);
    return;
  }
  memcpy(buf, grads, n * sizeof *buf);
  allreduce_mean(t, buf, n + (size_t)extra);
  memcpy(grads, buf, n * sizeof *grads);
}

/* Features (dim each) of n uint8 patches through the extractor, eval mode; with the
 * inception extractor also the logits (n x classes) when `logits` is non-NULL. */
static void features(gan *t, const uint8_t *px, int n, float *out, int dim, float *logits) {
  if (t->inc) {
    mp_inception_forward_u8(t->inc, px, n, t->P, out, logits);
    return;
  }
  float *x = mp_malloc((size_t)t->eb * t->px * sizeof *x);
  for (int i = 0; i < n; i += t->eb) {
    int k = n - i < t->eb ? n - i : t->eb;
    for (size_t e = 0; e < (size_t)k * t->px; e++) x[e] = (float)px[(size_t)i * t->px + e] / 127.5f - 1.0f;
    mp_net_forward(t->c2, mp_net_forward(t->c1, x, k, false, 0), k, false, 0);
    size_t per;
    const float *f = mp_net_activation(t->c2, t->feat_layer, &per);
    MP_CHECK(per == (size_t)dim, "extractor feature size %zu", per);
    memcpy(out + (size_t)i * dim, f, (size_t)k * dim * sizeof *out);
  }
  mp_free(x);
}

/* FID of n generated samples (latents keyed by `draw_base`, each rank its share, in
 * batches of b as in training) against the real features; rank 0 computes, all get it. */
static double generated_fid(gan *t, int n, const float *real_feat, int dim, uint64_t draw_base, double is[2],
                            float **keep, char *err, size_t errlen) {
  int batches = (n + t->B - 1) / t->B;
  int mine = 0;
  uint8_t *q = mp_malloc((size_t)batches * t->b * t->px);
  for (int bt = 0; bt < batches; bt++) {
    latents(t, draw_base + (uint64_t)bt, t->zbuf);
    const float *x = mp_net_forward(t->g, t->zbuf, t->b, true, 0);
    for (size_t i = 0; i < (size_t)t->b * t->px; i++) q[(size_t)mine * t->px + i] = mp_gan_to_u8(x[i]);
    mine += t->b;
  }
  float *f = mp_malloc((size_t)mine * dim * sizeof *f);
  const int C = t->inc ? mp_inception_classes(t->inc) : 0;
  float *lg = C ? mp_malloc((size_t)mine * C * sizeof *lg) : NULL;
  features(t, q, mine, f, dim, lg);
  /* gather every rank's features at rank 0: rank r's slice of global batch bt is sample
   * bt * B + r * b + j; the FID does not depend on the order, so concatenate */
  float *all = t->rank == 0 ? mp_malloc((size_t)mine * t->K * dim * sizeof *all) : NULL;
  MP_CHECK_MPI(MPI_Gather(f, mine * dim, MPI_FLOAT, all, mine * dim, MPI_FLOAT, 0, t->comm));
  double fid = NAN;
  is[0] = is[1] = NAN;
  if (t->rank == 0) {
    mp_fid_result r;
    if (mp_fid(real_feat, (size_t)t->nreal, all, (size_t)mine * t->K, dim, &r, err, errlen) == 0) fid = r.fid;
  }
  if (C) { /* the Inception Score of the same generated set, 10 splits (SPEC §8) */
    float *alg = t->rank == 0 ? mp_malloc((size_t)mine * t->K * C * sizeof *alg) : NULL;
    MP_CHECK_MPI(MPI_Gather(lg, mine * C, MPI_FLOAT, alg, mine * C, MPI_FLOAT, 0, t->comm));
    if (t->rank == 0) mp_inception_score(alg, mine * t->K, C, 10, &is[0], &is[1]);
    mp_free(alg);
  }
  MP_CHECK_MPI(MPI_Bcast(&fid, 1, MPI_DOUBLE, 0, t->comm));
  MP_CHECK_MPI(MPI_Bcast(is, 2, MPI_DOUBLE, 0, t->comm));
  if (keep) *keep = all, all = NULL; /* rank 0: the generated features (mine * K x dim) */
  mp_free(q), mp_free(f), mp_free(all), mp_free(lg);
  return fid;
}

/* The latent draws of epoch ep's FID samples (apart from the training steps' 2 * step and
 * 2 * step + 1): the same for a resumed run, which regenerates the best epoch's set so. */
static uint64_t fid_draws(int ep) { return 1ull << 40 | (uint64_t)ep << 20; }

static bool all_finite(const float *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(v[i])) return false;
  return true;
}

/* The training split's lesion patches of a store (not collective): *m patches of side *P in
 * *px (mp_free; allocated also when rc != 0). */
static int read_train_lesions(const char *path, uint64_t split_seed, int *P, uint64_t *m, uint8_t **px, char *err,
                              size_t errlen) {
  *px = NULL, *m = 0;
  mp_store *st = mp_store_open(path, err, errlen);
  if (!st) return -1;
  *P = mp_store_patch_size(st);
  uint64_t *idx = NULL;
  int rc = mp_split_select(st, split_seed, MP_PART_TRAIN, 1, &idx, m, err, errlen);
  *px = mp_malloc((*m + 1) * (size_t)*P * *P);
  if (!rc && *m && mp_store_read_pixels_at(st, idx, *m, *px) != 0) {
    snprintf(err, errlen, "cannot read the lesion patches of '%s'", path);
    rc = -1;
  }
  mp_free(idx);
  mp_store_close(st);
  return rc;
}

/* Load the training split's lesion patches (every rank). */
static int load_real(gan *t, const char *path, uint64_t split_seed, char *err, size_t errlen) {
  uint64_t m = 0;
  int rc = read_train_lesions(path, split_seed, &t->P, &m, &t->real, err, errlen);
  t->px = (size_t)t->P * t->P, t->nreal = (int)m;
  return rc;
}

int mp_gan_real_lesions_id(const char *store, uint64_t split_seed, char hex[65], char *err, size_t errlen) {
  int P = 0;
  uint64_t m = 0;
  uint8_t *px = NULL;
  int rc = read_train_lesions(store, split_seed, &P, &m, &px, err, errlen);
  if (!rc) mp_sha256_buf(px, (size_t)m * P * P, hex);
  mp_free(px);
  return rc;
}

static cJSON *run_snapshot(const mp_config *cfg, const mp_gan_train_args *a, const char *xid, const char *rid);

/* The FID extractor a run measures with, by content: "inception <sha256 of gan.inception_weights>",
 * "domain <sha256 of best/block1.h5> <sha256 of best/rest.h5>" (the classifier in --extractor)
 * or "none", in id; the same hashes as an object for gan.json in *sha (NULL: not wanted).  A
 * path does not identify one: a classifier retrained in the same directory measures other FIDs,
 * and a copy elsewhere the same ones.  0, or -1 (err) when a file cannot be read. */
static int extractor_identity(const mp_config *cfg, const mp_gan_train_args *a, char *id, size_t n, cJSON **sha,
                              char *err, size_t errlen) {
  const char *incw = mp_config_str(cfg, "gan.inception_weights");
  char h[2][65], path[4400];
  if (sha) *sha = NULL;
  if (incw[0]) {
    if (mp_sha256_file(incw, h[0], err, errlen)) return -1;
    snprintf(id, n, "inception %s", h[0]);
    if (sha) cJSON_AddStringToObject(*sha = cJSON_CreateObject(), "weights", h[0]);
  } else if (a->extractor_dir) {
    static const char *const f[2] = {"block1.h5", "rest.h5"};
    for (int i = 0; i < 2; i++) {
      snprintf(path, sizeof path, "%s/best/%s", a->extractor_dir, f[i]);
      if (mp_sha256_file(path, h[i], err, errlen)) return -1;
    }
    snprintf(id, n, "domain %s %s", h[0], h[1]);
    if (sha) {
      *sha = cJSON_CreateObject();
      for (int i = 0; i < 2; i++) cJSON_AddStringToObject(*sha, f[i], h[i]);
    }
  } else
    snprintf(id, n, "none");
  return 0;
}

static void write_json(gan *t, const mp_config *cfg, const mp_gan_train_args *a, const char *status, cJSON *curve,
                       const mp_gan_result *r, const char *extractor, double lr_d, double lr_g, double b1, double b2) {
  if (t->rank != 0) return;
  cJSON *d = cJSON_CreateObject();
  cJSON_AddItemToObject(d, "provenance", mp_json_provenance(cfg, t->K));
  cJSON_AddItemToObject(d, "config", run_snapshot(cfg, a, t->xid, t->rid)); /* what a finished run is reused for */
  cJSON_AddStringToObject(d, "status", status);
  cJSON_AddStringToObject(d, "loss", mp_gan_loss_name(a->loss));
  cJSON_AddNumberToObject(d, "filters", a->filters);
  cJSON_AddNumberToObject(d, "latent", t->z);
  cJSON_AddBoolToObject(d, "sn_ttur", a->sn_ttur);
  cJSON_AddNumberToObject(d, "split_seed", (double)a->split_seed);
  cJSON *o = cJSON_AddObjectToObject(d, "optimiser");
  cJSON_AddNumberToObject(o, "lr_d", lr_d);
  cJSON_AddNumberToObject(o, "lr_g", lr_g);
  cJSON_AddNumberToObject(o, "beta1", b1);
  cJSON_AddNumberToObject(o, "beta2", b2);
  cJSON_AddNumberToObject(d, "batch", t->B);
  cJSON_AddNumberToObject(d, "ranks", t->K);
  if (t->compute) cJSON_AddItemToObject(d, "compute", cJSON_Duplicate(t->compute, 1));
  /* samples per batch-norm statistics group of the generator in training and for the FID
   * (training mode): gan sample forwards as many at a time, so the synthetic patches come
   * from the generator the FID measured */
  cJSON_AddNumberToObject(d, "bn_batch", t->grp);
  cJSON_AddNumberToObject(d, "n_critic", (double)mp_config_int(cfg, "gan.n_critic"));
  cJSON_AddNumberToObject(d, "real_lesion_patches", t->nreal);
  cJSON_AddStringToObject(d, "real_lesions_sha256", t->rid); /* the patches' uint8 pixels, in split order */
  cJSON *f = cJSON_AddObjectToObject(d, "fid");
  cJSON_AddStringToObject(f, "extractor", extractor);
  if (t->xsha) cJSON_AddItemToObject(f, "extractor_sha256", cJSON_Duplicate(t->xsha, 1));
  cJSON_AddNumberToObject(f, "dimension", r->dim);
  cJSON_AddNumberToObject(f, "n_real", r->n_real);
  cJSON_AddNumberToObject(f, "n_generated", r->n_gen);
  cJSON_AddBoolToObject(f, "rank_deficient", r->dim > 0 && (r->n_real < r->dim + 1 || r->n_gen < r->dim + 1));
  if (isfinite(r->floor_fid)) cJSON_AddNumberToObject(f, "real_vs_real_floor", r->floor_fid);
  else cJSON_AddNullToObject(f, "real_vs_real_floor");
  const double halves[2] = {(double)(r->n_real / 2), (double)(r->n_real - r->n_real / 2)}; /* the floor's two N */
  cJSON_AddItemToObject(f, "real_vs_real_floor_n", cJSON_CreateDoubleArray(halves, 2));
  if (isfinite(r->best_fid)) cJSON_AddNumberToObject(f, "best", r->best_fid);
  else cJSON_AddNullToObject(f, "best");
  cJSON_AddNumberToObject(f, "best_epoch", r->best_epoch);
  cJSON *is = cJSON_AddObjectToObject(d, "inception_score");
  if (isfinite(r->best_is)) {
    cJSON_AddNumberToObject(is, "mean", r->best_is);
    cJSON_AddNumberToObject(is, "std", r->best_is_std);
    cJSON_AddNumberToObject(is, "splits", 10);
    cJSON_AddStringToObject(is, "at", "the best-FID epoch");
  } else
    cJSON_AddStringToObject(is, "note", t->inc ? "not computed yet" : "needs the inception extractor (gan.inception_weights)");
  if (r->tsne_points[0]) {
    cJSON *ts = cJSON_AddObjectToObject(d, "tsne");
    cJSON_AddStringToObject(ts, "file", "tsne.csv");
    cJSON_AddNumberToObject(ts, "points_real", r->tsne_points[0]);
    cJSON_AddNumberToObject(ts, "points_generated", r->tsne_points[1]);
    cJSON_AddNumberToObject(ts, "perplexity", r->tsne_perplexity);
    cJSON_AddNumberToObject(ts, "kl_divergence", r->tsne_kl);
    cJSON_AddStringToObject(ts, "features", extractor);
    cJSON_AddNumberToObject(ts, "epoch", r->best_epoch);
  }
  cJSON_AddItemToObject(d, "curve", cJSON_Duplicate(curve, 1));
  char path[4300], err[512];
  snprintf(path, sizeof path, "%s/gan.json", a->out_dir);
  if (mp_json_write_file(path, d, err, sizeof err)) MP_ERROR("%s", err);
  cJSON_Delete(d);
}

static int save_nets(gan *t, const char *dir, bool critic, uint64_t step, char *err, size_t errlen) {
  int rc = 0;
  if (t->rank == 0) {
    char path[4400];
    rc = mp_mkdir_p(dir, err, errlen);
    snprintf(path, sizeof path, "%s/generator.h5", dir);
    if (!rc) rc = mp_net_save(t->g, path, step, err, errlen);
    snprintf(path, sizeof path, "%s/critic.h5", dir);
    if (!rc && critic) rc = mp_net_save(t->d, path, step, err, errlen);
  }
  MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, t->comm));
  return rc;
}

/* ---- the t-SNE map (SPEC §8) ---------------------------------------------------------------------
 * Up to 1000 real and 1000 generated feature vectors (the first ones: deterministic), exact
 * t-SNE (eval/mp_tsne, perplexity 30 or n/3 when fewer points), DIR/tsne.csv (set,x,y).
 * Distances in the map are not distances in feature space (the report says so). */
static int write_tsne(gan *t, const mp_gan_train_args *a, const mp_config *cfg, const float *real, const float *gen,
                      int ngen, int dim, const char *extractor, mp_gan_result *R) {
  const int nr = t->nreal < 1000 ? t->nreal : 1000, ng = ngen < 1000 ? ngen : 1000, n = nr + ng;
  if (n < 10) return snprintf(R->tsne_note, sizeof R->tsne_note, "%d points: too few for a map", n), -1;
  double *x = mp_malloc((size_t)n * dim * sizeof *x), *y = mp_malloc((size_t)n * 2 * sizeof *y);
  for (size_t i = 0; i < (size_t)nr * dim; i++) x[i] = real[i];
  for (size_t i = 0; i < (size_t)ng * dim; i++) x[(size_t)nr * dim + i] = gen[i];
  mp_tsne_opts o;
  mp_tsne_defaults(&o);
  o.seed = (uint64_t)mp_config_int(cfg, "run.seed");
  if (o.perplexity > (n - 1) / 3.0) o.perplexity = (n - 1) / 3.0;
  double t0 = mp_now();
  double kl = mp_tsne(x, n, dim, &o, y, R->tsne_note, sizeof R->tsne_note);
  int rc = kl < 0 ? -1 : 0;
  if (!rc) {
    mp_strbuf csv = {0};
    mp_strbuf_printf(&csv, "set,x,y\n");
    for (int i = 0; i < n; i++) mp_strbuf_printf(&csv, "%s,%.6f,%.6f\n", i < nr ? "real" : "generated", y[2 * i], y[2 * i + 1]);
    char path[4400];
    snprintf(path, sizeof path, "%s/tsne.csv", a->out_dir);
    rc = mp_write_file_atomic(path, csv.s, csv.len, R->tsne_note, sizeof R->tsne_note);
    mp_strbuf_free(&csv);
    if (!rc) {
      R->tsne_points[0] = nr, R->tsne_points[1] = ng, R->tsne_perplexity = o.perplexity, R->tsne_kl = kl;
      MP_INFO("t-SNE map of %d real and %d generated %s features (perplexity %.1f, KL %.3f) in %.1f s: %s", nr, ng,
              extractor, o.perplexity, kl, mp_now() - t0, path);
    }
  }
  mp_free(x), mp_free(y);
  return rc;
}

/* ---- checkpoint / resume ------------------------------------------------------------------ */
typedef struct {
  bool found;
  int epoch, s;    /* the next step to run: epoch, step within it */
  uint64_t step;   /* global step (the RNG counter) */
  double dl, gl, pl; /* the epoch's losses summed so far */
} resume_point;

/* The configuration part of a snapshot, from a configuration as JSON (mp_config_to_json's
 * form, or a provenance's "config"): every gan.* key but the rank groups and the sweep grid,
 * and run.seed. */
static cJSON *config_snapshot(const cJSON *all) {
  cJSON *snap = cJSON_CreateObject();
  const cJSON *g = cJSON_GetObjectItem(all, "gan");
  for (const cJSON *k = g ? g->child : NULL; k; k = k->next)
    if (strcmp(k->string, "groups") != 0 && strncmp(k->string, "sweep_", 6) != 0) {
      char key[128];
      snprintf(key, sizeof key, "gan.%s", k->string);
      cJSON_AddItemToObject(snap, key, cJSON_Duplicate(k, 1));
    }
  cJSON_AddItemToObject(snap, "run.seed", cJSON_Duplicate(cJSON_GetObjectItem(cJSON_GetObjectItem(all, "run"), "seed"), 1));
  return snap;
}

/* What a checkpoint must have been made with: every gan.* key but the rank groups, the
 * seed, the backend, this run's loss / filters / SN-TTUR / split, its FID extractor
 * (extractor_identity's id) and the lesion patches it trains on (mp_gan_real_lesions_id's:
 * the same split of another store, or of one made again with other settings, is other data). */
static cJSON *run_snapshot(const mp_config *cfg, const mp_gan_train_args *a, const char *xid, const char *rid) {
  cJSON *all = mp_config_to_json(cfg), *snap = config_snapshot(all);
  cJSON_AddStringToObject(snap, "train.backend", mp_config_str(cfg, "train.backend"));
  cJSON_AddStringToObject(snap, "loss", mp_gan_loss_name(a->loss));
  cJSON_AddNumberToObject(snap, "filters", a->filters);
  cJSON_AddBoolToObject(snap, "sn_ttur", a->sn_ttur);
  cJSON_AddNumberToObject(snap, "split_seed", (double)a->split_seed);
  /* last: a refusal names the plainer key (split_seed for another split, not its other lesions) */
  cJSON_AddStringToObject(snap, "fid_extractor", xid);
  cJSON_AddStringToObject(snap, "real_lesions", rid);
  cJSON_Delete(all);
  return snap;
}

/* The run_snapshot of a gan.json written before gan.json recorded it: rebuilt from its
 * provenance (the whole configuration) and the run's own fields; NULL when those are missing. */
static cJSON *snapshot_from_provenance(const cJSON *d) {
  const cJSON *all = cJSON_GetObjectItem(cJSON_GetObjectItem(d, "provenance"), "config");
  static const char *const own[] = {"loss", "filters", "sn_ttur", "split_seed"};
  if (!cJSON_GetObjectItem(all, "gan") || !cJSON_GetObjectItem(cJSON_GetObjectItem(all, "run"), "seed")) return NULL;
  cJSON *snap = config_snapshot(all);
  for (int i = 0; i < 4; i++) {
    const cJSON *v = cJSON_GetObjectItem(d, own[i]);
    if (!v) return cJSON_Delete(snap), NULL;
    cJSON_AddItemToObject(snap, own[i], cJSON_Duplicate(v, 1));
  }
  return snap;
}

int mp_gan_run_finished(const char *dir, const mp_config *cfg, const mp_gan_train_args *a, char *status, size_t sl,
                        char *err, size_t errlen) {
  char path[4400], e2[256];
  snprintf(path, sizeof path, "%s/gan.json", dir);
  struct stat sb;
  cJSON *d = stat(path, &sb) == 0 ? mp_json_read_file(path, e2, sizeof e2) : NULL;
  const cJSON *st = cJSON_GetObjectItem(d, "status");
  int rc = 0;
  if (cJSON_IsString(st) && (strcmp(st->valuestring, "completed") == 0 || strcmp(st->valuestring, "diverged") == 0)) {
    snprintf(status, sl, "%s", st->valuestring);
    char xid[200], rid[65];
    if (extractor_identity(cfg, a, xid, sizeof xid, NULL, e2, sizeof e2)) {
      snprintf(err, errlen, "the FID extractor: %s", e2);
      cJSON_Delete(d);
      return -1;
    }
    if (mp_gan_real_lesions_id(a->store_path, a->split_seed, rid, e2, sizeof e2)) {
      snprintf(err, errlen, "%s", e2);
      cJSON_Delete(d);
      return -1;
    }
    cJSON *snap = run_snapshot(cfg, a, xid, rid);
    /* neither the backend (a finished run's result stands whatever computed it) nor the
     * checkpoint interval changes what a finished run is */
    cJSON_DeleteItemFromObject(snap, "train.backend");
    cJSON_DeleteItemFromObject(snap, "gan.checkpoint_every");
    cJSON *old = cJSON_GetObjectItem(d, "config") ? NULL : snapshot_from_provenance(d);
    const cJSON *was = old ? old : cJSON_GetObjectItem(d, "config");
    char wv[200], nv[200];
    const char *k = was ? mp_json_first_diff(was, snap, wv, sizeof wv, nv, sizeof nv) : NULL;
    if (!was)
      snprintf(err, errlen, "%.600s (%s) records no configuration: remove it or use another output directory", dir,
               st->valuestring), rc = -1;
    else if (k)
      snprintf(err, errlen, "%.400s (%s) was made with %s = %s, now %s: remove it or use another output directory", dir,
               st->valuestring, k, wv, nv), rc = -1;
    else
      rc = 1;
    cJSON_Delete(snap), cJSON_Delete(old);
  }
  cJSON_Delete(d);
  return rc;
}

/* state.json removed first, both networks with their Adam state (rank 0), then the new
 * state.json: a checkpoint without state.json is incomplete and ignored, so a crash in
 * the middle never pairs one checkpoint's state with another's networks. */
static int save_checkpoint(gan *t, const char *dir, const cJSON *snap, const resume_point *p, const cJSON *curve,
                           const mp_gan_result *R, char *err, size_t errlen) {
  if (t->rank == 0) {
    char sp[4400];
    snprintf(sp, sizeof sp, "%s/state.json", dir);
    remove(sp);
  }
  int rc = save_nets(t, dir, true, p->step, err, errlen);
  if (!rc && t->rank == 0) {
    char path[4400];
    snprintf(path, sizeof path, "%s/state.json", dir);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddItemToObject(d, "config", cJSON_Duplicate(snap, 1));
    cJSON_AddNumberToObject(d, "epoch", p->epoch);
    cJSON_AddNumberToObject(d, "step_in_epoch", p->s);
    cJSON_AddNumberToObject(d, "step", (double)p->step);
    double sums[3] = {p->dl, p->gl, p->pl};
    cJSON_AddItemToObject(d, "loss_sums", cJSON_CreateDoubleArray(sums, 3));
    double best[4] = {R->best_fid, R->best_epoch, R->best_is, R->best_is_std};
    cJSON *b = cJSON_AddArrayToObject(d, "best"); /* NaN as null */
    for (int i = 0; i < 4; i++) cJSON_AddItemToArray(b, isfinite(best[i]) ? cJSON_CreateNumber(best[i]) : cJSON_CreateNull());
    cJSON_AddItemToObject(d, "curve", cJSON_Duplicate(curve, 1));
    rc = mp_json_write_file(path, d, err, errlen);
    cJSON_Delete(d);
  }
  MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, t->comm));
  return rc;
}

/* 0 (p->found says whether there was one), or -1 when the checkpoint was made with
 * another configuration (err names the key) or cannot be read. */
static int load_checkpoint(gan *t, const char *dir, const cJSON *snap, resume_point *p, cJSON **curve,
                           mp_gan_result *R, char *err, size_t errlen) {
  double v[11] = {0}; /* found, epoch, s, step, 3 sums, 4 best */
  int rc = 0;
  if (t->rank == 0) {
    char path[4400];
    snprintf(path, sizeof path, "%s/state.json", dir);
    FILE *fp = fopen(path, "r");
    if (fp) {
      fclose(fp);
      cJSON *d = mp_json_read_file(path, err, errlen);
      char was[200], now[200];
      const char *k = d ? mp_json_first_diff(cJSON_GetObjectItem(d, "config"), snap, was, sizeof was, now, sizeof now) : NULL;
      if (k) {
        snprintf(err, errlen, "%.400s was made with %s = %s, now %s: remove it to start this run afresh", dir, k, was, now);
        rc = -1;
      }
      if (!d) rc = -1;
      if (!rc) {
        v[0] = 1, v[1] = cJSON_GetNumberValue(cJSON_GetObjectItem(d, "epoch"));
        v[2] = cJSON_GetNumberValue(cJSON_GetObjectItem(d, "step_in_epoch"));
        v[3] = cJSON_GetNumberValue(cJSON_GetObjectItem(d, "step"));
        for (int i = 0; i < 3; i++) v[4 + i] = cJSON_GetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(d, "loss_sums"), i));
        for (int i = 0; i < 4; i++) {
          const cJSON *x = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "best"), i);
          v[7 + i] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
        }
        *curve = cJSON_Duplicate(cJSON_GetObjectItem(d, "curve"), 1);
      }
      cJSON_Delete(d);
    }
  }
  MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, t->comm));
  if (rc) return -1;
  MP_CHECK_MPI(MPI_Bcast(v, 11, MPI_DOUBLE, 0, t->comm));
  *p = (resume_point){v[0] != 0, (int)v[1], (int)v[2], (uint64_t)v[3], v[4], v[5], v[6]};
  if (!p->found) return 0;
  R->best_fid = v[7], R->best_epoch = isfinite(v[8]) ? (int)v[8] : 0, R->best_is = v[9], R->best_is_std = v[10];
  char path[4400];
  uint64_t st = 0;
  snprintf(path, sizeof path, "%s/critic.h5", dir);
  rc = mp_net_load(t->d, path, &st, err, errlen);
  snprintf(path, sizeof path, "%s/generator.h5", dir);
  if (!rc) rc = mp_net_load(t->g, path, &st, err, errlen);
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, t->comm));
  return rc ? -1 : 0;
}

int mp_gan_train_run(MPI_Comm comm, const mp_config *cfg, const mp_gan_train_args *a, mp_gan_result *res) {
  gan T = {0}, *t = &T;
  t->comm = comm;
  MPI_Comm_rank(comm, &t->rank);
  MPI_Comm_size(comm, &t->K);
  mp_gan_result R = {.status = "failed", .best_fid = NAN, .floor_fid = NAN, .best_is = NAN, .best_is_std = NAN};
  char err[1024] = "";
  t->B = (int)mp_config_int(cfg, "gan.batch");
  if (t->B % t->K || a->filters < 8 || a->filters % 8) {
    if (t->rank == 0)
      MP_ERROR("gan.batch = %d must be a multiple of the %d ranks, and the filters (%d) a multiple of 8", t->B, t->K,
               a->filters);
    return MP_EXIT_USAGE;
  }
  t->b = t->B / t->K;
  const int bn_group = (int)mp_config_int(cfg, "gan.bn_group");
  if (bn_group > 0 && t->b % bn_group) {
    if (t->rank == 0)
      MP_ERROR("gan.bn_group = %d does not divide the per-rank batch %d (gan.batch %d over %d ranks)", bn_group, t->b,
               t->B, t->K);
    return MP_EXIT_USAGE;
  }
  t->grp = bn_group > 0 && bn_group < t->b ? bn_group : t->b;
  t->seed = (uint64_t)mp_config_int(cfg, "run.seed") ^ (a->split_seed * 0x9E3779B97F4A7C15ull);
  t->z = (int)mp_config_int(cfg, "gan.latent");
  if (t->z == 0) t->z = a->filters; /* SPEC §7: z = f by default */
  t->eb = (int)mp_config_int(cfg, "eval.batch");
  int rc = load_real(t, a->store_path, a->split_seed, err, sizeof err);
  if (rc == 0 && t->nreal < 2) {
    snprintf(err, sizeof err, "the training split (seed %llu) has %d lesion patches: a GAN needs more",
             (unsigned long long)a->split_seed, t->nreal);
    rc = -1;
  }
  const int n_critic = (int)mp_config_int(cfg, "gan.n_critic");
  const int S = t->nreal / t->B > 0 ? t->nreal / t->B : 1, GS = S / n_critic; /* critic / generator steps an epoch */
  if (rc == 0 && GS < 1) {
    snprintf(err, sizeof err, "gan.n_critic = %d critic steps per generator step, but an epoch has %d (%d lesion patches "
             "in batches of %d): no generator step", n_critic, S, t->nreal, t->B);
    rc = -1;
  }
  t->be = rc ? NULL : mp_backend_create_cfg(cfg, err, sizeof err);
  if (!rc && !t->be) rc = -1;
  if (!rc && t->rank == 0 && mp_mkdir_p(a->out_dir, err, sizeof err) != 0) rc = -1;
  /* the extractor: inception (a converted weights file) or domain (the classifier of the
   * same store, its penultimate layer) */
  const char *incw = mp_config_str(cfg, "gan.inception_weights");
  const char *extractor = incw[0] ? "inception" : a->extractor_dir ? "domain" : "none";
  int dim = 0;
  if (!rc && t->rank == 0) rc = extractor_identity(cfg, a, t->xid, sizeof t->xid, &t->xsha, err, sizeof err);
  if (!rc && t->rank == 0) mp_sha256_buf(t->real, (size_t)t->nreal * t->px, t->rid);
  if (!rc && incw[0]) {
    mp_backend *ib = t->be;
    int ibatch = t->eb < 16 ? t->eb : 16;
    if (mp_backend_is_device(t->be)) {
      /* Inception on the device, but always in fp32 (a backend of the same kind in its default
       * precision: the FID's features must not depend on train.precision); on a host backend
       * beside it where the device offers no pooling */
      const bool on_dev = mp_inception_runs_on(t->be);
      t->inc_be = mp_backend_create(on_dev ? t->be->iface->name : MP_HAVE_DNNL ? "cpu" : "ref", err, sizeof err);
      ib = t->inc_be;
      if (on_dev) ibatch = t->eb < 64 ? t->eb : 64;
    }
    t->inc = ib ? mp_inception_load(ib, incw, ibatch, err, sizeof err) : NULL;
    if (!t->inc) rc = -1;
    dim = MP_INCEPTION_POOL3;
  } else if (!rc && a->extractor_dir) {
    mp_model_classifier(t->be, t->eb, 0, 0.0f, &t->c1, &t->c2);
    char path[4300];
    snprintf(path, sizeof path, "%s/best/block1.h5", a->extractor_dir);
    rc = mp_net_load(t->c1, path, NULL, err, sizeof err);
    snprintf(path, sizeof path, "%s/best/rest.h5", a->extractor_dir);
    if (!rc) rc = mp_net_load(t->c2, path, NULL, err, sizeof err);
    t->feat_layer = mp_net_layers(t->c2) - 2; /* input of the last dropout: FC512-ReLU output */
    size_t per = 0;
    if (!rc) mp_net_activation(t->c2, t->feat_layer, &per);
    dim = (int)per;
  }
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, comm));
  if (rc) {
    MP_ERROR("%s", err[0] ? err : "set-up failed on another rank");
    mp_free(t->real);
    mp_net_free(t->c1), mp_net_free(t->c2), mp_inception_free(t->inc), cJSON_Delete(t->xsha);
    if (t->be) mp_backend_free(t->be);
    if (t->inc_be) mp_backend_free(t->inc_be);
    if (res) *res = R;
    return MP_EXIT_FAILURE;
  }
  mp_dp_init(&t->dp, t->be, comm);
  t->compute = mp_backend_compute_json(t->be, &t->dp, comm);
  if (t->compute && t->inc_be) /* the Inception extractor's backend (the FID's features) */
    cJSON_AddStringToObject(t->compute, "extractor_engine", t->inc_be->iface->describe(t->inc_be, NULL, NULL));
  const bool sn = a->sn_ttur;
  t->d = mp_model_dcgan_d(t->be, a->filters, sn, 2 * t->b, t->seed);
  t->g = mp_model_dcgan_g(t->be, t->z, a->filters, t->b, t->seed + 1);
  double lr_d = sn ? 4e-4 : 2e-4, lr_g = sn ? 1e-4 : 2e-4, b1 = sn ? 0.0 : 0.5, b2 = sn ? 0.9 : 0.999;
  if (mp_config_real(cfg, "gan.lr_d") > 0) lr_d = mp_config_real(cfg, "gan.lr_d");
  if (mp_config_real(cfg, "gan.lr_g") > 0) lr_g = mp_config_real(cfg, "gan.lr_g");
  const char *hook = getenv("MAMMOPATCH_TEST_DIVERGE"); /* tests: force this run (dir suffix) to diverge */
  if (hook && *hook && strlen(a->out_dir) >= strlen(hook) && strcmp(a->out_dir + strlen(a->out_dir) - strlen(hook), hook) == 0)
    lr_d *= 1e9, lr_g *= 1e9;
  mp_gan_work *w = mp_gan_work_new(t->d, t->g, a->loss, (float)mp_config_real(cfg, "gan.gp_lambda"), t->b, t->seed);
  mp_gan_work_set_sample_offset(w, (uint64_t)t->rank * t->b, (uint64_t)t->B); /* eps per global sample */
  /* statistics groups: the relativistic means and G's batch norm (by default each rank's b) */
  mp_gan_work_set_group(w, t->grp);
  mp_net_set_bn_group(t->g, t->grp);
  t->xr = t->be->iface->alloc(t->be, (size_t)t->b * t->px * sizeof(float));
  t->src = mp_malloc((size_t)t->b * sizeof *t->src);
  t->zbuf = mp_malloc((size_t)t->b * t->z * sizeof(float));
  size_t nd = mp_net_param_count(t->d), ng = mp_net_param_count(t->g);
  uint32_t *perm[2] = {mp_malloc((size_t)t->nreal * sizeof(uint32_t)), mp_malloc((size_t)t->nreal * sizeof(uint32_t))};
  /* real features once, and the real-vs-real floor */
  float *real_feat = NULL;
  R.n_real = t->nreal, R.dim = dim;
  int n_gen = (int)mp_config_int(cfg, "gan.fid_samples");
  if (n_gen == 0) n_gen = t->nreal;
  n_gen = (n_gen + t->B - 1) / t->B * t->B; /* whole global batches: the same samples for any K */
  R.n_gen = dim ? n_gen : 0;
  if (dim) {
    /* rank r extracts real patches [r n / K, (r + 1) n / K); rank 0 gathers them (the FID,
     * its floor and the t-SNE map are computed there) */
    int *cnt = mp_malloc((size_t)t->K * sizeof *cnt), *off = mp_malloc((size_t)t->K * sizeof *off);
    for (int r = 0; r < t->K; r++) {
      int a0 = (int)((long long)r * t->nreal / t->K), a1 = (int)((long long)(r + 1) * t->nreal / t->K);
      off[r] = a0 * dim, cnt[r] = (a1 - a0) * dim;
    }
    real_feat = mp_malloc((size_t)t->nreal * dim * sizeof *real_feat);
    features(t, t->real + (size_t)(off[t->rank] / dim) * t->px, cnt[t->rank] / dim, real_feat + off[t->rank], dim, NULL);
    MP_CHECK_MPI(MPI_Gatherv(t->rank == 0 ? MPI_IN_PLACE : real_feat + off[t->rank], cnt[t->rank], MPI_FLOAT, real_feat,
                             cnt, off, MPI_FLOAT, 0, comm));
    mp_free(cnt), mp_free(off);
    if (t->rank == 0 && t->nreal >= 4) {
      mp_fid_result fr;
      if (mp_fid(real_feat, (size_t)t->nreal / 2, real_feat + (size_t)(t->nreal / 2) * dim,
                 (size_t)(t->nreal - t->nreal / 2), dim, &fr, err, sizeof err) == 0)
        R.floor_fid = fr.fid;
    }
    MP_CHECK_MPI(MPI_Bcast(&R.floor_fid, 1, MPI_DOUBLE, 0, comm));
  }
  const int epochs = (int)mp_config_int(cfg, "gan.epochs"), fid_every = (int)mp_config_int(cfg, "gan.fid_every");
  MP_INFO("gan %s f=%d z=%d SN/TTUR %s, split %llu: %d real lesion patches, batch %d = %d ranks x %d (statistics "
          "groups of %d), %d critic and "
          "%d generator steps per epoch, %d epochs; Adam D %.0e G %.0e betas (%.1f, %.3f); FID extractor %s (%d-d), N real %d, N generated "
          "%d%s; real-vs-real floor %.2f (two halves, N %d / %d)",
          mp_gan_loss_name(a->loss), a->filters, t->z, sn ? "on" : "off", (unsigned long long)a->split_seed, t->nreal,
          t->B, t->K, t->b, t->grp, S, GS, epochs, lr_d, lr_g, b1, b2, extractor, dim, R.n_real, R.n_gen,
          dim && (R.n_real < dim + 1 || R.n_gen < dim + 1) ? " (N < dimension: singular covariances, FID biased)" : "",
          R.floor_fid, R.n_real / 2, R.n_real - R.n_real / 2);
  mp_signal_catch_stop();
  cJSON *curve = NULL;
  const char *status = "completed";
  /* resume from DIR/checkpoint when there is one (made by the same configuration) */
  char ckdir[4300];
  snprintf(ckdir, sizeof ckdir, "%s/checkpoint", a->out_dir);
  cJSON *snap = run_snapshot(cfg, a, t->xid, t->rid);
  resume_point rp = {0};
  if (load_checkpoint(t, ckdir, snap, &rp, &curve, &R, err, sizeof err) != 0) {
    if (t->rank == 0) MP_ERROR("%s", err);
    cJSON_Delete(snap);
    mp_free(perm[0]), mp_free(perm[1]), mp_free(real_feat), mp_free(t->src), mp_free(t->zbuf);
    t->be->iface->release(t->be, t->xr);
    mp_free(t->real);
    mp_gan_work_free(w);
    mp_net_free(t->d), mp_net_free(t->g), mp_net_free(t->c1), mp_net_free(t->c2), mp_inception_free(t->inc), cJSON_Delete(t->xsha);
    mp_backend_free(t->be);
    if (t->inc_be) mp_backend_free(t->inc_be);
    cJSON_Delete(t->compute);
    if (res) *res = R;
    return MP_EXIT_USAGE;
  }
  if (!curve) curve = cJSON_CreateArray();
  if (rp.found)
    MP_INFO("resuming from %s: epoch %d, step %d of %d (global step %llu)", ckdir, rp.epoch + 1, rp.s, S,
            (unsigned long long)rp.step);
  uint64_t step = rp.step;
  const int ck_every = (int)mp_config_int(cfg, "gan.checkpoint_every");
  float *best_feat = NULL; /* rank 0: the best epoch's generated features */
  float *gd = mp_net_grads(t->d), *gg = mp_net_grads(t->g);
  float *dbuf = mp_malloc((nd + 3) * sizeof *dbuf), *gbuf = mp_malloc((ng + 2) * sizeof *gbuf);
  int result = MP_EXIT_OK;
  for (int ep = rp.epoch; ep < epochs; ep++) {
    const bool first = ep == rp.epoch;
    double t0 = mp_now(), dl = first ? rp.dl : 0, gl = first ? rp.gl : 0, pl = first ? rp.pl : 0;
    epoch_perm(t, (uint64_t)ep, 0, perm[0]);
    epoch_perm(t, (uint64_t)ep, 1, perm[1]);
    bool bad = false, stop = false;
    int s = first ? rp.s : 0;
    for (; s < S; s++, step++) {
      /* D step: real batch, detached fakes (an epoch is S of them; a G step follows every
       * n_critic-th: with gan.n_critic = 1 each) */
      real_batch(t, perm[0], (uint64_t)s * t->B, t->xr);
      latents(t, 2 * step, t->zbuf);
      const float *xf = mp_net_forward(t->g, t->zbuf, t->b, true, step); /* stays in the backend's memory */
      double pen = 0, L = mp_gan_critic_gradients(w, t->xr, xf, step, &pen);
      dbuf[nd] = (float)L, dbuf[nd + 1] = (float)pen, dbuf[nd + 2] = (float)mp_signal_stop();
      grads_mean(t, gd, nd, dbuf, 3);
      mp_net_adam(t->d, (float)lr_d, (float)b1, (float)b2, 1e-8f);
      gbuf[ng] = 0;
      if ((s + 1) % n_critic == 0) {
        /* G step: fresh latents and a fresh real batch (not for WGAN-GP, whose G loss has no
         * real term: mp_gan_generator_gradients leaves xr unread) */
        if (a->loss != MP_GAN_WGAN_GP) real_batch(t, perm[1], (uint64_t)s * t->B, t->xr);
        latents(t, 2 * step + 1, t->zbuf);
        double G = mp_gan_generator_gradients(w, t->xr, t->zbuf, step, NULL);
        gbuf[ng] = (float)G;
        grads_mean(t, gg, ng, gbuf, 1);
        mp_net_adam(t->g, (float)lr_g, (float)b1, (float)b2, 1e-8f);
      }
      dl += dbuf[nd], pl += dbuf[nd + 1], gl += gbuf[ng];
      if (!isfinite(dbuf[nd]) || !isfinite(gbuf[ng])) {
        bad = true;
        break;
      }
      if (dbuf[nd + 2] != 0) {
        stop = true;
        break;
      }
    }
    if (!bad) bad = !all_finite(mp_net_params(t->d), nd) || !all_finite(mp_net_params(t->g), ng);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "epoch", ep + 1);
    if (isfinite(dl) && isfinite(gl)) {
      cJSON_AddNumberToObject(e, "d_loss", dl / S);
      cJSON_AddNumberToObject(e, "g_loss", gl / GS);
      if (a->loss == MP_GAN_WGAN_GP) cJSON_AddNumberToObject(e, "penalty", pl / S);
    }
    if (bad) {
      status = "diverged";
      cJSON_AddStringToObject(e, "note", "NaN/Inf in a loss or a weight: run ended");
      cJSON_AddItemToArray(curve, e);
      MP_WARN("epoch %d: NaN/Inf in a loss or a weight — the run is recorded as diverged", ep + 1);
      result = MP_EXIT_FAILURE;
      break;
    }
    if (stop) { /* mid-epoch: the step just done is the last one in the checkpoint */
      cJSON_Delete(e);
      status = "interrupted";
      resume_point here = {true, ep, s + 1, step + 1, dl, gl, pl};
      if (save_checkpoint(t, ckdir, snap, &here, curve, &R, err, sizeof err) != 0) {
        MP_ERROR("%s", err);
        result = MP_EXIT_FAILURE;
      } else {
        MP_WARN("stop signal: checkpoint at epoch %d step %d/%d in %s; run again to continue", ep + 1, s + 1, S, ckdir);
        result = MP_EXIT_INTERRUPTED;
      }
      break;
    }
    double fid = NAN, is[2] = {NAN, NAN};
    bool last = ep + 1 == epochs;
    if (dim && ((ep + 1) % fid_every == 0 || last)) {
      float *gen_feat = NULL;
      fid = generated_fid(t, n_gen, real_feat, dim, fid_draws(ep), is, &gen_feat, err, sizeof err);
      if (isfinite(fid)) cJSON_AddNumberToObject(e, "fid", fid);
      if (isfinite(is[0])) cJSON_AddNumberToObject(e, "is", is[0]), cJSON_AddNumberToObject(e, "is_std", is[1]);
      if (isfinite(fid) && !(fid >= R.best_fid)) {
        R.best_fid = fid, R.best_epoch = ep + 1, R.best_is = is[0], R.best_is_std = is[1];
        mp_free(best_feat), best_feat = gen_feat, gen_feat = NULL; /* for the t-SNE map */
        char dir[4300];
        snprintf(dir, sizeof dir, "%s/best", a->out_dir);
        if (save_nets(t, dir, false, step, err, sizeof err)) MP_ERROR("%s", err), result = MP_EXIT_FAILURE;
      }
      mp_free(gen_feat);
    }
    cJSON_AddNumberToObject(e, "seconds", mp_now() - t0);
    cJSON_AddItemToArray(curve, e);
    if (isfinite(fid) && isfinite(is[0]))
      MP_INFO("epoch %d/%d: D %.4f G %.4f | FID %.2f IS %.3f ± %.3f (%s, N %d/%d) | %.1f s", ep + 1, epochs, dl / S,
              gl / GS, fid, is[0], is[1], extractor, R.n_real, R.n_gen, mp_now() - t0);
    else if (isfinite(fid))
      MP_INFO("epoch %d/%d: D %.4f G %.4f | FID %.2f (%s, N %d/%d) | %.1f s", ep + 1, epochs, dl / S, gl / GS, fid,
              extractor, R.n_real, R.n_gen, mp_now() - t0);
    else
      MP_INFO("epoch %d/%d: D %.4f G %.4f | %.1f s", ep + 1, epochs, dl / S, gl / GS, mp_now() - t0);
    write_json(t, cfg, a, "running", curve, &R, extractor, lr_d, lr_g, b1, b2);
    if (ck_every && (ep + 1) % ck_every == 0 && !last) {
      resume_point next = {true, ep + 1, 0, step, 0, 0, 0};
      if (save_checkpoint(t, ckdir, snap, &next, curve, &R, err, sizeof err) != 0) {
        MP_ERROR("%s", err);
        result = MP_EXIT_FAILURE;
        status = "failed";
        break;
      }
    }
  }
  if (strcmp(status, "completed") == 0 || strcmp(status, "diverged") == 0) {
    if (t->rank == 0) mp_rmtree(ckdir); /* finished: the checkpoint has served */
  }
  if (strcmp(status, "completed") == 0) {
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/final", a->out_dir);
    if (save_nets(t, dir, true, step, err, sizeof err)) MP_ERROR("%s", err), result = MP_EXIT_FAILURE;
    if (!dim) { /* no FID: the last generator is the one kept */
      snprintf(dir, sizeof dir, "%s/best", a->out_dir);
      if (save_nets(t, dir, false, step, err, sizeof err)) MP_ERROR("%s", err), result = MP_EXIT_FAILURE;
      R.best_epoch = epochs;
    }
  }
  snprintf(R.status, sizeof R.status, "%s", status);
  /* a run resumed after its best epoch no longer holds that epoch's generated features: the
   * best generator makes them again (the same latents and batches, so the same samples) */
  int regen = t->rank == 0 && !best_feat && dim && R.best_epoch > 0 && strcmp(status, "completed") == 0;
  MP_CHECK_MPI(MPI_Bcast(&regen, 1, MPI_INT, 0, comm));
  if (regen) {
    char path[4400];
    snprintf(path, sizeof path, "%s/best/generator.h5", a->out_dir);
    int lrc = mp_net_load(t->g, path, NULL, err, sizeof err); /* final/ is saved: G may be overwritten */
    MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &lrc, 1, MPI_INT, MPI_MIN, comm));
    double is2[2];
    double f2 = lrc ? NAN
                    : generated_fid(t, n_gen, real_feat, dim, fid_draws(R.best_epoch - 1), is2,
                                    &best_feat, err, sizeof err);
    if (t->rank == 0 && !(fabs(f2 - R.best_fid) <= 1e-9 * fabs(R.best_fid)))
      MP_WARN("the best generator regenerated for the t-SNE map gives FID %.4f, not its epoch's %.4f%s", f2, R.best_fid,
              lrc ? ": it could not be loaded" : "");
  }
  /* the t-SNE map of real vs the best epoch's generated features (rank 0) */
  if (t->rank == 0 && best_feat && strcmp(status, "completed") == 0 && write_tsne(t, a, cfg, real_feat, best_feat, R.n_gen, dim, extractor, &R) != 0)
    MP_WARN("t-SNE map not written: %s", R.tsne_note);
  write_json(t, cfg, a, status, curve, &R, extractor, lr_d, lr_g, b1, b2);
  if (isfinite(R.best_fid))
    MP_INFO("gan %s f=%d SN/TTUR %s: %s; best FID %.2f at epoch %d (%s, N %d/%d; floor %.2f)",
            mp_gan_loss_name(a->loss), a->filters, sn ? "on" : "off", status, R.best_fid, R.best_epoch, extractor,
            R.n_real, R.n_gen, R.floor_fid);
  else
    MP_INFO("gan %s f=%d SN/TTUR %s: %s", mp_gan_loss_name(a->loss), a->filters, sn ? "on" : "off", status);
  if (res) *res = R;
  cJSON_Delete(curve);
  mp_gan_work_free(w);
  mp_free(dbuf), mp_free(gbuf), mp_free(perm[0]), mp_free(perm[1]), mp_free(real_feat), mp_free(best_feat);
  t->be->iface->release(t->be, t->xr);
  mp_free(t->src), mp_free(t->zbuf), mp_free(t->real);
  mp_net_free(t->d), mp_net_free(t->g), mp_net_free(t->c1), mp_net_free(t->c2), mp_inception_free(t->inc), cJSON_Delete(t->xsha);
  mp_backend_free(t->be);
  if (t->inc_be) mp_backend_free(t->inc_be);
  cJSON_Delete(t->compute);
  cJSON_Delete(snap);
  return result;
}
