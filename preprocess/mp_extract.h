/* mp_extract — the two patch procedures of SPEC §3 on one windowed 8-bit image.
 *
 * Lesions (BI-RADS 0/2 images): median 5x5 -> threshold >= annot_thresh -> closing
 * (disc r) -> outer contours; the thresholded outline dilated (disc r, k times) is the
 * mask; an ellipse is fitted to each contour of >= 5 points; it survives when the
 * contour area and the ellipse area reach their floors and >= min_coverage of the
 * ellipse boundary lies on the mask (this removes ellipses fitted to text); the
 * blck x blck crop at the rounded ellipse centre is taken from the unfiltered image
 * and kept unless it leaves the image or more than max_extreme_frac of it is <= black
 * or >= white (which rejects crops holding the mark itself, or background).
 *
 * Normals (BI-RADS 1 images): black padding to multiples of blck, blocks with more
 * than half their pixels <= black or >= white dropped.
 */
#ifndef MP_EXTRACT_H
#define MP_EXTRACT_H

#include <stdint.h>

#include "mp_config.h"
#include "mp_imgops.h"

typedef struct {
  int blck;                 /* patch size (SPEC BLCK_SIZE, 128) */
  int annot_thresh;         /* 250 */
  int close_radius;         /* 5 */
  int dilate_radius;        /* 5 */
  int dilate_iter;          /* 2 */
  double min_contour_area;  /* px^2; SPEC: the circumscribed circle of the crop, pi*blck^2/2 */
  double min_ellipse_area;  /* px^2; same floor */
  double min_coverage;      /* 0.999 */
  double max_extreme_frac;  /* of a lesion crop */
  int black, white;         /* 20, 235 */
  int coverage_samples;     /* boundary samples for the coverage (>= 360) */
} mp_extract_params;

/* From the [preprocess] keys; areas given as 0 mean the SPEC floor for the patch size. */
void mp_extract_params_from_config(mp_extract_params *p, const mp_config *cfg);

/* Why each fitted contour ended where it did. */
typedef struct {
  int contours, too_few_points, fit_failed, small_contour, small_ellipse, low_coverage, outside, extreme, kept;
} mp_lesion_stats;

/* A kept patch: pixels (blck x blck, rows `stride` bytes apart: a whole normal block is
 * handed over in place in the image), origin (top-left row, col), ellipse (lesions
 * only, else NULL). */
typedef void (*mp_patch_fn)(void *user, const uint8_t *pixels, size_t stride, int label, int row, int col,
                            const mp_ellipse *e);

/* Returns the number of lesion patches kept; st accumulates (may be NULL). */
int mp_extract_lesions(const uint8_t *img, int W, int H, const mp_extract_params *p, mp_patch_fn fn, void *user,
                       mp_lesion_stats *st);
/* Returns the number of normal patches kept. */
int mp_extract_normals(const uint8_t *img, int W, int H, const mp_extract_params *p, mp_patch_fn fn, void *user);

#endif
