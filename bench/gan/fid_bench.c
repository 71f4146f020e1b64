/* mp_bench_fid — the time of ONE FID evaluation with the `domain` extractor (SPEC §8):
 * features of N generated-like and N real uint8 patches (128 x 128) through the SPEC §6
 * classifier in eval mode at batch EVAL_BATCH, read at its penultimate layer (the 512-d
 * FC512-ReLU output, as gan/mp_gan_train.c does), then mp_fid on the two 512-d sets.
 * The classifier has random initial weights and the patches are uniform noise: neither
 * changes the time.  Its batch-norm running statistics are set to those of one training
 * batch (untrained ones, mean 0 and variance 1, shrink the activations about 6x per layer
 * and leave features that are nearly constant, a degenerate covariance unlike a trained
 * extractor's).  bench/gan/fid_bench.sh runs it beside the PyTorch/scipy peer.
 *   mp_bench_fid BACKEND [N [EVAL_BATCH]]     (defaults 2000, 64)
 * Prints one JSON line: features_s (both sets, uint8 -> [-1, 1] included), fid_s (mp_fid:
 * statistics and distance), total_s, the FID, the dimension and peak_heap_mb. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_fid.h"
#include "mp_log.h"
#include "mp_models.h"
#include "mp_rng.h"

enum { PX = 128 * 128 };

static void patches(uint8_t *px, size_t n, uint64_t key) {
  mp_rng r;
  mp_rng_init(&r, 5, MP_RNG_TEST, key);
  for (size_t i = 0; i < n * PX; i++) px[i] = (uint8_t)(mp_rng_u32(&r) >> 24);
}

/* n x dim features of n uint8 patches, eval mode, batches of eb; returns dim */
static int features(mp_net *c1, mp_net *c2, const uint8_t *px, int n, int eb, float *x, float *out) {
  int layer = mp_net_layers(c2) - 2, dim = 0; /* input of the last dropout: FC512-ReLU output */
  for (int i = 0; i < n; i += eb) {
    int k = n - i < eb ? n - i : eb;
    for (size_t e = 0; e < (size_t)k * PX; e++) x[e] = (float)px[(size_t)i * PX + e] / 127.5f - 1.0f;
    mp_net_forward(c2, mp_net_forward(c1, x, k, false, 0), k, false, 0);
    size_t per;
    const float *f = mp_net_activation(c2, layer, &per);
    dim = (int)per;
    memcpy(out + (size_t)i * per, f, (size_t)k * per * sizeof *out);
  }
  return dim;
}

/* Running statistics := the statistics of one training forward of x (k samples). */
static void calibrate_bn(mp_net *net, const float *x, int k) {
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) mp_net_forward(net, x, k, true, 0);
    for (int i = 0; i < mp_net_layers(net); i++) {
      float *var, *mean = mp_net_running_stats(net, i, &var);
      if (!mean) continue;
      for (ptrdiff_t c = 0; c < var - mean; c++) /* running = 0.9 * 0 + 0.1 * batch (mp_ref.h) */
        mean[c] = pass ? mean[c] * 10.0f : 0.0f, var[c] = pass ? var[c] * 10.0f : 0.0f;
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: mp_bench_fid BACKEND [N [EVAL_BATCH]]\n");
    return 2;
  }
  int n = argc > 2 ? atoi(argv[2]) : 2000, eb = argc > 3 ? atoi(argv[3]) : 64;
  if (n < 2 || eb <= 0) {
    fprintf(stderr, "N must be >= 2 and EVAL_BATCH > 0\n");
    return 2;
  }
  char err[256];
  mp_backend *be = mp_backend_create(argv[1], err, sizeof err);
  if (!be) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  mp_net *c1, *c2;
  mp_model_classifier(be, eb, 1, 0.5f, &c1, &c2);
  size_t dmax;
  mp_net_activation(c2, mp_net_layers(c2) - 2, &dmax); /* 512 */
  uint8_t *gen = mp_malloc((size_t)n * PX), *real = mp_malloc((size_t)n * PX);
  patches(gen, (size_t)n, 1);
  patches(real, (size_t)n, 2);
  float *x = mp_malloc((size_t)eb * PX * sizeof *x);
  float *fg = mp_malloc((size_t)n * dmax * sizeof *fg), *fr = mp_malloc((size_t)n * dmax * sizeof *fr);
  int k = eb < n ? eb : n;
  for (size_t e = 0; e < (size_t)k * PX; e++) x[e] = (float)real[e] / 127.5f - 1.0f;
  calibrate_bn(c1, x, k);
  calibrate_bn(c2, mp_net_forward(c1, x, k, false, 0), k);
  /* a warm-up batch (oneDNN primitive creation), as a training run has done long before */
  features(c1, c2, gen, eb < n ? eb : n, eb, x, fg);
  double t0 = mp_now();
  int dim = features(c1, c2, gen, n, eb, x, fg);
  features(c1, c2, real, n, eb, x, fr);
  double t1 = mp_now();
  mp_fid_result r;
  int rc = mp_fid(fg, (size_t)n, fr, (size_t)n, dim, &r, err, sizeof err);
  double t2 = mp_now();
  if (rc != 0) {
    fprintf(stderr, "mp_fid: %s\n", err);
  } else {
    printf("{\"backend\": \"%s\", \"extractor\": \"domain\", \"n\": %d, \"dim\": %d, \"eval_batch\": %d, "
           "\"features_s\": %.3f, \"fid_s\": %.3f, \"total_s\": %.3f, \"fid\": %.4f, \"rank_deficient\": %s, "
           "\"peak_heap_mb\": %.1f}\n",
           argv[1], n, dim, eb, t1 - t0, t2 - t1, t2 - t0, r.fid, r.rank_deficient ? "true" : "false",
           (double)mp_alloc_get_stats().peak / 1048576.0);
  }
  mp_free(gen);
  mp_free(real);
  mp_free(x);
  mp_free(fg);
  mp_free(fr);
  mp_net_free(c1);
  mp_net_free(c2);
  mp_backend_free(be);
  return rc ? 1 : 0;
}
