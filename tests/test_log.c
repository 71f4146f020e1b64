/* Tests of mp_log: who speaks (rank 0 by default, all ranks with --verbose, errors
 * always), levels, line format. */
#include "mp_log.h"
#include "mp_test.h"

static char buf[8192];

static FILE *capture(void) {
  memset(buf, 0, sizeof buf);
  FILE *f = fmemopen(buf, sizeof buf - 1, "w");
  mp_log_set_stream(f);
  return f;
}

static void test_rank0_only(void **state) {
  (void)state;
  FILE *f = capture();
  mp_log_init(0, 4, MP_LOG_INFO, false);
  MP_INFO("hello %d", 42);
  MP_DEBUG("hidden");
  fflush(f);
  assert_non_null(strstr(buf, "] INFO  hello 42\n"));
  assert_null(strstr(buf, "r0]")); /* rank 0 alone needs no rank tag */
  assert_null(strstr(buf, "hidden"));
  fclose(f);

  f = capture();
  mp_log_init(3, 4, MP_LOG_INFO, false);
  MP_INFO("from rank three");
  MP_WARN("warning from rank three");
  MP_ERROR("disk full");
  fflush(f);
  assert_null(strstr(buf, "from rank three"));
  assert_non_null(strstr(buf, "r3] ERROR disk full")); /* errors are never hidden */
  fclose(f);
  mp_log_set_stream(NULL);
}

static void test_verbose_all_ranks(void **state) {
  (void)state;
  FILE *f = capture();
  mp_log_init(2, 4, MP_LOG_INFO, true);
  MP_INFO("shard %d", 2);
  fflush(f);
  assert_non_null(strstr(buf, "r2] INFO  shard 2"));
  fclose(f);
  mp_log_set_stream(NULL);
}

static void test_levels(void **state) {
  (void)state;
  FILE *f = capture();
  mp_log_init(0, 1, MP_LOG_WARN, false);
  MP_INFO("info line");
  MP_WARN("warn line");
  mp_log_set_level(MP_LOG_DEBUG);
  MP_DEBUG("debug line");
  fflush(f);
  assert_null(strstr(buf, "info line"));
  assert_non_null(strstr(buf, "WARN  warn line"));
  assert_non_null(strstr(buf, "DEBUG debug line"));
  fclose(f);
  mp_log_set_stream(NULL);
  assert_int_equal(mp_log_level_parse("debug"), MP_LOG_DEBUG);
  assert_int_equal(mp_log_level_parse("WARN"), MP_LOG_WARN);
  assert_int_equal(mp_log_level_parse("warning"), MP_LOG_WARN);
  assert_int_equal(mp_log_level_parse("loud"), -1);
  assert_int_equal(mp_log_level_parse(NULL), -1);
}

static void test_long_line_truncated(void **state) {
  (void)state;
  FILE *f = capture();
  mp_log_init(0, 1, MP_LOG_INFO, false);
  char big[6000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  MP_INFO("%s", big);
  fflush(f);
  size_t len = strlen(buf);
  assert_int_equal(len, 4096);
  assert_int_equal(buf[len - 1], '\n');
  assert_memory_equal(buf + len - 6, "[...]", 5);
  fclose(f);
  mp_log_set_stream(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rank0_only),
      cmocka_unit_test(test_verbose_all_ranks),
      cmocka_unit_test(test_levels),
      cmocka_unit_test(test_long_line_truncated),
  };
  return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
