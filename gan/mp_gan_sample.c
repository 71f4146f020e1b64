/* mp_gan_sample — synthetic lesion patches into a patch store (see mp_gan_sample.h). */
#include "mp_gan_sample.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mp_alloc.h"
#include "mp_build_config.h"
#include "mp_check.h"
#include "mp_gan_train.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_models.h"
#include "mp_png.h"
#include "mp_report.h"
#include "mp_rng.h"
#include "mp_store.h"

/* The run directory: DIR itself (gan.json), or a sweep's best run (sweep.json). */
static int resolve(const char *dir, char *run, size_t runlen, cJSON **gan, char *err, size_t errlen) {
  char path[4400];
  struct stat sb;
  snprintf(path, sizeof path, "%s/sweep.json", dir);
  if (stat(path, &sb) == 0) {
    cJSON *s = mp_json_read_file(path, err, errlen);
    const cJSON *b = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "best"), "run");
    if (!cJSON_IsString(b)) {
      if (s && snprintf(err, errlen, "'%s' names no best run (no run of the sweep completed with an FID)", path) < 0)
        err[0] = 0;
      cJSON_Delete(s);
      return -1;
    }
    snprintf(run, runlen, "%s/runs/%s", dir, b->valuestring);
    cJSON_Delete(s);
  } else
    snprintf(run, runlen, "%s", dir);
  snprintf(path, sizeof path, "%s/gan.json", run);
  *gan = mp_json_read_file(path, err, errlen);
  return *gan ? 0 : -1;
}

int mp_gan_sample_run(MPI_Comm comm, const mp_config *cfg, const mp_gan_sample_args *a) {
  int rank, K;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &K);
  char err[1024] = "", run[4300] = "";
  cJSON *gj = NULL;
  int rc = resolve(a->generator_dir, run, sizeof run, &gj, err, sizeof err);
  int f = 0, z = 0;
  if (!rc) {
    f = (int)cJSON_GetObjectItem(gj, "filters")->valuedouble;
    z = (int)cJSON_GetObjectItem(gj, "latent")->valuedouble;
  }
  /* samples per forward: the batch-norm batch of the run's training and FID (gan.json
   * bn_batch; gan.batch for runs that predate it) */
  const cJSON *bnb = cJSON_GetObjectItem(gj, "bn_batch");
  const int B = cJSON_IsNumber(bnb) && bnb->valueint > 0 ? bnb->valueint : (int)mp_config_int(cfg, "gan.batch");
  mp_backend *be = rc ? NULL : mp_backend_create_cfg(cfg, err, sizeof err);
  mp_net *g = NULL;
  if (!rc && !be) rc = -1;
  if (!rc) {
    g = mp_model_dcgan_g(be, z, f, B, 0);
    char path[4400];
    snprintf(path, sizeof path, "%s/best/generator.h5", run);
    rc = mp_net_load(g, path, NULL, err, sizeof err);
  }
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, comm));
  if (rc) {
    MP_ERROR("%s", err[0] ? err : "cannot load the generator on another rank");
    mp_net_free(g);
    if (be) mp_backend_free(be);
    cJSON_Delete(gj);
    return MP_EXIT_FAILURE;
  }
  const int P = 128;
  const size_t px = (size_t)P * P;
  /* rank 0 writes (a one-rank writer), the others generate and send */
  mp_store_writer *w = NULL;
  if (rank == 0) {
    w = mp_store_create(MPI_COMM_SELF, a->out_path, P, (int)mp_config_int(cfg, "preprocess.deflate"), err, sizeof err);
    rc = w ? 0 : -1;
  }
  MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, comm));
  if (rc) {
    MP_ERROR("%s", err);
    mp_net_free(g), mp_backend_free(be), cJSON_Delete(gj);
    return MP_EXIT_FAILURE;
  }
  uint64_t nb = (a->n + (uint64_t)B - 1) / (uint64_t)B;
  float *zb = mp_malloc((size_t)B * z * sizeof *zb);
  uint8_t *mine = mp_malloc((size_t)B * px), *all = rank == 0 ? mp_malloc((size_t)K * B * px) : NULL;
  mp_patch_meta *meta = rank == 0 ? mp_malloc((size_t)K * B * sizeof *meta) : NULL;
  uint8_t *first = rank == 0 ? mp_malloc(16 * px) : NULL; /* the montage's synthetic row */
  int nfirst = 0;
  mp_view_rec view;
  memset(&view, 0, sizeof view);
  snprintf(view.pseudonym, sizeof view.pseudonym, "SYNTHETIC");
  view.laterality = 'U';
  snprintf(view.position, sizeof view.position, "GAN");
  view.birads = -1, view.windowing = -1, view.modality = -1;
  view.rows = view.cols = (uint32_t)P;
  bool view_written = false;
  for (uint64_t r0 = 0; r0 < nb; r0 += (uint64_t)K) { /* a round: batches r0 .. r0 + K - 1 */
    uint64_t q = r0 + (uint64_t)rank;
    if (q < nb) {
      for (int j = 0; j < B; j++) {
        mp_rng r;
        mp_rng_init(&r, a->seed, MP_RNG_GAN_Z, q * (uint64_t)B + (uint64_t)j);
        for (int k = 0; k < z; k++) zb[(size_t)j * z + k] = (float)mp_rng_normal(&r);
      }
      const float *x = mp_net_forward(g, zb, B, true, 0);
      for (size_t i = 0; i < (size_t)B * px; i++) mine[i] = mp_gan_to_u8(x[i]);
    }
    MP_CHECK_MPI(MPI_Gather(mine, (int)((size_t)B * px), MPI_BYTE, all, (int)((size_t)B * px), MPI_BYTE, 0, comm));
    if (rank == 0) {
      uint64_t batches = nb - r0 < (uint64_t)K ? nb - r0 : (uint64_t)K, cnt = 0;
      for (uint64_t bq = 0; bq < batches; bq++)
        for (int j = 0; j < B; j++) {
          uint64_t idx = (r0 + bq) * (uint64_t)B + (uint64_t)j;
          if (idx >= a->n) break;
          if (cnt != bq * (uint64_t)B + (uint64_t)j) memmove(all + cnt * px, all + (bq * B + j) * px, px);
          /* the view record is written with the first round; later rounds refer to row 0 */
          meta[cnt] = (mp_patch_meta){view_written ? MP_STORE_VIEW_ABSOLUTE : 0, 1, {-1, -1}, {NAN, NAN, NAN, NAN, NAN}};
          if (nfirst < 16) memcpy(first + (size_t)nfirst++ * px, all + cnt * px, px);
          cnt++;
        }
      mp_store_write_round(w, &view, view_written ? 0 : 1, meta, &all, cnt); /* may move `all` */
      view_written = true;
    }
  }
  if (rank == 0) {
    mp_store_attr_int(w, "synthetic", 1);
    mp_store_attr_string(w, "generator_run", run);
    mp_store_attr_string(w, "generator_loss", cJSON_GetObjectItem(gj, "loss")->valuestring);
    mp_store_attr_int(w, "generator_filters", f);
    mp_store_attr_int(w, "generator_sn_ttur", cJSON_IsTrue(cJSON_GetObjectItem(gj, "sn_ttur")));
    const cJSON *bf = cJSON_GetObjectItem(cJSON_GetObjectItem(gj, "fid"), "best");
    mp_store_attr_double(w, "generator_best_fid", cJSON_IsNumber(bf) ? bf->valuedouble : NAN);
    mp_store_attr_int(w, "sample_seed", (long long)a->seed);
    mp_store_close_writer(w);
    MP_INFO("gan sample: %llu synthetic lesion patches from %s (%s f=%d) -> %s", (unsigned long long)a->n, run,
            cJSON_GetObjectItem(gj, "loss")->valuestring, f, a->out_path);
    /* the montage: real lesion patches above, synthetic below (Figure 4.1 form) */
    if (a->montage_store) {
      mp_store *st = mp_store_open(a->montage_store, err, sizeof err);
      uint64_t n = st ? mp_store_count(st) : 0, les = 0;
      uint8_t *lab = mp_malloc(n + 1), *real = mp_malloc(16 * px);
      int nreal = 0;
      if (st && mp_store_read_labels(st, lab) == 0) {
        for (uint64_t i = 0; i < n; i++) les += lab[i] != 0;
        for (uint64_t i = 0, seen = 0; i < n && nreal < 16; i++)
          if (lab[i]) {
            if (seen * 16 / (les ? les : 1) >= (uint64_t)nreal &&
                mp_store_read_pixels_at(st, &i, 1, real + (size_t)nreal * px) == 0)
              nreal++;
            seen++;
          }
      }
      if (st) mp_store_close(st);
      int mw, mh;
      uint8_t *m = mp_report_montage(real, nreal, first, nfirst, P, &mw, &mh);
      char path[4400];
      snprintf(path, sizeof path, "%s.montage.png", a->out_path);
#if MP_HAVE_PNG
      if (mp_png_write(path, m, mw, mh, 1, err, sizeof err) != 0) MP_WARN("montage: %s", err);
      else MP_INFO("montage (real lesions above, synthetic below): %s", path);
#endif
      mp_free(m), mp_free(lab), mp_free(real);
    }
  }
  MP_CHECK_MPI(MPI_Barrier(comm));
  mp_free(zb), mp_free(mine), mp_free(all), mp_free(meta), mp_free(first);
  mp_net_free(g), mp_backend_free(be), cJSON_Delete(gj);
  return MP_EXIT_OK;
}
