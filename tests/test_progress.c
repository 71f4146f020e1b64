/* Tests of mp_progress with a fake clock: periodic lines when not a TTY, an in-place
 * bar on a TTY, silence when out is NULL. */
#include "mp_progress.h"
#include "mp_test.h"

static double fake_now;
static double fake_clock(void) { return fake_now; }

static int count(const char *s, const char *sub) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, sub)); p++) n++;
  return n;
}

static void test_periodic_lines(void **state) {
  (void)state;
  char buf[8192] = {0};
  FILE *f = fmemopen(buf, sizeof buf - 1, "w");
  fake_now = 100.0;
  mp_progress *p = mp_progress_start_ex("preprocess", 1000, f, false, 10.0, fake_clock);
  for (int i = 1; i <= 1000; i++) {
    fake_now = 100.0 + i * 0.05; /* 50 s in all, one item per 50 ms */
    mp_progress_add(p, 1);
  }
  mp_progress_finish(p);
  fflush(f);
  /* one line per 10 s (at 10, 20, 30, 40, 50 s) plus the final one; no carriage returns */
  assert_int_equal(count(buf, "\n"), 6);
  assert_int_equal(count(buf, "\r"), 0);
  assert_non_null(strstr(buf, "preprocess: 20% (200/1000), 20.0/s, ETA 40.0s"));
  assert_non_null(strstr(buf, "preprocess: done 1000/1000 in 50.0s (20.0/s)"));
  fclose(f);
}

static void test_tty_bar(void **state) {
  (void)state;
  char buf[16384] = {0};
  FILE *f = fmemopen(buf, sizeof buf - 1, "w");
  fake_now = 0;
  mp_progress *p = mp_progress_start_ex("train", 10, f, true, 10.0, fake_clock);
  for (int i = 1; i <= 10; i++) {
    fake_now = i * 1.0;
    mp_progress_update(p, (uint64_t)i);
  }
  mp_progress_finish(p);
  fflush(f);
  assert_int_equal(count(buf, "\r"), 11); /* every update redraws (>= 0.1 s apart) + final */
  assert_int_equal(count(buf, "\n"), 1);  /* only the final line ends */
  assert_non_null(strstr(buf, "[###############...............]  50% 5/10"));
  assert_non_null(strstr(buf, "100% 10/10 1.0/s in 10.0s"));
  fclose(f);
}

static void test_silent(void **state) {
  (void)state;
  mp_progress *p = mp_progress_start_ex("quiet", 10, NULL, false, 1.0, fake_clock);
  mp_progress_add(p, 5);
  mp_progress_finish(p);
  mp_progress_finish(NULL);
  mp_progress_add(NULL, 1);
}

static void test_durations(void **state) {
  (void)state;
  char b[32];
  assert_string_equal(mp_format_duration(12.34, b, sizeof b), "12.3s");
  assert_string_equal(mp_format_duration(185, b, sizeof b), "3m05s");
  assert_string_equal(mp_format_duration(3720, b, sizeof b), "1h02m");
  assert_string_equal(mp_format_duration(-1, b, sizeof b), "0.0s");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_periodic_lines),
      cmocka_unit_test(test_tty_bar),
      cmocka_unit_test(test_silent),
      cmocka_unit_test(test_durations),
  };
  return cmocka_run_group_tests_name("progress", tests, NULL, NULL);
}
