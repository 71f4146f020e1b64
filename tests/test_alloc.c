/* Tests of mp_alloc: byte accounting, peak, alignment, realloc/calloc semantics. */
#include "mp_alloc.h"
#include "mp_test.h"

static void test_counts_and_peak(void **state) {
  (void)state;
  mp_alloc_stats s0 = mp_alloc_get_stats();
  void *a = mp_malloc(1000);
  void *b = mp_malloc(5000);
  mp_alloc_stats s1 = mp_alloc_get_stats();
  assert_int_equal(s1.current - s0.current, 6000);
  assert_true(s1.peak >= s0.current + 6000);
  assert_int_equal(s1.allocs - s0.allocs, 2);
  mp_free(b);
  mp_alloc_stats s2 = mp_alloc_get_stats();
  assert_int_equal(s2.current - s0.current, 1000);
  assert_int_equal(s2.peak, s1.peak); /* peak stays */
  assert_int_equal(s2.frees - s0.frees, 1);
  mp_alloc_reset_peak();
  assert_int_equal(mp_alloc_get_stats().peak, s2.current);
  void *c = mp_malloc(100);
  assert_int_equal(mp_alloc_get_stats().peak, s2.current + 100);
  mp_free(c);
  mp_free(a);
  assert_int_equal(mp_alloc_get_stats().current, s0.current);
  mp_free(NULL);
}

static void test_alignment_and_size(void **state) {
  (void)state;
  for (size_t n = 0; n < 300; n += 7) {
    unsigned char *p = mp_malloc(n);
    assert_int_equal((uintptr_t)p % MP_ALLOC_ALIGN, 0);
    assert_int_equal(mp_alloc_size(p), n);
    memset(p, 0xab, n);
    mp_free(p);
  }
}

static void test_calloc_realloc(void **state) {
  (void)state;
  uint32_t *z = mp_calloc(1000, sizeof *z);
  for (int i = 0; i < 1000; i++) assert_int_equal(z[i], 0);
  for (uint32_t i = 0; i < 1000; i++) z[i] = i * 3;
  uint64_t before = mp_alloc_get_stats().current;
  z = mp_realloc(z, 4000 * sizeof *z);
  assert_int_equal(mp_alloc_get_stats().current - before, 3000 * sizeof *z);
  for (uint32_t i = 0; i < 1000; i++) assert_int_equal(z[i], i * 3);
  z = mp_realloc(z, 10 * sizeof *z);
  for (uint32_t i = 0; i < 10; i++) assert_int_equal(z[i], i * 3);
  assert_int_equal(mp_alloc_size(z), 10 * sizeof *z);
  mp_free(z);
  void *n = mp_realloc(NULL, 16);
  assert_non_null(n);
  mp_free(n);
  char *s = mp_strdup("mammopatch");
  assert_string_equal(s, "mammopatch");
  mp_free(s);
}

/* realloc through the C library (in place, remapped or moved) and the copying fallback
 * keep the alignment, the contents and the accounting, growing from bytes to 48 MB
 * (past glibc's mmap threshold) and shrinking back */
static void test_realloc_grow_shrink(void **state) {
  (void)state;
  uint64_t base = mp_alloc_get_stats().current;
  size_t n = 1;
  unsigned char *p = mp_malloc(n);
  p[0] = 1;
  size_t sizes[64], ns = 0;
  for (size_t m = 3; m < (48u << 20); m = m * 3 / 2 + 5) sizes[ns++] = m;
  for (size_t i = 0; i < ns; i++) { /* grow: the old bytes keep their values, the new ones get theirs */
    size_t m = sizes[i];
    void *other = mp_malloc(m / 3 + 1); /* something in the way of growing in place */
    p = mp_realloc(p, m);
    mp_free(other);
    assert_int_equal((uintptr_t)p % MP_ALLOC_ALIGN, 0);
    assert_int_equal(mp_alloc_size(p), m);
    assert_int_equal(mp_alloc_get_stats().current - base, m);
    for (size_t k = 0; k < n; k += 4093) assert_int_equal(p[k], (unsigned char)(k * 7 + 1));
    assert_int_equal(p[n - 1], (unsigned char)((n - 1) * 7 + 1));
    for (size_t k = n; k < m; k++) p[k] = (unsigned char)(k * 7 + 1);
    n = m;
  }
  for (size_t i = ns; i-- > 0;) { /* shrink */
    p = mp_realloc(p, sizes[i] / 2 + 1);
    n = sizes[i] / 2 + 1;
    assert_int_equal((uintptr_t)p % MP_ALLOC_ALIGN, 0);
    assert_int_equal(mp_alloc_get_stats().current - base, n);
    for (size_t k = 0; k < n; k += 997) assert_int_equal(p[k], (unsigned char)(k * 7 + 1));
    assert_int_equal(p[n - 1], (unsigned char)((n - 1) * 7 + 1));
  }
  mp_free(p);
  assert_int_equal(mp_alloc_get_stats().current, base);
}

static void test_format_bytes(void **state) {
  (void)state;
  char b[32];
  assert_string_equal(mp_format_bytes(0, b, sizeof b), "0 B");
  assert_string_equal(mp_format_bytes(1023, b, sizeof b), "1023 B");
  assert_string_equal(mp_format_bytes(1536, b, sizeof b), "1.5 KiB");
  assert_string_equal(mp_format_bytes(3ULL << 30, b, sizeof b), "3.0 GiB");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counts_and_peak),
      cmocka_unit_test(test_alignment_and_size),
      cmocka_unit_test(test_calloc_realloc),
    cmocka_unit_test(test_realloc_grow_shrink),
      cmocka_unit_test(test_format_bytes),
  };
  return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
