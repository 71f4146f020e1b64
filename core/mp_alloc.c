/* mp_alloc — counting, aligned allocator (see mp_alloc.h).
 *
 * Layout of a block: [header | pad to 64 | user bytes].  The header sits right before
 * the user pointer; the raw pointer from posix_memalign is the block start, and the
 * header is exactly MP_ALLOC_ALIGN bytes so user pointers stay aligned. */
#include "mp_alloc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_check.h"

#define MP_ALLOC_MAGIC 0x6d70616c6c6f6321ULL /* "mpalloc!" */
#define MP_ALLOC_FREED 0x6672656564626c6bULL /* "freedblk" */

typedef struct {
  uint64_t magic;
  uint64_t size;
} mp_block_header;
_Static_assert(sizeof(mp_block_header) <= MP_ALLOC_ALIGN, "header must fit in the alignment pad");

static _Atomic uint64_t g_current, g_peak, g_allocs, g_frees;

static void mp_alloc_account(uint64_t add) {
  uint64_t now = atomic_fetch_add(&g_current, add) + add;
  uint64_t peak = atomic_load(&g_peak);
  while (now > peak && !atomic_compare_exchange_weak(&g_peak, &peak, now)) {
  }
  atomic_fetch_add(&g_allocs, 1);
}

static mp_block_header *mp_header_of(const void *p) {
  mp_block_header *h = (mp_block_header *)((char *)(uintptr_t)p - MP_ALLOC_ALIGN);
  if (h->magic == MP_ALLOC_FREED) mp_fatal(MP_EXIT_FATAL, "mp_free: block %p freed twice", p);
  if (h->magic != MP_ALLOC_MAGIC) mp_fatal(MP_EXIT_FATAL, "mp_alloc: %p was not allocated by mp_malloc", p);
  return h;
}

void *mp_malloc(size_t n) {
  if (n > SIZE_MAX - MP_ALLOC_ALIGN) mp_fatal(MP_EXIT_ALLOC, "mp_malloc: size %zu overflows", n);
  void *raw = NULL;
  if (posix_memalign(&raw, MP_ALLOC_ALIGN, n + MP_ALLOC_ALIGN) != 0 || !raw) {
    char b[32], c[32];
    mp_fatal(MP_EXIT_ALLOC, "out of memory: could not allocate %s (this rank holds %s)",
             mp_format_bytes(n, b, sizeof b), mp_format_bytes(atomic_load(&g_current), c, sizeof c));
  }
  mp_block_header *h = raw;
  h->magic = MP_ALLOC_MAGIC;
  h->size = n;
  mp_alloc_account(n);
  return (char *)raw + MP_ALLOC_ALIGN;
}

void *mp_calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) mp_fatal(MP_EXIT_ALLOC, "mp_calloc: %zu x %zu overflows", count, size);
  void *p = mp_malloc(count * size);
  memset(p, 0, count * size);
  return p;
}

void mp_free(void *p) {
  if (!p) return;
  mp_block_header *h = mp_header_of(p);
  atomic_fetch_sub(&g_current, h->size);
  atomic_fetch_add(&g_frees, 1);
  h->magic = MP_ALLOC_FREED;
  free(h);
}

void *mp_realloc(void *p, size_t n) {
  if (!p) return mp_malloc(n);
  size_t old = mp_header_of(p)->size;
  void *q = mp_malloc(n);
  memcpy(q, p, old < n ? old : n);
  mp_free(p);
  return q;
}

char *mp_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = mp_malloc(n);
  memcpy(d, s, n);
  return d;
}

size_t mp_alloc_size(const void *p) { return (size_t)mp_header_of(p)->size; }

mp_alloc_stats mp_alloc_get_stats(void) {
  mp_alloc_stats s = {atomic_load(&g_current), atomic_load(&g_peak), atomic_load(&g_allocs),
                      atomic_load(&g_frees)};
  return s;
}

void mp_alloc_reset_peak(void) { atomic_store(&g_peak, atomic_load(&g_current)); }

const char *mp_format_bytes(uint64_t bytes, char *buf, size_t len) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    u++;
  }
  if (u == 0)
    snprintf(buf, len, "%llu B", (unsigned long long)bytes);
  else
    snprintf(buf, len, "%.1f %s", v, units[u]);
  return buf;
}
