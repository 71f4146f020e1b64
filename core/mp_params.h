/* mp_params — the schema of the experiment configuration: every key an experiment
 * INI may set, with its default, range and meaning.  One schema for the whole suite,
 * so a single experiment file configures every stage and an unknown key anywhere is
 * caught.  Stages add their keys here as they arrive (SPEC names the values).
 */
#ifndef MP_PARAMS_H
#define MP_PARAMS_H

#include "mp_config.h"

extern const mp_cfg_key mp_params_schema[];
extern const size_t mp_params_count;

/* A configuration at the defaults of the schema above. */
mp_config *mp_params_new(void);

#endif
