/* mp_params — the schema of the experiment configuration: every key an experiment
 * INI may set, with its default, range and meaning.  One schema for the whole suite,
 * so a single experiment file configures every stage and an unknown key anywhere is
 * caught.  Stages add their keys here as they arrive (SPEC names the values).
 */
#ifndef MP_PARAMS_H
#define MP_PARAMS_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "mp_config.h"

/* The largest seed (run.seed, a split seed): 2^53, so that every seed is exact as the JSON
 * number the outputs record it as (train.json, split.json, eval.json). */
#define MP_SEED_MAX 9007199254740992ULL

extern const mp_cfg_key mp_params_schema[];
extern const size_t mp_params_count;

/* A configuration at the defaults of the schema above. */
mp_config *mp_params_new(void);

/* Whether v (a value as mp_config_to_json writes it) is the default of `key`
 * ("section.name").  Records made before a key existed lack it: a key is only ever added
 * with a default that keeps the earlier behaviour, so such a record agrees with a
 * configuration that leaves the new key at its default (mp_json_first_diff). */
bool mp_params_is_default(const char *key, const cJSON *v);

#endif
