/* mp_config — schema-checked INI configuration (see mp_config.h). */
#include "mp_config.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_file.h"
#include "mp_log.h"
#include "mp_strbuf.h"

typedef struct {
  char *text; /* canonical text of the value */
  long long i;
  double d;
  bool b;
  mp_cfg_origin from;
} mp_cfg_value;

struct mp_config {
  const mp_cfg_key *schema;
  size_t n;
  mp_cfg_value *v;
  size_t unknown;
  char first_unknown[256]; /* the first unknown key seen, for a refusal that names it */
};

static int mp_cfg_find(const mp_config *cfg, const char *key) {
  for (size_t i = 0; i < cfg->n; i++)
    if (strcmp(cfg->schema[i].key, key) == 0) return (int)i;
  return -1;
}

static void mp_seterr(char *err, size_t errlen, const char *fmt, ...) MP_PRINTF(3, 4);
static void mp_seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static bool mp_choice_ok(const char *choices, const char *s) {
  size_t len = strlen(s);
  for (const char *p = choices; *p;) {
    const char *bar = strchr(p, '|');
    size_t l = bar ? (size_t)(bar - p) : strlen(p);
    if (l == len && strncmp(p, s, l) == 0) return true;
    if (!bar) break;
    p = bar + 1;
  }
  return false;
}

/* Parse `text` for key k into *out.  Returns NULL when fine, else the rule broken
 * (written into why). */
static const char *mp_cfg_parse(const mp_cfg_key *k, const char *text, mp_cfg_value *out, char *why,
                                size_t whylen) {
  char *end = NULL;
  errno = 0;
  switch (k->type) {
  case MP_CFG_INT: {
    long long x = strtoll(text, &end, 10);
    if (!*text || *end || errno) return snprintf(why, whylen, "not an integer"), why;
    if (k->min < k->max && ((double)x < k->min || (double)x > k->max))
      return snprintf(why, whylen, "must be in [%g, %g]", k->min, k->max), why;
    out->i = x;
    out->d = (double)x;
    break;
  }
  case MP_CFG_REAL: {
    double x = strtod(text, &end);
    if (!*text || *end || errno == ERANGE || !isfinite(x)) return snprintf(why, whylen, "not a finite number"), why;
    if (k->min < k->max && (x < k->min || x > k->max))
      return snprintf(why, whylen, "must be in [%g, %g]", k->min, k->max), why;
    out->d = x;
    break;
  }
  case MP_CFG_BOOL: {
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    int r = -1;
    for (int j = 0; j < 4; j++) {
      if (strcasecmp(text, yes[j]) == 0) r = 1;
      if (strcasecmp(text, no[j]) == 0) r = 0;
    }
    if (r < 0) return snprintf(why, whylen, "not a boolean (true/false, yes/no, on/off, 1/0)"), why;
    out->b = r == 1;
    break;
  }
  case MP_CFG_CHOICE:
    if (!mp_choice_ok(k->choices, text)) return snprintf(why, whylen, "must be one of %s", k->choices), why;
    break;
  case MP_CFG_STRING:
    break;
  }
  return NULL;
}

static int mp_cfg_assign(mp_config *cfg, int idx, const char *value, mp_cfg_origin from, const char *where,
                         char *err, size_t errlen) {
  const mp_cfg_key *k = &cfg->schema[idx];
  mp_cfg_value nv = {0};
  char why[256];
  if (mp_cfg_parse(k, value, &nv, why, sizeof why)) {
    mp_seterr(err, errlen, "%s%s = '%s': %s", where, k->key, value, why);
    return -1;
  }
  mp_free(cfg->v[idx].text);
  nv.text = mp_strdup(value);
  nv.from = from;
  cfg->v[idx] = nv;
  return 0;
}

mp_config *mp_config_new(const mp_cfg_key *schema, size_t n) {
  mp_config *cfg = mp_calloc(1, sizeof *cfg);
  cfg->schema = schema;
  cfg->n = n;
  cfg->v = mp_calloc(n ? n : 1, sizeof *cfg->v);
  for (size_t i = 0; i < n; i++) {
    MP_CHECK(strchr(schema[i].key, '.') != NULL, "config key '%s' has no section", schema[i].key);
    for (size_t j = 0; j < i; j++) MP_CHECK(strcmp(schema[i].key, schema[j].key) != 0, "duplicate key %s", schema[i].key);
    char err[512];
    if (mp_cfg_assign(cfg, (int)i, schema[i].def ? schema[i].def : "", MP_CFG_FROM_DEFAULT, "default ", err,
                      sizeof err))
      mp_fatal(MP_EXIT_FATAL, "config schema: %s", err);
  }
  return cfg;
}

void mp_config_free(mp_config *cfg) {
  if (!cfg) return;
  for (size_t i = 0; i < cfg->n; i++) mp_free(cfg->v[i].text);
  mp_free(cfg->v);
  mp_free(cfg);
}

/* Levenshtein distance, for "did you mean" suggestions. */
static size_t mp_edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return 99;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      if (up + 1 < best) best = up + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

static const char *mp_cfg_suggest(const mp_config *cfg, const char *key) {
  const char *best = NULL;
  size_t bd = 4; /* only suggest close matches */
  for (size_t i = 0; i < cfg->n; i++) {
    size_t d = mp_edit_distance(key, cfg->schema[i].key);
    if (d < bd) {
      bd = d;
      best = cfg->schema[i].key;
    }
  }
  return best;
}

static void mp_cfg_warn_unknown(mp_config *cfg, const char *where, const char *key) {
  if (!cfg->unknown++) snprintf(cfg->first_unknown, sizeof cfg->first_unknown, "%s", key);
  const char *s = mp_cfg_suggest(cfg, key);
  if (s)
    MP_WARN("%sunknown configuration key '%s' ignored (did you mean '%s'?)", where, key, s);
  else
    MP_WARN("%sunknown configuration key '%s' ignored", where, key);
}

typedef struct {
  mp_config *cfg;
  const char *origin;
  char *err;
  size_t errlen;
  int failed;
  int line; /* inih reports the line of the first error as its return value */
} mp_ini_ctx;

static int mp_ini_handler(void *user, const char *section, const char *name, const char *value) {
  mp_ini_ctx *c = user;
  char key[256], where[300];
  snprintf(key, sizeof key, "%s.%s", section, name);
  for (char *p = key; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
  snprintf(where, sizeof where, "%s: ", c->origin);
  if (!*section) {
    mp_cfg_warn_unknown(c->cfg, where, key + 1);
    return 1;
  }
  int idx = mp_cfg_find(c->cfg, key);
  if (idx < 0) {
    mp_cfg_warn_unknown(c->cfg, where, key);
    return 1;
  }
  char msg[512];
  if (mp_cfg_assign(c->cfg, idx, value ? value : "", MP_CFG_FROM_FILE, "", msg, sizeof msg)) {
    if (!c->failed) mp_seterr(c->err, c->errlen, "%s", msg); /* origin and line added below */
    c->failed++;
    return 0; /* inih records this line as the first error line */
  }
  return 1;
}

int mp_config_load_string(mp_config *cfg, const char *text, const char *origin, char *err, size_t errlen) {
  mp_ini_ctx c = {cfg, origin ? origin : "<config>", err, errlen, 0, 0};
  int rc = ini_parse_string(text, mp_ini_handler, &c);
  if (c.failed) {
    char first[512];
    snprintf(first, sizeof first, "%s", err ? err : "");
    if (c.failed > 1)
      mp_seterr(err, errlen, "%s:%d: %s (and %d more bad value%s)", c.origin, rc, first, c.failed - 1,
                c.failed > 2 ? "s" : "");
    else
      mp_seterr(err, errlen, "%s:%d: %s", c.origin, rc, first);
    return -1;
  }
  if (rc != 0) {
    mp_seterr(err, errlen, "%s:%d: syntax error (expected [section] or key = value)", c.origin, rc);
    return -1;
  }
  return 0;
}

int mp_config_load_file(mp_config *cfg, const char *path, char *err, size_t errlen) {
  char why[512];
  char *buf = mp_read_file(path, NULL, why, sizeof why);
  if (!buf) {
    mp_seterr(err, errlen, "configuration file: %s", why);
    return -1;
  }
  int rc = mp_config_load_string(cfg, buf, path, err, errlen);
  mp_free(buf);
  return rc;
}

int mp_config_set(mp_config *cfg, const char *key, const char *value, mp_cfg_origin from, char *err,
                  size_t errlen) {
  int idx = mp_cfg_find(cfg, key);
  if (idx < 0) {
    const char *s = mp_cfg_suggest(cfg, key);
    if (s)
      mp_seterr(err, errlen, "unknown configuration key '%s' (did you mean '%s'?)", key, s);
    else
      mp_seterr(err, errlen, "unknown configuration key '%s'", key);
    return -1;
  }
  return mp_cfg_assign(cfg, idx, value, from, from == MP_CFG_FROM_CLI ? "--set " : "", err, errlen);
}

int mp_config_set_arg(mp_config *cfg, const char *assignment, char *err, size_t errlen) {
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment) {
    mp_seterr(err, errlen, "--set '%s': expected section.key=value", assignment);
    return -1;
  }
  char key[256];
  size_t kl = (size_t)(eq - assignment);
  if (kl >= sizeof key) kl = sizeof key - 1;
  memcpy(key, assignment, kl);
  key[kl] = '\0';
  return mp_config_set(cfg, key, eq + 1, MP_CFG_FROM_CLI, err, errlen);
}

static const mp_cfg_value *mp_cfg_get(const mp_config *cfg, const char *key, int want) {
  int idx = mp_cfg_find(cfg, key);
  if (idx < 0) mp_fatal(MP_EXIT_FATAL, "configuration key '%s' is not in the schema", key);
  int t = (int)cfg->schema[idx].type;
  bool ok = t == want || (want == MP_CFG_STRING && t == MP_CFG_CHOICE);
  if (!ok) mp_fatal(MP_EXIT_FATAL, "configuration key '%s' read with the wrong type", key);
  return &cfg->v[idx];
}

long long mp_config_int(const mp_config *cfg, const char *key) { return mp_cfg_get(cfg, key, MP_CFG_INT)->i; }
double mp_config_real(const mp_config *cfg, const char *key) { return mp_cfg_get(cfg, key, MP_CFG_REAL)->d; }
bool mp_config_bool(const mp_config *cfg, const char *key) { return mp_cfg_get(cfg, key, MP_CFG_BOOL)->b; }
const char *mp_config_str(const mp_config *cfg, const char *key) {
  return mp_cfg_get(cfg, key, MP_CFG_STRING)->text;
}
mp_cfg_origin mp_config_origin(const mp_config *cfg, const char *key) {
  int idx = mp_cfg_find(cfg, key);
  if (idx < 0) mp_fatal(MP_EXIT_FATAL, "configuration key '%s' is not in the schema", key);
  return cfg->v[idx].from;
}

size_t mp_config_unknown_count(const mp_config *cfg) { return cfg->unknown; }

const char *mp_config_unknown_first(const mp_config *cfg) { return cfg->unknown ? cfg->first_unknown : NULL; }

const mp_cfg_key *mp_config_schema(const mp_config *cfg, size_t *n) {
  if (n) *n = cfg->n;
  return cfg->schema;
}

cJSON *mp_config_to_json(const mp_config *cfg) {
  cJSON *root = cJSON_CreateObject();
  for (size_t i = 0; i < cfg->n; i++) {
    const mp_cfg_key *k = &cfg->schema[i];
    const char *dot = strchr(k->key, '.');
    char section[128];
    size_t sl = (size_t)(dot - k->key);
    if (sl >= sizeof section) sl = sizeof section - 1;
    memcpy(section, k->key, sl);
    section[sl] = '\0';
    cJSON *sec = cJSON_GetObjectItemCaseSensitive(root, section);
    if (!sec) sec = cJSON_AddObjectToObject(root, section);
    const mp_cfg_value *v = &cfg->v[i];
    switch (k->type) {
    case MP_CFG_INT: cJSON_AddNumberToObject(sec, dot + 1, (double)v->i); break;
    case MP_CFG_REAL: cJSON_AddNumberToObject(sec, dot + 1, v->d); break;
    case MP_CFG_BOOL: cJSON_AddBoolToObject(sec, dot + 1, v->b); break;
    default: cJSON_AddStringToObject(sec, dot + 1, v->text); break;
    }
  }
  return root;
}

int mp_config_comment(char *dst, size_t cap, const char *text) {
  /* inih reads lines of at most 200 bytes: the rest of a longer comment would come back as a
   * line of its own, a key.  Words go on "; " lines of at most 98 bytes. */
  size_t n = 0;
  const char *p = text;
  while (*p && n + 1 < cap) {
    size_t take = strlen(p);
    if (take > 96) {
      take = 96;
      while (take > 0 && p[take] != ' ') take--;
      if (take == 0) take = 96; /* one word longer than a line: cut it */
    }
    int w = snprintf(dst + n, cap - n, "; %.*s\n", (int)take, p);
    if (w < 0 || (size_t)w >= cap - n) break;
    n += (size_t)w;
    p += take;
    while (*p == ' ') p++;
  }
  if (n < cap) dst[n] = '\0';
  return (int)n;
}

char *mp_config_ini_with(const mp_config *cfg, mp_config_ini_value value, void *ctx) {
  mp_strbuf o = {0};
  char prev[128] = "", comment[2048], val[1024], note[512];
  for (size_t i = 0; i < cfg->n; i++) {
    const mp_cfg_key *k = &cfg->schema[i];
    const char *dot = strchr(k->key, '.');
    char section[128];
    snprintf(section, sizeof section, "%.*s", (int)(dot - k->key), k->key);
    if (strcmp(section, prev) != 0) {
      mp_strbuf_printf(&o, "%s[%s]\n", o.len ? "\n" : "", section);
      snprintf(prev, sizeof prev, "%s", section);
    }
    if (k->help) {
      mp_config_comment(comment, sizeof comment, k->help);
      mp_strbuf_printf(&o, "%s", comment);
    }
    note[0] = '\0';
    if (value)
      value(ctx, k, val, sizeof val, note, sizeof note);
    else
      snprintf(val, sizeof val, "%s", cfg->v[i].text);
    if (note[0]) {
      mp_config_comment(comment, sizeof comment, note);
      mp_strbuf_printf(&o, "%s", comment);
    }
    mp_strbuf_printf(&o, "%s = %s\n", dot + 1, val);
  }
  char *out = mp_strdup(mp_strbuf_str(&o));
  mp_strbuf_free(&o);
  return out;
}

char *mp_config_to_ini(const mp_config *cfg) { return mp_config_ini_with(cfg, NULL, NULL); }
