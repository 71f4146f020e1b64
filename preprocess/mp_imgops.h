/* mp_imgops — the image operations of patch extraction (SPEC §3), each a plain C
 * function held to OpenCV by tests/preprocess/check_imageops.py:
 *
 *   median 5x5 (cv2.medianBlur)        threshold (>= T)
 *   disc kernel (cv2 MORPH_ELLIPSE)    dilate / erode / close (cv2.dilate, erode, morphologyEx)
 *   outer contours (cv2.findContours RETR_EXTERNAL, CHAIN_APPROX_NONE; Suzuki-Abe 1985)
 *   contour area (cv2.contourArea)     ellipse fit (Fitzgibbon 1999 direct least squares,
 *                                      cv2.fitEllipseDirect; LAPACKE for the eigenproblem)
 *   ellipse-boundary coverage          centre crop, extreme-pixel fraction, normal tiling
 *
 * Images are 8-bit, row-major, width W, height H.  Binary images hold 0 and 255 (any
 * non-zero input pixel counts as set).
 */
#ifndef MP_IMGOPS_H
#define MP_IMGOPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 5x5 median with replicated borders, exactly cv2.medianBlur(img, 5).  Histogram method
 * (Huang): one 256-bin histogram slides along each row, the median pointer moves
 * incrementally. */
void mp_median5_u8(const uint8_t *in, uint8_t *out, int W, int H);

/* out = 255 where in >= t, else 0 (n pixels; in == out allowed). */
void mp_threshold_u8(const uint8_t *in, uint8_t *out, size_t n, int t);

/* threshold(median5(in), t) computed directly: the 5x5 median is >= t exactly when at
 * least 13 of the 25 window pixels are >= t, so a box count of (in >= t) replaces the
 * median (replicated borders as above).  Equal to mp_median5_u8 then mp_threshold_u8
 * (tested), several times faster; the pipeline uses it because it only needs the
 * thresholded median. */
void mp_median5_threshold_u8(const uint8_t *in, uint8_t *out, int W, int H, int t);

/* Half-widths of the rows of the disc structuring element of radius r, as
 * cv2.getStructuringElement(MORPH_ELLIPSE, (2r+1, 2r+1)): hw[dy + r] for dy in [-r, r];
 * -1 marks an empty row. */
void mp_disc_rows(int r, int *hw);

/* Binary dilation/erosion with the disc of radius r, `iter` times, with OpenCV's
 * default borders (outside the image counts as unset for dilation, as set for
 * erosion).  in == out allowed. */
void mp_dilate_u8(const uint8_t *in, uint8_t *out, int W, int H, int r, int iter);
void mp_erode_u8(const uint8_t *in, uint8_t *out, int W, int H, int r, int iter);
/* Closing: dilate then erode, once each (cv2.morphologyEx MORPH_CLOSE). */
void mp_close_u8(const uint8_t *in, uint8_t *out, int W, int H, int r);

typedef struct {
  int x, y;
} mp_point;

typedef struct {
  int n;        /* contours */
  int *start;   /* start[i]..start[i+1]-1 index pts; start has n+1 entries */
  mp_point *pts;
} mp_contours;

/* Outer borders of the 8-connected components of the set pixels that are not inside
 * a hole of another component (RETR_EXTERNAL), every border pixel in order
 * (CHAIN_APPROX_NONE), in raster order of their starting pixel.  Free with
 * mp_contours_free. */
void mp_find_contours_external(const uint8_t *bin, int W, int H, mp_contours *out);
void mp_contours_free(mp_contours *c);

/* |shoelace area| of a closed polygon (cv2.contourArea). */
double mp_contour_area(const mp_point *p, int n);

typedef struct {
  double cx, cy; /* centre */
  double a, b;   /* semi-axes, a >= b */
  double angle;  /* direction of the a axis, radians in [0, pi), from +x towards +y */
} mp_ellipse;

/* Fitzgibbon's direct least-squares ellipse through n points (x[i], y[i]), in the
 * numerically stable form of Halir & Flusser (1998), on points centred and scaled
 * first.  Returns 0, or -1 when n < 5 or the points admit no ellipse. */
int mp_fit_ellipse(const double *x, const double *y, int n, mp_ellipse *e);
/* The same for contour points. */
int mp_fit_ellipse_points(const mp_point *p, int n, mp_ellipse *e);

/* Fraction of `samples` points evenly spaced in angle on the ellipse boundary that
 * fall (rounded to the nearest pixel) on a set pixel of mask; points outside the
 * image count as not covered. */
double mp_ellipse_coverage(const mp_ellipse *e, const uint8_t *mask, int W, int H, int samples);
/* The same with the mask given on a window of the image: mask is mw x mh and covers image
 * columns mx.. and rows my..; the image is zero outside it (samples there miss). */
double mp_ellipse_coverage_window(const mp_ellipse *e, const uint8_t *mask, int mx, int my, int mw, int mh,
                                  int samples);
/* A window of an image: w x h pixels at column x, row y (pixels row-major). */
typedef struct {
  const uint8_t *pix;
  int x, y, w, h;
} mp_window_u8;
/* The same with the mask given on n windows with disjoint rows, sorted by row; the
 * image is zero outside them. */
double mp_ellipse_coverage_windows(const mp_ellipse *e, const mp_window_u8 *win, int n, int samples);
/* The bounding box of the nonzero pixels (inclusive); false when there is none. */
bool mp_bbox_u8(const uint8_t *in, int W, int H, int *x0, int *y0, int *x1, int *y1);
/* The bounding boxes (x0, y0, x1, y1 inclusive) of the nonzero pixels in bands of rows:
 * a band ends where more than `gap` rows without a nonzero pixel follow.  Returns the
 * number of bands (top to bottom) in *boxes (4 ints each; free with mp_free). */
int mp_row_bands_u8(const uint8_t *in, int W, int H, int gap, int **boxes);

/* The breast of a windowed view, for pictures of it: mask[i] = 1 on the largest 8-connected
 * region of pixels > black and on every pixel it encloses (not 4-connected to the image's
 * border around it: dark tissue, a hole), 0 elsewhere: the background and whatever lies apart
 * from the breast in it, such as burned-in text, markers or a patient's name.  Returns the
 * number of pixels set (0 for an image with no pixel > black). */
size_t mp_largest_region_u8(const uint8_t *img, int W, int H, int black, uint8_t *mask);

/* Copy the size x size square with top-left (x0, y0).  Returns false (and copies
 * nothing) when it leaves the image. */
bool mp_crop_u8(const uint8_t *img, int W, int H, int x0, int y0, int size, uint8_t *out);

/* Fraction of n pixels that are <= black or >= white. */
double mp_extreme_fraction(const uint8_t *p, size_t n, int black, int white);

/* Normal tiling (SPEC §3): the image padded with black to multiples of `size`, cut
 * into size x size blocks (skimage view_as_blocks); a block is kept when at most half
 * its pixels are <= black or >= white.  Calls keep(user, block pixels, stride, row,
 * col) for each kept block in raster order — a whole block in place in img (stride W),
 * one at the right or bottom edge padded in scratch (stride size, size*size bytes);
 * returns the number kept. */
int mp_tile_normals(const uint8_t *img, int W, int H, int size, int black, int white, uint8_t *scratch,
                    void (*keep)(void *user, const uint8_t *block, size_t stride, int row, int col), void *user);

/* Scratch buffers reused from image to image (allocate once, grow when an image is
 * larger): a full-field image is 13.6 Mpx, and fresh buffers per image cost more in
 * page faults than the operations themselves.  One set per process: the operations
 * are not thread-safe.  Slots are private to their users (see MP_SCRATCH_*). */
enum {
  MP_SCRATCH_MORPH_TMP, MP_SCRATCH_RING, MP_SCRATCH_EXTENTS, MP_SCRATCH_LABELS, MP_SCRATCH_THR,
  MP_SCRATCH_CLOSED, MP_SCRATCH_MASK, MP_SCRATCH_IMAGE, MP_SCRATCH_WINDOW, MP_SCRATCH_BAND, MP_SCRATCH_NSLOTS
};
void *mp_imgops_scratch(int slot, size_t bytes);
/* Release them all (end of a stage). */
void mp_imgops_scratch_free(void);

#endif
