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
    /* [preprocess] — SPEC §2-§4 */
    {"preprocess.blck_size", MP_CFG_INT, "128", 16, 1024, NULL, "patch size BLCK_SIZE (pixels)"},
    {"preprocess.annot_thresh", MP_CFG_INT, "250", 1, 255, NULL,
     "8-bit value at or above which a (median-filtered) pixel belongs to an annotation mark"},
    {"preprocess.close_radius", MP_CFG_INT, "5", 0, 50, NULL, "radius of the disc of the closing (step 3)"},
    {"preprocess.dilate_radius", MP_CFG_INT, "5", 0, 50, NULL, "radius of the disc dilating the outline into the mask (step 4)"},
    {"preprocess.dilate_iterations", MP_CFG_INT, "2", 0, 20, NULL, "dilation iterations for the mask (step 4)"},
    {"preprocess.min_contour_area", MP_CFG_REAL, "0", 0, 1e9, NULL,
     "smallest contour area kept, px^2; 0 = the SPEC floor pi*blck^2/2 (the crop's circumscribed circle)"},
    {"preprocess.min_ellipse_area", MP_CFG_REAL, "0", 0, 1e9, NULL, "smallest fitted-ellipse area kept, px^2; 0 = pi*blck^2/2"},
    {"preprocess.min_ellipse_coverage", MP_CFG_REAL, "0.999", 0, 1, NULL,
     "share of the ellipse boundary that must lie on the mask (removes ellipses fitted to text)"},
    {"preprocess.coverage_samples", MP_CFG_INT, "720", 8, 100000, NULL,
     "boundary samples for the coverage (raised to the perimeter in pixels when that is larger)"},
    {"preprocess.max_extreme_frac", MP_CFG_REAL, "0.01", 0, 1, NULL,
     "a lesion crop is dropped when more than this share is <= black or >= white (mark pixels, background)"},
    {"preprocess.black", MP_CFG_INT, "20", 0, 255, NULL, "8-bit value at or below which a pixel is background (BLACK)"},
    {"preprocess.white", MP_CFG_INT, "235", 0, 255, NULL, "8-bit value at or above which a pixel is a label/marker (WHITE)"},
    {"preprocess.drop_image_types", MP_CFG_STRING, "DERIVED\\SECONDARY", 0, 0, NULL,
     "ImageType values to discard, '|'-separated; a value matches an ImageType that starts with its components"},
    {"preprocess.files_per_round", MP_CFG_INT, "0", 0, 1000000, NULL,
     "files read per collective write round (bounds memory per rank); 0 = 4 per rank"},
    {"preprocess.deflate", MP_CFG_INT, "1", 0, 9, NULL,
     "deflate level of the patch store's chunks (1: ~3x faster than 4 for a few % more bytes on patches)"},
    /* [privacy] */
    {"privacy.site_key_file", MP_CFG_STRING, "", 0, 0, NULL,
     "file holding the secret site key for patient pseudonyms (else $MAMMOPATCH_SITE_KEY)"},
};

const size_t mp_params_count = sizeof mp_params_schema / sizeof mp_params_schema[0];

mp_config *mp_params_new(void) { return mp_config_new(mp_params_schema, mp_params_count); }
