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

#endif
