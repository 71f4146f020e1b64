/* gpu_nccl_check [BACKEND] — the data-parallel gradient check of a backend (default cuda),
 * run under mpiexec with any number of ranks:
 *
 *   0. NCCL itself on communicators of one rank each (what a sweep's one-rank groups would
 *      have; on one GPU the only way to run ncclCommInitRank, ncclAllReduce and, when step 1
 *      attaches again, ncclCommDestroy): a device kernel, the allreduce, the result read
 *      back (skipped, with the reason, by a backend without comm_attach);
 *   1. mp_dp_mean of a rank-dependent buffer equals the known mean (the reduction itself:
 *      NCCL on the device when every rank has its own GPU, MPI in host memory otherwise);
 *   2. a data-parallel training step of a small classifier (conv, batch norm with
 *      per-rank statistics, ReLU, max-pool, linear, dropout), each rank on its B/K
 *      samples, gradients averaged by mp_dp_mean: the averaged gradient equals the
 *      gradient of one process on the whole batch with batch-norm groups of B/K on the
 *      `ref` backend (rank 0 computes it), NMSE < 1e-9 (fp32 against ref's double
 *      accumulation); after three such steps with Adam every rank holds bit-identical
 *      parameters.  (Parameters after several Adam steps are not compared with the ref:
 *      Adam's m / sqrt(v) turns rounding-level differences of near-zero gradients into
 *      O(lr) steps.)
 *
 * Exit 0 pass, 1 fail, 77 skip (the backend's device is absent).  tests/gpu/run.sh runs
 * it on 1 and 2 ranks of a GPU node; CI runs it on 2 ranks with the cpu backend (the MPI
 * path of the same code). */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_backend.h"
#include "mp_net.h"
#include "mp_rng.h"

enum { B = 8, HW = 8 };

static mp_net *small_classifier(mp_backend *be, int max_batch) {
  mp_net *n = mp_net_new(be, 1, HW, HW, max_batch, 1234);
  mp_net_conv(n, 6, 3, 1, 1, true);
  mp_net_bn(n);
  mp_net_act(n, MP_ACT_RELU, 0);
  mp_net_maxpool2(n);
  mp_net_flatten(n);
  mp_net_linear(n, 10, true);
  mp_net_act(n, MP_ACT_RELU, 0);
  mp_net_dropout(n, 0.5f);
  mp_net_linear(n, 1, true);
  mp_net_build(n);
  return n;
}

/* the whole batch of step s: inputs and targets from the counter-based RNG */
static void batch(int s, float *x, float *t) {
  mp_rng r;
  mp_rng_init(&r, 77, MP_RNG_TEST, (uint64_t)s);
  for (int i = 0; i < B * HW * HW; i++) x[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  for (int i = 0; i < B; i++) t[i] = (float)(i % 2);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, K;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &K);
  const char *name = argc > 1 ? argv[1] : "cuda";
  int fail = 0;
  if (mp_backend_device_absent(name)) {
    if (rank == 0) printf("gpu_nccl_check: SKIP: backend %s has no device visible here\n", name);
    MPI_Finalize();
    return 77;
  }
  if (B % K) {
    if (rank == 0) printf("gpu_nccl_check: SKIP: %d ranks do not divide the batch %d\n", K, B);
    MPI_Finalize();
    return 77;
  }
  char err[256];
  mp_backend *be = mp_backend_create(name, err, sizeof err);
  if (!be) {
    fprintf(stderr, "gpu_nccl_check: %s\n", err);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  /* 0. NCCL on one-rank communicators */
  enum { N = 100003 };
  if (be->iface->comm_attach) {
    MPI_Comm solo;
    MPI_Comm_split(MPI_COMM_WORLD, rank, 0, &solo);
    char why[256] = "";
    int att = be->iface->comm_attach(be, &solo, why, sizeof why);
    int bad = 0;
    if (att == 0) {
      float *v = be->iface->alloc(be, N * sizeof(float));
      mp_backend_sync(be);
      for (int i = 0; i < N; i++) v[i] = (float)(i % 89);
      be->iface->scale(be, 2.0f, v, N); /* a kernel on the compute stream, then the allreduce */
      be->iface->allreduce_sum(be, v, N);
      mp_backend_sync(be);
      for (int i = 0; i < N; i++) bad |= v[i] != 2.0f * (float)(i % 89);
      be->iface->release(be, v);
    }
    MPI_Comm_free(&solo);
    int all_att = att == 0;
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &all_att, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    fail |= bad;
    if (rank == 0) {
      if (all_att)
        printf("  NCCL on one-rank communicators (one per rank): init, allreduce of %d floats after a kernel: %s\n", N,
               bad ? "FAIL" : "ok");
      else
        printf("  NCCL on one-rank communicators: not attached (%s)\n", why[0] ? why : "on another rank");
    }
  } else if (rank == 0) {
    printf("  NCCL on one-rank communicators: backend %s has no device communicator\n", name);
  }

  mp_dp dp;
  mp_dp_init(&dp, be, MPI_COMM_WORLD);
  if (rank == 0)
    printf("gpu_nccl_check: backend %s, %d rank(s), gradients reduced %s\n", name, K,
           dp.device ? "on the device (NCCL)" : "by MPI in host memory");

  /* 1. the reduction */
  float *buf = be->iface->alloc(be, N * sizeof(float));
  mp_backend_sync(be);
  for (int i = 0; i < N; i++) buf[i] = (float)(rank + 1) * (float)(i % 97);
  mp_dp_mean(&dp, buf, N);
  mp_backend_sync(be);
  double worst = 0;
  for (int i = 0; i < N; i++) {
    double want = (K + 1) / 2.0 * (i % 97), e = fabs(buf[i] - want) / (1 + want);
    if (e > worst) worst = e;
  }
  if (worst > 1e-6) fail = 1;
  if (rank == 0) printf("  allreduce mean of %d floats: max relative error %.2e %s\n", N, worst, worst > 1e-6 ? "FAIL" : "ok");
  be->iface->release(be, buf);

  /* 2. data-parallel steps against one process on the whole batch */
  int b = B / K;
  mp_net *net = small_classifier(be, b);
  mp_net_set_sample_offset(net, (uint64_t)rank * b);
  float x[B * HW * HW], t[B], dy[B];
  size_t np = mp_net_param_count(net);
  float *g0 = mp_malloc(np * sizeof(float));
  for (int s = 0; s < 3; s++) {
    batch(s, x, t);
    const float *y = mp_net_forward(net, x + (size_t)rank * b * HW * HW, b, true, (uint64_t)s);
    mp_ref_bce_logits(y, t + rank * b, dy, (size_t)b);
    mp_net_backward(net, dy, NULL);
    mp_dp_mean(&dp, mp_net_grads(net), mp_net_param_count(net));
    mp_backend_sync(be);
    if (s == 0) memcpy(g0, mp_net_grads(net), np * sizeof(float));
    mp_net_adam(net, 1e-2f, 0.5f, 0.999f, 1e-8f);
  }
  float *mine = mp_malloc(np * sizeof(float)), *all = rank == 0 ? mp_malloc((size_t)K * np * sizeof(float)) : NULL;
  memcpy(mine, mp_net_params(net), np * sizeof(float));
  MPI_Gather(mine, (int)np, MPI_FLOAT, all, (int)np, MPI_FLOAT, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    for (int r = 1; r < K; r++)
      if (memcmp(all, all + (size_t)r * np, np * sizeof(float)) != 0) {
        printf("  rank %d holds other parameters than rank 0: FAIL\n", r);
        fail = 1;
      }
    mp_backend *ref = mp_backend_create("ref", err, sizeof err);
    mp_net *one = small_classifier(ref, B);
    mp_net_set_bn_group(one, b); /* SPEC §6: batch-norm statistics per rank */
    batch(0, x, t);
    const float *y = mp_net_forward(one, x, B, true, 0);
    /* per-rank mean losses averaged = the mean over the batch: dL/dy = (p - t) / B */
    mp_ref_bce_logits(y, t, dy, (size_t)B);
    mp_net_backward(one, dy, NULL);
    const float *gr = mp_net_grads(one);
    double num = 0, den = 0;
    for (size_t i = 0; i < np; i++) {
      double e = (double)g0[i] - gr[i];
      num += e * e, den += (double)gr[i] * gr[i];
    }
    double nm = num / (den > 0 ? den : 1);
    int bad = !(nm < 1e-9);
    printf("  data-parallel gradient on %d rank(s) vs one ref process on the whole batch: nmse %.2e over %zu "
           "parameters %s\n", K, nm, np, bad ? "FAIL" : "ok");
    fail |= bad;
    mp_net_free(one);
    mp_backend_free(ref);
    mp_free(all);
  }
  if (rank == 0 && !fail) printf("  parameters after 3 Adam steps identical on the %d rank(s): ok\n", K);
  mp_free(mine);
  mp_free(g0);
  mp_net_free(net);
  mp_backend_free(be);
  MPI_Allreduce(MPI_IN_PLACE, &fail, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) printf("gpu_nccl_check: %s\n", fail ? "FAIL" : "PASS");
  MPI_Finalize();
  return fail ? 1 : 0;
}
