/* mp_bench_nn — one training step of the SPEC classifier (forward, BCE, backward, Adam)
 * on a backend, batch B: prints the median patches/s of `reps` steps after warm-up and
 * the peak heap.  bench/nn/run.sh runs it beside PyTorch.
 * Usage: mp_bench_nn BACKEND BATCH [REPS] */
#include <stdio.h>
#include <stdlib.h>

#include "mp_alloc.h"
#include "mp_log.h"
#include "mp_models.h"
#include "mp_rng.h"

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int B = atoi(argv[2]), reps = argc > 3 ? atoi(argv[3]) : 10;
  char err[256];
  mp_backend *be = mp_backend_create(argv[1], err, sizeof err);
  if (!be) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  mp_net *b1, *rest;
  mp_model_classifier(be, B, 1, 0.5f, &b1, &rest);
  float *x = mp_malloc((size_t)B * 128 * 128 * 4), *t = mp_malloc((size_t)B * 4), *dy = mp_malloc((size_t)B * 4);
  float *d1 = mp_malloc((size_t)B * 16 * 64 * 64 * 4);
  mp_rng r;
  mp_rng_init(&r, 3, MP_RNG_TEST, 0);
  for (int i = 0; i < B * 128 * 128; i++) x[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  for (int i = 0; i < B; i++) t[i] = (float)(i % 2);
  double *sec = mp_malloc((size_t)(reps + 2) * sizeof *sec);
  for (int s = 0; s < reps + 2; s++) {
    double t0 = mp_now();
    mp_model_classifier_gradients(b1, rest, x, t, B, (uint64_t)s, dy, d1, NULL);
    mp_net_adam(b1, 1e-5f, 0.5f, 0.999f, 1e-8f);
    mp_net_adam(rest, 1e-5f, 0.5f, 0.999f, 1e-8f);
    sec[s] = mp_now() - t0;
  }
  qsort(sec + 2, (size_t)reps, sizeof *sec, cmp); /* the first two are warm-up */
  double med = sec[2 + reps / 2];
  printf("{\"backend\": \"%s\", \"batch\": %d, \"step_seconds\": %.4f, \"patches_per_second\": %.2f, \"peak_heap_mb\": %.1f}\n",
         argv[1], B, med, B / med, (double)mp_alloc_get_stats().peak / 1048576.0);
  mp_net_free(b1);
  mp_net_free(rest);
  mp_backend_free(be);
  return 0;
}
