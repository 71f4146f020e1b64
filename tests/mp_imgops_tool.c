/* mp_imgops_tool — runs one image operation of preprocess/mp_imgops on raw files, so
 * tests/preprocess/check_imageops.py can hold it to OpenCV.  Raw images: 8-bit,
 * row-major, no header.  Point lists: one per line, "n x0 y0 x1 y1 ...".
 *   median5 IN OUT W H | threshold IN OUT W H T | median5thr IN OUT W H T
 *   dilate IN OUT W H R ITER | erode IN OUT W H R ITER | close IN OUT W H R
 *   contours IN OUTTXT W H | fitellipse INTXT OUTTXT | area INTXT OUTTXT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_imgops.h"

static uint8_t *load(const char *path, size_t n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  uint8_t *b = mp_malloc(n ? n : 1);
  size_t got = fread(b, 1, n, f);
  fclose(f);
  if (got != n) {
    mp_free(b);
    return NULL;
  }
  return b;
}

static int save(const char *path, const uint8_t *b, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(b, 1, n, f);
  return fclose(f) == 0 && w == n ? 0 : -1;
}

/* A whole-string non-negative integer argument, or -1. */
static int arg_int(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  return (*s && !*end && v >= 0 && v < 1000000) ? (int)v : -1;
}

/* Read the next point list of a text file; returns n, -1 at the end, -2 when the
 * line does not parse. */
static int read_points(FILE *f, double **x, double **y, int *cap) {
  int n;
  int got = fscanf(f, "%d", &n);
  if (got == EOF) return -1;
  if (got != 1 || n < 0) return -2;
  if (n > *cap) {
    *cap = n;
    *x = mp_realloc(*x, (size_t)n * sizeof **x);
    *y = mp_realloc(*y, (size_t)n * sizeof **y);
  }
  for (int k = 0; k < n; k++)
    if (fscanf(f, "%lf %lf", &(*x)[k], &(*y)[k]) != 2) return -2;
  return n;
}

static int usage(void) {
  fprintf(stderr, "usage: mp_imgops_tool OP ARGS (see the source)\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 4) return usage();
  const char *op = argv[1];
  if (!strcmp(op, "fitellipse") || !strcmp(op, "area")) {
    FILE *in = fopen(argv[2], "r"), *out = fopen(argv[3], "w");
    if (!in || !out) return 1;
    double *x = NULL, *y = NULL;
    int cap = 0, n;
    while ((n = read_points(in, &x, &y, &cap)) >= 0) {
      if (!strcmp(op, "area"))
        for (int k = 0; k < n; k++)
          if (x[k] != (int)x[k] || y[k] != (int)y[k]) n = -2; /* contours are integer pixels */
      if (n < 0) break;
      if (!strcmp(op, "area")) {
        mp_point *p = mp_malloc((size_t)(n ? n : 1) * sizeof *p);
        for (int k = 0; k < n; k++) {
          p[k].x = (int)x[k];
          p[k].y = (int)y[k];
        }
        fprintf(out, "%.17g\n", mp_contour_area(p, n));
        mp_free(p);
      } else {
        mp_ellipse e;
        if (mp_fit_ellipse(x, y, n, &e) == 0)
          fprintf(out, "%.17g %.17g %.17g %.17g %.17g\n", e.cx, e.cy, e.a, e.b, e.angle * 180.0 / 3.14159265358979323846);
        else
          fprintf(out, "none\n");
      }
    }
    mp_free(x);
    mp_free(y);
    fclose(in);
    if (n == -2) {
      fprintf(stderr, "%s: malformed point list\n", argv[2]);
      fclose(out);
      return 1;
    }
    return fclose(out) == 0 ? 0 : 1;
  }
  if (argc < 6) return usage();
  int W = arg_int(argv[4]), H = arg_int(argv[5]);
  if (W <= 0 || H <= 0) return usage();
  int p6 = argc > 6 ? arg_int(argv[6]) : 0, p7 = argc > 7 ? arg_int(argv[7]) : 0;
  if (p6 < 0 || p7 < 0) return usage();
  size_t n = (size_t)W * H;
  uint8_t *in = load(argv[2], n);
  if (!in) {
    fprintf(stderr, "cannot read %zu bytes from %s\n", n, argv[2]);
    return 1;
  }
  uint8_t *out = mp_calloc(n, 1);
  int rc = 0;
  if (!strcmp(op, "median5")) {
    mp_median5_u8(in, out, W, H);
  } else if (!strcmp(op, "threshold") && argc >= 7) {
    mp_threshold_u8(in, out, n, p6);
  } else if (!strcmp(op, "median5thr") && argc >= 7) {
    mp_median5_threshold_u8(in, out, W, H, p6);
  } else if ((!strcmp(op, "dilate") || !strcmp(op, "erode")) && argc >= 8) {
    (op[0] == 'd' ? mp_dilate_u8 : mp_erode_u8)(in, out, W, H, p6, p7);
  } else if (!strcmp(op, "close") && argc >= 7) {
    mp_close_u8(in, out, W, H, p6);
  } else if (!strcmp(op, "contours")) {
    mp_contours c;
    mp_find_contours_external(in, W, H, &c);
    FILE *f = fopen(argv[3], "w");
    if (!f) return 1;
    for (int i = 0; i < c.n; i++) {
      fprintf(f, "%d", c.start[i + 1] - c.start[i]);
      for (int k = c.start[i]; k < c.start[i + 1]; k++) fprintf(f, " %d %d", c.pts[k].x, c.pts[k].y);
      fprintf(f, "\n");
    }
    mp_contours_free(&c);
    rc = fclose(f) == 0 ? 0 : 1;
    mp_free(in);
    mp_free(out);
    return rc;
  } else {
    return usage();
  }
  rc = save(argv[3], out, n) ? 1 : 0;
  mp_free(in);
  mp_free(out);
  return rc;
}
