/* fid_tool — mp_fid on two raw float32 feature files, for tests/gan/check_fid.py.
 * Usage: fid_tool A.f32 NA B.f32 NB D   (row-major NA x D and NB x D)
 * Prints: fid trace_sqrt rank_deficient (%.17g). */
#include <stdio.h>
#include <stdlib.h>

#include "mp_alloc.h"
#include "mp_fid.h"

static float *load(const char *path, size_t n) {
  FILE *f = fopen(path, "rb");
  float *x = mp_malloc(n * sizeof *x);
  if (!f || fread(x, sizeof *x, n, f) != n) {
    fprintf(stderr, "fid_tool: cannot read %zu floats from %s\n", n, path);
    exit(2);
  }
  fclose(f);
  return x;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: fid_tool A.f32 NA B.f32 NB D\n");
    return 2;
  }
  size_t na = strtoull(argv[2], NULL, 10), nb = strtoull(argv[4], NULL, 10);
  int d = atoi(argv[5]);
  float *a = load(argv[1], na * (size_t)d), *b = load(argv[3], nb * (size_t)d);
  double *mu1 = mp_malloc((size_t)d * sizeof(double)), *mu2 = mp_malloc((size_t)d * sizeof(double));
  double *s1 = mp_malloc((size_t)d * d * sizeof(double)), *s2 = mp_malloc((size_t)d * d * sizeof(double));
  char err[256];
  double fid, tr;
  mp_fid_result r;
  if (mp_fid(a, na, b, nb, d, &r, err, sizeof err) != 0 || mp_fid_stats(a, na, d, mu1, s1) != 0 ||
      mp_fid_stats(b, nb, d, mu2, s2) != 0 || mp_fid_from_stats(mu1, s1, mu2, s2, d, &fid, &tr, err, sizeof err) != 0) {
    fprintf(stderr, "fid_tool: %s\n", err);
    return 1;
  }
  if (fid != r.fid) {
    fprintf(stderr, "fid_tool: mp_fid %.17g != mp_fid_from_stats %.17g\n", r.fid, fid);
    return 1;
  }
  printf("%.17g %.17g %d\n", fid, tr, r.rank_deficient);
  mp_free(a), mp_free(b), mp_free(mu1), mp_free(mu2), mp_free(s1), mp_free(s2);
  return 0;
}
