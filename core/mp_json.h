/* mp_json — JSON results through cJSON: atomic file writes, reading back, and the
 * provenance block every output of the suite carries (software, version, git commit,
 * creation time, ranks, effective configuration).
 */
#ifndef MP_JSON_H
#define MP_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "mp_config.h"
#include "mp_file.h" /* mp_write_file_atomic */

/* Write doc (pretty-printed) to path atomically: a temporary file in the same
 * directory, fsync, rename.  A reader never sees a half-written file.  Returns 0, or
 * -1 with the reason in err. */
int mp_json_write_file(const char *path, const cJSON *doc, char *err, size_t errlen);

/* Parse a JSON file.  NULL with the reason in err on failure (cannot open, parse error
 * with the byte offset). */
cJSON *mp_json_read_file(const char *path, char *err, size_t errlen);

/* {"software": "mammopatch", "version": "0.1.0", "git": "<describe>", "created_utc":
 *  "2026-...Z", "ranks": N, "config": {...}} — cfg may be NULL (then no "config"). */
cJSON *mp_json_provenance(const mp_config *cfg, int ranks);
/* The first member of the flat object `cur` whose value is absent from or different in
 * `old` (a recorded configuration snapshot against the current one), NULL when none; its
 * old and new values, as JSON text ("(absent)" when missing), printed into was / now.
 * A configuration key (a "section.name" of mp_params) absent from `old` but at its default
 * in `cur` is no difference: a key added after the record was made keeps, at its default,
 * the behaviour the record was made with.
 * The pipeline's stage records and the GAN checkpoints name a changed key with it. */
const char *mp_json_first_diff(const cJSON *old, const cJSON *cur, char *was, size_t wl, char *now, size_t nl);

/* Build identification, baked in at build time. */
const char *mp_version(void);     /* "0.1.0" */
const char *mp_version_git(void); /* git describe --always --dirty, or "unknown" */

#endif
