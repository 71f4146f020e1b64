/* mp_params — the experiment configuration schema (see mp_params.h). */
#include "mp_params.h"

const mp_cfg_key mp_params_schema[] = {
    /* [run] */
    {"run.seed", MP_CFG_INT, "20190601", 0, 9.2e18, NULL,
     "master seed of the counter-based RNG; every random draw derives from (seed, purpose, index)"},
    /* [log] */
    {"log.level", MP_CFG_CHOICE, "info", 0, 0, "error|warn|info|debug", "how much rank 0 prints"},
    {"log.all_ranks", MP_CFG_BOOL, "false", 0, 0, NULL, "every rank prints, not only rank 0 (same as --verbose)"},
    {"log.progress_interval", MP_CFG_REAL, "10", 0.1, 86400, NULL,
     "seconds between progress lines when stderr is not a terminal"},
    /* [privacy] */
    {"privacy.site_key_file", MP_CFG_STRING, "", 0, 0, NULL,
     "file holding the secret site key for patient pseudonyms (else $MAMMOPATCH_SITE_KEY)"},
};

const size_t mp_params_count = sizeof mp_params_schema / sizeof mp_params_schema[0];

mp_config *mp_params_new(void) { return mp_config_new(mp_params_schema, mp_params_count); }
