/* mp_strbuf — growable text buffer (see mp_strbuf.h). */
#include "mp_strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"

static void mp_strbuf_reserve(mp_strbuf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  b->s = mp_realloc(b->s, cap);
  b->cap = cap;
}

void mp_strbuf_append(mp_strbuf *b, const char *s, size_t n) {
  mp_strbuf_reserve(b, n);
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

void mp_strbuf_printf(mp_strbuf *b, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n > 0) {
    mp_strbuf_reserve(b, (size_t)n);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap2);
    b->len += (size_t)n;
  }
  va_end(ap2);
}

void mp_strbuf_free(mp_strbuf *b) {
  mp_free(b->s);
  b->s = NULL;
  b->len = b->cap = 0;
}

const char *mp_strbuf_str(const mp_strbuf *b) { return b->s ? b->s : ""; }
