/* mp_smote — SMOTE phase 2 (see mp_smote.h). */
#include "mp_smote.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_models.h"
#include "mp_mpi.h"
#include "mp_rng.h"
#include "mp_split.h"
#include "mp_store.h"

/* One dataset of `rank` dims written whole (rank 0's serial file). */
static int put(hid_t f, const char *name, hid_t type, int nd, const hsize_t *dims, const void *data) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t sp = H5Screate_simple(nd, dims, NULL);
  hid_t ds = H5Dcreate2(f, name, type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  int bad = ds < 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0;
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(sp), H5Pclose(lcpl);
  return bad ? -1 : 0;
}

static void attr_str(hid_t f, const char *name, const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(v) + 1);
  hid_t sp = H5Screate(H5S_SCALAR), a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, t, v);
  H5Aclose(a), H5Sclose(sp), H5Tclose(t);
}

static void attr_u64(hid_t f, const char *name, unsigned long long v) {
  hid_t sp = H5Screate(H5S_SCALAR), a = H5Acreate2(f, name, H5T_NATIVE_ULLONG, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_ULLONG, &v);
  H5Aclose(a), H5Sclose(sp);
}

int mp_smote_features_run(MPI_Comm comm, const mp_config *cfg, const mp_smote_args *a) {
  int rank, K;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &K);
  char err[1024] = "";
  const int k = a->k;
  uint64_t *idx = NULL, n = 0, store_n = 0;
  mp_store *st = mp_store_open(a->store_path, err, sizeof err);
  int rc = st ? mp_split_select(st, a->split_seed, MP_PART_TRAIN, 1, &idx, &n, err, sizeof err) : -1;
  if (st) store_n = mp_store_count(st);
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, comm));
  if (rc) {
    MP_ERROR("%s", err[0] ? err : "cannot read the store on another rank");
    if (st) mp_store_close(st);
    mp_free(idx);
    return MP_EXIT_FAILURE;
  }
  if (k < 1 || k + MP_KNN_MARGIN > 64 || n < (uint64_t)k + 1) {
    if (rank == 0)
      MP_ERROR("SMOTE with k = %d needs at least %d training lesion patches; split %llu has %llu (and 1 <= k <= %d)", k,
               k + 1, (unsigned long long)a->split_seed, (unsigned long long)n, 64 - MP_KNN_MARGIN);
    mp_store_close(st), mp_free(idx);
    return MP_EXIT_USAGE;
  }
  /* block-1 features of this rank's block of the lesion patches */
  const int eb = (int)mp_config_int(cfg, "eval.batch");
  mp_backend *be = mp_backend_create_cfg(cfg, err, sizeof err);
  mp_net *b1 = NULL, *rest = NULL;
  rc = be ? 0 : -1;
  if (!rc) {
    mp_model_classifier(be, eb, 0, 0.0f, &b1, &rest);
    char path[4300];
    snprintf(path, sizeof path, "%s/best/block1.h5", a->baseline_dir);
    rc = mp_net_load(b1, path, NULL, err, sizeof err);
  }
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, comm));
  if (rc) {
    MP_ERROR("%s", err[0] ? err : "cannot load block 1 on another rank");
    mp_net_free(b1), mp_net_free(rest);
    if (be) mp_backend_free(be);
    mp_store_close(st), mp_free(idx);
    return MP_EXIT_FAILURE;
  }
  const size_t D = mp_net_output_size(b1); /* 16 x 64 x 64 */
  const int P = mp_store_patch_size(st);
  const size_t px = (size_t)P * P;
  mp_range r = mp_shard_block(n, K, rank);
  uint64_t m = r.end - r.begin;
  float *F = mp_malloc(n * D * sizeof *F); /* every rank ends with all features */
  uint8_t *pix = mp_malloc((m + 1) * px);
  float *x = mp_malloc((size_t)eb * px * sizeof *x);
  MP_CHECK(mp_store_read_pixels_at(st, idx + r.begin, m, pix) == 0, "cannot read lesion patches");
  for (uint64_t i = 0; i < m; i += (uint64_t)eb) {
    int c = (int)(m - i < (uint64_t)eb ? m - i : (uint64_t)eb);
    for (size_t e = 0; e < (size_t)c * px; e++) x[e] = (float)pix[i * px + e] / 127.5f - 1.0f;
    mp_backend_download(mp_net_backend(b1), F + (r.begin + i) * D, mp_net_forward(b1, x, c, false, 0), (size_t)c * D * sizeof *F);
  }
  mp_free(pix), mp_free(x);
  mp_store_close(st);
  {
    int *cnt = mp_malloc((size_t)K * sizeof *cnt), *off = mp_malloc((size_t)K * sizeof *off);
    MP_CHECK(n * D < (uint64_t)INT32_MAX * 4, "features too large for one all-gather");
    /* in units of one feature row (an MPI contiguous type) so counts stay small */
    MPI_Datatype row;
    MP_CHECK_MPI(MPI_Type_contiguous((int)D, MPI_FLOAT, &row));
    MP_CHECK_MPI(MPI_Type_commit(&row));
    for (int q = 0; q < K; q++) {
      mp_range rq = mp_shard_block(n, K, q);
      cnt[q] = (int)(rq.end - rq.begin), off[q] = (int)rq.begin;
    }
    MP_CHECK_MPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, F, cnt, off, row, comm));
    MPI_Type_free(&row);
    mp_free(cnt), mp_free(off);
  }
  /* kNN (rows over the ranks) */
  double t0 = mp_now();
  uint32_t *nbr = mp_malloc(n * (size_t)k * sizeof *nbr);
  double *dist = mp_malloc(n * (size_t)k * sizeof *dist);
  /* cuda: the score blocks on the device (cuBLAS for l2 and cosine, its own kernel for l1) */
  MP_CHECK(mp_knn_on(be, comm, F, n, (int)D, a->dist, k, nbr, dist) == 0, "kNN");
  double tknn = mp_now() - t0;
  /* synthesis and the file, rank 0 */
  int status = MP_EXIT_OK;
  if (rank == 0) {
    const uint64_t ns = n * (uint64_t)k, seed = (uint64_t)mp_config_int(cfg, "run.seed") * 0x9E3779B97F4A7C15ull ^ a->split_seed;
    float *syn = mp_malloc(ns * D * sizeof *syn), *pp = mp_malloc(ns * sizeof *pp);
    uint32_t *base = mp_malloc(ns * sizeof *base), *nb = mp_malloc(ns * sizeof *nb);
    for (uint64_t i = 0; i < n; i++)
      for (int j = 0; j < k; j++) {
        uint64_t s = i * (uint64_t)k + (uint64_t)j;
        mp_rng g;
        mp_rng_init(&g, seed, MP_RNG_SMOTE, s);
        float p = (float)mp_rng_uniform_f64(&g);
        const float *fi = F + i * D, *fn = F + (size_t)nbr[s] * D;
        for (size_t e = 0; e < D; e++) syn[s * D + e] = fi[e] + p * (fn[e] - fi[e]);
        pp[s] = p, base[s] = (uint32_t)i, nb[s] = nbr[s];
      }
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", a->out_path, (int)getpid());
    hid_t f;
    H5E_BEGIN_TRY { f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT); }
    H5E_END_TRY;
    int bad = f < 0;
    if (!bad) {
      hsize_t d4[4] = {ns, 16, 64, 64}, d1 = ns, dn = n;
      MP_CHECK(D == 16 * 64 * 64, "block 1 output %zu", D);
      bad |= put(f, "/synthetic/features", H5T_NATIVE_FLOAT, 4, d4, syn);
      bad |= put(f, "/synthetic/base", H5T_NATIVE_UINT32, 1, &d1, base);
      bad |= put(f, "/synthetic/neighbour", H5T_NATIVE_UINT32, 1, &d1, nb);
      bad |= put(f, "/synthetic/p", H5T_NATIVE_FLOAT, 1, &d1, pp);
      bad |= put(f, "/synthetic/distance", H5T_NATIVE_DOUBLE, 1, &d1, dist);
      bad |= put(f, "/real/index", H5T_NATIVE_UINT64, 1, &dn, idx);
      hsize_t r4[4] = {n, 16, 64, 64};
      bad |= put(f, "/real/features", H5T_NATIVE_FLOAT, 4, r4, F); /* provenance: the segments' ends */
      attr_str(f, "distance", mp_dist_name(a->dist));
      attr_u64(f, "k", (unsigned long long)k);
      attr_u64(f, "split_seed", (unsigned long long)a->split_seed);
      attr_u64(f, "seed", (unsigned long long)seed);
      attr_u64(f, "store_patches", (unsigned long long)store_n);
      attr_str(f, "baseline", a->baseline_dir);
      attr_str(f, "software_version", mp_version());
      attr_str(f, "software_git", mp_version_git());
      bad |= H5Fclose(f) < 0;
    }
    if (bad || rename(tmp, a->out_path) != 0) {
      MP_ERROR("cannot write '%s'", a->out_path);
      remove(tmp);
      status = MP_EXIT_FAILURE;
    } else
      MP_INFO("smote %s k=%d, split %llu: %llu training lesion patches -> %llu synthetic block-1 vectors (kNN %.2f s "
              "on %d ranks) -> %s",
              mp_dist_name(a->dist), k, (unsigned long long)a->split_seed, (unsigned long long)n,
              (unsigned long long)ns, tknn, K, a->out_path);
    mp_free(syn), mp_free(pp), mp_free(base), mp_free(nb);
  }
  MP_CHECK_MPI(MPI_Bcast(&status, 1, MPI_INT, 0, comm));
  mp_free(F), mp_free(nbr), mp_free(dist), mp_free(idx);
  mp_net_free(b1), mp_net_free(rest), mp_backend_free(be);
  return status;
}
