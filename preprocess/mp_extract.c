/* mp_extract — lesion and normal patches of one image (see mp_extract.h). */
#include "mp_extract.h"

#include <math.h>
#include <string.h>

#include "mp_alloc.h"

void mp_extract_params_from_config(mp_extract_params *p, const mp_config *c) {
  memset(p, 0, sizeof *p);
  p->blck = (int)mp_config_int(c, "preprocess.blck_size");
  p->annot_thresh = (int)mp_config_int(c, "preprocess.annot_thresh");
  p->close_radius = (int)mp_config_int(c, "preprocess.close_radius");
  p->dilate_radius = (int)mp_config_int(c, "preprocess.dilate_radius");
  p->dilate_iter = (int)mp_config_int(c, "preprocess.dilate_iterations");
  double floor_area = M_PI * p->blck * p->blck / 2.0; /* circumscribed circle of the crop */
  p->min_contour_area = mp_config_real(c, "preprocess.min_contour_area");
  p->min_ellipse_area = mp_config_real(c, "preprocess.min_ellipse_area");
  if (p->min_contour_area <= 0) p->min_contour_area = floor_area;
  if (p->min_ellipse_area <= 0) p->min_ellipse_area = floor_area;
  p->min_coverage = mp_config_real(c, "preprocess.min_ellipse_coverage");
  p->max_extreme_frac = mp_config_real(c, "preprocess.max_extreme_frac");
  p->black = (int)mp_config_int(c, "preprocess.black");
  p->white = (int)mp_config_int(c, "preprocess.white");
  p->coverage_samples = (int)mp_config_int(c, "preprocess.coverage_samples");
}

int mp_extract_lesions(const uint8_t *img, int W, int H, const mp_extract_params *p, mp_patch_fn fn, void *user,
                       mp_lesion_stats *st) {
  mp_lesion_stats local = {0};
  size_t n = (size_t)W * H;
  uint8_t *thr = mp_imgops_scratch(MP_SCRATCH_THR, n);
  /* steps 1-2 fused: threshold(median5) == "13 of 25 at or above the threshold" */
  mp_median5_threshold_u8(img, thr, W, H, p->annot_thresh);
  int kept = 0;
  /* Steps 3-5 run on windows around the marks, not on the 13-megapixel view: one per
   * band of rows holding marks, padded by the operations' reach (the closing's dilation
   * reaches r and its erosion must see only in-window pixels around anything set:
   * 2r + 1; the mask's dilation reaches r x iterations).  Bands are cut where more than
   * 2 x pad empty rows separate marks, so no operation reaches from one band into
   * another: every window holds exactly what the whole image holds there, where a
   * window meets the image border the border rules are the image's, a component never
   * spans two bands (nor sits in a hole of another band's), and the bands' contours in
   * band order are the whole image's in raster order.  The cost and the memory follow
   * the marks (typically text at the top and a mark lower down) rather than the view. */
  int pad = 2 * p->close_radius + 2, pd = p->dilate_radius * p->dilate_iter + 2;
  if (pd > pad) pad = pd;
  int *box = NULL;
  const int nb = mp_row_bands_u8(thr, W, H, 2 * pad, &box);
  if (nb > 0) {
    mp_window_u8 *wins = mp_malloc((size_t)nb * sizeof *wins);
    size_t total = 0, most = 0;
    for (int b = 0; b < nb; b++) {
      const int *o = box + 4 * b;
      mp_window_u8 *m = &wins[b];
      m->x = o[0] - pad > 0 ? o[0] - pad : 0;
      m->y = o[1] - pad > 0 ? o[1] - pad : 0;
      m->w = (o[2] + pad < W - 1 ? o[2] + pad : W - 1) - m->x + 1;
      m->h = (o[3] + pad < H - 1 ? o[3] + pad : H - 1) - m->y + 1;
      size_t a = (size_t)m->w * m->h;
      total += a;
      if (a > most) most = a;
    }
    uint8_t *win = mp_imgops_scratch(MP_SCRATCH_WINDOW, most), *closed = mp_imgops_scratch(MP_SCRATCH_CLOSED, most),
            *masks = mp_imgops_scratch(MP_SCRATCH_MASK, total);
    /* every band's mask first (step 4): an ellipse's coverage may sample any band */
    size_t at = 0;
    for (int b = 0; b < nb; b++) {
      mp_window_u8 *m = &wins[b];
      for (int y = 0; y < m->h; y++) memcpy(win + (size_t)y * m->w, thr + (size_t)(m->y + y) * W + m->x, (size_t)m->w);
      mp_dilate_u8(win, masks + at, m->w, m->h, p->dilate_radius, p->dilate_iter);
      m->pix = masks + at;
      at += (size_t)m->w * m->h;
    }
    uint8_t *patch = mp_malloc((size_t)p->blck * p->blck);
    for (int b = 0; b < nb; b++) {
      const mp_window_u8 *m = &wins[b];
      for (int y = 0; y < m->h; y++) memcpy(win + (size_t)y * m->w, thr + (size_t)(m->y + y) * W + m->x, (size_t)m->w);
      mp_close_u8(win, closed, m->w, m->h, p->close_radius);               /* step 3 */
      mp_contours cs;
      mp_find_contours_external(closed, m->w, m->h, &cs);                   /* step 5 */
      for (int i = 0; i < cs.start[cs.n]; i++) cs.pts[i].x += m->x, cs.pts[i].y += m->y; /* image coordinates */
      for (int i = 0; i < cs.n; i++) {
        local.contours++;
        const mp_point *pts = cs.pts + cs.start[i];
        int np = cs.start[i + 1] - cs.start[i];
        mp_ellipse e;
        if (np < 5) {
          local.too_few_points++;
          continue;
        }
        if (mp_fit_ellipse_points(pts, np, &e) != 0) {                      /* step 6 */
          local.fit_failed++;
          continue;
        }
        if (mp_contour_area(pts, np) < p->min_contour_area) {              /* step 7 */
          local.small_contour++;
          continue;
        }
        if (M_PI * e.a * e.b < p->min_ellipse_area) {
          local.small_ellipse++;
          continue;
        }
        int samples = p->coverage_samples;
        double perim = M_PI * (3 * (e.a + e.b) - sqrt((3 * e.a + e.b) * (e.a + 3 * e.b))); /* Ramanujan */
        if (samples < perim) samples = (int)ceil(perim); /* at least one sample per boundary pixel */
        if (mp_ellipse_coverage_windows(&e, wins, nb, samples) < p->min_coverage) { /* step 8 */
          local.low_coverage++;
          continue;
        }
        int half = p->blck / 2;                                             /* step 9 */
        int x0 = (int)lround(e.cx) - half, y0 = (int)lround(e.cy) - half;
        if (!mp_crop_u8(img, W, H, x0, y0, p->blck, patch)) {
          local.outside++;
          continue;
        }
        if (mp_extreme_fraction(patch, (size_t)p->blck * p->blck, p->black, p->white) > p->max_extreme_frac) {
          local.extreme++;
          continue;
        }
        local.kept++;
        kept++;
        fn(user, patch, (size_t)p->blck, 1, y0, x0, &e); /* step 10 */
      }
      mp_contours_free(&cs);
    }
    mp_free(patch);
    mp_free(wins);
  }
  mp_free(box);
  if (st) {
    st->contours += local.contours;
    st->too_few_points += local.too_few_points;
    st->fit_failed += local.fit_failed;
    st->small_contour += local.small_contour;
    st->small_ellipse += local.small_ellipse;
    st->low_coverage += local.low_coverage;
    st->outside += local.outside;
    st->extreme += local.extreme;
    st->kept += local.kept;
  }
  return kept;
}

typedef struct {
  mp_patch_fn fn;
  void *user;
} normal_ctx;

static void normal_keep(void *u, const uint8_t *block, size_t stride, int row, int col) {
  normal_ctx *c = u;
  c->fn(c->user, block, stride, 0, row, col, NULL);
}

int mp_extract_normals(const uint8_t *img, int W, int H, const mp_extract_params *p, mp_patch_fn fn, void *user) {
  uint8_t *scratch = mp_malloc((size_t)p->blck * p->blck);
  normal_ctx c = {fn, user};
  int k = mp_tile_normals(img, W, H, p->blck, p->black, p->white, scratch, normal_keep, &c);
  mp_free(scratch);
  return k;
}
