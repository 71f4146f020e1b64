/* Tests of the synthetic cohort's building blocks: the 1/f^3 texture really has a
 * power-law spectrum of slope -3, the font draws what it says, a view renders
 * deterministically from its RNG key with marks only where lesions are annotated,
 * tissue stays below the annotation threshold, and the clean-crop truth agrees with
 * the pixels. */
#include <math.h>

#include "mp_alloc.h"
#include "mp_synth.h"
#include "mp_test.h"

static void test_powerlaw_slope(void **state) {
  (void)state;
  const int n = 256;
  float *a = mp_malloc(sizeof(float) * n * n), *b = mp_malloc(sizeof(float) * n * n);
  mp_rng r;
  mp_rng_init(&r, 1, MP_RNG_TEST, 0);
  mp_synth_powerlaw(a, b, n, 3.0, &r);
  double sa = mp_synth_spectral_slope(a, n, 4, 100), sb = mp_synth_spectral_slope(b, n, 4, 100);
  assert_true(fabs(sa + 3.0) < 0.25);
  assert_true(fabs(sb + 3.0) < 0.25);
  /* unit variance, zero mean, and the two fields are not the same */
  double m = 0, v = 0, c = 0;
  for (int i = 0; i < n * n; i++) {
    m += a[i];
    v += (double)a[i] * a[i];
    c += (double)a[i] * b[i];
  }
  assert_true(fabs(m / (n * n)) < 1e-3);
  assert_true(fabs(v / (n * n) - 1.0) < 1e-3);
  assert_true(fabs(c / (n * n)) < 0.3);
  /* another beta, another slope: the check can tell them apart */
  mp_synth_powerlaw(a, NULL, n, 2.0, &r);
  assert_true(fabs(mp_synth_spectral_slope(a, n, 4, 100) + 2.0) < 0.25);
  mp_free(a);
  mp_free(b);
}

static void test_font(void **state) {
  (void)state;
  int w, h;
  mp_font_extent("L CC", 3, &w, &h);
  assert_int_equal(w, (6 * 4 - 1) * 3);
  assert_int_equal(h, 21);
  float img[40 * 20] = {0};
  uint8_t mask[40 * 20] = {0};
  /* "L": the left column (7 px) and the bottom row (5 px) share one pixel: 11 */
  assert_int_equal(mp_font_draw(img, mask, 40, 20, 1, 1, 1, "L", 9.0f), 11);
  assert_true(img[1 * 40 + 1] == 9.0f && img[7 * 40 + 5] == 9.0f && img[1 * 40 + 2] == 0.0f);
  assert_int_equal(mask[7 * 40 + 5], 1);
  /* clipped at the border without writing outside */
  assert_true(mp_font_draw(img, NULL, 40, 20, 38, 15, 2, "W", 1.0f) < 35);
}

static void view_init(mp_synth_view *v, uint64_t index, int nles, bool annotated, bool big) {
  memset(v, 0, sizeof *v);
  v->width = 640;
  v->height = 800;
  v->laterality = index % 2 ? 'R' : 'L';
  v->view = "CC";
  v->density = 0.5;
  v->seed = 99;
  v->index = index;
  v->black = 20;
  v->white = 235;
  v->nlesions = nles;
  for (int k = 0; k < nles; k++) {
    v->les[k].type = k ? MP_LES_CALC : MP_LES_SPICULATED;
    v->les[k].annotated = annotated;
    v->les[k].big_mark = big;
  }
}

static void test_render_deterministic(void **state) {
  (void)state;
  size_t n = 640 * 800;
  uint16_t *a = mp_malloc(n * 2), *b = mp_malloc(n * 2);
  mp_synth_view v;
  view_init(&v, 4, 1, true, true);
  mp_synth_render(&v, a);
  double cx = v.les[0].cx;
  view_init(&v, 4, 1, true, true);
  mp_synth_render(&v, b);
  assert_memory_equal(a, b, n * 2);
  assert_true(v.les[0].cx == cx);
  view_init(&v, 6, 1, true, true);
  mp_synth_render(&v, b);
  assert_memory_not_equal(a, b, n * 2);
  mp_free(a);
  mp_free(b);
}

/* Count pixels at the mark value. */
static size_t marks(const uint16_t *p, size_t n) {
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(p[i] <= 4095);
    if (p[i] == 4095) m++;
    else assert_true(p[i] <= (uint16_t)MP_SYNTH_TISSUE_MAX); /* tissue never reaches the marks */
  }
  return m;
}

static void test_marks_and_crops(void **state) {
  (void)state;
  size_t n = 640 * 800;
  uint16_t *p = mp_malloc(n * 2);
  mp_synth_view v;
  /* no lesion: the only burned-in pixels are the view marker */
  view_init(&v, 10, 0, false, false);
  mp_synth_render(&v, p);
  size_t base = marks(p, n);
  assert_true(base > 50);
  /* unannotated lesion: no more mark pixels */
  view_init(&v, 10, 1, false, false);
  mp_synth_render(&v, p);
  assert_true(v.les[0].placed);
  assert_int_equal(marks(p, n), base);
  assert_false(v.les[0].clean_crop);
  /* big marks: an outline of ~2*pi*sqrt((a^2+b^2)/2)*3 pixels, and the crop is clean */
  int clean = 0, tried = 0;
  for (uint64_t idx = 20; idx < 30; idx++) {
    view_init(&v, idx, 1, true, true);
    mp_synth_render(&v, p);
    if (!v.les[0].placed) continue;
    tried++;
    const mp_synth_lesion *l = &v.les[0];
    assert_true(l->ea >= l->eb && l->eb >= 96);
    /* every pixel on the ellipse (sampled) is at the mark value */
    for (int k = 0; k < 360; k++) {
      double t = k * M_PI / 180, u = l->ea * cos(t), w = l->eb * sin(t);
      long x = lround(l->ex + u * cos(l->eangle) - w * sin(l->eangle));
      long y = lround(l->ey + u * sin(l->eangle) + w * cos(l->eangle));
      assert_int_equal(p[y * 640 + x], 4095);
    }
    /* clean_crop agrees with the pixels of the crop */
    long cx = lround(l->ex), cy = lround(l->ey);
    int any = 0;
    for (long y = cy - 64; y < cy + 64; y++)
      for (long x = cx - 64; x < cx + 64; x++) any |= p[y * 640 + x] == 4095;
    assert_int_equal(l->clean_crop, !any);
    clean += l->clean_crop;
  }
  assert_true(tried >= 5);
  assert_true(clean >= tried - 1);
  /* small marks: the crop always contains the mark */
  for (uint64_t idx = 40; idx < 46; idx++) {
    view_init(&v, idx, 1, true, false);
    mp_synth_render(&v, p);
    if (v.les[0].placed) {
      assert_true(v.les[0].ea <= 84.0 + 1e-9);
      assert_false(v.les[0].clean_crop);
    }
  }
  mp_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_powerlaw_slope),
      cmocka_unit_test(test_font),
      cmocka_unit_test(test_render_deterministic),
      cmocka_unit_test(test_marks_and_crops),
  };
  return cmocka_run_group_tests_name("synth", tests, NULL, NULL);
}
