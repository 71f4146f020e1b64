/* mp_strbuf — a growable text buffer with printf-style appends (CSV rows, reports). */
#ifndef MP_STRBUF_H
#define MP_STRBUF_H

#include <stddef.h>

#include "mp_check.h" /* MP_PRINTF */

typedef struct {
  char *s;    /* NUL-terminated; NULL until the first append */
  size_t len, cap;
} mp_strbuf;

void mp_strbuf_printf(mp_strbuf *b, const char *fmt, ...) MP_PRINTF(2, 3);
void mp_strbuf_append(mp_strbuf *b, const char *s, size_t n);
void mp_strbuf_free(mp_strbuf *b);
/* The text so far ("" when empty). */
const char *mp_strbuf_str(const mp_strbuf *b);

#endif
