/* mp_extract_lesions against the whole-image pipeline built from the public image
 * operations (threshold of the median, closing, dilation, contours, ellipse fit and
 * coverage, crop) on random views with marks, text blocks and specks placed at
 * vertical gaps around the band cut (2 x pad empty rows): the band windows the
 * extraction works on must give exactly the whole image's patches, ellipses and
 * rejection counts, in the same order. */
#include <math.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_extract.h"
#include "mp_imgops.h"
#include "mp_rng.h"
#include "mp_test.h"

enum { W = 700, H = 1500, BL = 48 };

typedef struct {
  int n, cap;
  int *row, *col;
  mp_ellipse *e;
  uint64_t *sum; /* a checksum of the patch pixels */
} found;

static void keep(void *user, const uint8_t *px, size_t stride, int label, int row, int col, const mp_ellipse *e) {
  found *f = user;
  assert_int_equal(label, 1);
  if (f->n == f->cap) {
    f->cap = f->cap ? 2 * f->cap : 16;
    f->row = mp_realloc(f->row, (size_t)f->cap * sizeof *f->row);
    f->col = mp_realloc(f->col, (size_t)f->cap * sizeof *f->col);
    f->e = mp_realloc(f->e, (size_t)f->cap * sizeof *f->e);
    f->sum = mp_realloc(f->sum, (size_t)f->cap * sizeof *f->sum);
  }
  uint64_t s = 1469598103934665603ULL;
  for (int i = 0; i < BL * BL; i++) s = (s ^ px[(size_t)(i / BL) * stride + (size_t)(i % BL)]) * 1099511628211ULL;
  f->row[f->n] = row;
  f->col[f->n] = col;
  f->e[f->n] = *e;
  f->sum[f->n] = s;
  f->n++;
}

static void found_free(found *f) {
  mp_free(f->row);
  mp_free(f->col);
  mp_free(f->e);
  mp_free(f->sum);
}

/* The whole-image pipeline, step by step (SPEC §3). */
static void reference(const uint8_t *img, const mp_extract_params *p, found *out, mp_lesion_stats *st) {
  size_t n = (size_t)W * H;
  uint8_t *thr = mp_malloc(n), *closed = mp_malloc(n), *mask = mp_malloc(n), *patch = mp_malloc(BL * BL);
  mp_median5_u8(img, closed, W, H);
  mp_threshold_u8(closed, thr, n, p->annot_thresh);
  mp_close_u8(thr, closed, W, H, p->close_radius);
  mp_dilate_u8(thr, mask, W, H, p->dilate_radius, p->dilate_iter);
  mp_contours cs;
  mp_find_contours_external(closed, W, H, &cs);
  for (int i = 0; i < cs.n; i++) {
    st->contours++;
    const mp_point *pts = cs.pts + cs.start[i];
    int np = cs.start[i + 1] - cs.start[i];
    mp_ellipse e;
    if (np < 5) {
      st->too_few_points++;
      continue;
    }
    if (mp_fit_ellipse_points(pts, np, &e) != 0) {
      st->fit_failed++;
      continue;
    }
    if (mp_contour_area(pts, np) < p->min_contour_area) {
      st->small_contour++;
      continue;
    }
    if (M_PI * e.a * e.b < p->min_ellipse_area) {
      st->small_ellipse++;
      continue;
    }
    int samples = p->coverage_samples;
    double perim = M_PI * (3 * (e.a + e.b) - sqrt((3 * e.a + e.b) * (e.a + 3 * e.b)));
    if (samples < perim) samples = (int)ceil(perim);
    if (mp_ellipse_coverage(&e, mask, W, H, samples) < p->min_coverage) {
      st->low_coverage++;
      continue;
    }
    int x0 = (int)lround(e.cx) - BL / 2, y0 = (int)lround(e.cy) - BL / 2;
    if (!mp_crop_u8(img, W, H, x0, y0, BL, patch)) {
      st->outside++;
      continue;
    }
    if (mp_extreme_fraction(patch, BL * BL, p->black, p->white) > p->max_extreme_frac) {
      st->extreme++;
      continue;
    }
    st->kept++;
    keep(out, patch, BL, 1, y0, x0, &e);
  }
  mp_contours_free(&cs);
  mp_free(thr);
  mp_free(closed);
  mp_free(mask);
  mp_free(patch);
}

/* An ellipse outline of thickness ~3 px over the arc [t0, t0 + arc) of its parameter. */
static void draw_arc(uint8_t *img, double cx, double cy, double a, double b, double ang, double t0, double arc) {
  double c = cos(ang), s = sin(ang);
  int steps = (int)(8 * (a + b));
  for (int k = 0; k < steps; k++) {
    double t = t0 + arc * k / steps;
    for (double d = -1.5; d <= 1.5; d += 0.5) {
      double u = (a + d) * cos(t), v = (b + d) * sin(t);
      long x = lround(cx + u * c - v * s), y = lround(cy + u * s + v * c);
      if (x >= 0 && y >= 0 && x < W && y < H) img[(size_t)y * W + (size_t)x] = 255;
    }
  }
}

static void fill_rect(uint8_t *img, int x0, int y0, int w, int h) {
  for (int y = y0; y < y0 + h; y++)
    for (int x = x0; x < x0 + w; x++)
      if (x >= 0 && y >= 0 && x < W && y < H) img[(size_t)y * W + (size_t)x] = 255;
}

/* A view: textured tissue, then features stacked down the image with gaps drawn from
 * around the band cut (pad = 12 here, so cuts at more than 24 empty rows). */
static void make_view(uint8_t *img, uint64_t seed) {
  mp_rng r;
  mp_rng_init(&r, seed, 77, 0);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      img[(size_t)y * W + (size_t)x] = (uint8_t)(90 + 60 * sin(x * 0.013 + y * 0.007) + 25 * mp_rng_uniform_f64(&r));
  int y = (int)(mp_rng_uniform_f64(&r) * 40) - 20; /* the first feature may touch the top border */
  while (y < H) {
    double kind = mp_rng_uniform_f64(&r);
    int h;
    if (kind < 0.45) { /* a mark: full or partial ellipse outline */
      double a = 40 + 90 * mp_rng_uniform_f64(&r), b = 35 + 50 * mp_rng_uniform_f64(&r), ang = M_PI * mp_rng_uniform_f64(&r);
      double arc = mp_rng_uniform_f64(&r) < 0.7 ? 2 * M_PI : 2 * M_PI * (0.6 + 0.35 * mp_rng_uniform_f64(&r));
      double ext = a > b ? a : b;
      double cx = ext + (W - 2 * ext) * mp_rng_uniform_f64(&r);
      if (mp_rng_uniform_f64(&r) < 0.15) cx = W - 0.6 * ext; /* clipped by the right border */
      draw_arc(img, cx, y + ext, a, b, ang, 0, arc);
      h = (int)(2 * ext) + 2;
    } else if (kind < 0.75) { /* text: a row of small blocks */
      int x = (int)(mp_rng_uniform_f64(&r) * 200);
      h = 10 + (int)(mp_rng_uniform_f64(&r) * 20);
      for (int k = 0; k < 8; k++, x += 22) fill_rect(img, x, y, 14, h);
    } else { /* specks */
      h = 4;
      for (int k = 0; k < 5; k++) fill_rect(img, (int)(mp_rng_uniform_f64(&r) * W), y + (int)(mp_rng_uniform_f64(&r) * 3), 2, 2);
    }
    /* the gap below it: anywhere from touching to past the cut, often near the cut
     * (20..30 rows), sometimes large */
    double g = mp_rng_uniform_f64(&r);
    int gap = g < 0.45 ? 2 + (int)(mp_rng_uniform_f64(&r) * 40)
              : g < 0.8 ? 20 + (int)(mp_rng_uniform_f64(&r) * 11) : 60 + (int)(mp_rng_uniform_f64(&r) * 300);
    y += h + gap;
  }
}

/* min_coverage: the SPEC's 0.999 (one missed boundary sample rejects), or 0.6, where an
 * ellipse fitted in one band may count mask pixels of another */
static void bands_equal_whole_image(double min_coverage, int *kept_out) {
  mp_extract_params p = {.blck = BL, .annot_thresh = 250, .close_radius = 5, .dilate_radius = 5, .dilate_iter = 2,
                         .min_contour_area = M_PI * BL * BL / 2, .min_ellipse_area = M_PI * BL * BL / 2,
                         .min_coverage = min_coverage, .max_extreme_frac = 0.5, .black = 20, .white = 235,
                         .coverage_samples = 360};
  uint8_t *img = mp_malloc((size_t)W * H);
  int kept = 0, views_with_bands = 0;
  for (uint64_t seed = 1; seed <= 12; seed++) {
    make_view(img, seed);
    found a = {0}, b = {0};
    mp_lesion_stats sa = {0}, sb = {0};
    reference(img, &p, &a, &sa);
    int k = mp_extract_lesions(img, W, H, &p, keep, &b, &sb);
    assert_int_equal(k, b.n);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(&sa, &sb, sizeof sa);
    for (int i = 0; i < a.n; i++) {
      assert_int_equal(a.row[i], b.row[i]);
      assert_int_equal(a.col[i], b.col[i]);
      assert_memory_equal(&a.e[i], &b.e[i], sizeof a.e[i]);
      assert_true(a.sum[i] == b.sum[i]);
    }
    kept += a.n;
    /* the views must really be cut into several bands for this to test anything */
    uint8_t *thr = mp_malloc((size_t)W * H);
    mp_median5_threshold_u8(img, thr, W, H, p.annot_thresh);
    int *box;
    int nb = mp_row_bands_u8(thr, W, H, 24, &box);
    views_with_bands += nb > 2;
    mp_free(box);
    mp_free(thr);
    found_free(&a);
    found_free(&b);
  }
  /* one more view: tall ellipses drawn as their top and bottom arcs only, ~100 empty
   * rows apart — two bands; the ellipse fitted to either arc is covered by both arcs'
   * masks, ~70% at 0.6 (kept only when coverage reads the other band's mask too) */
  memset(img, 100, (size_t)W * H);
  for (int k = 0; k < 3; k++) {
    double cx = 120 + 230 * k, cy = 250 + 450 * k, a = 170, b = 70, ang = M_PI / 2; /* a vertical */
    draw_arc(img, cx, cy, a, b, ang, M_PI - 1.35, 2.7);  /* t = pi: the top, with this angle */
    draw_arc(img, cx, cy, a, b, ang, -1.35, 2.7);        /* t = 0: the bottom */
  }
  {
    p.min_contour_area = 100; /* an arc's outline encloses little */
    found a = {0}, b = {0};
    mp_lesion_stats sa = {0}, sb = {0};
    reference(img, &p, &a, &sa);
    mp_extract_lesions(img, W, H, &p, keep, &b, &sb);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(&sa, &sb, sizeof sa);
    for (int i = 0; i < a.n; i++) {
      assert_int_equal(a.row[i], b.row[i]);
      assert_memory_equal(&a.e[i], &b.e[i], sizeof a.e[i]);
    }
    print_message("split ellipses, min coverage %.3f: %d of %d contours kept\n", min_coverage, sa.kept, sa.contours);
    if (min_coverage < 0.7) assert_true(a.n >= 3); /* the split ellipses themselves */
    kept += a.n;
    found_free(&a);
    found_free(&b);
  }
  mp_free(img);
  print_message("12 views, min coverage %.3f: %d lesion patches kept, %d views cut into 3+ bands\n", min_coverage, kept,
                views_with_bands);
  assert_true(views_with_bands >= 8);
  *kept_out = kept;
}

static void test_bands_equal_whole_image(void **state) {
  (void)state;
  int strict, loose;
  bands_equal_whole_image(0.999, &strict);
  bands_equal_whole_image(0.6, &loose);
  assert_true(strict >= 6);
  assert_true(loose > strict);
}

/* mp_row_bands_u8 on a small image: bands cut at more than `gap` empty rows. */
static void test_row_bands(void **state) {
  (void)state;
  enum { w = 20, h = 30 };
  uint8_t img[w * h] = {0};
  img[2 * w + 5] = 1;  /* band 1: rows 2..4 */
  img[4 * w + 9] = 1;
  img[8 * w + 1] = 1;  /* 3 empty rows after row 4: gap 3 -> new band with gap 2, same band with gap 3 */
  img[29 * w + 19] = 1;
  int *b;
  int n = mp_row_bands_u8(img, w, h, 2, &b);
  assert_int_equal(n, 3);
  int want[12] = {5, 2, 9, 4, 1, 8, 1, 8, 19, 29, 19, 29};
  assert_memory_equal(b, want, sizeof want);
  mp_free(b);
  n = mp_row_bands_u8(img, w, h, 3, &b);
  assert_int_equal(n, 2);
  int want2[8] = {1, 2, 9, 8, 19, 29, 19, 29};
  assert_memory_equal(b, want2, sizeof want2);
  mp_free(b);
  memset(img, 0, sizeof img);
  assert_int_equal(mp_row_bands_u8(img, w, h, 2, &b), 0);
  mp_free(b);
}

/* mp_largest_region_u8 (predict's picture of the breast): the largest 8-connected region above
 * black with what it encloses; text apart from it and the background are left out. Drawn as rows:
 * '#' tissue (100), '.' dark (10, below black 20), 'T' text (255); want: '1' kept. */
static void test_largest_region(void **state) {
  (void)state;
  static const char *const pic[] = {
      "..........TT.T",
      "..####....T.T.",
      "..#..##.......",
      "..#.#.#.......",  /* a hole: enclosed darkness, kept */
      "..#...#....T..",  /* T here touches nothing */
      "..#####.......",
      ".......#......",  /* diagonal to the region's corner: 8-connected, kept */
      "......#.#.....",  /* a gap only diagonal: the dark pixel between is enclosed, kept */
      ".......#......",
      "..............",
  };
  const int h = 10, w = 14;
  uint8_t img[10 * 14], m[10 * 14];
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) img[y * w + x] = pic[y][x] == '#' ? 100 : pic[y][x] == 'T' ? 255 : 10;
  size_t kept = mp_largest_region_u8(img, w, h, 20, m);
  static const char *const want[] = {
      "..............",
      "..####........",
      "..#####.......",
      "..#####.......",
      "..#####.......",
      "..#####.......",
      ".......#......",
      "......###.....",
      ".......#......",
      "..............",
  };
  size_t n = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      if (m[y * w + x] != (want[y][x] == '#')) fail_msg("pixel (%d, %d): %d", y, x, m[y * w + x]);
      n += m[y * w + x];
    }
  assert_int_equal(kept, n);
  assert_int_equal(kept, 4 + 5 * 4 + 1 + 3 + 1);
  memset(img, 10, sizeof img); /* nothing above black: nothing kept */
  assert_int_equal(mp_largest_region_u8(img, w, h, 20, m), 0);
  for (int i = 0; i < h * w; i++) assert_int_equal(m[i], 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_row_bands), cmocka_unit_test(test_bands_equal_whole_image),
                                     cmocka_unit_test(test_largest_region)};
  return cmocka_run_group_tests_name("extract", tests, NULL, NULL);
}
