/* mp_pseudonym — the keyed pseudonym for patient identifiers (SPEC §4).
 *
 * pseudonym(PatientID) = "P" + the first 20 hex digits (80 bits) of
 * HMAC-SHA256(site key, normalised PatientID).  Without the site key the mapping can
 * be neither inverted nor recomputed from a guessed ID list; with it, the site can
 * look a patient up (`mammopatch pseudonym`).  80 bits make a collision among even
 * millions of patients vanishingly unlikely (p ≈ n²/2^81).
 *
 * Normalisation: DICOM pads values with spaces (and sometimes NUL); leading and
 * trailing spaces/NULs are removed so "12345 " and "12345" are the same patient.
 *
 * The site key comes from a file (privacy.site_key_file, raw bytes; one trailing
 * newline ignored) or else the environment variable MAMMOPATCH_SITE_KEY.  At least
 * 16 bytes.  The key itself is never written anywhere; outputs record its
 * fingerprint (HMAC of a fixed label, 8 hex digits) so runs with different keys are
 * never mixed by accident.  HMAC-SHA256 comes from OpenSSL's libcrypto.
 */
#ifndef MP_PSEUDONYM_H
#define MP_PSEUDONYM_H

#include <stddef.h>
#include <stdint.h>

#define MP_PSEUDONYM_LEN 21 /* "P" + 20 hex digits */
#define MP_SITE_KEY_MIN 16
#define MP_SITE_KEY_MAX 1024
#define MP_SITE_KEY_ENV "MAMMOPATCH_SITE_KEY"

typedef struct {
  uint8_t key[MP_SITE_KEY_MAX];
  size_t len;
  char fingerprint[9];
} mp_site_key;

/* Load the key: from `file` when non-NULL and non-empty, else from the environment.
 * Returns 0, or -1 with a message in err (missing, unreadable, too short). */
int mp_site_key_load(mp_site_key *k, const char *file, char *err, size_t errlen);
/* Use the given bytes as the key (tests, or keys received over MPI). 0 or -1. */
int mp_site_key_set(mp_site_key *k, const void *key, size_t len, char *err, size_t errlen);

/* out must hold MP_PSEUDONYM_LEN + 1 bytes. */
void mp_pseudonym(const mp_site_key *k, const char *patient_id, char *out);

/* The pseudonym of an input file's path relative to the input directory: "F" + 20 hex digits
 * of HMAC-SHA256 under the same key, over "file" 0x1f path (another message space than the
 * patients').  out must hold MP_PSEUDONYM_LEN + 1 bytes. */
void mp_pseudonym_file(const mp_site_key *k, const char *rel_path, char *out);

/* Raw HMAC-SHA256. */
void mp_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[32]);

/* Plain SHA-256 of a file's bytes (what `sha256sum` prints) as 64 lowercase hex digits in
 * hex[65]; 0, or -1 with the reason in err.  Identifies a model's weight files in outputs. */
int mp_sha256_file(const char *path, char hex[65], char *err, size_t errlen);
/* SHA-256 of n bytes in memory, as mp_sha256_file's hex (identifies the lesion patches a GAN trained on). */
void mp_sha256_buf(const void *data, size_t n, char hex[65]);

/* Wipe the key bytes. */
void mp_site_key_clear(mp_site_key *k);

#endif
