/* nn_parity_tool — runs the SPEC classifier (block 1 + rest, dropout 0 so both sides
 * see the same network) on a fixed batch and writes everything PyTorch must reproduce:
 *   params0  flat initial parameters (layer order; weight then bias), x, t,
 *   logits, loss, grads (flat), params3 (after three Adam steps on the same batch).
 * tests/nn/torch_parity.py loads params0 into an equivalent torch.nn.Sequential and
 * compares.  Usage: nn_parity_tool BACKEND OUT.h5 */
#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_models.h"
#include "mp_rng.h"

enum { N = 4 };

static void put(hid_t f, const char *name, const float *a, size_t n) {
  hsize_t d = n;
  hid_t sp = H5Screate_simple(1, &d, NULL), ds = H5Dcreate2(f, name, H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a);
  H5Dclose(ds);
  H5Sclose(sp);
}

static void flat(mp_net *a, mp_net *b, float *(*get)(mp_net *), float *out) {
  size_t na = mp_net_param_count(a);
  memcpy(out, get(a), na * 4);
  memcpy(out + na, get(b), mp_net_param_count(b) * 4);
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  char err[256];
  mp_backend *be = mp_backend_create(argv[1], err, sizeof err);
  if (!be) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  mp_net *b1, *rest;
  mp_model_classifier(be, N, 2024, 0.0f, &b1, &rest);
  size_t np = mp_net_param_count(b1) + mp_net_param_count(rest);
  float *p0 = mp_malloc(np * 4), *g = mp_malloc(np * 4), *p3 = mp_malloc(np * 4);
  float *x = mp_malloc(N * 128 * 128 * 4), t[N] = {1, 0, 0, 1}, dy[N], logits[N];
  float *d1 = mp_malloc(N * 16 * 64 * 64 * 4);
  mp_rng r;
  mp_rng_init(&r, 77, MP_RNG_TEST, 0);
  for (int i = 0; i < N * 128 * 128; i++) x[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  flat(b1, rest, mp_net_params, p0);
  double loss = 0;
  for (int step = 0; step < 3; step++) {
    const float *y;
    double l = mp_model_classifier_gradients(b1, rest, x, t, N, (uint64_t)step, dy, d1, &y);
    if (step == 0) {
      loss = l;
      memcpy(logits, y, sizeof logits);
      flat(b1, rest, mp_net_grads, g);
    }
    mp_net_adam(b1, 1e-5f, 0.5f, 0.999f, 1e-8f);
    mp_net_adam(rest, 1e-5f, 0.5f, 0.999f, 1e-8f);
  }
  flat(b1, rest, mp_net_params, p3);
  hid_t f = H5Fcreate(argv[2], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  put(f, "params0", p0, np);
  put(f, "x", x, N * 128 * 128);
  put(f, "t", t, N);
  put(f, "logits", logits, N);
  float lf = (float)loss;
  put(f, "loss", &lf, 1);
  put(f, "grads", g, np);
  put(f, "params3", p3, np);
  H5Fclose(f);
  printf("wrote %s: %zu parameters, loss %.6f (backend %s)\n", argv[2], np, loss, argv[1]);
  mp_free(p0);
  mp_free(g);
  mp_free(p3);
  mp_free(x);
  mp_free(d1);
  mp_net_free(b1);
  mp_net_free(rest);
  mp_backend_free(be);
  return 0;
}
