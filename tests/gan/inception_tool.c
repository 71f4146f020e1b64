/* inception_tool — the C side of tests/gan/check_inception.py (and tests/gpu/inception.sh):
 * Inception-v3 (mp_inception) on raw uint8 patches, pool3 features, logits and the Inception
 * Score into an HDF5 file.
 *   inception_tool WEIGHTS.h5 BACKEND IN.u8 N OUT.h5 [BATCH]
 * IN.u8: N x 128 x 128 bytes.  OUT.h5: pool3 (N x 2048), logits (N x C) float32; root
 * attributes is_mean, is_std (10 splits; NaN when N < 10) and variant.  BATCH (default 8):
 * images a forward; given, one untimed forward of BATCH images comes first (a device
 * backend chooses its convolution algorithms on first calls), so the printed images/s is
 * the steady rate. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_backend.h"
#include "mp_inception.h"
#include "mp_log.h"

static void write2(hid_t f, const char *name, const float *v, int n, int m) {
  hsize_t d[2] = {(hsize_t)n, (hsize_t)m};
  hid_t s = H5Screate_simple(2, d, NULL);
  hid_t ds = H5Dcreate2(f, name, H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(ds);
  H5Sclose(s);
}

static void attr_d(hid_t f, const char *name, double v) {
  hid_t s = H5Screate(H5S_SCALAR), a = H5Acreate2(f, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
  H5Aclose(a);
  H5Sclose(s);
}

int main(int argc, char **argv) {
  if (argc != 6 && argc != 7) {
    fprintf(stderr, "usage: inception_tool WEIGHTS.h5 BACKEND IN.u8 N OUT.h5 [BATCH]\n");
    return 2;
  }
  const int n = atoi(argv[4]), side = 128, batch = argc == 7 ? atoi(argv[6]) : 8;
  if (n < 1 || batch < 1) return fprintf(stderr, "inception_tool: N and BATCH must be positive\n"), 2;
  char err[512];
  mp_backend *be = mp_backend_create(argv[2], err, sizeof err);
  if (!be) return fprintf(stderr, "inception_tool: %s\n", err), 1;
  mp_inception *m = mp_inception_load(be, argv[1], batch, err, sizeof err);
  if (!m) return fprintf(stderr, "inception_tool: %s\n", err), 1;
  FILE *fp = fopen(argv[3], "rb");
  uint8_t *px = mp_malloc((size_t)n * side * side);
  if (!fp || fread(px, 1, (size_t)n * side * side, fp) != (size_t)n * side * side)
    return fprintf(stderr, "inception_tool: cannot read %d patches from %s\n", n, argv[3]), 1;
  fclose(fp);
  const int C = mp_inception_classes(m);
  float *pool3 = mp_malloc((size_t)n * MP_INCEPTION_POOL3 * sizeof *pool3), *logits = mp_malloc((size_t)n * C * 4);
  if (argc == 7) { /* the warm-up: algorithm choices of the batch's shapes */
    double w0 = mp_now();
    mp_inception_forward_u8(m, px, n < batch ? n : batch, side, pool3, logits);
    printf("inception_tool: warm-up forward of %d images in %.2f s\n", n < batch ? n : batch, mp_now() - w0);
  }
  double t0 = mp_now();
  mp_inception_forward_u8(m, px, n, side, pool3, logits);
  double secs = mp_now() - t0, is_mean, is_std;
  mp_inception_score(logits, n, C, 10, &is_mean, &is_std);
  printf("inception_tool: %d images (%s, %s backend, batch %d) in %.2f s (%.2f images/s); IS %.6f +- %.6f\n", n,
         mp_inception_variant(m), argv[2], batch, secs, n / secs, is_mean, is_std);
  hid_t f = H5Fcreate(argv[5], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  write2(f, "pool3", pool3, n, MP_INCEPTION_POOL3);
  write2(f, "logits", logits, n, C);
  attr_d(f, "is_mean", is_mean);
  attr_d(f, "is_std", is_std);
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, strlen(mp_inception_variant(m)) + 1);
  hid_t s = H5Screate(H5S_SCALAR), a = H5Acreate2(f, "variant", st, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, st, mp_inception_variant(m));
  H5Aclose(a), H5Sclose(s), H5Tclose(st);
  H5Fclose(f);
  mp_free(px), mp_free(pool3), mp_free(logits);
  mp_inception_free(m);
  mp_backend_free(be);
  return 0;
}
