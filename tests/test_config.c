/* Tests of mp_config: defaults, typed parsing, unknown keys warned (with a
 * suggestion), bad values refused naming the key, --set, INI/JSON round trips; and the
 * command line's numbers (mp_cli_uint / mp_cli_int / mp_cli_seed). */
#include "mp_alloc.h"
#include "mp_cli.h"
#include "mp_config.h"
#include "mp_log.h"
#include "mp_params.h"
#include "mp_test.h"

static const mp_cfg_key schema[] = {
    {"train.lr", MP_CFG_REAL, "1e-5", 1e-9, 1.0, NULL, "learning rate"},
    {"train.batch", MP_CFG_INT, "128", 1, 65536, NULL, "batch size"},
    {"train.flips", MP_CFG_BOOL, "true", 0, 0, NULL, "random flips"},
    {"train.backend", MP_CFG_CHOICE, "cpu", 0, 0, "ref|cpu|cuda", "nn backend"},
    {"run.out", MP_CFG_STRING, "out", 0, 0, NULL, "output directory"},
    {"run.seed", MP_CFG_INT, "7", 0, 0, NULL, "seed (no range)"},
};
#define NKEYS (sizeof schema / sizeof schema[0])

static char logbuf[8192];
static FILE *logf_;

static int setup(void **state) {
  (void)state;
  memset(logbuf, 0, sizeof logbuf);
  logf_ = fmemopen(logbuf, sizeof logbuf - 1, "w");
  mp_log_init(0, 1, MP_LOG_INFO, false);
  mp_log_set_stream(logf_);
  return 0;
}
static int teardown(void **state) {
  (void)state;
  mp_log_set_stream(NULL);
  fclose(logf_);
  return 0;
}

static void test_defaults(void **state) {
  (void)state;
  mp_config *c = mp_config_new(schema, NKEYS);
  assert_true(mp_config_real(c, "train.lr") == 1e-5);
  assert_int_equal(mp_config_int(c, "train.batch"), 128);
  assert_true(mp_config_bool(c, "train.flips"));
  assert_string_equal(mp_config_str(c, "train.backend"), "cpu");
  assert_string_equal(mp_config_str(c, "run.out"), "out");
  assert_int_equal(mp_config_origin(c, "train.lr"), MP_CFG_FROM_DEFAULT);
  mp_config_free(c);
  /* the suite's own schema has valid defaults */
  mp_config *p = mp_params_new();
  assert_non_null(p);
  mp_config_free(p);
}

static void test_load_good(void **state) {
  (void)state;
  mp_config *c = mp_config_new(schema, NKEYS);
  char err[256] = "";
  const char *ini = "; comment\n[train]\nlr = 2e-4\nbatch=64\nflips = off\nbackend = cuda\n[run]\nout = /tmp/x y\n"
                    "seed = -3\n";
  assert_int_equal(mp_config_load_string(c, ini, "exp.ini", err, sizeof err), 0);
  assert_true(mp_config_real(c, "train.lr") == 2e-4);
  assert_int_equal(mp_config_int(c, "train.batch"), 64);
  assert_false(mp_config_bool(c, "train.flips"));
  assert_string_equal(mp_config_str(c, "train.backend"), "cuda");
  assert_string_equal(mp_config_str(c, "run.out"), "/tmp/x y");
  assert_int_equal(mp_config_int(c, "run.seed"), -3);
  assert_int_equal(mp_config_origin(c, "train.lr"), MP_CFG_FROM_FILE);
  assert_int_equal(mp_config_unknown_count(c), 0);
  mp_config_free(c);
}

static void test_unknown_keys_warn(void **state) {
  (void)state;
  mp_config *c = mp_config_new(schema, NKEYS);
  char err[256] = "";
  const char *ini = "[train]\nbtach = 32\n[gpu]\nfoo = 1\n";
  assert_int_equal(mp_config_load_string(c, ini, "exp.ini", err, sizeof err), 0);
  assert_int_equal(mp_config_unknown_count(c), 2);
  fflush(logf_);
  assert_non_null(strstr(logbuf, "WARN"));
  assert_non_null(strstr(logbuf, "unknown configuration key 'train.btach'"));
  assert_non_null(strstr(logbuf, "did you mean 'train.batch'"));
  assert_non_null(strstr(logbuf, "'gpu.foo'"));
  assert_int_equal(mp_config_int(c, "train.batch"), 128); /* untouched */
  mp_config_free(c);
}

/* Each bad value is refused with the origin, line, key and rule in the message. */
static void test_bad_values(void **state) {
  (void)state;
  struct {
    const char *ini, *want[3];
  } cases[] = {
      {"[train]\nlr = fast\n", {"exp.ini:2", "train.lr = 'fast'", "not a finite number"}},
      {"[train]\n\nlr = 5\n", {"exp.ini:3", "train.lr = '5'", "must be in [1e-09, 1]"}},
      {"[train]\nbatch = 12.5\n", {"exp.ini:2", "train.batch", "not an integer"}},
      {"[train]\nbatch = 0\n", {"exp.ini:2", "train.batch", "must be in [1, 65536]"}},
      {"[train]\nflips = maybe\n", {"exp.ini:2", "train.flips", "not a boolean"}},
      {"[train]\nbackend = tpu\n", {"exp.ini:2", "train.backend = 'tpu'", "must be one of ref|cpu|cuda"}},
      {"[train]\nlr = nan\n", {"exp.ini:2", "train.lr", "not a finite number"}},
      {"[train]\nbatch = 99999999999999999999999\n", {"exp.ini:2", "train.batch", "not an integer"}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mp_config *c = mp_config_new(schema, NKEYS);
    char err[512] = "";
    assert_int_equal(mp_config_load_string(c, cases[i].ini, "exp.ini", err, sizeof err), -1);
    for (int j = 0; j < 3; j++) {
      if (!strstr(err, cases[i].want[j])) fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want[j]);
    }
    mp_config_free(c);
  }
}

static void test_syntax_error(void **state) {
  (void)state;
  mp_config *c = mp_config_new(schema, NKEYS);
  char err[512] = "";
  assert_int_equal(mp_config_load_string(c, "[train]\nlr = 1e-4\nthis line is wrong\n", "x.ini", err, sizeof err), -1);
  assert_non_null(strstr(err, "x.ini:3"));
  assert_non_null(strstr(err, "syntax error"));
  mp_config_free(c);
}

static void test_file_and_set(void **state) {
  (void)state;
  char path[256], err[512] = "";
  snprintf(path, sizeof path, "%s/exp.ini", mp_test_tmpdir());
  mp_test_write(path, "[train]\nbatch = 32\n");
  mp_config *c = mp_config_new(schema, NKEYS);
  assert_int_equal(mp_config_load_file(c, path, err, sizeof err), 0);
  assert_int_equal(mp_config_int(c, "train.batch"), 32);
  assert_int_equal(mp_config_set_arg(c, "train.batch=16", err, sizeof err), 0);
  assert_int_equal(mp_config_int(c, "train.batch"), 16);
  assert_int_equal(mp_config_origin(c, "train.batch"), MP_CFG_FROM_CLI);
  assert_int_equal(mp_config_set_arg(c, "train.bath=16", err, sizeof err), -1);
  assert_non_null(strstr(err, "unknown configuration key 'train.bath'"));
  assert_non_null(strstr(err, "did you mean 'train.batch'"));
  assert_int_equal(mp_config_set_arg(c, "train.batch", err, sizeof err), -1);
  assert_non_null(strstr(err, "expected section.key=value"));
  assert_int_equal(mp_config_set_arg(c, "train.batch=-1", err, sizeof err), -1);
  assert_non_null(strstr(err, "--set train.batch = '-1'"));
  assert_int_equal(mp_config_int(c, "train.batch"), 16); /* refused values change nothing */
  assert_int_equal(mp_config_load_file(c, "/nonexistent/exp.ini", err, sizeof err), -1);
  assert_non_null(strstr(err, "configuration file: cannot open '/nonexistent/exp.ini'"));
  mp_config_free(c);
}

static void test_ini_round_trip(void **state) {
  (void)state;
  mp_config *a = mp_config_new(schema, NKEYS);
  char err[256];
  assert_int_equal(mp_config_set(a, "train.lr", "0.003", MP_CFG_FROM_CLI, err, sizeof err), 0);
  assert_int_equal(mp_config_set(a, "train.backend", "ref", MP_CFG_FROM_CLI, err, sizeof err), 0);
  assert_int_equal(mp_config_set(a, "train.flips", "no", MP_CFG_FROM_CLI, err, sizeof err), 0);
  char *ini = mp_config_to_ini(a);
  assert_non_null(strstr(ini, "[train]\n; learning rate\nlr = 0.003\n"));
  mp_config *b = mp_config_new(schema, NKEYS);
  assert_int_equal(mp_config_load_string(b, ini, "dump", err, sizeof err), 0);
  assert_true(mp_config_real(b, "train.lr") == 0.003);
  assert_string_equal(mp_config_str(b, "train.backend"), "ref");
  assert_false(mp_config_bool(b, "train.flips"));
  assert_int_equal(mp_config_unknown_count(b), 0);
  mp_free(ini);

  cJSON *j = mp_config_to_json(a);
  cJSON *train = cJSON_GetObjectItem(j, "train");
  assert_true(cJSON_IsNumber(cJSON_GetObjectItem(train, "lr")));
  assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(train, "lr")) == 0.003);
  assert_true(cJSON_IsFalse(cJSON_GetObjectItem(train, "flips")));
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(train, "backend")), "ref");
  assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(train, "batch")), 128);
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "run"), "out")), "out");
  cJSON_Delete(j);
  mp_config_free(a);
  mp_config_free(b);
}

/* numbers on the command line: digits only, within [lo, hi], no wrap-around at the top */
static void test_cli_numbers(void **state) {
  (void)state;
  uint64_t u = 77;
  int i = 77;
  assert_true(mp_cli_uint("0", 0, 9, &u) && u == 0);
  assert_true(mp_cli_uint("007", 1, 9, &u) && u == 7);
  assert_true(mp_cli_uint("18446744073709551615", 0, UINT64_MAX, &u) && u == UINT64_MAX);
  u = 77;
  static const char *bad[] = {"", "-1", "+1", " 1", "1 ", "12abc", "1e3", "0x10", "18446744073709551616",
                              "99999999999999999999999"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) assert_false(mp_cli_uint(bad[k], 0, UINT64_MAX, &u));
  assert_false(mp_cli_uint(NULL, 0, 9, &u));
  assert_int_equal(u, 77); /* untouched on refusal */
  /* the bounds, hi below a digit included (no unsigned wrap in hi - digit) */
  assert_false(mp_cli_uint("5", 0, 0, &u));
  assert_false(mp_cli_uint("5", 0, 4, &u));
  assert_true(mp_cli_uint("4", 4, 4, &u) && u == 4);
  assert_false(mp_cli_uint("3", 4, 9, &u));
  assert_true(mp_cli_uint("1024", 8, 1024, &u) && u == 1024);
  assert_false(mp_cli_uint("1025", 8, 1024, &u));
  assert_false(mp_cli_uint("10240", 8, 1024, &u));
  assert_true(mp_cli_int("50", 1, 50, &i) && i == 50);
  assert_false(mp_cli_int("51", 1, 50, &i));
  assert_false(mp_cli_int("0", 1, 50, &i));
  assert_false(mp_cli_int("2147483648", 0, INT32_MAX, &i));
  assert_true(mp_cli_int("2147483647", 0, INT32_MAX, &i) && i == INT32_MAX);
  assert_false(mp_cli_int("1", -1, 5, &i)); /* lo < 0 is not a range it serves */
  assert_true(mp_cli_seed("9007199254740992", &u) && u == MP_SEED_MAX);
  assert_false(mp_cli_seed("9007199254740993", &u));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cli_numbers),
      cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_load_good, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_keys_warn, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_syntax_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_and_set, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ini_round_trip, setup, teardown),
  };
  return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
