/* mp_synth — the synthetic mammography cohort (`mammopatch synth`).
 *
 * The real dataset (UPITT) is private; this generator makes a cohort with the same
 * structure so the whole pipeline can run and be tested: real DICOM MG files written
 * through GDCM, plausible anatomy, lesions with and without the radiologist's burned-in
 * ellipse marks, decoys for every preprocessing filter, a hospital-style labels.csv and
 * the truth the preprocessing is held to (truth.csv, truth_lesions.csv).
 *
 * Determinism: everything about patient p comes from the counter-based RNG keyed by
 * (seed, purpose, p or an image number derived from p), never from a rank's position,
 * so `mpiexec -n K` writes the same cohort for every K.  The choice of compression
 * has its own stream: switching compression off changes nothing else (the lossless
 * test compares such a pair pixel for pixel).
 *
 * Pixel values are 12-bit (0..4095) in 16-bit words.  Burned-in marks and text are
 * 4095 (MONOCHROME2 sense); tissue stays at or below MP_SYNTH_TISSUE_MAX so that after
 * the file's own window only marks reach the annotation threshold (SPEC §3: 250/255).
 */
#ifndef MP_SYNTH_H
#define MP_SYNTH_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "mp_config.h"
#include "mp_rng.h"

#define MP_SYNTH_MAX_LESIONS 2
#define MP_SYNTH_MARK_VALUE 4095.0f
#define MP_SYNTH_TISSUE_MAX 3300.0f
#define MP_SYNTH_CROP 128 /* SPEC BLCK_SIZE: the clean-crop test uses it */

typedef struct {
  int patients, width, height;
  uint64_t seed;
  /* BI-RADS mix of labelled exams (the rest is BI-RADS 1) and decoys */
  double birads0_frac, birads2_frac, birads345_frac, unlabeled_frac;
  double male_frac, implant_frac, inverse_lut_frac, nonstandard_view_frac, cad_frac;
  double truncated_frac, garbage_frac, missing_view_frac, two_exam_frac;
  /* encodings */
  double monochrome1_frac, jpegls_frac, j2k_frac;
  /* lesions */
  double annotated_frac, big_mark_frac, calc_frac, second_lesion_frac;
  /* preprocessing's extreme-pixel thresholds on the windowed 8-bit image, used to
   * report each lesion crop's extreme fraction in the truth */
  int black, white;
} mp_synth_params;

/* Read the [synth] keys (and run.seed, preprocess thresholds) of cfg. */
void mp_synth_params_from_config(mp_synth_params *p, const mp_config *cfg);

/* ---- texture ----------------------------------------------------------------------- */
/* Two independent zero-mean, unit-variance n x n fields (n a power of two) whose
 * power spectrum falls as 1/f^beta: the real and imaginary parts of the inverse FFT of
 * random-phase, power-law-amplitude noise.  b may be NULL. */
void mp_synth_powerlaw(float *a, float *b, int n, double beta, mp_rng *r);
/* Radially averaged power spectrum slope of an n x n field between frequencies
 * fmin..fmax (cycles per field): the least-squares slope of log P against log f.
 * Used by the tests to check beta. */
double mp_synth_spectral_slope(const float *f, int n, double fmin, double fmax);

/* ---- burned-in text ---------------------------------------------------------------- */
void mp_font_extent(const char *text, int scale, int *w, int *h);
/* Draw text with its top-left at (x0, y0), each font pixel a scale x scale block of
 * `value`; marks the pixels in mask (if non-NULL).  Returns pixels drawn. */
int mp_font_draw(float *img, uint8_t *mask, int W, int H, int x0, int y0, int scale, const char *text, float value);

/* ---- one view ---------------------------------------------------------------------- */
typedef enum { MP_LES_ROUND, MP_LES_OVAL, MP_LES_IRREGULAR, MP_LES_SPICULATED, MP_LES_CALC } mp_lesion_type;
const char *mp_lesion_type_name(mp_lesion_type t);

typedef struct {
  /* requested */
  mp_lesion_type type;
  bool annotated, big_mark;
  /* produced, in the final image frame (x = column, y = row), pixels */
  bool placed;            /* false when no room was found (then not drawn) */
  double cx, cy, size;    /* lesion centre; mass radius or cluster radius */
  double ex, ey, ea, eb;  /* mark ellipse: centre, semi-axes (ea >= eb) */
  double eangle;          /* angle of the ea axis from +x towards +y, radians */
  bool clean_crop;        /* the 128x128 crop at the ellipse centre is inside the image
                             and holds no burned-in pixel */
  double crop_extreme_frac; /* fraction of the crop <= black or >= white after windowing */
} mp_synth_lesion;

typedef struct {
  int width, height;
  char laterality;        /* 'L' or 'R' (chest wall on the left for L) */
  const char *view;       /* CC, MLO, XCCL, ML */
  double density;         /* 0..1, fibroglandular share */
  uint64_t seed, index;   /* RNG key of this view's pixels */
  int nlesions;
  mp_synth_lesion les[MP_SYNTH_MAX_LESIONS];
  int black, white;
  /* produced */
  double window_center, window_width;
} mp_synth_view;

/* Render view v into pixels (height x width, 12-bit values, MONOCHROME2 sense).
 * Scratch buffers are allocated inside.  Fills the lesions' produced fields and the
 * window. */
void mp_synth_render(mp_synth_view *v, uint16_t *pixels);

/* ---- the cohort --------------------------------------------------------------------- */
typedef struct {
  uint64_t files, images, bytes;
  uint64_t by_outcome_accepted, by_outcome_discarded, by_outcome_failed;
  double seconds, render_seconds, write_seconds;
} mp_synth_stats;

/* Generate this rank's share of the cohort into outdir (created by rank 0), then gather
 * labels.csv, truth.csv, truth_lesions.csv to rank 0.  preview: rank 0 writes
 * outdir/preview.png with up to 8 of its views.  Collective over comm.  Returns 0, or
 * -1 after logging why (the same on every rank).  stats are totals over all ranks. */
int mp_synth_run(MPI_Comm comm, const mp_synth_params *p, const char *outdir, bool preview, mp_synth_stats *stats);

#endif
