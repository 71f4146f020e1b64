/* mp_config — typed, schema-checked INI configuration (parsed by inih).
 *
 * A schema (an array of mp_cfg_key) lists every key the program knows, with its type,
 * default, range or choices and a help line.  Loading a file or a `--set key=value`
 * override:
 *   - warns (MP_WARN) about keys and sections the schema does not know, naming them and
 *     suggesting the closest known key, and otherwise ignores them;
 *   - refuses a bad value with a message that names the origin, line, key and the
 *     rule it broke ("exp.ini:12: train.lr = 'fast': not a number").
 * Every output of the suite records the effective configuration (mp_config_to_json),
 * so a result can always be traced to the values that made it.
 */
#ifndef MP_CONFIG_H
#define MP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

typedef enum { MP_CFG_INT, MP_CFG_REAL, MP_CFG_BOOL, MP_CFG_STRING, MP_CFG_CHOICE } mp_cfg_type;

typedef struct {
  const char *key;     /* "section.name" (lower case, no spaces) */
  mp_cfg_type type;
  const char *def;     /* default as text (must itself be valid) */
  double min, max;     /* INT/REAL: inclusive range, checked when min < max */
  const char *choices; /* CHOICE: "a|b|c" */
  const char *help;    /* one line, shown by `mammopatch config --help-keys` */
} mp_cfg_key;

typedef struct mp_config mp_config;

/* Where a value came from. */
typedef enum { MP_CFG_FROM_DEFAULT = 0, MP_CFG_FROM_FILE = 1, MP_CFG_FROM_CLI = 2 } mp_cfg_origin;

/* A configuration holding every schema key at its default.  The schema array must
 * outlive the config.  A schema error (bad default, duplicate key) is a programming
 * error and fatal. */
mp_config *mp_config_new(const mp_cfg_key *schema, size_t n);
void mp_config_free(mp_config *cfg);

/* Parse INI text.  origin names it in messages (a file name).  Returns 0, or -1 with
 * the first bad value (and how many more there were) or syntax error in err.
 * Unknown keys are warned about through MP_WARN. */
int mp_config_load_string(mp_config *cfg, const char *text, const char *origin, char *err, size_t errlen);
/* Read and parse a file (0 / -1 with err, e.g. when it cannot be opened). */
int mp_config_load_file(mp_config *cfg, const char *path, char *err, size_t errlen);
/* One value, e.g. ("train.lr", "1e-4"): 0, or -1 with err. */
int mp_config_set(mp_config *cfg, const char *key, const char *value, mp_cfg_origin from, char *err,
                  size_t errlen);
/* "section.name=value" as given to --set: 0, or -1 with err. */
int mp_config_set_arg(mp_config *cfg, const char *assignment, char *err, size_t errlen);

/* Typed getters.  Asking for a key that is not in the schema, or with the wrong type,
 * is a programming error and fatal. */
long long mp_config_int(const mp_config *cfg, const char *key);
double mp_config_real(const mp_config *cfg, const char *key);
bool mp_config_bool(const mp_config *cfg, const char *key);
const char *mp_config_str(const mp_config *cfg, const char *key); /* STRING and CHOICE */
mp_cfg_origin mp_config_origin(const mp_config *cfg, const char *key);

/* Number of unknown keys/sections seen by the loads so far. */
size_t mp_config_unknown_count(const mp_config *cfg);
/* The first unknown key seen ("section.name"), NULL when none. */
const char *mp_config_unknown_first(const mp_config *cfg);

/* text as INI comment lines ("; " + at most 96 bytes each, broken between words) into dst
 * (cap bytes, NUL-terminated); returns the length written.  inih reads lines of at most 200
 * bytes, so a longer comment line would read back as a key. */
int mp_config_comment(char *dst, size_t cap, const char *text);

/* {"section": {"name": value, ...}, ...} with typed JSON values. */
cJSON *mp_config_to_json(const mp_config *cfg);
/* The effective configuration as INI text, each key preceded by its help line;
 * loading it back gives the same configuration.  Caller frees with mp_free. */
char *mp_config_to_ini(const mp_config *cfg);
/* The same INI layout (sections, help lines) over cfg's schema with each key's value from
 * value(ctx, key, val, cap, note, ncap): it writes the value text into val and may write a
 * comment into note (shown as "; " lines before the key; "" for none).  Caller frees. */
typedef void (*mp_config_ini_value)(void *ctx, const mp_cfg_key *k, char *val, size_t cap, char *note, size_t ncap);
char *mp_config_ini_with(const mp_config *cfg, mp_config_ini_value value, void *ctx);

/* The schema the config was made from. */
const mp_cfg_key *mp_config_schema(const mp_config *cfg, size_t *n);

#endif
