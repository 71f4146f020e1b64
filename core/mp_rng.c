/* mp_rng — sequential readers over Philox4x32-10 sequences (see mp_rng.h). */
#include "mp_rng.h"

#include <math.h>

#include "mp_check.h"

void mp_rng_init(mp_rng *r, uint64_t seed, uint32_t stream, uint64_t index) {
  r->key[0] = (uint32_t)seed;
  r->key[1] = (uint32_t)(seed >> 32);
  r->ctr[0] = 0;
  r->ctr[1] = stream;
  r->ctr[2] = (uint32_t)index;
  r->ctr[3] = (uint32_t)(index >> 32);
  r->used = 4;
}

void mp_rng_seek(mp_rng *r, uint64_t k) {
  MP_CHECK((k >> 2) <= UINT32_MAX, "rng position %llu beyond the 2^34 words of a sequence",
           (unsigned long long)k);
  r->ctr[0] = (uint32_t)(k >> 2);
  if (k & 3) {
    mp_philox4x32_10(r->ctr, r->key, r->buf);
    r->ctr[0]++;
    r->used = (int)(k & 3);
  } else {
    r->used = 4;
  }
}

uint64_t mp_rng_tell(const mp_rng *r) {
  /* ctr[0] is the next block to generate; buf holds block ctr[0]-1 when used < 4 */
  if (r->used == 4) return (uint64_t)r->ctr[0] << 2;
  return (((uint64_t)r->ctr[0] - 1) << 2) + (uint64_t)r->used;
}

uint32_t mp_rng_u32(mp_rng *r) {
  if (r->used == 4) {
    MP_CHECK(r->ctr[0] != UINT32_MAX, "rng sequence exhausted (2^34 words); use another index");
    mp_philox4x32_10(r->ctr, r->key, r->buf);
    r->ctr[0]++;
    r->used = 0;
  }
  return r->buf[r->used++];
}

uint64_t mp_rng_u64(mp_rng *r) {
  uint64_t lo = mp_rng_u32(r);
  uint64_t hi = mp_rng_u32(r);
  return lo | (hi << 32);
}

float mp_rng_uniform(mp_rng *r) { return (float)(mp_rng_u32(r) >> 8) * 0x1.0p-24f; }

double mp_rng_uniform_f64(mp_rng *r) { return (double)(mp_rng_u64(r) >> 11) * 0x1.0p-53; }

uint32_t mp_rng_below(mp_rng *r, uint32_t n) {
  MP_CHECK(n > 0, "mp_rng_below(0)");
  uint64_t m = (uint64_t)mp_rng_u32(r) * n;
  uint32_t low = (uint32_t)m;
  if (low < n) {
    uint32_t threshold = (uint32_t)(-n) % n; /* 2^32 mod n */
    while (low < threshold) {
      m = (uint64_t)mp_rng_u32(r) * n;
      low = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

double mp_rng_normal(mp_rng *r) {
  double u1 = 1.0 - mp_rng_uniform_f64(r); /* (0, 1]: log is finite */
  double u2 = mp_rng_uniform_f64(r);
  double rad = sqrt(-2.0 * log(u1));
  double th = 6.283185307179586476925 * u2;
  return rad * cos(th);
}

void mp_rng_shuffle_u32(mp_rng *r, uint32_t *a, size_t n) {
  MP_CHECK(n <= UINT32_MAX, "shuffle of %zu items", n);
  for (size_t i = n; i > 1; i--) {
    uint32_t j = mp_rng_below(r, (uint32_t)i);
    uint32_t t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
  }
}
