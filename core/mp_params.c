/* mp_params — the experiment configuration schema (see mp_params.h). */
#include "mp_params.h"

#include <stdio.h>
#include <string.h>

const mp_cfg_key mp_params_schema[] = {
    /* [run] */
    {"run.seed", MP_CFG_INT, "20190601", 0, (double)MP_SEED_MAX, NULL,
     "master seed of the counter-based RNG; every random draw derives from (seed, purpose, index); at most 2^53"},
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
     "files read per collective write round (bounds memory per rank); 0 = 8 per rank"},
    {"preprocess.deflate", MP_CFG_INT, "1", 0, 9, NULL,
     "deflate level of the patch store's chunks (1: ~3x faster than 4 for a few % more bytes on patches)"},
    /* [train] (SPEC §5, §6, §11) */
    {"train.backend", MP_CFG_CHOICE, "cpu", 0, 0, "ref|cpu|cuda|strict|strict:mpi",
     "nn backend: ref (plain C oracle), cpu (oneDNN), cuda; strict, strict:mpi: cpu (or ref) under the cuda "
     "backend's memory contract, enforced (a check for the tests)"},
    {"train.precision", MP_CFG_CHOICE, "fp32", 0, 0, "fp32|tf32|bf16",
     "cuda arithmetic: fp32 (no tensor cores, the precision the ref oracle holds), tf32 (TF32 tensor cores in "
     "cuDNN and cuBLAS) or bf16 (convolutions and linear layers in bf16 with fp32 accumulation, fp32 master "
     "weights, batch norm and Adam: PyTorch's bf16 autocast); the host backends compute in fp32 whatever this says"},
    {"train.epochs", MP_CFG_INT, "30", 1, 100000, NULL, "training epochs (an epoch: floor(training patches / batch) steps)"},
    {"train.batch", MP_CFG_INT, "128", 2, 65536, NULL, "global batch (SPEC §6: 128); a multiple of the number of ranks"},
    {"train.lr", MP_CFG_REAL, "1e-5", 0, 1, NULL, "Adam learning rate (SPEC §6)"},
    /* below 1: Adam's bias corrections divide by 1 - beta^t */
    {"train.beta1", MP_CFG_REAL, "0.5", 0, 0.999999, NULL, "Adam beta1 (SPEC §6)"},
    {"train.beta2", MP_CFG_REAL, "0.999", 0, 0.999999, NULL, "Adam beta2 (SPEC §6)"},
    {"train.dropout", MP_CFG_REAL, "0.5", 0, 0.99, NULL, "dropout of the two hidden FC layers (SPEC §6)"},
    {"train.lesion_fraction", MP_CFG_REAL, "0", 0, 0.99, NULL,
     "share of lesion patches in every batch; 0 = the natural ratio (a permutation per epoch), as the thesis's baseline"},
    {"train.rot90", MP_CFG_BOOL, "false", 0, 0, NULL, "augmentation adds random 90-degree rotations to the flips"},
    {"train.bn_group", MP_CFG_INT, "0", 0, 65536, NULL,
     "samples per batch-norm statistics group; 0 = each rank's B/K samples (SPEC §6: statistics per rank)"},
    {"train.checkpoint_every", MP_CFG_INT, "500", 0, 1e12, NULL,
     "steps between checkpoints inside an epoch (0: epoch ends only); every epoch end writes one too"},
    {"train.keep_checkpoints", MP_CFG_INT, "2", 1, 1000, NULL, "newest step checkpoints kept"},
    {"train.patience", MP_CFG_INT, "0", 0, 100000, NULL, "early stop after this many epochs without a better validation MCC (0: off)"},
    {"train.max_steps", MP_CFG_INT, "0", 0, 1e15, NULL, "stop after this many steps in all (0: train.epochs decides); smoke tests"},
    /* [eval] (SPEC §10) */
    {"eval.threshold", MP_CFG_REAL, "0.5", 0, 1, NULL, "decision threshold on the sigmoid (SPEC §10: 0.5)"},
    {"eval.threshold_from", MP_CFG_CHOICE, "fixed", 0, 0, "fixed|validation",
     "fixed: eval.threshold; validation: the threshold maximising the patch MCC on the validation split"},
    {"eval.batch", MP_CFG_INT, "64", 1, 65536, NULL, "patches per forward pass when scoring"},
    {"predict.stride", MP_CFG_INT, "64", 16, 128, NULL,
     "tile step of predict: 128 = preprocessing's tiling; 64 overlaps the tiles (every point near a tile centre, 4x the work)"},
    {"predict.max_side", MP_CFG_INT, "1024", 128, 65536, NULL, "longer side of predict's heatmap PNG (the image is downscaled by an integer factor)"},
    /* [gan] (SPEC §7, §8) */
    {"gan.epochs", MP_CFG_INT, "300", 1, 1000000, NULL, "GAN training epochs (SPEC §7: 300)"},
    {"gan.batch", MP_CFG_INT, "64", 2, 65536, NULL, "GAN global batch (SPEC §7: 64); a multiple of the ranks"},
    {"gan.bn_group", MP_CFG_INT, "0", 0, 65536, NULL,
     "samples per group for the generator's batch-norm statistics and the relativistic losses' batch means; 0 = "
     "each rank's B/K samples; a fixed group that divides B/K gives the same run on any number of ranks"},
    {"gan.latent", MP_CFG_INT, "0", 0, 4096, NULL, "latent size z; 0 = the filters f (SPEC §7)"},
    {"gan.gp_lambda", MP_CFG_REAL, "10", 0, 1e6, NULL, "wgan-gp penalty weight lambda (SPEC §7: 10)"},
    {"gan.n_critic", MP_CFG_INT, "1", 1, 100, NULL,
     "critic steps per generator step (SPEC §7: 1); an epoch is floor(real lesion patches / batch) critic steps"},
    {"gan.lr_d", MP_CFG_REAL, "0", 0, 1e6, NULL, "critic learning rate; 0 = SPEC (2e-4, TTUR 4e-4)"},
    {"gan.lr_g", MP_CFG_REAL, "0", 0, 1e6, NULL, "generator learning rate; 0 = SPEC (2e-4, TTUR 1e-4)"},
    {"gan.fid_every", MP_CFG_INT, "10", 1, 1000000, NULL, "epochs between FID evaluations (and at the end)"},
    {"gan.fid_samples", MP_CFG_INT, "0", 0, 10000000, NULL, "generated samples per FID (0: as many as the real lesion patches), rounded up to whole global batches (the same set for any number of ranks); the N used is printed beside every FID"},
    {"gan.sweep_losses", MP_CFG_STRING, "wgan-gp,rsgan,rasgan,ralsgan,rahinge", 0, 0, NULL, "losses of the sweep grid (SPEC §7)"},
    {"gan.sweep_filters", MP_CFG_STRING, "64,128", 0, 0, NULL, "critic first-layer filters f of the sweep grid (SPEC §7)"},
    {"gan.sweep_sn_ttur", MP_CFG_STRING, "off,on", 0, 0, NULL, "spectral norm + TTUR settings of the sweep grid"},
    {"gan.inception_weights", MP_CFG_STRING, "", 0, 0, NULL,
     "the `inception` FID extractor and the IS: weights from tools/convert_inception_weights.py; empty: `domain`"},
    {"gan.checkpoint_every", MP_CFG_INT, "10", 0, 1000000, NULL,
     "epochs between GAN checkpoints (and one on SIGTERM/SIGUSR1); a rerun resumes; 0: only on a signal"},
    {"gan.groups", MP_CFG_INT, "0", 0, 65536, NULL, "rank groups of the sweep; 0: the most equal groups up to the number of runs"},
    /* [experiment] (SPEC §10, §11) */
    {"experiment.repeats", MP_CFG_INT, "5", 1, 1000, NULL, "patient-level splits R (seeds split_seed .. split_seed + R - 1)"},
    {"experiment.split_seed", MP_CFG_INT, "1", 0, (double)(MP_SEED_MAX - 1000), NULL,
     "seed of the first split; at most 2^53 - 1000 (seeds are recorded as JSON numbers)"},
    {"experiment.variants", MP_CFG_STRING, "baseline", 0, 0, NULL,
     "classifier variants, comma-separated: baseline, gan, smote-cosine, smote-l1, smote-l2 (those built)"},
    {"experiment.gan_sweep", MP_CFG_STRING, "", 0, 0, NULL,
     "gan variant: a finished `gan sweep` directory; its best configuration makes each split's synthetic lesions"},
    {"experiment.smote_k", MP_CFG_INT, "2", 1, 50, NULL, "smote-* variants: neighbours per lesion patch (SPEC §9: k = 2)"},
    {"experiment.groups", MP_CFG_INT, "0", 0, 65536, NULL,
     "rank groups running (variant, split) jobs side by side; 0: the most that divide the ranks evenly, up to the jobs"},
    /* [pipeline] (`mammopatch pipeline`: every stage in order) */
    {"pipeline.out", MP_CFG_STRING, "", 0, 0, NULL,
     "output directory of the pipeline: cohort/, patches.h5, preprocess/, gan/, experiment/ (report), pipeline.json"},
    {"pipeline.cohort", MP_CFG_CHOICE, "dicom", 0, 0, "dicom|synth",
     "dicom: the archive in pipeline.input + pipeline.labels; synth: a synthetic cohort from [synth] into OUT/cohort"},
    {"pipeline.input", MP_CFG_STRING, "", 0, 0, NULL, "the DICOM tree (pipeline.cohort = dicom)"},
    {"pipeline.labels", MP_CFG_STRING, "", 0, 0, NULL, "labels CSV: patient_id, birads[, study_uid] (pipeline.cohort = dicom)"},
    /* [privacy] */
    {"privacy.site_key_file", MP_CFG_STRING, "", 0, 0, NULL,
     "file holding the secret site key for patient pseudonyms (else $MAMMOPATCH_SITE_KEY)"},
    {"privacy.file_names", MP_CFG_CHOICE, "path", 0, 0, "path|pseudonym",
     "how preprocessing's per-file audit (preprocess_files.csv), predict's outputs and their messages name "
     "input files: path (relative to the input; predict: the file name) or pseudonym (F + 20 hex digits keyed by the site key: for "
     "archives whose paths hold patient IDs or dates; `mammopatch pseudonym --file PATH` looks one up: the path under the input, or as given to predict)"},
};

const size_t mp_params_count = sizeof mp_params_schema / sizeof mp_params_schema[0];

mp_config *mp_params_new(void) { return mp_config_new(mp_params_schema, mp_params_count); }

bool mp_params_is_default(const char *key, const cJSON *v) {
  const char *dot = key ? strchr(key, '.') : NULL;
  if (!dot || !v) return false;
  mp_config *d = mp_params_new();
  cJSON *j = mp_config_to_json(d);
  char section[128];
  snprintf(section, sizeof section, "%.*s", (int)(dot - key), key);
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, section), dot + 1);
  bool same = x && cJSON_Compare(x, v, 1);
  cJSON_Delete(j);
  mp_config_free(d);
  return same;
}
