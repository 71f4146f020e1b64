/* mp_alloc — the allocator wrapper: every large allocation of the suite goes through
 * here so each rank knows its live and peak heap bytes (reported per rank at the end
 * of each stage; see mp_mpi_report_memory).
 *
 * Blocks are 64-byte aligned (cache line / AVX-512 vector) and carry a small header
 * with their size and a guard word, so mp_free of a foreign or already-freed pointer
 * is caught.  Out of memory is fatal (MP_EXIT_ALLOC) with the size that failed: a
 * training job cannot continue without its buffers, and the message tells the user
 * which rank ran out and how much it wanted.  Counters are atomic (OpenMP threads).
 */
#ifndef MP_ALLOC_H
#define MP_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#define MP_ALLOC_ALIGN 64

typedef struct {
  uint64_t current; /* live bytes (user sizes) */
  uint64_t peak;    /* maximum of current since start or the last reset */
  uint64_t allocs;  /* number of successful allocations */
  uint64_t frees;
} mp_alloc_stats;

void *mp_malloc(size_t n);                 /* n == 0 gives a valid unique block */
void *mp_calloc(size_t count, size_t size); /* zeroed; fatal on count*size overflow */
/* p may be NULL; contents kept up to min size.  A block grown to 16 MiB or more moves
 * into its own mapping and is grown from then on without copying (mremap, Linux). */
void *mp_realloc(void *p, size_t n);
void mp_free(void *p);                      /* NULL is fine */
char *mp_strdup(const char *s);

/* Size the user asked for when p was allocated. */
size_t mp_alloc_size(const void *p);

mp_alloc_stats mp_alloc_get_stats(void);
/* Start a new peak window: peak := current. */
void mp_alloc_reset_peak(void);

/* "12.3 MiB" style formatting of a byte count into buf (returns buf). */
const char *mp_format_bytes(uint64_t bytes, char *buf, size_t len);

#endif
