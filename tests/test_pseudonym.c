/* Tests of mp_pseudonym: HMAC-SHA256 against RFC 4231, pseudonyms against Python's
 * hmac (values computed once with hmac.new(key, id, sha256)), ID normalisation, key
 * loading and refusal. */
#include <stdlib.h>

#include "mp_pseudonym.h"
#include "mp_test.h"

static void hex(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static void test_rfc4231(void **state) {
  (void)state;
  uint8_t mac[32], key[131];
  char h[65];
  memset(key, 0x0b, 20);
  mp_hmac_sha256(key, 20, "Hi There", 8, mac);
  hex(mac, 32, h);
  assert_string_equal(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  mp_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
  hex(mac, 32, h);
  assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  memset(key, 0xaa, 131); /* key longer than the block: hashed first */
  const char *m = "Test Using Larger Than Block-Size Key - Hash Key First";
  mp_hmac_sha256(key, 131, m, strlen(m), mac);
  hex(mac, 32, h);
  assert_string_equal(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static const char test_key[] = "mammopatch-test-site-key-0123456789";

static void test_pseudonym_values(void **state) {
  (void)state;
  mp_site_key k;
  char err[256], p[MP_PSEUDONYM_LEN + 1];
  assert_int_equal(mp_site_key_set(&k, test_key, strlen(test_key), err, sizeof err), 0);
  mp_pseudonym(&k, "UPITT-000123", p);
  assert_string_equal(p, "P1c33898a506dee8adb1e");
  assert_int_equal(strlen(p), MP_PSEUDONYM_LEN);
  /* DICOM padding does not change the patient */
  mp_pseudonym(&k, "12345", p);
  assert_string_equal(p, "P87d6d9023f82c7ac2db0");
  mp_pseudonym(&k, " 12345  ", p);
  assert_string_equal(p, "P87d6d9023f82c7ac2db0");
  /* another key, another pseudonym; the ID never appears */
  mp_site_key k2;
  assert_int_equal(mp_site_key_set(&k2, "another-site-key-of-this-hospital", 33, err, sizeof err), 0);
  char p2[MP_PSEUDONYM_LEN + 1];
  mp_pseudonym(&k2, "12345", p2);
  assert_string_not_equal(p, p2);
  assert_null(strstr(p2, "12345"));
  assert_string_not_equal(k.fingerprint, k2.fingerprint);
  assert_int_equal(strlen(k.fingerprint), 8);
  mp_site_key_clear(&k);
  assert_int_equal(k.len, 0);
}

static void test_key_loading(void **state) {
  (void)state;
  mp_site_key k, ref;
  char err[512], path[256], p[MP_PSEUDONYM_LEN + 1], q[MP_PSEUDONYM_LEN + 1];
  mp_site_key_set(&ref, test_key, strlen(test_key), err, sizeof err);
  mp_pseudonym(&ref, "A", q);
  /* from a file: one trailing newline is not part of the key */
  snprintf(path, sizeof path, "%s/site.key", mp_test_tmpdir());
  char text[128];
  snprintf(text, sizeof text, "%s\n", test_key);
  mp_test_write(path, text);
  assert_int_equal(mp_site_key_load(&k, path, err, sizeof err), 0);
  mp_pseudonym(&k, "A", p);
  assert_string_equal(p, q);
  assert_string_equal(k.fingerprint, ref.fingerprint);
  /* from the environment when no file is named */
  setenv(MP_SITE_KEY_ENV, test_key, 1);
  assert_int_equal(mp_site_key_load(&k, NULL, err, sizeof err), 0);
  mp_pseudonym(&k, "A", p);
  assert_string_equal(p, q);
  assert_int_equal(mp_site_key_load(&k, "", err, sizeof err), 0);
  /* refusals */
  unsetenv(MP_SITE_KEY_ENV);
  assert_int_equal(mp_site_key_load(&k, NULL, err, sizeof err), -1);
  assert_non_null(strstr(err, "no site key"));
  assert_non_null(strstr(err, MP_SITE_KEY_ENV));
  setenv(MP_SITE_KEY_ENV, "short", 1);
  assert_int_equal(mp_site_key_load(&k, NULL, err, sizeof err), -1);
  assert_non_null(strstr(err, "at least 16"));
  unsetenv(MP_SITE_KEY_ENV);
  assert_int_equal(mp_site_key_load(&k, "/nonexistent/key", err, sizeof err), -1);
  assert_non_null(strstr(err, "cannot read site key file '/nonexistent/key'"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc4231),
      cmocka_unit_test(test_pseudonym_values),
      cmocka_unit_test(test_key_loading),
  };
  return cmocka_run_group_tests_name("pseudonym", tests, NULL, NULL);
}
