/* mp_gan_train — one GAN configuration (see mp_gan_train.h). */
#include "mp_gan_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_fid.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_models.h"
#include "mp_mpi.h"
#include "mp_rng.h"
#include "mp_split.h"
#include "mp_store.h"
#include "mp_train.h"

static const char *const loss_names[] = {"wgan-gp", "rsgan", "rasgan", "ralsgan", "rahinge"};

const char *mp_gan_loss_name(mp_gan_loss l) { return (unsigned)l < 5 ? loss_names[l] : "?"; }

int mp_gan_loss_parse(const char *s, mp_gan_loss *l) {
  for (int i = 0; i < 5; i++)
    if (strcmp(s, loss_names[i]) == 0) return *l = (mp_gan_loss)i, 0;
  return -1;
}

typedef struct {
  MPI_Comm comm;
  int rank, K, B, b, P; /* global batch, per-rank slice, patch side */
  size_t px;
  uint64_t seed;
  int nreal;
  uint8_t *real; /* nreal x px */
  mp_backend *be;
  mp_net *d, *g, *c1, *c2; /* critic, generator, extractor block 1 and rest */
  int z, feat_layer, eb;
  float *xr, *xf, *zbuf, *flat;
} gan;

/* real patch idx -> x (b images) */
static void real_batch(const gan *t, const uint32_t *perm, uint64_t first, float *x) {
  for (int j = 0; j < t->b; j++) {
    const uint8_t *p = t->real + (size_t)perm[(first + (uint64_t)t->rank * t->b + (uint64_t)j) % t->nreal] * t->px;
    for (size_t i = 0; i < t->px; i++) x[(size_t)j * t->px + i] = (float)p[i] / 127.5f - 1.0f;
  }
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

/* Features (dim each) of n uint8 patches through the extractor, eval mode. */
static void features(gan *t, const uint8_t *px, int n, float *out, int dim) {
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
static double generated_fid(gan *t, int n, const float *real_feat, int dim, uint64_t draw_base, char *err,
                            size_t errlen) {
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
  features(t, q, mine, f, dim);
  /* gather every rank's features at rank 0: rank r's slice of global batch bt is sample
   * bt * B + r * b + j; the FID does not depend on the order, so concatenate */
  float *all = t->rank == 0 ? mp_malloc((size_t)mine * t->K * dim * sizeof *all) : NULL;
  MP_CHECK_MPI(MPI_Gather(f, mine * dim, MPI_FLOAT, all, mine * dim, MPI_FLOAT, 0, t->comm));
  double fid = NAN;
  if (t->rank == 0) {
    mp_fid_result r;
    if (mp_fid(real_feat, (size_t)t->nreal, all, (size_t)mine * t->K, dim, &r, err, errlen) == 0) fid = r.fid;
  }
  MP_CHECK_MPI(MPI_Bcast(&fid, 1, MPI_DOUBLE, 0, t->comm));
  mp_free(q), mp_free(f), mp_free(all);
  return fid;
}

static bool all_finite(const float *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(v[i])) return false;
  return true;
}

/* Load the training split's lesion patches (every rank). */
static int load_real(gan *t, const char *path, uint64_t split_seed, char *err, size_t errlen) {
  mp_store *st = mp_store_open(path, err, errlen);
  if (!st) return -1;
  t->P = mp_store_patch_size(st), t->px = (size_t)t->P * t->P;
  uint64_t *idx = NULL, m = 0;
  int rc = mp_split_select(st, split_seed, MP_PART_TRAIN, 1, &idx, &m, err, errlen);
  t->nreal = (int)m;
  t->real = mp_malloc((m + 1) * t->px);
  if (!rc && m && mp_store_read_pixels_at(st, idx, m, t->real) != 0) {
    snprintf(err, errlen, "cannot read the lesion patches of '%s'", path);
    rc = -1;
  }
  mp_free(idx);
  mp_store_close(st);
  return rc;
}

static void write_json(gan *t, const mp_config *cfg, const mp_gan_train_args *a, const char *status, cJSON *curve,
                       const mp_gan_result *r, const char *extractor, double lr_d, double lr_g, double b1, double b2) {
  if (t->rank != 0) return;
  cJSON *d = cJSON_CreateObject();
  cJSON_AddItemToObject(d, "provenance", mp_json_provenance(cfg, t->K));
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
  cJSON_AddNumberToObject(d, "real_lesion_patches", t->nreal);
  cJSON *f = cJSON_AddObjectToObject(d, "fid");
  cJSON_AddStringToObject(f, "extractor", extractor);
  cJSON_AddNumberToObject(f, "dimension", r->dim);
  cJSON_AddNumberToObject(f, "n_real", r->n_real);
  cJSON_AddNumberToObject(f, "n_generated", r->n_gen);
  cJSON_AddBoolToObject(f, "rank_deficient", r->dim > 0 && (r->n_real < r->dim + 1 || r->n_gen < r->dim + 1));
  if (isfinite(r->floor_fid)) cJSON_AddNumberToObject(f, "real_vs_real_floor", r->floor_fid);
  else cJSON_AddNullToObject(f, "real_vs_real_floor");
  if (isfinite(r->best_fid)) cJSON_AddNumberToObject(f, "best", r->best_fid);
  else cJSON_AddNullToObject(f, "best");
  cJSON_AddNumberToObject(f, "best_epoch", r->best_epoch);
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

int mp_gan_train_run(MPI_Comm comm, const mp_config *cfg, const mp_gan_train_args *a, mp_gan_result *res) {
  gan T = {0}, *t = &T;
  t->comm = comm;
  MPI_Comm_rank(comm, &t->rank);
  MPI_Comm_size(comm, &t->K);
  mp_gan_result R = {"failed", NAN, 0, NAN, 0, 0, 0};
  char err[1024] = "";
  t->B = (int)mp_config_int(cfg, "gan.batch");
  if (t->B % t->K || a->filters < 8 || a->filters % 8) {
    if (t->rank == 0)
      MP_ERROR("gan.batch = %d must be a multiple of the %d ranks, and the filters (%d) a multiple of 8", t->B, t->K,
               a->filters);
    return MP_EXIT_USAGE;
  }
  t->b = t->B / t->K;
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
  t->be = rc ? NULL : mp_backend_create(mp_config_str(cfg, "train.backend"), err, sizeof err);
  if (!rc && !t->be) rc = -1;
  if (!rc && t->rank == 0 && mp_mkdir_p(a->out_dir, err, sizeof err) != 0) rc = -1;
  /* the extractor (domain): the classifier of the same store, its penultimate layer */
  const char *extractor = a->extractor_dir ? "domain" : "none";
  int dim = 0;
  if (!rc && a->extractor_dir) {
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
    mp_net_free(t->c1), mp_net_free(t->c2);
    if (t->be) mp_backend_free(t->be);
    if (res) *res = R;
    return MP_EXIT_FAILURE;
  }
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
  t->xr = mp_malloc((size_t)t->b * t->px * sizeof(float));
  t->xf = mp_malloc((size_t)t->b * t->px * sizeof(float));
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
    real_feat = mp_malloc((size_t)t->nreal * dim * sizeof *real_feat);
    features(t, t->real, t->nreal, real_feat, dim); /* every rank: a few thousand patches */
    if (t->rank == 0 && t->nreal >= 4) {
      mp_fid_result fr;
      if (mp_fid(real_feat, (size_t)t->nreal / 2, real_feat + (size_t)(t->nreal / 2) * dim,
                 (size_t)(t->nreal - t->nreal / 2), dim, &fr, err, sizeof err) == 0)
        R.floor_fid = fr.fid;
    }
    MP_CHECK_MPI(MPI_Bcast(&R.floor_fid, 1, MPI_DOUBLE, 0, comm));
  }
  const int epochs = (int)mp_config_int(cfg, "gan.epochs"), fid_every = (int)mp_config_int(cfg, "gan.fid_every");
  const int S = t->nreal / t->B > 0 ? t->nreal / t->B : 1;
  MP_INFO("gan %s f=%d z=%d SN/TTUR %s, split %llu: %d real lesion patches, batch %d = %d ranks x %d, %d steps per "
          "epoch, %d epochs; Adam D %.0e G %.0e betas (%.1f, %.3f); FID extractor %s (%d-d), N real %d, N generated "
          "%d%s; real-vs-real floor %.2f",
          mp_gan_loss_name(a->loss), a->filters, t->z, sn ? "on" : "off", (unsigned long long)a->split_seed, t->nreal,
          t->B, t->K, t->b, S, epochs, lr_d, lr_g, b1, b2, extractor, dim, R.n_real, R.n_gen,
          dim && (R.n_real < dim + 1 || R.n_gen < dim + 1) ? " (N < dimension: singular covariances, FID biased)" : "",
          R.floor_fid);
  mp_train_catch_stop_signals();
  cJSON *curve = cJSON_CreateArray();
  const char *status = "completed";
  uint64_t step = 0;
  float *gd = mp_net_grads(t->d), *gg = mp_net_grads(t->g);
  float *dbuf = mp_malloc((nd + 3) * sizeof *dbuf), *gbuf = mp_malloc((ng + 2) * sizeof *gbuf);
  int result = MP_EXIT_OK;
  for (int ep = 0; ep < epochs; ep++) {
    double t0 = mp_now(), dl = 0, gl = 0, pl = 0;
    epoch_perm(t, (uint64_t)ep, 0, perm[0]);
    epoch_perm(t, (uint64_t)ep, 1, perm[1]);
    bool bad = false, stop = false;
    for (int s = 0; s < S; s++, step++) {
      /* D step: real batch, detached fakes */
      real_batch(t, perm[0], (uint64_t)s * t->B, t->xr);
      latents(t, 2 * step, t->zbuf);
      memcpy(t->xf, mp_net_forward(t->g, t->zbuf, t->b, true, step), (size_t)t->b * t->px * sizeof(float));
      double pen = 0, L = mp_gan_critic_gradients(w, t->xr, t->xf, step, &pen);
      memcpy(dbuf, gd, nd * sizeof *dbuf);
      dbuf[nd] = (float)L, dbuf[nd + 1] = (float)pen, dbuf[nd + 2] = (float)mp_train_stop_signal();
      allreduce_mean(t, dbuf, nd + 3);
      memcpy(gd, dbuf, nd * sizeof *gd);
      mp_net_adam(t->d, (float)lr_d, (float)b1, (float)b2, 1e-8f);
      /* G step: fresh latents and a fresh real batch */
      real_batch(t, perm[1], (uint64_t)s * t->B, t->xr);
      latents(t, 2 * step + 1, t->zbuf);
      double G = mp_gan_generator_gradients(w, t->xr, t->zbuf, step, NULL);
      memcpy(gbuf, gg, ng * sizeof *gbuf);
      gbuf[ng] = (float)G;
      allreduce_mean(t, gbuf, ng + 1);
      memcpy(gg, gbuf, ng * sizeof *gg);
      mp_net_adam(t->g, (float)lr_g, (float)b1, (float)b2, 1e-8f);
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
      cJSON_AddNumberToObject(e, "g_loss", gl / S);
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
    if (stop) {
      status = "interrupted";
      cJSON_AddItemToArray(curve, e);
      MP_WARN("stop signal: the GAN run ends at epoch %d (no GAN checkpoint/resume yet: rerun it)", ep + 1);
      result = MP_EXIT_INTERRUPTED;
      break;
    }
    double fid = NAN;
    bool last = ep + 1 == epochs;
    if (dim && ((ep + 1) % fid_every == 0 || last)) {
      fid = generated_fid(t, n_gen, real_feat, dim, 1ull << 40 | (uint64_t)ep << 20, err, sizeof err);
      if (isfinite(fid)) cJSON_AddNumberToObject(e, "fid", fid);
      if (isfinite(fid) && !(fid >= R.best_fid)) {
        R.best_fid = fid, R.best_epoch = ep + 1;
        char dir[4300];
        snprintf(dir, sizeof dir, "%s/best", a->out_dir);
        if (save_nets(t, dir, false, step, err, sizeof err)) MP_ERROR("%s", err), result = MP_EXIT_FAILURE;
      }
    }
    cJSON_AddNumberToObject(e, "seconds", mp_now() - t0);
    cJSON_AddItemToArray(curve, e);
    if (isfinite(fid))
      MP_INFO("epoch %d/%d: D %.4f G %.4f | FID %.2f (%s, N %d/%d) | %.1f s", ep + 1, epochs, dl / S, gl / S, fid,
              extractor, R.n_real, R.n_gen, mp_now() - t0);
    else
      MP_INFO("epoch %d/%d: D %.4f G %.4f | %.1f s", ep + 1, epochs, dl / S, gl / S, mp_now() - t0);
    write_json(t, cfg, a, "running", curve, &R, extractor, lr_d, lr_g, b1, b2);
  }
  if (strcmp(status, "completed") == 0 || strcmp(status, "interrupted") == 0) {
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
  mp_free(dbuf), mp_free(gbuf), mp_free(perm[0]), mp_free(perm[1]), mp_free(real_feat);
  mp_free(t->xr), mp_free(t->xf), mp_free(t->zbuf), mp_free(t->real);
  mp_net_free(t->d), mp_net_free(t->g), mp_net_free(t->c1), mp_net_free(t->c2);
  mp_backend_free(t->be);
  return result;
}
