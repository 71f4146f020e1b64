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
    /* [synth] — the synthetic cohort (mammopatch synth) */
    {"synth.patients", MP_CFG_INT, "24", 1, 10000000, NULL, "number of patients"},
    {"synth.width", MP_CFG_INT, "1024", 320, 8192, NULL,
     "image columns (full-field detectors: 3328); at least ~2.5x the 128-px patch so big marks fit"},
    {"synth.height", MP_CFG_INT, "1280", 320, 8192, NULL, "image rows (full field: 4096)"},
    {"synth.birads0_frac", MP_CFG_REAL, "0.38", 0, 1, NULL, "share of labelled exams scored BI-RADS 0 (lesions)"},
    {"synth.birads2_frac", MP_CFG_REAL, "0.04", 0, 1, NULL, "share scored BI-RADS 2 (benign findings); the rest are BI-RADS 1"},
    {"synth.birads345_frac", MP_CFG_REAL, "0.04", 0, 1, NULL, "decoy: patients scored BI-RADS 3-5 (discarded: birads)"},
    {"synth.unlabeled_frac", MP_CFG_REAL, "0.03", 0, 1, NULL, "decoy: patients missing from labels.csv (discarded: no_label)"},
    {"synth.male_frac", MP_CFG_REAL, "0.02", 0, 1, NULL, "decoy: male patients (discarded: sex)"},
    {"synth.implant_frac", MP_CFG_REAL, "0.03", 0, 1, NULL, "decoy: patients with breast implants (discarded: implant)"},
    {"synth.inverse_lut_frac", MP_CFG_REAL, "0.03", 0, 1, NULL, "decoy: images with an INVERSE presentation LUT"},
    {"synth.nonstandard_view_frac", MP_CFG_REAL, "0.05", 0, 1, NULL, "decoy: patients with an extra XCCL or ML view"},
    {"synth.cad_frac", MP_CFG_REAL, "0.05", 0, 1, NULL, "decoy: patients with a CAD secondary capture (DERIVED\\SECONDARY)"},
    {"synth.truncated_frac", MP_CFG_REAL, "0.02", 0, 1, NULL, "decoy: images cut short (discarded: decode_error)"},
    {"synth.garbage_frac", MP_CFG_REAL, "0.02", 0, 1, NULL, "decoy: patients with a non-DICOM .dcm file (failed)"},
    {"synth.missing_view_frac", MP_CFG_REAL, "0.12", 0, 1, NULL, "probability that each of the four standard views is missing"},
    {"synth.two_exam_frac", MP_CFG_REAL, "0.05", 0, 1, NULL, "patients with a second exam scored differently"},
    {"synth.monochrome1_frac", MP_CFG_REAL, "0.15", 0, 1, NULL, "exams stored as MONOCHROME1"},
    {"synth.jpegls_frac", MP_CFG_REAL, "0.1", 0, 1, NULL, "images stored JPEG-LS lossless"},
    {"synth.j2k_frac", MP_CFG_REAL, "0.1", 0, 1, NULL, "images stored JPEG 2000 lossless"},
    {"synth.annotated_frac", MP_CFG_REAL, "0.85", 0, 1, NULL, "lesions carrying the radiologist's ellipse mark"},
    {"synth.big_mark_frac", MP_CFG_REAL, "0.7", 0, 1, NULL,
     "marks larger than the 128-px crop (a clean centre crop exists); the rest are smaller"},
    {"synth.calc_frac", MP_CFG_REAL, "0.3", 0, 1, NULL, "lesions that are calcification clusters (the rest are masses)"},
    {"synth.second_lesion_frac", MP_CFG_REAL, "0.15", 0, 1, NULL, "lesion images holding a second lesion"},
    /* [preprocess] — SPEC §3 */
    {"preprocess.black", MP_CFG_INT, "20", 0, 255, NULL, "8-bit value at or below which a pixel is background (BLACK)"},
    {"preprocess.white", MP_CFG_INT, "235", 0, 255, NULL, "8-bit value at or above which a pixel is a label/marker (WHITE)"},
    /* [privacy] */
    {"privacy.site_key_file", MP_CFG_STRING, "", 0, 0, NULL,
     "file holding the secret site key for patient pseudonyms (else $MAMMOPATCH_SITE_KEY)"},
};

const size_t mp_params_count = sizeof mp_params_schema / sizeof mp_params_schema[0];

mp_config *mp_params_new(void) { return mp_config_new(mp_params_schema, mp_params_count); }
