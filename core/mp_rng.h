/* mp_rng — the one random number generator of the suite: Philox4x32-10
 * (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
 *
 * Counter-based: a draw is a pure function of (seed, stream, index, k), so the value
 * does not depend on which rank computes it or in what order.  That is what makes
 * results independent of the number of ranks: the sampler draws batch b from
 * (seed, MP_RNG_SAMPLER, b), synth draws patient p from (seed, MP_RNG_SYNTH, p), etc.
 *
 * Mapping onto Philox: key = seed (low word, high word); counter =
 * (block, stream, index low, index high).  Each (seed, stream, index) is an
 * independent sequence of up to 2^32 blocks of four 32-bit words.  The same function
 * is usable in CUDA kernels (mp_philox4x32_10 is header-inline and branch-free) so GPU
 * dropout masks equal CPU ones.
 */
#ifndef MP_RNG_H
#define MP_RNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define MP_HD __host__ __device__
#else
#define MP_HD
#endif

/* Streams: one per purpose, so draws for different purposes never overlap.
 * Append only; never renumber (results depend on these values). */
enum mp_rng_stream {
  MP_RNG_TEST = 0,
  MP_RNG_SYNTH = 1,     /* synthetic cohort: index = patient number */
  MP_RNG_SPLIT = 2,     /* patient-level split shuffles: index = list id */
  MP_RNG_SAMPLER = 3,   /* batch sampler: index = global step */
  MP_RNG_AUGMENT = 4,   /* flips/rotations: index = global sample draw */
  MP_RNG_DROPOUT = 5,   /* dropout masks: index = step * layers + layer */
  MP_RNG_INIT = 6,      /* weight initialisation: index = tensor number */
  MP_RNG_GAN_Z = 7,     /* generator latents */
  MP_RNG_GP_EPS = 8,    /* gradient-penalty interpolation weights */
  MP_RNG_SMOTE = 9,     /* SMOTE interpolation factors */
  MP_RNG_TSNE = 10,
  MP_RNG_PSEUDO_SALT = 11,
  MP_RNG_SYNTH_PIXELS = 12, /* synthetic view pixels: index = patient * 64 + image slot */
  MP_RNG_SYNTH_CODEC = 13,  /* synthetic transfer-syntax choice: same index */
  MP_RNG_SYNTH_UID = 14,    /* synthetic UIDs: index = patient */
};

#define MP_PHILOX_M0 0xD2511F53u
#define MP_PHILOX_M1 0xCD9E8D57u
#define MP_PHILOX_W0 0x9E3779B9u
#define MP_PHILOX_W1 0xBB67AE85u

/* The raw bijection: out = Philox4x32-10(ctr, key).  Matches Random123's kat_vectors. */
static inline MP_HD void mp_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)MP_PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)MP_PHILOX_M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += MP_PHILOX_W0;
    k1 += MP_PHILOX_W1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/* Stateless access: the k-th 32-bit word of sequence (seed, stream, index). */
static inline MP_HD uint32_t mp_rng_at(uint64_t seed, uint32_t stream, uint64_t index, uint64_t k) {
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  uint32_t ctr[4] = {(uint32_t)(k >> 2), stream, (uint32_t)index, (uint32_t)(index >> 32)};
  uint32_t out[4];
  mp_philox4x32_10(ctr, key, out);
  return out[k & 3];
}

/* A sequential reader over one (seed, stream, index) sequence. */
typedef struct {
  uint32_t key[2];
  uint32_t ctr[4];
  uint32_t buf[4];
  int used; /* words of buf already handed out (4 = empty) */
} mp_rng;

void mp_rng_init(mp_rng *r, uint64_t seed, uint32_t stream, uint64_t index);

/* Jump to word k of the sequence (k = number of 32-bit words already consumed). */
void mp_rng_seek(mp_rng *r, uint64_t k);
/* Words consumed so far (to save in checkpoints; restore with mp_rng_seek). */
uint64_t mp_rng_tell(const mp_rng *r);

uint32_t mp_rng_u32(mp_rng *r);
uint64_t mp_rng_u64(mp_rng *r);
/* Uniform float in [0, 1) with 24 random bits. */
float mp_rng_uniform(mp_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double mp_rng_uniform_f64(mp_rng *r);
/* Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject); n > 0. */
uint32_t mp_rng_below(mp_rng *r, uint32_t n);
/* Standard normal (Box-Muller, cosine branch only: exactly four words per draw and no
 * hidden state, so mp_rng_tell/mp_rng_seek capture the whole generator). */
double mp_rng_normal(mp_rng *r);
/* Fisher-Yates shuffle of a[0..n). */
void mp_rng_shuffle_u32(mp_rng *r, uint32_t *a, size_t n);

#endif
