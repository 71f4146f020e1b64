/* mp_bench_nn — training steps of the SPEC networks on a backend; prints the median
 * patches/s of `reps` steps after two warm-up steps, and the peak heap.  bench/nn/run.sh
 * runs it beside PyTorch.
 *   mp_bench_nn BACKEND classifier BATCH [REPS]
 *       one classifier step (SPEC §6): forward, BCE, backward, Adam
 *   mp_bench_nn BACKEND gan LOSS SN BATCH [REPS]
 *       one GAN iteration (SPEC §7, f = 64, z = 64): G(z) for detached fakes, the critic
 *       step (with the penalty for wgan-gp) and Adam, the generator step (fresh z) and
 *       Adam; one real batch, kept in the backend's memory as the peer keeps its batch on
 *       the device; LOSS wgan-gp|rsgan|rasgan|ralsgan|rahinge, SN 0|1.
 *       patches/s counts the BATCH real patches one iteration consumes.
 *   mp_bench_nn BACKEND gansteps LOSS SN F BATCH [REPS]
 *       the same iteration for f = F filters (z = F, SPEC §7) with its two halves timed
 *       apart: the D step (G(z) for detached fakes, mp_gan_critic_gradients, Adam on D)
 *       and the G step (fresh z, mp_gan_generator_gradients, Adam on G); prints the
 *       medians d_ms and g_ms (patches/s from the median whole iteration). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_log.h"
#include "mp_models.h"
#include "mp_rng.h"

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void fill(float *a, size_t n, uint64_t key, bool normal) {
  mp_rng r;
  mp_rng_init(&r, 3, MP_RNG_TEST, key);
  for (size_t i = 0; i < n; i++) a[i] = normal ? (float)mp_rng_normal(&r) : (float)(2 * mp_rng_uniform_f64(&r) - 1);
}

static double median(double *sec, int reps) {
  qsort(sec + 2, (size_t)reps, sizeof *sec, cmp); /* the first two are warm-up */
  return sec[2 + reps / 2];
}

static int usage(void) {
  fprintf(stderr, "usage: mp_bench_nn BACKEND classifier BATCH [REPS] | BACKEND gan LOSS SN BATCH [REPS]\n"
                  "       mp_bench_nn BACKEND gansteps LOSS SN F BATCH [REPS]\n");
  return 2;
}

/* ", \"gpu_mb\": N" for a device backend (its peak device memory), else "" */
static const char *gpu_mb(mp_backend *be, char *buf, size_t len) {
  buf[0] = 0;
  if (be->iface->device_peak) snprintf(buf, len, ", \"gpu_mb\": %.1f", (double)be->iface->device_peak(be) / 1048576.0);
  return buf;
}

static int classifier(mp_backend *be, int B, int reps, double *sec) {
  mp_net *b1, *rest;
  mp_model_classifier(be, B, 1, 0.5f, &b1, &rest);
  /* the patches in the backend's memory, as PyTorch's peer keeps its batch on the device
   * (the trainer uploads uint8 patches, a quarter of these bytes) */
  float *x = be->iface->alloc(be, (size_t)B * 128 * 128 * 4), *t = mp_malloc((size_t)B * 4), *dy = mp_malloc((size_t)B * 4);
  mp_backend_sync(be);
  fill(x, (size_t)B * 128 * 128, 0, false);
  for (int i = 0; i < B; i++) t[i] = (float)(i % 2);
  for (int s = 0; s < reps + 2; s++) {
    double t0 = mp_now();
    mp_model_classifier_gradients(b1, rest, x, t, B, (uint64_t)s, dy, NULL, NULL);
    mp_net_adam(b1, 1e-5f, 0.5f, 0.999f, 1e-8f);
    mp_net_adam(rest, 1e-5f, 0.5f, 0.999f, 1e-8f);
    sec[s] = mp_now() - t0;
  }
  be->iface->release(be, x);
  mp_free(t);
  mp_free(dy);
  mp_net_free(b1);
  mp_net_free(rest);
  return 0;
}

/* One GAN iteration per rep for f = F, z = Z.  sec[s]: the whole iteration; when sec_d
 * and sec_g are non-NULL also its D step and G step apart. */
static int gan(mp_backend *be, const char *loss, bool sn, int F, int Z, int B, int reps, double *sec, double *sec_d,
               double *sec_g) {
  static const char *names[] = {"wgan-gp", "rsgan", "rasgan", "ralsgan", "rahinge"};
  int kind = -1;
  for (int i = 0; i < 5; i++)
    if (strcmp(loss, names[i]) == 0) kind = i;
  if (kind < 0 || F <= 0 || Z <= 0) return usage();
  enum { PX = 128 * 128 };
  mp_net *d = mp_model_dcgan_d(be, F, sn, 2 * B, 1), *g = mp_model_dcgan_g(be, Z, F, B, 2);
  mp_gan_work *w = mp_gan_work_new(d, g, (mp_gan_loss)kind, 10.0f, B, 3);
  /* the real batch in the backend's memory, as the peer keeps its batch on the device (the
   * trainer uploads uint8 patches, a quarter of these bytes) */
  float *xr = be->iface->alloc(be, (size_t)B * PX * 4), *z = mp_malloc((size_t)B * Z * 4);
  mp_backend_sync(be);
  fill(xr, (size_t)B * PX, 1, false);
  float lr_d = sn ? 4e-4f : 2e-4f, lr_g = sn ? 1e-4f : 2e-4f, b1 = sn ? 0.0f : 0.5f, b2 = sn ? 0.9f : 0.999f;
  for (int s = 0; s < reps + 2; s++) {
    double t0 = mp_now();
    fill(z, (size_t)B * Z, 100 + 2 * (uint64_t)s, true);
    const float *xf = mp_net_forward(g, z, B, true, (uint64_t)s); /* as gan/: left in the backend's memory */
    mp_gan_critic_gradients(w, xr, xf, (uint64_t)s, NULL);
    mp_net_adam(d, lr_d, b1, b2, 1e-8f);
    double t1 = mp_now();
    fill(z, (size_t)B * Z, 101 + 2 * (uint64_t)s, true);
    mp_gan_generator_gradients(w, xr, z, (uint64_t)s, NULL);
    mp_net_adam(g, lr_g, b1, b2, 1e-8f);
    double t2 = mp_now();
    sec[s] = t2 - t0;
    if (sec_d) sec_d[s] = t1 - t0;
    if (sec_g) sec_g[s] = t2 - t1;
  }
  mp_gan_work_free(w);
  be->iface->release(be, xr);
  mp_free(z);
  mp_net_free(d);
  mp_net_free(g);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) return usage();
  /* argv index of BATCH per mode; REPS follows it */
  int bi;
  if (strcmp(argv[2], "classifier") == 0)
    bi = 3;
  else if (strcmp(argv[2], "gan") == 0)
    bi = 5;
  else if (strcmp(argv[2], "gansteps") == 0)
    bi = 6;
  else
    return usage();
  if (argc <= bi) return usage();
  int B = atoi(argv[bi]), reps = argc > bi + 1 ? atoi(argv[bi + 1]) : 10;
  if (B <= 0 || reps <= 0) return usage();
  char err[256];
  mp_backend *be = mp_backend_create(argv[1], err, sizeof err);
  if (!be) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  double *sec = mp_malloc((size_t)(reps + 2) * sizeof *sec);
  double *sec_d = mp_malloc((size_t)(reps + 2) * sizeof *sec), *sec_g = mp_malloc((size_t)(reps + 2) * sizeof *sec);
  int rc;
  char gm[48];
  if (bi == 3)
    rc = classifier(be, B, reps, sec);
  else if (bi == 5)
    rc = gan(be, argv[3], atoi(argv[4]) != 0, 64, 64, B, reps, sec, NULL, NULL);
  else
    rc = gan(be, argv[3], atoi(argv[4]) != 0, atoi(argv[5]), atoi(argv[5]), B, reps, sec, sec_d, sec_g);
  if (rc == 0 && bi == 6) {
    double med = median(sec, reps), d_ms = 1e3 * median(sec_d, reps), g_ms = 1e3 * median(sec_g, reps);
    printf("{\"backend\": \"%s\", \"model\": \"gansteps\", \"loss\": \"%s\", \"sn\": %d, \"f\": %d, \"batch\": %d, "
           "\"d_ms\": %.1f, \"g_ms\": %.1f, \"step_seconds\": %.4f, \"patches_per_second\": %.2f, "
           "\"peak_heap_mb\": %.1f%s}\n",
           argv[1], argv[3], atoi(argv[4]) != 0, atoi(argv[5]), B, d_ms, g_ms, med, B / med,
           (double)mp_alloc_get_stats().peak / 1048576.0, gpu_mb(be, gm, sizeof gm));
  } else if (rc == 0) {
    double med = median(sec, reps);
    printf("{\"backend\": \"%s\", \"model\": \"%s\", \"batch\": %d, \"step_seconds\": %.4f, "
           "\"patches_per_second\": %.2f, \"peak_heap_mb\": %.1f%s}\n",
           argv[1], argv[2], B, med, B / med, (double)mp_alloc_get_stats().peak / 1048576.0, gpu_mb(be, gm, sizeof gm));
  }
  mp_free(sec);
  mp_free(sec_d);
  mp_free(sec_g);
  mp_backend_free(be);
  return rc;
}
