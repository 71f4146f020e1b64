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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_read),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_provenance),
  };
  return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
