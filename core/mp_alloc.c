/* mp_alloc — counting, aligned allocator (see mp_alloc.h).
 *
 * Layout of a block: [header | pad to 64 | user bytes].  The header sits right before
 * the user pointer; the raw pointer from posix_memalign (or, for a block mp_realloc grew
 * past MP_ALLOC_MAP_MIN, from mmap) is the block start, and the header is exactly
 * MP_ALLOC_ALIGN bytes so user pointers stay aligned. */
#ifdef __linux__
#define _GNU_SOURCE /* mremap */
#endif
#include "mp_alloc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_check.h"

#ifdef __linux__
#include <sys/mman.h>
#endif

#define MP_ALLOC_MAGIC 0x6d70616c6c6f6321ULL /* "mpalloc!" */
#define MP_ALLOC_FREED 0x6672656564626c6bULL /* "freedblk" */
#define MP_ALLOC_MAPPED 0x6d70616c6d6d6170ULL /* "mpalmmap": a block in its own mapping */

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
  if (h->magic != MP_ALLOC_MAGIC && h->magic != MP_ALLOC_MAPPED) mp_fatal(MP_EXIT_FATAL, "mp_alloc: %p was not allocated by mp_malloc", p);
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

/* ---- growable buffers ------------------------------------------------------------------
 * A buffer that mp_realloc grows to MP_ALLOC_MAP_MIN or more moves into its own anonymous
 * mapping (once, with one copy), and from then on grows and shrinks with mremap: the
 * kernel moves page-table entries, never the bytes, and only the new tail is faulted
 * in.  Through malloc/realloc a growing 60 MB buffer (a preprocess round's patches) was
 * copied into fresh memory at every doubling: ~2x its size in first-touch page faults
 * plus the copies, ~0.1 s per run on a paravirtualised VM.  The mapping asks for
 * transparent huge pages (512x fewer faults where the kernel's THP mode is "madvise").
 * Blocks from mp_malloc stay on the heap: only growth makes a mapping. */
#define MP_ALLOC_MAP_MIN ((size_t)16 << 20)

static void out_of_memory(size_t n) {
  char b[32], c[32];
  mp_fatal(MP_EXIT_ALLOC, "out of memory: could not grow a block to %s (this rank holds %s)",
           mp_format_bytes(n, b, sizeof b), mp_format_bytes(atomic_load(&g_current), c, sizeof c));
}

/* the accounting of a block going from old to n user bytes */
static void account_resize(size_t old, size_t n) {
  if (n >= old) {
    mp_alloc_account(n - old);
  } else {
    atomic_fetch_sub(&g_current, old - n);
    atomic_fetch_add(&g_allocs, 1);
  }
  atomic_fetch_add(&g_frees, 1);
}

#ifdef __linux__
static size_t map_len(size_t n) { /* header + n, whole pages */
  const size_t pg = 4096;
  return (n + MP_ALLOC_ALIGN + pg - 1) / pg * pg;
}

static void *realloc_mapped(mp_block_header *h, size_t n) {
  const size_t old = h->size;
  mp_block_header *q;
  if (h->magic == MP_ALLOC_MAPPED) {
    q = mremap(h, map_len(old), map_len(n), MREMAP_MAYMOVE);
    if (q == MAP_FAILED) out_of_memory(n);
  } else {
    q = mmap(NULL, map_len(n), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q == MAP_FAILED) out_of_memory(n);
    (void)madvise(q, map_len(n), MADV_HUGEPAGE); /* advice only */
    memcpy((char *)q + MP_ALLOC_ALIGN, (char *)h + MP_ALLOC_ALIGN, old < n ? old : n);
    h->magic = MP_ALLOC_FREED;
    free(h);
    q->magic = MP_ALLOC_MAPPED;
  }
  q->size = n;
  account_resize(old, n);
  return (char *)q + MP_ALLOC_ALIGN;
}
#endif

/* Below MP_ALLOC_MAP_MIN the C library's realloc first: it grows a block in place when
 * it can; only when its new block is not MP_ALLOC_ALIGN-aligned (realloc keeps its own,
 * smaller alignment) are the contents copied once more into an aligned block.  The
 * header travels with the block. */
void *mp_realloc(void *p, size_t n) {
  if (!p) return mp_malloc(n);
  if (n > SIZE_MAX - 2 * MP_ALLOC_ALIGN - 4096) mp_fatal(MP_EXIT_ALLOC, "mp_realloc: size %zu overflows", n);
  mp_block_header *h = mp_header_of(p);
  const size_t old = h->size;
#ifdef __linux__
  if (h->magic == MP_ALLOC_MAPPED || n >= MP_ALLOC_MAP_MIN) return realloc_mapped(h, n);
#endif
  mp_block_header *q = realloc(h, n + MP_ALLOC_ALIGN);
  if (!q) out_of_memory(n);
  if ((uintptr_t)q % MP_ALLOC_ALIGN == 0) {
    q->size = n;
    account_resize(old, n);
    return (char *)q + MP_ALLOC_ALIGN;
  }
  void *r = mp_malloc(n);
  memcpy(r, (char *)q + MP_ALLOC_ALIGN, old < n ? old : n);
  mp_free((char *)q + MP_ALLOC_ALIGN); /* q still holds its header: size old */
  return r;
}

void mp_free(void *p) {
  if (!p) return;
  mp_block_header *h = mp_header_of(p);
  atomic_fetch_sub(&g_current, h->size);
  atomic_fetch_add(&g_frees, 1);
#ifdef __linux__
  if (h->magic == MP_ALLOC_MAPPED) {
    size_t len = map_len(h->size);
    h->magic = MP_ALLOC_FREED;
    MP_CHECK(munmap(h, len) == 0, "munmap of a %zu-byte block failed", len);
    return;
  }
#endif
  h->magic = MP_ALLOC_FREED;
  free(h);
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
