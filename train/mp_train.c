/* mp_train — data-parallel classifier training (see mp_train.h for the design). */
#include "mp_train.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_metrics.h"
#include "mp_models.h"
#include "mp_mpi.h"
#include "mp_progress.h"
#include "mp_rng.h"
#include "mp_signal.h"
#include "mp_split.h"
#include "mp_store.h"

enum { STATE_FORMAT = 1 };

/* ---- metrics (SPEC §10, eval/mp_metrics) ---------------------------------------------------- */
static double metric_mcc(const mp_confusion *c) {
  mp_binary_metrics m;
  mp_metrics_from_counts(c->tp, c->fp, c->tn, c->fn, &m);
  return m.mcc;
}

static double metric_f1(const mp_confusion *c) {
  mp_binary_metrics m;
  mp_metrics_from_counts(c->tp, c->fp, c->tn, c->fn, &m);
  return m.f1;
}

/* ---- the trainer ---------------------------------------------------------------------------- */
typedef struct {
  MPI_Comm comm;
  int rank, K;
  const mp_config *cfg;
  const mp_train_args *args;
  MPI_Datatype patch_t;
  int P;
  size_t px;
  uint64_t seed; /* sampler / augmentation key: (run.seed, split seed) */
  /* training set: t-index -> store index, label; this rank's block of it in memory */
  uint64_t ntr, nles, nsyn; /* training patches, lesions among them, synthetic among those (gan) */
  uint64_t nshard;          /* entries held as patches in rank blocks (all but SMOTE vectors) */
  /* smote-*: block 1 frozen; the synthetic block-1 vectors (entries >= nshard), on every rank */
  bool smote;
  uint64_t nvec;
  size_t dvec; /* floats per vector (16 x 64 x 64) */
  float *vec;   /* nvec x dvec, in the backend's memory */
  int64_t *slot_vec; /* per slot: vector index, or -1 for a patch */
  uint64_t *tr_index;
  uint8_t *tr_label;
  mp_range shard;
  uint8_t *shard_px;
  /* the epoch: my B/K slice of each of its S batches (pointers into recv or shard) */
  int B, b, S;
  int bn_batch; /* samples per batch-norm statistics group: b, or train.bn_group */
  uint8_t *recv_px;
  const uint8_t **slot;
  uint8_t *slot_label;
  uint32_t *seq;
  /* validation / test: this rank's block, in memory */
  uint64_t nval_all, ntest_all;
  uint64_t nval, ntest;
  uint8_t *val_px, *val_label, *test_px, *test_label;
  /* model */
  mp_backend *be;
  mp_dp dp; /* the gradient mean: NCCL on the device or MPI in host memory */
  cJSON *compute; /* what computes this session (rank 0; mp_backend_compute_json): train.json's "compute" */
  mp_net *b1, *rest;
  size_t np1, np2;
  float *flat, *tlab, *dy;
  uint32_t *bits;      /* the batch's augmentation bits */
  const uint8_t **src; /* evaluation: the patches of one forward */
  /* options */
  double lesion_fraction;
  bool rot90;
  float lr, beta1, beta2;
} trainer;

typedef struct {
  uint64_t epoch, step_in_epoch, global_step;
  double best_mcc;
  long best_epoch;
  int patience_used;
  /* the current epoch's training loss so far: the sum of its steps' global mean losses and
   * their count, checkpointed, so that an epoch resumed mid-way reports the loss of all its steps */
  double epoch_loss_sum;
  uint64_t epoch_loss_steps;
  cJSON *curve; /* array of epoch records */
  cJSON *steps; /* the global mean loss of the first MAX_STEP_LOG steps */
} progress_state;

enum { MAX_STEP_LOG = 10000 };

/* The S x B global batches of epoch e as t-indices (the same on every rank, for any K).
 * lesion_fraction 0: a permutation of the training set (the natural ratio); else each
 * batch takes round(f B) lesion patches and the rest normal ones from two streams that
 * each cycle through fresh permutations, in an order shuffled per batch. */
static void epoch_order(trainer *t, uint64_t e, uint32_t *seq) {
  mp_rng r;
  if (t->lesion_fraction <= 0) {
    uint32_t *perm = mp_malloc(t->ntr * sizeof *perm);
    for (uint64_t i = 0; i < t->ntr; i++) perm[i] = (uint32_t)i;
    mp_rng_init(&r, t->seed, MP_RNG_SAMPLER, e);
    mp_rng_shuffle_u32(&r, perm, t->ntr);
    memcpy(seq, perm, (size_t)t->S * t->B * sizeof *seq);
    mp_free(perm);
    return;
  }
  int nl = (int)lround(t->lesion_fraction * t->B);
  if (nl < 1) nl = 1;
  if (nl > t->B - 1) nl = t->B - 1;
  uint64_t nn = t->ntr - t->nles;
  uint32_t *les = mp_malloc(t->nles * sizeof *les), *nor = mp_malloc(nn * sizeof *nor);
  uint32_t *pl = mp_malloc(t->nles * sizeof *pl), *pn = mp_malloc(nn * sizeof *pn);
  uint64_t a = 0, c = 0;
  for (uint64_t i = 0; i < t->ntr; i++) {
    if (t->tr_label[i]) les[a++] = (uint32_t)i;
    else nor[c++] = (uint32_t)i;
  }
  uint64_t cyc_l = UINT64_MAX, cyc_n = UINT64_MAX;
  for (int s = 0; s < t->S; s++) {
    uint64_t g = e * (uint64_t)t->S + (uint64_t)s;
    uint32_t *batch = seq + (size_t)s * t->B;
    for (int j = 0; j < t->B; j++) {
      bool lesion = j < nl;
      uint64_t k = lesion ? g * (uint64_t)nl + (uint64_t)j : g * (uint64_t)(t->B - nl) + (uint64_t)(j - nl);
      uint64_t len = lesion ? t->nles : nn, cyc = k / len;
      uint32_t *p = lesion ? pl : pn;
      uint64_t *have = lesion ? &cyc_l : &cyc_n;
      if (*have != cyc) { /* a fresh permutation for this cycle through the stream */
        memcpy(p, lesion ? les : nor, len * sizeof *p);
        mp_rng_init(&r, t->seed, MP_RNG_SAMPLER, ((uint64_t)(lesion ? 1 : 2) << 40) + cyc);
        mp_rng_shuffle_u32(&r, p, len);
        *have = cyc;
      }
      batch[j] = p[k % len];
    }
    mp_rng_init(&r, t->seed, MP_RNG_SAMPLER, ((uint64_t)3 << 40) + g);
    mp_rng_shuffle_u32(&r, batch, (size_t)t->B);
  }
  mp_free(les), mp_free(nor), mp_free(pl), mp_free(pn);
}

/* Hand every rank the patches of its slice of every batch of epoch e (one Alltoallv). */
static void epoch_exchange(trainer *t, uint64_t e) {
  epoch_order(t, e, t->seq);
  const int K = t->K, b = t->b, S = t->S;
  if (K == 1) {
    for (size_t i = 0; i < (size_t)S * b; i++) {
      uint32_t ti = t->seq[i];
      t->slot[i] = ti < t->nshard ? t->shard_px + (size_t)ti * t->px : NULL;
      t->slot_label[i] = t->tr_label[ti];
      if (t->slot_vec) t->slot_vec[i] = ti >= t->nshard ? (int64_t)(ti - t->nshard) : -1;
    }
    return;
  }
  int *scount = mp_calloc((size_t)K, sizeof(int)), *rcount = mp_calloc((size_t)K, sizeof(int));
  int *sdisp = mp_calloc((size_t)K, sizeof(int)), *rdisp = mp_calloc((size_t)K, sizeof(int));
  for (int s = 0; s < S; s++)
    for (int q = 0; q < K; q++)
      for (int j = 0; j < b; j++) {
        uint32_t ti = t->seq[(size_t)s * t->B + (size_t)q * b + j];
        if (ti >= t->nshard) continue; /* a SMOTE vector: every rank has them */
        int owner = mp_shard_block_owner(t->nshard, K, ti);
        if (owner == t->rank) scount[q]++;
        if (q == t->rank) rcount[owner]++;
      }
  for (int q = 1; q < K; q++) sdisp[q] = sdisp[q - 1] + scount[q - 1], rdisp[q] = rdisp[q - 1] + rcount[q - 1];
  size_t nsend = (size_t)sdisp[K - 1] + scount[K - 1];
  uint8_t *sendbuf = mp_malloc((nsend ? nsend : 1) * t->px);
  int *cur = mp_calloc((size_t)K, sizeof(int));
  for (int q = 0; q < K; q++) /* q's slices in step order, the patches I hold */
    for (int s = 0; s < S; s++)
      for (int j = 0; j < b; j++) {
        uint32_t ti = t->seq[(size_t)s * t->B + (size_t)q * b + j];
        if (ti >= t->nshard || mp_shard_block_owner(t->nshard, K, ti) != t->rank) continue;
        memcpy(sendbuf + (size_t)(sdisp[q] + cur[q]++) * t->px, t->shard_px + (ti - t->shard.begin) * t->px, t->px);
      }
  MP_CHECK_MPI(MPI_Alltoallv(sendbuf, scount, sdisp, t->patch_t, t->recv_px, rcount, rdisp, t->patch_t, t->comm));
  memset(cur, 0, (size_t)K * sizeof(int));
  for (int s = 0; s < S; s++)
    for (int j = 0; j < b; j++) {
      size_t i = (size_t)s * b + j;
      uint32_t ti = t->seq[(size_t)s * t->B + (size_t)t->rank * b + j];
      t->slot_label[i] = t->tr_label[ti];
      if (t->slot_vec) t->slot_vec[i] = ti >= t->nshard ? (int64_t)(ti - t->nshard) : -1;
      if (ti >= t->nshard) {
        t->slot[i] = NULL;
        continue;
      }
      int owner = mp_shard_block_owner(t->nshard, K, ti);
      t->slot[i] = t->recv_px + (size_t)(rdisp[owner] + cur[owner]++) * t->px;
    }
  mp_free(sendbuf), mp_free(cur), mp_free(scount), mp_free(rcount), mp_free(sdisp), mp_free(rdisp);
}


/* Average the batch-norm running statistics over ranks (every rank then holds the same model). */
static void sync_bn(trainer *t) {
  if (t->K == 1) return;
  mp_net *nets[2] = {t->b1, t->rest};
  for (int k = t->smote ? 1 : 0; k < 2; k++) /* smote: block 1 is frozen (eval mode), left bit-identical */
    for (int i = 0; i < mp_net_layers(nets[k]); i++) {
      float *var, *mean = mp_net_running_stats(nets[k], i, &var);
      if (!mean) continue;
      size_t wo, wl, bo, bl;
      mp_net_param_slice(nets[k], i, &wo, &wl, &bo, &bl);
      MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, mean, (int)wl, MPI_FLOAT, MPI_SUM, t->comm));
      MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, var, (int)wl, MPI_FLOAT, MPI_SUM, t->comm));
      for (size_t c = 0; c < wl; c++) mean[c] /= (float)t->K, var[c] /= (float)t->K;
    }
}

/* One training step on global step g (slice s of the epoch).  Returns the global mean
 * loss; *stop: a stop signal reached some rank before this step's allreduce (decided from
 * the reduced value only, so every rank stops at the same step even when a signal lands
 * on one rank between the allreduce and the check). */
static double train_step(trainer *t, int s, uint64_t g, bool *stop) {
  /* the batch straight into block 1's input on the backend (uint8 patches move, the
   * augmentation and the conversion run where the network runs); a SMOTE vector's place
   * (no patch) is an all-zero input */
  for (int j = 0; j < t->b; j++) {
    uint64_t jj = (uint64_t)t->rank * t->b + (uint64_t)j; /* position in the global batch */
    t->bits[j] = mp_rng_at(t->seed, MP_RNG_AUGMENT, g, jj);
    t->tlab[j] = (float)t->slot_label[(size_t)s * t->b + j];
  }
  float *x = mp_net_input(t->b1);
  t->be->iface->patches_to_input(t->be, t->slot + (size_t)s * t->b, t->bits, t->b, t->P,
                                 t->rot90, x);
  mp_net_set_sample_offset(t->b1, (uint64_t)t->rank * t->b);
  mp_net_set_sample_offset(t->rest, (uint64_t)t->rank * t->b);
  double loss;
  if (t->smote) {
    /* SPEC §9 phase 3: block 1 frozen (eval mode: running statistics, as the vectors were
     * made), its embeddings with the synthetic vectors in their batch places, only the rest
     * trained.  The batch is gathered in the rest's input buffer in the backend's memory (on a
     * GPU no round trip through the host) */
    const float *f1 = mp_net_forward(t->b1, x, t->b, false, g);
    float *x2 = mp_net_input(t->rest);
    mp_backend_gather_rows(t->be, x2, f1, t->vec, t->slot_vec + (size_t)s * t->b, t->b, t->dvec);
    const float *y = mp_net_forward(t->rest, x2, t->b, true, g);
    loss = mp_ref_bce_logits(y, t->tlab, t->dy, (size_t)t->b);
    mp_net_backward(t->rest, t->dy, NULL);
    mp_net_zero_grads(t->b1); /* on the backend (a device memset on cuda, not a host write to its memory) */
  } else
    loss = mp_model_classifier_gradients(t->b1, t->rest, x, t->tlab, t->b, g, t->dy, NULL, NULL);
  float sc[2] = {(float)loss, (float)mp_signal_stop()}; /* a signal on any rank stops all */
  const float inv = 1.0f / (float)t->K;
  const size_t np = t->np1 + t->np2;
  if (t->dp.device || t->K == 1) { /* NCCL on the device buffers (one rank: nothing to reduce, and no copy
                                     * through host memory: on a device backend that would move every
                                     * gradient page to the host and back each step); the scalars by MPI */
    if (!t->smote) mp_dp_mean(&t->dp, mp_net_grads(t->b1), t->np1);
    mp_dp_mean(&t->dp, mp_net_grads(t->rest), t->np2);
    if (t->K > 1) MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, sc, 2, MPI_FLOAT, MPI_SUM, t->comm));
  } else {
    /* one allreduce over both networks' gradients and the two scalars (the per-rank means
     * averaged = the global mean) */
    memcpy(t->flat, mp_net_grads(t->b1), t->np1 * sizeof(float));
    memcpy(t->flat + t->np1, mp_net_grads(t->rest), t->np2 * sizeof(float));
    t->flat[np] = sc[0], t->flat[np + 1] = sc[1];
    MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, t->flat, (int)(np + 2), MPI_FLOAT, MPI_SUM, t->comm));
    for (size_t i = 0; i < np; i++) t->flat[i] *= inv;
    memcpy(mp_net_grads(t->b1), t->flat, t->np1 * sizeof(float));
    memcpy(mp_net_grads(t->rest), t->flat + t->np1, t->np2 * sizeof(float));
    sc[0] = t->flat[np], sc[1] = t->flat[np + 1];
  }
  if (!t->smote) mp_net_adam(t->b1, t->lr, t->beta1, t->beta2, 1e-8f); /* smote: frozen */
  mp_net_adam(t->rest, t->lr, t->beta1, t->beta2, 1e-8f);
  *stop = sc[1] > 0;
  return sc[0] * inv;
}

/* Patch-level evaluation of n patches (eval mode, threshold 0.5 on the probability),
 * reduced over ranks. */
static mp_confusion evaluate(trainer *t, const uint8_t *px, const uint8_t *label, uint64_t n) {
  double c[5] = {0};
  for (uint64_t i = 0; i < n; i += (uint64_t)t->b) {
    int m = (int)(n - i < (uint64_t)t->b ? n - i : (uint64_t)t->b);
    for (int j = 0; j < m; j++) t->src[j] = px + (i + j) * t->px;
    float *x = mp_net_input(t->b1);
    t->be->iface->patches_to_input(t->be, t->src, NULL, m, t->P, 0, x);
    const float *f1 = mp_net_forward(t->b1, x, m, false, 0);
    const float *y = mp_net_forward(t->rest, f1, m, false, 0);
    for (int j = 0; j < m; j++) {
      float tl = (float)label[i + j];
      c[4] += mp_ref_bce_logits(y + j, &tl, NULL, 1);
      bool pos = y[j] > 0, truth = label[i + j] != 0;
      c[pos ? (truth ? 0 : 1) : (truth ? 3 : 2)] += 1;
    }
  }
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, c, 5, MPI_DOUBLE, MPI_SUM, t->comm));
  return (mp_confusion){c[0], c[1], c[2], c[3], c[4]};
}

static cJSON *metrics_json(const mp_confusion *c) {
  mp_binary_metrics m;
  mp_metrics_from_counts(c->tp, c->fp, c->tn, c->fn, &m);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "patches", m.n);
  cJSON_AddNumberToObject(o, "loss", m.n > 0 ? c->loss_sum / m.n : 0);
  cJSON_AddNumberToObject(o, "mcc", m.mcc);
  cJSON_AddNumberToObject(o, "f1", m.f1);
  cJSON_AddNumberToObject(o, "accuracy", m.accuracy);
  cJSON_AddNumberToObject(o, "precision", m.precision);
  cJSON_AddNumberToObject(o, "recall", m.recall);
  cJSON_AddNumberToObject(o, "tp", m.tp);
  cJSON_AddNumberToObject(o, "fp", m.fp);
  cJSON_AddNumberToObject(o, "tn", m.tn);
  cJSON_AddNumberToObject(o, "fn", m.fn);
  cJSON_AddNumberToObject(o, "threshold", 0.5);
  if (m.mcc_undefined) cJSON_AddStringToObject(o, "mcc_note", "undefined (a zero margin in the confusion matrix): reported as 0");
  return o;
}

/* ---- checkpoints -------------------------------------------------------------------------------- */
static cJSON *state_json(const trainer *t, const progress_state *ps) {
  cJSON *s = cJSON_CreateObject();
  cJSON_AddNumberToObject(s, "format", STATE_FORMAT);
  cJSON_AddStringToObject(s, "variant", t->args->variant);
  cJSON_AddNumberToObject(s, "split_seed", (double)t->args->split_seed);
  cJSON_AddNumberToObject(s, "batch", t->B);
  cJSON_AddNumberToObject(s, "steps_per_epoch", t->S);
  cJSON_AddNumberToObject(s, "epoch", (double)ps->epoch);
  cJSON_AddNumberToObject(s, "step_in_epoch", (double)ps->step_in_epoch);
  cJSON_AddNumberToObject(s, "global_step", (double)ps->global_step);
  cJSON_AddNumberToObject(s, "best_mcc", ps->best_mcc);
  cJSON_AddNumberToObject(s, "best_epoch", (double)ps->best_epoch);
  cJSON_AddNumberToObject(s, "patience_used", ps->patience_used);
  cJSON_AddNumberToObject(s, "epoch_loss_sum", ps->epoch_loss_sum); /* printed to round-trip exactly */
  cJSON_AddNumberToObject(s, "epoch_loss_steps", (double)ps->epoch_loss_steps);
  cJSON_AddItemToObject(s, "curve", cJSON_Duplicate(ps->curve, 1));
  cJSON_AddItemToObject(s, "step_loss", cJSON_Duplicate(ps->steps, 1));
  return s;
}

/* Write dir/{block1.h5, rest.h5, state.json, COMPLETE} through a temporary directory
 * renamed into place (an older dir of that name is replaced).  Rank 0 writes; collective. */
static int save_dir(trainer *t, const progress_state *ps, const char *dir) {
  int rc = 0;
  char err[512] = "";
  if (t->rank == 0) {
    char tmp[4200], path[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    mp_rmtree(tmp);
    rc = mp_mkdir_p(tmp, err, sizeof err);
    snprintf(path, sizeof path, "%s/block1.h5", tmp);
    if (!rc) rc = mp_net_save(t->b1, path, ps->global_step, err, sizeof err);
    snprintf(path, sizeof path, "%s/rest.h5", tmp);
    if (!rc) rc = mp_net_save(t->rest, path, ps->global_step, err, sizeof err);
    cJSON *st = state_json(t, ps);
    snprintf(path, sizeof path, "%s/state.json", tmp);
    if (!rc) rc = mp_json_write_file(path, st, err, sizeof err);
    cJSON_Delete(st);
    snprintf(path, sizeof path, "%s/COMPLETE", tmp);
    if (!rc) rc = mp_write_file_atomic(path, "complete\n", 9, err, sizeof err);
    if (!rc) {
      char old[4200];
      snprintf(old, sizeof old, "%s.old", dir);
      mp_rmtree(old);
      if (access(dir, F_OK) == 0 && rename(dir, old) != 0) rc = -1;
      if (!rc && rename(tmp, dir) != 0) rc = -1;
      mp_rmtree(old);
      if (rc && snprintf(err, sizeof err, "cannot rename '%s' to '%s': %s", tmp, dir, strerror(errno)) < 0) err[0] = 0;
    }
    if (rc) MP_ERROR("checkpoint %s: %s", dir, err);
  }
  MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, t->comm));
  return rc;
}

/* The newest DIR/checkpoints/step-N with a COMPLETE marker (rank 0), "" if none. */
static void newest_checkpoint(const char *out, char *dir, size_t len) {
  char base[4200];
  snprintf(base, sizeof base, "%s/checkpoints", out);
  dir[0] = 0;
  DIR *d = opendir(base);
  if (!d) return;
  long best = -1;
  struct dirent *e;
  while ((e = readdir(d))) {
    long n;
    char tail;
    if (sscanf(e->d_name, "step-%ld%c", &n, &tail) != 1 || n <= best) continue;
    char marker[4500];
    snprintf(marker, sizeof marker, "%s/%s/COMPLETE", base, e->d_name);
    if (access(marker, F_OK) != 0) continue;
    best = n;
    if (snprintf(dir, len, "%s/%s", base, e->d_name) >= (int)len) dir[0] = 0;
  }
  closedir(d);
}

/* Keep the newest `keep` step checkpoints. */
static void prune_checkpoints(const char *out, int keep) {
  char base[4200];
  snprintf(base, sizeof base, "%s/checkpoints", out);
  DIR *d = opendir(base);
  if (!d) return;
  long steps[4096];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 4096) {
    long s;
    char tail;
    if (sscanf(e->d_name, "step-%ld%c", &s, &tail) == 1) steps[n++] = s;
  }
  closedir(d);
  for (int i = 0; i < n; i++) {
    int newer = 0;
    for (int j = 0; j < n; j++) newer += steps[j] > steps[i];
    if (newer >= keep) {
      char dir[4300];
      snprintf(dir, sizeof dir, "%s/step-%08ld", base, steps[i]);
      mp_rmtree(dir);
    }
  }
}

static int checkpoint(trainer *t, const progress_state *ps) {
  sync_bn(t);
  char dir[4300];
  snprintf(dir, sizeof dir, "%s/checkpoints/step-%08llu", t->args->out_dir, (unsigned long long)ps->global_step);
  int rc = save_dir(t, ps, dir);
  if (!rc && t->rank == 0) prune_checkpoints(t->args->out_dir, (int)mp_config_int(t->cfg, "train.keep_checkpoints"));
  return rc;
}

/* Load a checkpoint directory into the nets and ps (collective; rank 0 reads the JSON). */
static int load_dir(trainer *t, const char *dir, progress_state *ps, char *err, size_t errlen) {
  char path[4400];
  snprintf(path, sizeof path, "%s/block1.h5", dir);
  int rc = mp_net_load(t->b1, path, NULL, err, errlen);
  snprintf(path, sizeof path, "%s/rest.h5", dir);
  if (!rc) rc = mp_net_load(t->rest, path, NULL, err, errlen);
  char *text = NULL;
  if (!rc && t->rank == 0) {
    snprintf(path, sizeof path, "%s/state.json", dir);
    cJSON *st = mp_json_read_file(path, err, errlen);
    if (st) {
      char *s = cJSON_PrintUnformatted(st);
      text = mp_strdup(s);
      free(s);
      cJSON_Delete(st);
    }
  }
  /* collective: every rank loaded its weights (a rank that could not, e.g. a stale view of a
   * shared file system, stops all of them, rather than hanging them or training replicas
   * that differ) and rank 0 read the state */
  int ok[2] = {rc == 0, text != NULL};
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &ok[0], 1, MPI_INT, MPI_MIN, t->comm));
  MP_CHECK_MPI(MPI_Bcast(&ok[1], 1, MPI_INT, 0, t->comm));
  if (!ok[0] || !ok[1]) {
    if (!rc && !ok[0]) snprintf(err, errlen, "checkpoint '%s' could not be loaded on another rank", dir);
    else if (!rc) snprintf(err, errlen, "checkpoint '%s' has no readable state.json", dir);
    mp_free(text);
    return -1;
  }
  mp_bcast_string(t->comm, 0, &text);
  cJSON *st = cJSON_Parse(text);
  mp_free(text);
  const cJSON *f = cJSON_GetObjectItem(st, "format"), *v = cJSON_GetObjectItem(st, "variant"),
              *sd = cJSON_GetObjectItem(st, "split_seed"), *bt = cJSON_GetObjectItem(st, "batch");
  if (!cJSON_IsNumber(f) || f->valueint != STATE_FORMAT || !cJSON_IsString(v) || !cJSON_IsNumber(sd) ||
      !cJSON_IsNumber(bt)) {
    snprintf(err, errlen, "'%s/state.json' is not a format-%d training state", dir, STATE_FORMAT);
    cJSON_Delete(st);
    return -1;
  }
  if (strcmp(v->valuestring, t->args->variant) || (uint64_t)sd->valuedouble != t->args->split_seed ||
      bt->valueint != t->B) {
    snprintf(err, errlen, "checkpoint '%s' is variant %s, split seed %.0f, batch %d; this run is %s, %llu, %d", dir,
             v->valuestring, sd->valuedouble, bt->valueint, t->args->variant,
             (unsigned long long)t->args->split_seed, t->B);
    cJSON_Delete(st);
    return -1;
  }
  ps->epoch = (uint64_t)cJSON_GetObjectItem(st, "epoch")->valuedouble;
  ps->step_in_epoch = (uint64_t)cJSON_GetObjectItem(st, "step_in_epoch")->valuedouble;
  ps->global_step = (uint64_t)cJSON_GetObjectItem(st, "global_step")->valuedouble;
  ps->best_mcc = cJSON_GetObjectItem(st, "best_mcc")->valuedouble;
  ps->best_epoch = (long)cJSON_GetObjectItem(st, "best_epoch")->valuedouble;
  ps->patience_used = cJSON_GetObjectItem(st, "patience_used")->valueint;
  /* checkpoints written before these two keys: the epoch's loss covers the steps after the resume */
  const cJSON *els = cJSON_GetObjectItem(st, "epoch_loss_sum"), *eln = cJSON_GetObjectItem(st, "epoch_loss_steps");
  ps->epoch_loss_sum = cJSON_IsNumber(els) && cJSON_IsNumber(eln) ? els->valuedouble : 0;
  ps->epoch_loss_steps = cJSON_IsNumber(els) && cJSON_IsNumber(eln) ? (uint64_t)eln->valuedouble : 0;
  cJSON_Delete(ps->curve);
  ps->curve = cJSON_Duplicate(cJSON_GetObjectItem(st, "curve"), 1);
  cJSON_Delete(ps->steps);
  ps->steps = cJSON_Duplicate(cJSON_GetObjectItem(st, "step_loss"), 1);
  if (!ps->curve || !ps->steps) {
    snprintf(err, errlen, "'%s/state.json' lacks its curve", dir);
    cJSON_Delete(st);
    return -1;
  }
  cJSON_Delete(st);
  return 0;
}

/* ---- set-up --------------------------------------------------------------------------------- */
/* Split, index lists and this rank's data.  Returns 0 or -1 with err (same on all ranks). */
/* The synthetic block-1 vectors of `smote features` (every rank loads them all); the file
 * must come from this store and split. */
static int load_smote(trainer *t, uint64_t store_n, int P, const char *path, char *err, size_t errlen) {
  hid_t f;
  H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); }
  H5E_END_TRY;
  if (f < 0) return snprintf(err, errlen, "cannot open '%s'", path), -1;
  unsigned long long seed = 0, sn = 0;
  int rc = 0;
  H5E_BEGIN_TRY {
    hid_t a = H5Aopen(f, "split_seed", H5P_DEFAULT), b = H5Aopen(f, "store_patches", H5P_DEFAULT);
    if (a < 0 || b < 0 || H5Aread(a, H5T_NATIVE_ULLONG, &seed) < 0 || H5Aread(b, H5T_NATIVE_ULLONG, &sn) < 0) rc = -1;
    if (a >= 0) H5Aclose(a);
    if (b >= 0) H5Aclose(b);
  }
  H5E_END_TRY;
  hid_t ds = rc ? -1 : H5Dopen2(f, "/synthetic/features", H5P_DEFAULT);
  hsize_t dims[4] = {0, 0, 0, 0};
  if (ds < 0) rc = -1;
  else {
    hid_t sp = H5Dget_space(ds);
    if (H5Sget_simple_extent_ndims(sp) != 4) rc = -1;
    else H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
  }
  if (rc) snprintf(err, errlen, "'%s' is not a `smote features` file", path);
  else if (seed != t->args->split_seed || sn != store_n)
    snprintf(err, errlen, "'%s' was made for split seed %llu of a %llu-patch store; this run: seed %llu, %llu patches",
             path, seed, sn, (unsigned long long)t->args->split_seed, (unsigned long long)store_n),
        rc = -1;
  else if (dims[1] != 16 || dims[2] != (hsize_t)P / 2 || dims[3] != (hsize_t)P / 2) /* block 1: 16 x P/2 x P/2 */
    snprintf(err, errlen, "'%s' holds %llux%llux%llu vectors; block 1 gives 16x%dx%d", path, (unsigned long long)dims[1],
             (unsigned long long)dims[2], (unsigned long long)dims[3], P / 2, P / 2),
        rc = -1;
  if (!rc) { /* into the backend's memory (a GPU's: the steps put them in their batch places
              * there), through a host buffer of up to 64 vectors */
    t->nvec = dims[0], t->dvec = (size_t)(dims[1] * dims[2] * dims[3]);
    t->vec = t->be->iface->alloc(t->be, (t->nvec * t->dvec + 1) * sizeof(float));
    const hsize_t chunk = 64;
    float *buf = mp_malloc((size_t)chunk * t->dvec * sizeof(float));
    hid_t fs = H5Dget_space(ds);
    for (hsize_t i = 0; i < dims[0] && !rc; i += chunk) {
      hsize_t cnt[4] = {dims[0] - i < chunk ? dims[0] - i : chunk, dims[1], dims[2], dims[3]}, off[4] = {i, 0, 0, 0};
      hid_t ms = H5Screate_simple(4, cnt, NULL);
      if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL) < 0 ||
          H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf) < 0)
        rc = -1, snprintf(err, errlen, "cannot read '%s'", path);
      else
        t->be->iface->upload(t->be, t->vec + i * t->dvec, buf, (size_t)cnt[0] * t->dvec * sizeof(float));
      H5Sclose(ms);
    }
    H5Sclose(fs);
    mp_free(buf);
  }
  if (ds >= 0) H5Dclose(ds);
  H5Fclose(f);
  return rc;
}

static int setup_data(trainer *t, mp_store *st, cJSON **split_doc, char *err, size_t errlen) {
  uint64_t n = mp_store_count(st);
  uint8_t *labels = mp_malloc(n ? n : 1);
  uint32_t *views = mp_malloc((n ? n : 1) * sizeof *views);
  mp_store_tables tb;
  if (mp_store_read_labels(st, labels) || mp_store_read_tables(st, &tb)) {
    snprintf(err, errlen, "cannot read the patch store's tables");
    return -1;
  }
  if (mp_store_read_views(st, views)) {
    snprintf(err, errlen, "cannot read /patches/view");
    return -1;
  }
  uint8_t *les = mp_calloc(tb.npatients ? tb.npatients : 1, 1), *part = mp_malloc(tb.npatients ? tb.npatients : 1);
  mp_split_store_patients(tb.view_patient, tb.npatients, labels, views, n, t->args->split_seed, part, les);
  /* index lists per part, in store order */
  uint64_t cnt[3] = {0}, lcnt[3] = {0};
  for (uint64_t i = 0; i < n; i++) {
    uint8_t q = part[tb.view_patient[views[i]]];
    cnt[q]++;
    lcnt[q] += labels[i] != 0;
  }
  t->ntr = cnt[0], t->nles = lcnt[0], t->nval_all = cnt[1], t->ntest_all = cnt[2];
  int rc = 0;
  if (lcnt[0] == 0 || lcnt[0] == cnt[0]) {
    snprintf(err, errlen, "the training split has %llu lesion and %llu normal patches: both are needed",
             (unsigned long long)lcnt[0], (unsigned long long)(cnt[0] - lcnt[0]));
    rc = -1;
  } else if (cnt[0] < (uint64_t)t->B) {
    snprintf(err, errlen, "the training split has %llu patches, fewer than one batch of %d",
             (unsigned long long)cnt[0], t->B);
    rc = -1;
  }
  uint64_t *idx[3];
  for (int q = 0; q < 3; q++) idx[q] = mp_malloc((cnt[q] ? cnt[q] : 1) * sizeof(uint64_t));
  uint64_t fill[3] = {0};
  t->tr_label = mp_malloc(cnt[0] ? cnt[0] : 1);
  for (uint64_t i = 0; i < n; i++) {
    uint8_t q = part[tb.view_patient[views[i]]];
    if (q == 0) t->tr_label[fill[0]] = labels[i];
    idx[q][fill[q]++] = i;
  }
  t->tr_index = idx[0];
  /* the gan variant: the synthetic store's patches (all lesions) join the training part;
   * entry i >= n of tr_index is synthetic patch i - n */
  mp_store *syn = NULL;
  t->nsyn = 0;
  if (rc == 0 && t->args->synthetic_store) {
    syn = mp_store_open(t->args->synthetic_store, err, errlen);
    if (!syn) rc = -1;
    else if (mp_store_patch_size(syn) != mp_store_patch_size(st)) {
      snprintf(err, errlen, "'%s' has %d-pixel patches, the store %d", t->args->synthetic_store, mp_store_patch_size(syn),
               mp_store_patch_size(st));
      rc = -1;
    } else {
      uint64_t m = mp_store_count(syn);
      uint8_t *sl = mp_malloc(m + 1);
      if (mp_store_read_labels(syn, sl) != 0) rc = -1, snprintf(err, errlen, "cannot read '%s'", t->args->synthetic_store);
      for (uint64_t i = 0; i < m && !rc; i++)
        if (sl[i] != 1) rc = -1, snprintf(err, errlen, "'%s' holds a non-lesion patch (%llu)", t->args->synthetic_store, (unsigned long long)i);
      mp_free(sl);
      if (!rc) {
        t->nsyn = m;
        t->tr_index = idx[0] = mp_realloc(idx[0], (cnt[0] + m + 1) * sizeof(uint64_t));
        t->tr_label = mp_realloc(t->tr_label, cnt[0] + m + 1);
        for (uint64_t i = 0; i < m; i++) t->tr_index[cnt[0] + i] = n + i, t->tr_label[cnt[0] + i] = 1;
        t->ntr += m, t->nles += m;
      }
    }
  }
  t->nshard = t->ntr;
  if (rc == 0 && t->args->smote_features) {
    if (load_smote(t, n, mp_store_patch_size(st), t->args->smote_features, err, errlen) != 0) rc = -1;
    else {
      t->tr_label = mp_realloc(t->tr_label, t->ntr + t->nvec + 1);
      memset(t->tr_label + t->ntr, 1, t->nvec);
      t->ntr += t->nvec, t->nles += t->nvec;
    }
  }
  /* split.json (rank 0 writes it): pseudonyms only */
  if (t->rank == 0) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "split_seed", (double)t->args->split_seed);
    static const char *names[3] = {"train", "validation", "test"};
    for (int q = 0; q < 3; q++) {
      cJSON *o = cJSON_AddObjectToObject(d, names[q]), *list = cJSON_CreateArray();
      uint64_t pl = 0, pn = 0;
      for (uint64_t p = 0; p < tb.npatients; p++)
        if (part[p] == q) {
          cJSON_AddItemToArray(list, cJSON_CreateString(tb.pseudonym[p]));
          if (les[p]) pl++;
          else pn++;
        }
      cJSON_AddNumberToObject(o, "lesion_patients", (double)pl);
      cJSON_AddNumberToObject(o, "normal_only_patients", (double)pn);
      cJSON_AddNumberToObject(o, "lesion_patches", (double)lcnt[q]);
      cJSON_AddNumberToObject(o, "normal_patches", (double)(cnt[q] - lcnt[q]));
      cJSON_AddItemToObject(o, "patients", list);
    }
    *split_doc = d;
  }
  if (rc == 0) {
    t->P = mp_store_patch_size(st);
    t->px = (size_t)t->P * t->P;
    t->shard = mp_shard_block(t->nshard, t->K, t->rank);
    t->shard_px = mp_malloc((t->shard.end - t->shard.begin + 1) * t->px);
    mp_range v = mp_shard_block(t->nval_all, t->K, t->rank), w = mp_shard_block(t->ntest_all, t->K, t->rank);
    t->nval = v.end - v.begin, t->ntest = w.end - w.begin;
    t->val_px = mp_malloc((t->nval + 1) * t->px), t->val_label = mp_malloc(t->nval + 1);
    t->test_px = mp_malloc((t->ntest + 1) * t->px), t->test_label = mp_malloc(t->ntest + 1);
    for (uint64_t i = 0; i < t->nval; i++) t->val_label[i] = labels[idx[1][v.begin + i]];
    for (uint64_t i = 0; i < t->ntest; i++) t->test_label[i] = labels[idx[2][w.begin + i]];
    /* this rank's block: real patches first, then (gan) synthetic ones */
    uint64_t nreal_tr = t->nshard - t->nsyn, b0 = t->shard.begin, b1 = t->shard.end;
    uint64_t r_end = b1 < nreal_tr ? b1 : nreal_tr, real_n = r_end > b0 ? r_end - b0 : 0;
    uint64_t s_begin = b0 > nreal_tr ? b0 : nreal_tr, syn_n = b1 > s_begin ? b1 - s_begin : 0;
    uint64_t *sidx = mp_malloc((syn_n + 1) * sizeof *sidx);
    for (uint64_t i = 0; i < syn_n; i++) sidx[i] = t->tr_index[s_begin + i] - n;
    if ((syn_n && mp_store_read_pixels_at(syn, sidx, syn_n, t->shard_px + real_n * t->px)) ||
        mp_store_read_pixels_at(st, t->tr_index + b0, real_n, t->shard_px) ||
        mp_store_read_pixels_at(st, idx[1] + v.begin, t->nval, t->val_px) ||
        mp_store_read_pixels_at(st, idx[2] + w.begin, t->ntest, t->test_px)) {
      snprintf(err, errlen, "cannot read patches from the store");
      rc = -1;
    }
    mp_free(sidx);
  }
  if (syn) mp_store_close(syn);
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, t->comm));
  mp_free(idx[1]), mp_free(idx[2]), mp_free(labels), mp_free(views), mp_free(les), mp_free(part);
  mp_store_tables_free(&tb);
  return rc;
}

static void write_train_json(trainer *t, const progress_state *ps, const char *status, cJSON *test) {
  if (t->rank != 0) return;
  cJSON *d = cJSON_CreateObject();
  cJSON_AddItemToObject(d, "provenance", mp_json_provenance(t->cfg, t->K));
  cJSON_AddStringToObject(d, "status", status);
  cJSON_AddStringToObject(d, "variant", t->args->variant);
  cJSON_AddNumberToObject(d, "split_seed", (double)t->args->split_seed);
  cJSON_AddNumberToObject(d, "ranks", t->K);
  if (t->compute) cJSON_AddItemToObject(d, "compute", cJSON_Duplicate(t->compute, 1));
  cJSON_AddNumberToObject(d, "batch", t->B);
  /* samples per batch-norm statistics group in training (SPEC §6: each rank's B/K, or
   * train.bn_group): runs with equal bn_batch compute the same model whatever the ranks */
  cJSON_AddNumberToObject(d, "bn_batch", t->bn_batch);
  cJSON_AddNumberToObject(d, "steps_per_epoch", t->S);
  cJSON_AddNumberToObject(d, "global_step", (double)ps->global_step);
  cJSON_AddNumberToObject(d, "train_patches", (double)t->ntr);
  cJSON_AddNumberToObject(d, "train_lesion_patches", (double)t->nles);
  cJSON_AddNumberToObject(d, "train_synthetic_patches", (double)t->nsyn);
  cJSON_AddNumberToObject(d, "train_synthetic_vectors", (double)t->nvec);
  if (t->args->smote_features) {
    cJSON_AddStringToObject(d, "smote_features", t->args->smote_features);
    cJSON_AddStringToObject(d, "block1", "frozen: the baseline's best/block1.h5 (SPEC §9 phase 3)");
  }
  if (t->args->synthetic_store) cJSON_AddStringToObject(d, "synthetic_store", t->args->synthetic_store);
  cJSON_AddNumberToObject(d, "validation_patches", (double)t->nval_all);
  cJSON_AddNumberToObject(d, "test_patches", (double)t->ntest_all);
  cJSON *best = cJSON_AddObjectToObject(d, "best");
  cJSON_AddNumberToObject(best, "epoch", (double)ps->best_epoch);
  cJSON_AddNumberToObject(best, "validation_mcc", ps->best_mcc);
  cJSON_AddStringToObject(best, "model", "best/");
  cJSON_AddItemToObject(d, "curve", cJSON_Duplicate(ps->curve, 1));
  cJSON_AddItemToObject(d, "step_loss", cJSON_Duplicate(ps->steps, 1));
  if (test) cJSON_AddItemToObject(d, "test", test);
  char path[4200], err[512];
  snprintf(path, sizeof path, "%s/train.json", t->args->out_dir);
  if (mp_json_write_file(path, d, err, sizeof err)) MP_ERROR("%s", err);
  cJSON_Delete(d);
}

static void trainer_free(trainer *t) {
  mp_free(t->tr_index), mp_free(t->tr_label), mp_free(t->shard_px), mp_free(t->recv_px), mp_free(t->slot);
  mp_free(t->slot_label), mp_free(t->seq), mp_free(t->val_px), mp_free(t->val_label), mp_free(t->test_px);
  mp_free(t->test_label), mp_free(t->slot_vec), mp_free(t->flat), mp_free(t->bits), mp_free(t->src), mp_free(t->tlab), mp_free(t->dy);
  if (t->vec) t->be->iface->release(t->be, t->vec);
  mp_net_free(t->b1);
  mp_net_free(t->rest);
  cJSON_Delete(t->compute);
  if (t->be) mp_backend_free(t->be);
  if (t->patch_t != MPI_DATATYPE_NULL) MPI_Type_free(&t->patch_t);
}

/* ---- the run ------------------------------------------------------------------------------------ */
int mp_train_run(MPI_Comm comm, const mp_config *cfg, const mp_train_args *a) {
  trainer T = {0}, *t = &T;
  t->comm = comm, t->cfg = cfg, t->args = a, t->patch_t = MPI_DATATYPE_NULL;
  MPI_Comm_rank(comm, &t->rank);
  MPI_Comm_size(comm, &t->K);
  char err[1024] = "";
  int status = MP_EXIT_OK;
  bool gan_variant = strcmp(a->variant, "gan") == 0;
  t->smote = strncmp(a->variant, "smote-", 6) == 0;
  bool smote_ok = !t->smote || ((strcmp(a->variant + 6, "cosine") == 0 || strcmp(a->variant + 6, "l1") == 0 ||
                                 strcmp(a->variant + 6, "l2") == 0) &&
                                a->smote_features && a->smote_block1);
  if ((strcmp(a->variant, "baseline") != 0 && !gan_variant && !t->smote) || gan_variant != (a->synthetic_store != NULL) ||
      !smote_ok || (!t->smote && (a->smote_features || a->smote_block1))) {
    MP_ERROR("variant '%s' with these inputs is not available: baseline; gan with --synthetic STORE; smote-cosine|l1|l2 "
             "with --smote FEATURES.h5 and --block1 BASELINE_DIR",
             a->variant);
    return MP_EXIT_USAGE;
  }
  t->B = (int)mp_config_int(cfg, "train.batch");
  if (t->B % t->K != 0) {
    MP_ERROR("train.batch %d is not a multiple of the %d ranks", t->B, t->K);
    return MP_EXIT_USAGE;
  }
  t->b = t->B / t->K;
  t->lesion_fraction = mp_config_real(cfg, "train.lesion_fraction");
  t->rot90 = mp_config_bool(cfg, "train.rot90");
  t->lr = (float)mp_config_real(cfg, "train.lr");
  t->beta1 = (float)mp_config_real(cfg, "train.beta1");
  t->beta2 = (float)mp_config_real(cfg, "train.beta2");
  t->seed = (uint64_t)mp_config_int(cfg, "run.seed") * 0x9E3779B97F4A7C15ull ^ a->split_seed;
  int bn_group = (int)mp_config_int(cfg, "train.bn_group");
  if (bn_group > 0 && t->b % bn_group != 0) {
    MP_ERROR("train.bn_group %d does not divide the per-rank batch %d", bn_group, t->b);
    return MP_EXIT_USAGE;
  }
  t->be = mp_backend_create_cfg(cfg, err, sizeof err);
  int be_ok = t->be != NULL; /* collective: a rank without its backend (e.g. no GPU on its node) stops every rank */
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &be_ok, 1, MPI_INT, MPI_MIN, comm));
  if (!be_ok) {
    MP_ERROR("%s", t->be ? "the backend could not be created on another rank" : err);
    trainer_free(t);
    return MP_EXIT_USAGE;
  }
  mp_dp_init(&t->dp, t->be, comm);
  t->compute = mp_backend_compute_json(t->be, &t->dp, comm);
  MP_CHECK_MPI(MPI_Type_contiguous(1, MPI_BYTE, &t->patch_t)); /* replaced once the patch size is known */
  if (t->rank == 0 && mp_mkdir_p(a->out_dir, err, sizeof err) != 0) status = MP_EXIT_FAILURE;
  MP_CHECK_MPI(MPI_Bcast(&status, 1, MPI_INT, 0, comm));
  if (status) {
    MP_ERROR("cannot create '%s': %s", a->out_dir, err);
    trainer_free(t);
    return status;
  }
  mp_store *st = mp_store_open(a->store_path, err, sizeof err);
  int ok = st != NULL;
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm));
  if (!ok) {
    MP_ERROR("%s", err[0] ? err : "cannot open the patch store");
    if (st) mp_store_close(st);
    trainer_free(t);
    return MP_EXIT_FAILURE;
  }
  cJSON *split_doc = NULL;
  if (setup_data(t, st, &split_doc, err, sizeof err) != 0) {
    MP_ERROR("%s", err[0] ? err : "data set-up failed on another rank");
    mp_store_close(st);
    cJSON_Delete(split_doc);
    trainer_free(t);
    return MP_EXIT_FAILURE;
  }
  mp_store_close(st);
  if (t->rank == 0) {
    char path[4200];
    snprintf(path, sizeof path, "%s/split.json", a->out_dir);
    if (mp_json_write_file(path, split_doc, err, sizeof err)) MP_ERROR("%s", err);
    cJSON_Delete(split_doc);
  }
  MPI_Type_free(&t->patch_t);
  MP_CHECK_MPI(MPI_Type_contiguous((int)t->px, MPI_BYTE, &t->patch_t));
  MP_CHECK_MPI(MPI_Type_commit(&t->patch_t));
  t->S = (int)(t->ntr / (uint64_t)t->B);
  t->seq = mp_malloc((size_t)t->S * t->B * sizeof *t->seq);
  t->slot = mp_malloc((size_t)t->S * t->b * sizeof *t->slot);
  t->slot_label = mp_malloc((size_t)t->S * t->b);
  if (t->smote) t->slot_vec = mp_malloc((size_t)t->S * t->b * sizeof *t->slot_vec);
  if (t->K > 1) t->recv_px = mp_malloc((size_t)t->S * t->b * t->px);
  /* the model */
  mp_model_classifier(t->be, t->b, (uint64_t)mp_config_int(cfg, "run.seed"), (float)mp_config_real(cfg, "train.dropout"),
                      &t->b1, &t->rest);
  t->bn_batch = bn_group > 0 && bn_group < t->b ? bn_group : t->b; /* what the nets use, and train.json says */
  mp_net_set_bn_group(t->b1, t->bn_batch);
  mp_net_set_bn_group(t->rest, t->bn_batch);
  t->np1 = mp_net_param_count(t->b1), t->np2 = mp_net_param_count(t->rest);
  t->flat = mp_malloc((t->np1 + t->np2 + 2) * sizeof(float));
  t->bits = mp_malloc((size_t)t->b * sizeof *t->bits);
  t->src = mp_malloc((size_t)t->b * sizeof *t->src);
  t->tlab = mp_malloc((size_t)t->b * sizeof(float));
  t->dy = mp_malloc((size_t)t->b * sizeof(float));
  if (t->smote) { /* phase 3: the baseline's block 1, frozen */
    char path[4300];
    snprintf(path, sizeof path, "%s/best/block1.h5", a->smote_block1);
    int lrc = mp_net_load(t->b1, path, NULL, err, sizeof err);
    MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &lrc, 1, MPI_INT, MPI_MIN, comm));
    if (lrc) {
      MP_ERROR("%s", err[0] ? err : "cannot load block 1 on another rank");
      trainer_free(t);
      return MP_EXIT_FAILURE;
    }
  }
  MP_INFO("train %s, split seed %llu: %llu training patches (%llu lesion), %llu validation, %llu test; "
          "batch %d = %d ranks x %d (statistics groups of %d), %d steps per epoch, backend %s",
          a->variant, (unsigned long long)a->split_seed, (unsigned long long)t->ntr, (unsigned long long)t->nles,
          (unsigned long long)t->nval_all, (unsigned long long)t->ntest_all, t->B, t->K, t->b, t->bn_batch, t->S,
          mp_config_str(cfg, "train.backend"));
  /* resume */
  progress_state ps = {0, 0, 0, -2.0, -1, 0, 0, 0, cJSON_CreateArray(), cJSON_CreateArray()};
  if (a->resume) {
    char dir[4400] = "";
    if (t->rank == 0) newest_checkpoint(a->out_dir, dir, sizeof dir);
    char *d = t->rank == 0 ? mp_strdup(dir) : NULL;
    mp_bcast_string(comm, 0, &d);
    if (d[0]) {
      if (load_dir(t, d, &ps, err, sizeof err) != 0) {
        MP_ERROR("cannot resume: %s", err);
        mp_free(d);
        cJSON_Delete(ps.curve);
        cJSON_Delete(ps.steps);
        trainer_free(t);
        return MP_EXIT_FAILURE;
      }
      MP_INFO("resumed from %s: epoch %llu, step %llu of %d", d, (unsigned long long)ps.epoch + 1,
              (unsigned long long)ps.step_in_epoch, t->S);
    } else {
      MP_INFO("--resume: no complete checkpoint under %s/checkpoints; starting afresh", a->out_dir);
    }
    mp_free(d);
  }
  mp_signal_catch_stop();
  const uint64_t epochs = (uint64_t)mp_config_int(cfg, "train.epochs");
  const uint64_t max_steps = (uint64_t)mp_config_int(cfg, "train.max_steps");
  const uint64_t ck_every = (uint64_t)mp_config_int(cfg, "train.checkpoint_every");
  const int patience = (int)mp_config_int(cfg, "train.patience");
  const char *end_status = "completed";
  bool stop = false;
  /* a run resumed after it had already ended (early stop at an epoch's end, or train.max_steps
   * reached) trains no further: its best model and test result stay what they were */
  if (ps.epoch < epochs) {
    if (ps.step_in_epoch == 0 && patience > 0 && ps.patience_used >= patience)
      end_status = "completed (early stop)", stop = true;
    if (max_steps && ps.global_step >= max_steps) end_status = "stopped at train.max_steps", stop = true;
  }
  write_train_json(t, &ps, "running", NULL);
  while (!stop && ps.epoch < epochs) {
    double t0 = mp_now();
    epoch_exchange(t, ps.epoch);
    char label[64];
    snprintf(label, sizeof label, "epoch %llu/%llu", (unsigned long long)ps.epoch + 1, (unsigned long long)epochs);
    mp_progress *bar = t->rank == 0 ? mp_progress_start(label, (uint64_t)t->S) : NULL;
    uint64_t steps_run = 0;
    for (; ps.step_in_epoch < (uint64_t)t->S; ) {
      bool signalled = false;
      double l = train_step(t, (int)ps.step_in_epoch, ps.global_step, &signalled);
      if (!isfinite(l)) { /* the global mean: every rank sees it and stops here; no checkpoint of NaN weights */
        MP_ERROR("training diverged at step %llu (loss %g): no checkpoint written; the best model so far is kept",
                 (unsigned long long)ps.global_step + 1, l);
        end_status = "diverged";
        status = MP_EXIT_FAILURE;
        stop = true;
        break;
      }
      ps.epoch_loss_sum += l, ps.epoch_loss_steps++;
      if (ps.global_step < MAX_STEP_LOG) cJSON_AddItemToArray(ps.steps, cJSON_CreateNumber(l));
      ps.step_in_epoch++, ps.global_step++, steps_run++;
      if (bar) mp_progress_update(bar, ps.step_in_epoch);
      if (getenv("MAMMOPATCH_TEST_KILL_AT_STEP") && t->rank == t->K - 1 &&
          ps.global_step == strtoull(getenv("MAMMOPATCH_TEST_KILL_AT_STEP"), NULL, 10))
        raise(SIGKILL); /* tests: a rank dies mid-epoch */
      if (signalled) {
        MP_WARN("stop signal (SIGTERM/SIGUSR1): writing a checkpoint at step %llu and stopping (resume with --resume)",
                (unsigned long long)ps.global_step);
        if (checkpoint(t, &ps) != 0) status = MP_EXIT_FAILURE;
        end_status = "interrupted";
        stop = true;
        break;
      }
      if (max_steps && ps.global_step >= max_steps) {
        stop = true;
        break;
      }
      if (ck_every && ps.global_step % ck_every == 0 && ps.step_in_epoch < (uint64_t)t->S && checkpoint(t, &ps) != 0) {
        status = MP_EXIT_FAILURE;
        stop = true;
        break;
      }
    }
    if (bar) mp_progress_finish(bar);
    double train_secs = mp_now() - t0; /* the exchange and the steps */
    if (strcmp(end_status, "interrupted") == 0 || status) break;
    if (ps.step_in_epoch < (uint64_t)t->S) { /* max_steps inside the epoch */
      if (checkpoint(t, &ps) != 0) status = MP_EXIT_FAILURE;
      end_status = "stopped at train.max_steps";
      break;
    }
    /* end of epoch: one model on every rank, validation, best model, checkpoint */
    sync_bn(t);
    mp_confusion vc = evaluate(t, t->val_px, t->val_label, t->nval);
    double mcc = metric_mcc(&vc), secs = mp_now() - t0, nval = vc.tp + vc.fp + vc.tn + vc.fn;
    double train_loss = ps.epoch_loss_steps ? ps.epoch_loss_sum / (double)ps.epoch_loss_steps : 0;
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddNumberToObject(rec, "epoch", (double)ps.epoch + 1);
    cJSON_AddNumberToObject(rec, "train_loss", train_loss);
    cJSON_AddItemToObject(rec, "validation", metrics_json(&vc));
    cJSON_AddNumberToObject(rec, "seconds", secs);
    cJSON_AddNumberToObject(rec, "train_seconds", train_secs);
    cJSON_AddNumberToObject(rec, "patches_per_second", steps_run * (double)t->B / secs);
    cJSON_AddItemToArray(ps.curve, rec);
    MP_INFO("epoch %llu: train loss %.4f | validation loss %.4f MCC %.3f F1 %.3f | %.1f s (%.1f patches/s)",
            (unsigned long long)ps.epoch + 1, train_loss,
            nval > 0 ? vc.loss_sum / nval : 0, mcc, metric_f1(&vc), secs, steps_run * (double)t->B / secs);
    ps.epoch++, ps.step_in_epoch = 0, ps.epoch_loss_sum = 0, ps.epoch_loss_steps = 0;
    if (mcc > ps.best_mcc) {
      ps.best_mcc = mcc, ps.best_epoch = (long)ps.epoch, ps.patience_used = 0;
      char dir[4300];
      snprintf(dir, sizeof dir, "%s/best", a->out_dir);
      if (save_dir(t, &ps, dir) != 0) status = MP_EXIT_FAILURE;
    } else {
      ps.patience_used++;
    }
    if (!status && checkpoint(t, &ps) != 0) status = MP_EXIT_FAILURE;
    write_train_json(t, &ps, "running", NULL);
    if (patience > 0 && ps.patience_used >= patience) {
      MP_INFO("early stop: no better validation MCC for %d epochs", patience);
      end_status = "completed (early stop)";
      stop = true;
    }
    if (max_steps && ps.global_step >= max_steps) {
      end_status = "stopped at train.max_steps";
      stop = true;
    }
  }
  cJSON *test = NULL;
  if (status == MP_EXIT_OK && strcmp(end_status, "interrupted") != 0 && ps.best_epoch > 0) {
    /* the test split, once, with the best-validation model */
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/best", a->out_dir);
    progress_state tmp = {0, 0, 0, 0, 0, 0, 0, 0, cJSON_CreateArray(), cJSON_CreateArray()};
    if (load_dir(t, dir, &tmp, err, sizeof err) != 0) {
      MP_ERROR("cannot reload the best model: %s", err);
      status = MP_EXIT_FAILURE;
    } else {
      mp_confusion tc = evaluate(t, t->test_px, t->test_label, t->ntest);
      test = metrics_json(&tc);
      cJSON_AddNumberToObject(test, "model_epoch", (double)ps.best_epoch);
      MP_INFO("test (best validation epoch %ld): MCC %.3f F1 %.3f accuracy %.3f on %.0f patches", ps.best_epoch,
              metric_mcc(&tc), metric_f1(&tc), (tc.tp + tc.tn) / fmax(1, tc.tp + tc.tn + tc.fp + tc.fn),
              tc.tp + tc.tn + tc.fp + tc.fn);
    }
    cJSON_Delete(tmp.curve);
    cJSON_Delete(tmp.steps);
  }
  write_train_json(t, &ps, status ? (strcmp(end_status, "diverged") == 0 ? "diverged" : "failed") : end_status, test);
  if (test && t->rank != 0) cJSON_Delete(test);
  cJSON_Delete(ps.curve);
  cJSON_Delete(ps.steps);
  trainer_free(t);
  if (status == MP_EXIT_OK && strcmp(end_status, "interrupted") == 0) status = MP_EXIT_INTERRUPTED;
  return status;
}
