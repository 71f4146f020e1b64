/* tsne_tool — the command line of mp_tsne for tests/eval/check_tsne.py, which compares it
 * with scikit-learn:
 *   tsne_tool p IN.bin N D PERPLEXITY OUT.bin                writes P (N x N doubles)
 *   tsne_tool embed IN.bin N D PERPLEXITY ITERS SEED OUT.bin [EXAG_ITERS LEARNING_RATE]
 *                                                            writes the map (N x 2 doubles)
 *                                                            and prints kl=<value>
 * IN.bin holds N x D little-endian doubles, row-major.  embed runs ITERS iterations in all,
 * the first EXAG_ITERS (default min(250, ITERS)) with exaggeration 12, at LEARNING_RATE
 * (default <= 0: auto); ITERS = 0 writes the initial layout.
 * Errors: a message on stderr, exit status 1. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_tsne.h"

static int usage(void) {
  fprintf(stderr, "usage: tsne_tool p IN.bin N D PERPLEXITY OUT.bin\n"
                  "       tsne_tool embed IN.bin N D PERPLEXITY ITERS SEED OUT.bin [EXAG_ITERS LEARNING_RATE]\n");
  return 2;
}

static int parse_int(const char *s, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || end == s || v < lo || v > hi) {
    fprintf(stderr, "tsne_tool: bad integer '%s'\n", s);
    return -1;
  }
  *out = (int)v;
  return 0;
}

static double *read_doubles(const char *path, size_t count) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "tsne_tool: cannot open %s: %s\n", path, strerror(errno));
    return NULL;
  }
  double *v = mp_malloc(count * sizeof *v);
  size_t got = fread(v, sizeof *v, count, f);
  int extra = fgetc(f) != EOF;
  fclose(f);
  if (got != count || extra) {
    fprintf(stderr, "tsne_tool: %s does not hold exactly %zu doubles\n", path, count);
    mp_free(v);
    return NULL;
  }
  return v;
}

static int write_doubles(const char *path, const double *v, size_t count) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(v, sizeof *v, count, f) != count || fclose(f) != 0) {
    fprintf(stderr, "tsne_tool: cannot write %s\n", path);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  const int embed = strcmp(argv[1], "embed") == 0;
  if (!(embed ? argc == 9 || argc == 11 : strcmp(argv[1], "p") == 0 && argc == 7)) return usage();
  int n, d, iters = 0, exag = -1;
  double lr = 0;
  char *end;
  double perplexity = strtod(argv[5], &end);
  if (*end || end == argv[5]) {
    fprintf(stderr, "tsne_tool: bad perplexity '%s'\n", argv[5]);
    return 1;
  }
  uint64_t seed = 0;
  if (parse_int(argv[3], 0, 1 << 20, &n) || parse_int(argv[4], 0, 1 << 20, &d)) return 1;
  if (embed) {
    if (parse_int(argv[6], 0, 1 << 24, &iters)) return 1;
    seed = strtoull(argv[7], &end, 10);
    if (*end || end == argv[7]) {
      fprintf(stderr, "tsne_tool: bad seed '%s'\n", argv[7]);
      return 1;
    }
    if (argc == 11) {
      if (parse_int(argv[9], 0, 1 << 24, &exag)) return 1;
      lr = strtod(argv[10], &end);
      if (*end || end == argv[10]) {
        fprintf(stderr, "tsne_tool: bad learning rate '%s'\n", argv[10]);
        return 1;
      }
    }
  }
  double *x = read_doubles(argv[2], (size_t)n * (size_t)d);
  if (!x) return 1;
  char err[256] = "";
  int rc = 0;
  if (!embed) {
    double *p = mp_malloc((size_t)n * (size_t)n * sizeof *p);
    if (mp_tsne_joint_p(x, n, d, perplexity, p, err, sizeof err)) {
      fprintf(stderr, "tsne_tool: %s\n", err);
      rc = 1;
    } else {
      rc = write_doubles(argv[6], p, (size_t)n * (size_t)n) ? 1 : 0;
    }
    mp_free(p);
  } else {
    mp_tsne_opts o;
    mp_tsne_defaults(&o);
    o.perplexity = perplexity;
    o.iterations = iters;
    o.exaggeration_iters = exag >= 0 ? exag : iters < 250 ? iters : 250;
    o.learning_rate = lr;
    o.seed = seed;
    double *y = mp_malloc((size_t)n * 2 * sizeof *y);
    double kl;
    kl = mp_tsne(x, n, d, &o, y, err, sizeof err);
    if (kl < 0) {
      fprintf(stderr, "tsne_tool: %s\n", err);
      rc = 1;
    } else {
      rc = write_doubles(argv[8], y, (size_t)n * 2) ? 1 : 0;
      printf("kl=%.17g\n", kl);
    }
    mp_free(y);
  }
  mp_free(x);
  return rc;
}
