/* mp_pseudonym — keyed patient pseudonyms (see mp_pseudonym.h). */
#include "mp_pseudonym.h"

#include "mp_alloc.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_check.h"

void mp_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[32]) {
  unsigned int outlen = 0;
  if (!HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &outlen) || outlen != 32)
    mp_fatal(MP_EXIT_FATAL, "HMAC-SHA256 failed in libcrypto");
}

static void mp_hex(const uint8_t *b, size_t n, char *out) {
  static const char d[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = d[b[i] >> 4];
    out[2 * i + 1] = d[b[i] & 15];
  }
  out[2 * n] = '\0';
}

int mp_sha256_file(const char *path, char hex[65], char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) mp_fatal(MP_EXIT_FATAL, "SHA-256 failed in libcrypto");
  static _Thread_local unsigned char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    if (!EVP_DigestUpdate(c, buf, n)) mp_fatal(MP_EXIT_FATAL, "SHA-256 failed in libcrypto");
  int rd = ferror(f);
  fclose(f);
  uint8_t h[32];
  unsigned int hl = 0;
  if (!EVP_DigestFinal_ex(c, h, &hl) || hl != 32) mp_fatal(MP_EXIT_FATAL, "SHA-256 failed in libcrypto");
  EVP_MD_CTX_free(c);
  if (rd) {
    snprintf(err, errlen, "%s: read error", path);
    return -1;
  }
  mp_hex(h, 32, hex);
  return 0;
}

void mp_sha256_buf(const void *data, size_t n, char hex[65]) {
  uint8_t h[32];
  unsigned int hl = 0;
  if (!EVP_Digest(data, n, h, &hl, EVP_sha256(), NULL) || hl != 32) mp_fatal(MP_EXIT_FATAL, "SHA-256 failed in libcrypto");
  mp_hex(h, 32, hex);
}

int mp_site_key_set(mp_site_key *k, const void *key, size_t len, char *err, size_t errlen) {
  memset(k, 0, sizeof *k);
  if (len < MP_SITE_KEY_MIN) {
    snprintf(err, errlen, "site key is %zu bytes; at least %d are needed", len, MP_SITE_KEY_MIN);
    return -1;
  }
  if (len > MP_SITE_KEY_MAX) {
    snprintf(err, errlen, "site key is %zu bytes; at most %d are allowed", len, MP_SITE_KEY_MAX);
    return -1;
  }
  memcpy(k->key, key, len);
  k->len = len;
  static const char label[] = "mammopatch site-key fingerprint v1";
  uint8_t h[32];
  mp_hmac_sha256(k->key, k->len, label, sizeof label - 1, h);
  mp_hex(h, 4, k->fingerprint);
  return 0;
}

int mp_site_key_load(mp_site_key *k, const char *file, char *err, size_t errlen) {
  uint8_t buf[MP_SITE_KEY_MAX + 2];
  size_t len = 0;
  if (file && *file) {
    FILE *f = fopen(file, "rb");
    if (!f) {
      snprintf(err, errlen, "cannot read site key file '%s': %s", file, strerror(errno));
      return -1;
    }
    len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (len > MP_SITE_KEY_MAX) {
      snprintf(err, errlen, "site key file '%s' is longer than %d bytes", file, MP_SITE_KEY_MAX);
      return -1;
    }
    if (len && buf[len - 1] == '\n') len--;
    if (len && buf[len - 1] == '\r') len--;
  } else {
    const char *env = getenv(MP_SITE_KEY_ENV);
    if (!env || !*env) {
      snprintf(err, errlen,
               "no site key: set privacy.site_key_file (or --site-key-file) or the environment variable %s "
               "(at least %d bytes, kept secret by the site)",
               MP_SITE_KEY_ENV, MP_SITE_KEY_MIN);
      return -1;
    }
    len = strlen(env);
    if (len > MP_SITE_KEY_MAX) len = MP_SITE_KEY_MAX + 1; /* refused below */
    else memcpy(buf, env, len);
  }
  int rc = mp_site_key_set(k, buf, len, err, errlen);
  OPENSSL_cleanse(buf, sizeof buf);
  return rc;
}

void mp_pseudonym(const mp_site_key *k, const char *patient_id, char *out) {
  MP_CHECK(k->len >= MP_SITE_KEY_MIN, "pseudonym requested without a site key");
  const char *b = patient_id;
  while (*b == ' ') b++;
  size_t n = strlen(b);
  while (n && (b[n - 1] == ' ' || b[n - 1] == '\0')) n--;
  uint8_t h[32];
  mp_hmac_sha256(k->key, k->len, b, n, h);
  out[0] = 'P';
  mp_hex(h, 10, out + 1);
}

void mp_pseudonym_file(const mp_site_key *k, const char *rel_path, char *out) {
  MP_CHECK(k->len >= MP_SITE_KEY_MIN, "pseudonym requested without a site key");
  size_t n = strlen(rel_path);
  uint8_t *msg = mp_malloc(n + 5), h[32];
  memcpy(msg, "file\x1f", 5);
  memcpy(msg + 5, rel_path, n);
  mp_hmac_sha256(k->key, k->len, msg, n + 5, h);
  mp_free(msg);
  out[0] = 'F';
  mp_hex(h, 10, out + 1);
}

void mp_site_key_clear(mp_site_key *k) { OPENSSL_cleanse(k, sizeof *k); }
