/* Shared helpers for the cmocka tests: cmocka's headers in the order it needs, and a
 * private temporary directory per test program. */
#ifndef MP_TEST_H
#define MP_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* Create (once) and return a fresh temporary directory for this process. */
static inline const char *mp_test_tmpdir(void) {
  static char dir[64] = "";
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/mp_test_XXXXXX");
    if (!mkdtemp(dir)) abort();
  }
  return dir;
}

/* Read a whole file into a malloc'd string (NULL if missing). */
static inline char *mp_test_slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = '\0';
  fclose(f);
  return s;
}

static inline void mp_test_write(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  fputs(text, f);
  fclose(f);
}

/* MPI test programs: run the group on every rank (the collectives need them all) and
 * fail the job when any rank failed.  Call between mp_mpi_init and mp_mpi_finalize. */
#ifdef MP_MPI_H
static inline int mp_test_run_mpi(const char *what, const struct CMUnitTest *tests, size_t n, mp_ctx *ctx) {
  char name[64];
  snprintf(name, sizeof name, "%s rank %d", what, mp_mpi_rank(ctx));
  int failed = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any ? 1 : 0;
}
#endif

#endif
