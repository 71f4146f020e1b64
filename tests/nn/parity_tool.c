/* nn_parity_tool — runs a SPEC network on fixed inputs and writes everything PyTorch must
 * reproduce.  Usage: nn_parity_tool BACKEND OUT.h5 [classifier|gan]
 *
 * classifier (block 1 + rest, dropout 0 so both sides see the same network):
 *   params0  flat initial parameters (layer order; weight then bias), x, t,
 *   logits, loss, grads (flat), losses (before each of three Adam steps on the same
 *   batch), params3 (after the three steps).
 *   tests/nn/torch_parity.py loads params0 into an equivalent torch.nn.Sequential.
 * gan (f = 64, z = 64, batch 4; the critic with spectral norm):
 *   OUT.d0.h5 / OUT.g0.h5  checkpoints before (weights, SN vectors u), OUT.d1.h5 /
 *   OUT.g1.h5 after; OUT.h5: z1, xr1, xf1 = G(z1), critic outputs on [xr1; xf1], the
 *   wgan-gp critic loss and penalty at xhat (written), critic gradients; z2, xr2, the
 *   rahinge generator loss and generator gradients.  tests/nn/torch_gan_parity.py. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
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

static void fill(float *a, size_t n, uint64_t key, bool normal) {
  mp_rng r;
  mp_rng_init(&r, 78, MP_RNG_TEST, key);
  for (size_t i = 0; i < n; i++) a[i] = normal ? (float)mp_rng_normal(&r) : (float)(2 * mp_rng_uniform_f64(&r) - 1);
}

static void save_ck(mp_net *n, const char *out, const char *tag) {
  char path[4096], err[256];
  snprintf(path, sizeof path, "%s.%s.h5", out, tag);
  if (mp_net_save(n, path, 0, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    exit(1);
  }
}

static int gan(mp_backend *be, const char *out) {
  enum { F = 64, Z = 64, PX = 128 * 128 };
  mp_net *d = mp_model_dcgan_d(be, F, true, 2 * N, 11), *g = mp_model_dcgan_g(be, Z, F, N, 12);
  save_ck(d, out, "d0");
  save_ck(g, out, "g0");
  float *z1 = mp_malloc(N * Z * 4), *z2 = mp_malloc(N * Z * 4), *xr1 = mp_malloc(N * PX * 4), *xr2 = mp_malloc(N * PX * 4);
  float *xf1 = mp_malloc(N * PX * 4);
  fill(z1, N * Z, 1, true);
  fill(z2, N * Z, 2, true);
  fill(xr1, N * PX, 3, false);
  fill(xr2, N * PX, 4, false);
  mp_gan_work *wd = mp_gan_work_new(d, g, MP_GAN_WGAN_GP, 10.0f, N, 13), *wg = mp_gan_work_new(d, g, MP_GAN_RAHINGE, 0, N, 13);
  memcpy(xf1, mp_net_forward(g, z1, N, true, 0), N * PX * 4); /* detached fakes */
  double pen = 0, ld = mp_gan_critic_gradients(wd, xr1, xf1, 0, &pen);
  size_t nd = mp_net_param_count(d), ng = mp_net_param_count(g);
  float *gd = mp_malloc(nd * 4);
  memcpy(gd, mp_net_grads(d), nd * 4);
  /* the critic's outputs are compared through E C(xf) - E C(xr) = ld - pen */
  double lg = mp_gan_generator_gradients(wg, xr2, z2, 1, NULL);
  save_ck(d, out, "d1");
  save_ck(g, out, "g1");
  hid_t f = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  put(f, "z1", z1, N * Z);
  put(f, "z2", z2, N * Z);
  put(f, "xr1", xr1, N * PX);
  put(f, "xr2", xr2, N * PX);
  put(f, "xf1", xf1, N * PX);
  mp_backend_sync(be); /* xhat lives in the backend's memory */
  put(f, "xhat", mp_gan_work_xhat(wd), N * PX);
  float v[3] = {(float)(ld - pen), (float)pen, (float)lg};
  put(f, "d_wgan", v, 1);
  put(f, "d_penalty", v + 1, 1);
  put(f, "g_rahinge", v + 2, 1);
  put(f, "d_grads", gd, nd);
  put(f, "g_grads", mp_net_grads(g), ng);
  H5Fclose(f);
  printf("wrote %s: critic %zu / generator %zu parameters, wgan %.6f penalty %.6f rahinge %.6f\n", out, nd, ng,
         v[0], v[1], v[2]);
  mp_gan_work_free(wd);
  mp_gan_work_free(wg);
  mp_free(z1);
  mp_free(z2);
  mp_free(xr1);
  mp_free(xr2);
  mp_free(xf1);
  mp_free(gd);
  mp_net_free(d);
  mp_net_free(g);
  mp_backend_free(be);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) return 2;
  char err[256];
  mp_backend *be = mp_backend_create(argv[1], err, sizeof err);
  if (!be) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  if (argc == 4 && strcmp(argv[3], "gan") == 0) return gan(be, argv[2]);
  mp_net *b1, *rest;
  mp_model_classifier(be, N, 2024, 0.0f, &b1, &rest);
  size_t np = mp_net_param_count(b1) + mp_net_param_count(rest);
  float *p0 = mp_malloc(np * 4), *g = mp_malloc(np * 4), *p3 = mp_malloc(np * 4);
  float *x = mp_malloc(N * 128 * 128 * 4), t[N] = {1, 0, 0, 1}, dy[N], logits[N];
  mp_rng r;
  mp_rng_init(&r, 77, MP_RNG_TEST, 0);
  for (int i = 0; i < N * 128 * 128; i++) x[i] = (float)(2 * mp_rng_uniform_f64(&r) - 1);
  flat(b1, rest, mp_net_params, p0);
  double loss = 0;
  float losses[3];
  for (int step = 0; step < 3; step++) {
    const float *y;
    double l = mp_model_classifier_gradients(b1, rest, x, t, N, (uint64_t)step, dy, NULL, &y); /* block 1's gradient in backend memory, as train/ */
    losses[step] = (float)l;
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
  put(f, "losses", losses, 3);
  put(f, "grads", g, np);
  put(f, "params3", p3, np);
  H5Fclose(f);
  printf("wrote %s: %zu parameters, loss %.6f (backend %s)\n", argv[2], np, loss, argv[1]);
  mp_free(p0);
  mp_free(g);
  mp_free(p3);
  mp_free(x);
  mp_net_free(b1);
  mp_net_free(rest);
  mp_backend_free(be);
  return 0;
}
