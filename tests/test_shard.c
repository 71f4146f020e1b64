/* Tests of the sharding helpers: block shards tile [0, n) in order with sizes that
 * differ by at most one, the owner function inverts them, round-robin counts add up. */
#include "mp_mpi.h"
#include "mp_test.h"

static void test_block_tiling(void **state) {
  (void)state;
  for (uint64_t n = 0; n < 60; n++) {
    for (int parts = 1; parts <= 9; parts++) {
      uint64_t next = 0, mn = UINT64_MAX, mx = 0;
      for (int p = 0; p < parts; p++) {
        mp_range r = mp_shard_block(n, parts, p);
        assert_int_equal(r.begin, next);
        assert_true(r.end >= r.begin);
        uint64_t sz = r.end - r.begin;
        if (sz < mn) mn = sz;
        if (sz > mx) mx = sz;
        for (uint64_t i = r.begin; i < r.end; i++) assert_int_equal(mp_shard_block_owner(n, parts, i), p);
        next = r.end;
      }
      assert_int_equal(next, n);
      assert_true(mx - mn <= 1);
    }
  }
  mp_range r = mp_shard_block(10, 4, 0);
  assert_int_equal(r.begin, 0);
  assert_int_equal(r.end, 3);
  r = mp_shard_block(10, 4, 3);
  assert_int_equal(r.begin, 8);
  assert_int_equal(r.end, 10);
}

static void test_round_robin(void **state) {
  (void)state;
  for (uint64_t n = 0; n < 40; n++) {
    for (int parts = 1; parts <= 6; parts++) {
      uint64_t total = 0;
      for (int p = 0; p < parts; p++) {
        uint64_t c = 0;
        for (uint64_t i = (uint64_t)p; i < n; i += (uint64_t)parts) c++;
        assert_int_equal(mp_shard_rr_count(n, parts, p), c);
        total += c;
      }
      assert_int_equal(total, n);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_block_tiling),
      cmocka_unit_test(test_round_robin),
  };
  return cmocka_run_group_tests_name("shard", tests, NULL, NULL);
}
