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

/* Build identification, baked in at build time. */
const char *mp_version(void);     /* "0.1.0" */
const char *mp_version_git(void); /* git describe --always --dirty, or "unknown" */

#endif
