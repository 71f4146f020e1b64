/* Tests of mp_json: atomic write and read back, errors, provenance. */
#include <dirent.h>

#include "mp_json.h"
#include "mp_params.h"
#include "mp_test.h"

static void test_write_read(void **state) {
  (void)state;
  char path[256], err[512] = "";
  snprintf(path, sizeof path, "%s/result.json", mp_test_tmpdir());
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddNumberToObject(doc, "mcc", 0.4375);
  cJSON_AddStringToObject(doc, "variant", "baseline");
  assert_int_equal(mp_json_write_file(path, doc, err, sizeof err), 0);
  /* overwrite: the file is replaced whole */
  cJSON_ReplaceItemInObject(doc, "mcc", cJSON_CreateNumber(0.5));
  assert_int_equal(mp_json_write_file(path, doc, err, sizeof err), 0);
  cJSON_Delete(doc);
  cJSON *back = mp_json_read_file(path, err, sizeof err);
  assert_non_null(back);
  assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(back, "mcc")) == 0.5);
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(back, "variant")), "baseline");
  cJSON_Delete(back);
  /* no temporary file left behind */
  DIR *d = opendir(mp_test_tmpdir());
  struct dirent *e;
  while ((e = readdir(d))) assert_null(strstr(e->d_name, ".tmp."));
  closedir(d);
}

static void test_errors(void **state) {
  (void)state;
  char path[256], err[512] = "";
  assert_null(mp_json_read_file("/nonexistent/x.json", err, sizeof err));
  assert_non_null(strstr(err, "cannot open '/nonexistent/x.json'"));
  snprintf(path, sizeof path, "%s/bad.json", mp_test_tmpdir());
  mp_test_write(path, "{\"a\": 1,, }");
  assert_null(mp_json_read_file(path, err, sizeof err));
  assert_non_null(strstr(err, "not valid JSON (error at byte"));
  cJSON *doc = cJSON_CreateObject();
  assert_int_equal(mp_json_write_file("/nonexistent/dir/x.json", doc, err, sizeof err), -1);
  assert_non_null(strstr(err, "cannot create"));
  cJSON_Delete(doc);
}

static void test_provenance(void **state) {
  (void)state;
  mp_config *cfg = mp_params_new();
  cJSON *p = mp_json_provenance(cfg, 4);
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(p, "software")), "mammopatch");
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(p, "version")), mp_version());
  assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItem(p, "git")));
  const char *when = cJSON_GetStringValue(cJSON_GetObjectItem(p, "created_utc"));
  assert_int_equal(strlen(when), 20);
  assert_int_equal(when[19], 'Z');
  assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(p, "ranks")), 4);
  cJSON *run = cJSON_GetObjectItem(cJSON_GetObjectItem(p, "config"), "run");
  assert_non_null(cJSON_GetObjectItem(run, "seed"));
  cJSON_Delete(p);
  mp_config_free(cfg);
  p = mp_json_provenance(NULL, 1);
  assert_null(cJSON_GetObjectItem(p, "config"));
  cJSON_Delete(p);
}

/* A recorded configuration snapshot against the current one: the first changed key with
 * both values; a key the record lacks counts only when it is off its default. */
static void test_first_diff(void **state) {
  (void)state;
  cJSON *old = cJSON_CreateObject(), *cur = cJSON_CreateObject();
  cJSON_AddNumberToObject(old, "gan.epochs", 300);
  cJSON_AddNumberToObject(cur, "gan.epochs", 300);
  char was[64], now[64];
  assert_null(mp_json_first_diff(old, cur, was, sizeof was, now, sizeof now));
  cJSON_AddNumberToObject(cur, "gan.n_critic", 1); /* newer than the record, at its default */
  assert_null(mp_json_first_diff(old, cur, was, sizeof was, now, sizeof now));
  cJSON_ReplaceItemInObject(cur, "gan.n_critic", cJSON_CreateNumber(5));
  const char *k = mp_json_first_diff(old, cur, was, sizeof was, now, sizeof now);
  assert_non_null(k);
  assert_string_equal(k, "gan.n_critic");
  assert_string_equal(was, "(absent)");
  assert_string_equal(now, "5");
  cJSON_ReplaceItemInObject(cur, "gan.n_critic", cJSON_CreateNumber(1));
  cJSON_ReplaceItemInObject(cur, "gan.epochs", cJSON_CreateNumber(30));
  k = mp_json_first_diff(old, cur, was, sizeof was, now, sizeof now);
  assert_non_null(k);
  assert_string_equal(k, "gan.epochs");
  assert_string_equal(was, "300");
  /* not a configuration key (a run's own field): absent is a difference */
  cJSON_ReplaceItemInObject(cur, "gan.epochs", cJSON_CreateNumber(300));
  cJSON_AddNumberToObject(cur, "split_seed", 1);
  k = mp_json_first_diff(old, cur, was, sizeof was, now, sizeof now);
  assert_non_null(k);
  assert_string_equal(k, "split_seed");
  cJSON_Delete(old), cJSON_Delete(cur);
  /* the defaults of every value type */
  cJSON *v = cJSON_Parse("{\"i\": 128, \"r\": 1e-5, \"b\": false, \"s\": \"cpu\", \"x\": 64}");
  assert_true(mp_params_is_default("train.batch", cJSON_GetObjectItem(v, "i")));
  assert_true(mp_params_is_default("train.lr", cJSON_GetObjectItem(v, "r")));
  assert_true(mp_params_is_default("train.rot90", cJSON_GetObjectItem(v, "b")));
  assert_true(mp_params_is_default("train.backend", cJSON_GetObjectItem(v, "s")));
  assert_false(mp_params_is_default("gan.batch", cJSON_GetObjectItem(v, "i")));    /* 64 is */
  assert_false(mp_params_is_default("train.batch", cJSON_GetObjectItem(v, "s"))); /* another type */
  assert_false(mp_params_is_default("no.such", cJSON_GetObjectItem(v, "x")));
  assert_false(mp_params_is_default("nodot", cJSON_GetObjectItem(v, "x")));
  cJSON_Delete(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_read),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_provenance),
      cmocka_unit_test(test_first_diff),
  };
  return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
