/* mp_render — one synthetic mammographic view.
 *
 * Anatomy is computed in the "left" frame (chest wall at x = 0) and mirrored for right
 * breasts, so R images have the chest wall on the right as displayed mammograms do:
 *   - breast outline: a half-ellipse from the chest wall whose radius is modulated by a
 *     few low harmonics; compressed thickness falls off in a band inside the skin, and
 *     the skin line is a thin brighter rim;
 *   - pectoral muscle in MLO (and ML) views: the triangle in the upper chest-wall corner;
 *   - fibroglandular tissue: a thresholded 1/f^3 field, denser towards the centre of
 *     the breast, scaled by the patient's density;
 *   - background near zero; quantum noise everywhere;
 *   - lesions: masses (round, oval, irregular, spiculated) and calcification clusters;
 *   - burned-in marks (value 4095): the radiologist's ellipse outline around annotated
 *     lesions with a note beside it, and the laterality/view marker in a top corner.
 * Units are 12-bit detector values (MONOCHROME2: bright = attenuating).  Tissue is
 * clamped to MP_SYNTH_TISSUE_MAX so only burned-in pixels reach the top of the window.
 *
 * Shapes (row-major): img/mask H x W; texture fields G x G with G a power of two
 * covering max(W, H)/8, upsampled bilinearly. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_synth.h"

#define NHARM 4

const char *mp_lesion_type_name(mp_lesion_type t) {
  static const char *n[] = {"round", "oval", "irregular", "spiculated", "calcification"};
  return n[t];
}

typedef struct {
  int W, H;
  bool right, mlo;
  double cy, D, Hh;         /* breast half-ellipse: centre (0, cy), depth, half-height */
  double harm_a[NHARM], harm_p[NHARM];
  double pect_x, pect_y;    /* pectoral triangle: x/pect_x + y/pect_y < 1 (left frame) */
  double fat, gland, dens_bias;
  double *rtab; /* boundary radius sampled at RTAB+1 angles over [-pi, pi] */
} geom;

#define RTAB 4096

static double unif(mp_rng *r, double a, double b) { return a + (b - a) * mp_rng_uniform_f64(r); }

/* Boundary radius of the breast at angle th (left frame), exact. */
static double boundary_exact(const geom *g, double th) {
  double c = cos(th) / g->D, s = sin(th) / g->Hh;
  double r = 1.0 / sqrt(c * c + s * s);
  double m = 1.0;
  for (int k = 0; k < NHARM; k++) m += g->harm_a[k] * cos((k + 2) * th + g->harm_p[k]);
  return r * m;
}

/* The same from the table (linear interpolation; the per-pixel hot path). */
static double boundary(const geom *g, double th) {
  double u = (th + M_PI) * (RTAB / (2 * M_PI));
  int i = (int)u;
  if (i < 0) i = 0;
  if (i >= RTAB) i = RTAB - 1;
  double f = u - i;
  return g->rtab[i] * (1 - f) + g->rtab[i + 1] * f;
}

static bool in_pectoral(const geom *g, double xl, double y) {
  return g->mlo && xl / g->pect_x + y / g->pect_y < 1.0;
}

static double smoothstep(double e0, double e1, double x) {
  double t = (x - e0) / (e1 - e0);
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  return t * t * (3 - 2 * t);
}

/* Bilinear sample of a periodic G x G field (G a power of two), `scale` pixels per
 * field cell. */
static float sample(const float *f, int G, double scale, double x, double y) {
  double u = x / scale, v = y / scale;
  int i0 = (int)floor(v), j0 = (int)floor(u);
  double fu = u - j0, fv = v - i0;
  int m = G - 1;
  int i1 = (i0 + 1) & m, j1 = (j0 + 1) & m;
  i0 &= m;
  j0 &= m;
  double a = f[i0 * G + j0] * (1 - fu) + f[i0 * G + j1] * fu;
  double b = f[i1 * G + j0] * (1 - fu) + f[i1 * G + j1] * fu;
  return (float)(a * (1 - fv) + b * fv);
}

/* ---- lesions ---------------------------------------------------------------------- */

/* Add a mass centred at (cx, cy) of radius R (final frame). */
static void draw_mass(float *img, int W, int H, mp_synth_lesion *l, mp_rng *r) {
  double R = l->size, amp = unif(r, 380, 650);
  double aspect = l->type == MP_LES_OVAL ? unif(r, 0.5, 0.75) : 1.0;
  double rot = unif(r, 0, M_PI);
  double ha[5], hp[5];
  double rough = l->type == MP_LES_IRREGULAR ? 0.22 : l->type == MP_LES_SPICULATED ? 0.08 : 0.03;
  for (int k = 0; k < 5; k++) {
    ha[k] = unif(r, -rough, rough) / (k + 1);
    hp[k] = unif(r, 0, 2 * M_PI);
  }
  int nsp = l->type == MP_LES_SPICULATED ? 10 + (int)mp_rng_below(r, 12) : 0;
  double sp_ang[24], sp_len[24];
  for (int k = 0; k < nsp; k++) {
    sp_ang[k] = unif(r, 0, 2 * M_PI);
    sp_len[k] = R * unif(r, 1.6, 3.2);
  }
  double ext = nsp ? 3.3 * R : 1.5 * R;
  int x0 = (int)floor(l->cx - ext), x1 = (int)ceil(l->cx + ext);
  int y0 = (int)floor(l->cy - ext), y1 = (int)ceil(l->cy + ext);
  for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < H; y++)
    for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < W; x++) {
      double dx = x - l->cx, dy = y - l->cy;
      double u = dx * cos(rot) + dy * sin(rot), v = (-dx * sin(rot) + dy * cos(rot)) / aspect;
      double d = sqrt(u * u + v * v), th = atan2(v, u);
      double rr = R;
      for (int k = 0; k < 5; k++) rr *= 1.0 + ha[k] * cos((k + 2) * th + hp[k]);
      double add = 0;
      if (d < rr * 1.15) { /* dome with a soft 15% edge */
        double q = d / rr;
        add = amp * (q < 1 ? sqrt(1 - 0.6 * q * q) : sqrt(0.4) * (1.15 - q) / 0.15);
      }
      for (int k = 0; k < nsp; k++) { /* spicules: thin lines fading outwards */
        double ca = cos(sp_ang[k]), sa = sin(sp_ang[k]);
        double along = dx * ca + dy * sa, across = fabs(-dx * sa + dy * ca);
        if (along > 0.6 * R && along < sp_len[k] && across < 2.0) {
          double s = amp * 0.45 * (1 - along / sp_len[k]) * (1 - across / 2.0);
          if (s > add) add = s;
        }
      }
      img[(size_t)y * W + x] += (float)add;
    }
}

/* A cluster of 6-25 microcalcifications within radius R. */
static void draw_calcs(float *img, int W, int H, mp_synth_lesion *l, mp_rng *r) {
  int n = 6 + (int)mp_rng_below(r, 20);
  for (int k = 0; k < n; k++) {
    double a = unif(r, 0, 2 * M_PI), d = l->size * sqrt(mp_rng_uniform_f64(r));
    double px = l->cx + d * cos(a), py = l->cy + d * sin(a), pr = unif(r, 0.7, 2.0), amp = unif(r, 1400, 2100);
    for (int y = (int)floor(py - pr - 1); y <= (int)ceil(py + pr + 1); y++)
      for (int x = (int)floor(px - pr - 1); x <= (int)ceil(px + pr + 1); x++) {
        if (x < 0 || y < 0 || x >= W || y >= H) continue;
        double q = hypot(x - px, y - py) / pr;
        if (q < 1.3) img[(size_t)y * W + x] += (float)(amp * (q < 1 ? 1.0 : (1.3 - q) / 0.3));
      }
  }
}

/* The radiologist's mark: an ellipse outline 3 px wide at the mark value.  The
 * distance to the ellipse is approximated by |F - 1| / |grad F| with
 * F = (u/a)^2 + (v/b)^2 in the ellipse's own axes. */
static void draw_ellipse(float *img, uint8_t *mask, int W, int H, const mp_synth_lesion *l) {
  double ext = l->ea + 3;
  double c = cos(l->eangle), s = sin(l->eangle);
  for (int y = (int)floor(l->ey - ext); y <= (int)ceil(l->ey + ext); y++)
    for (int x = (int)floor(l->ex - ext); x <= (int)ceil(l->ex + ext); x++) {
      if (x < 0 || y < 0 || x >= W || y >= H) continue;
      double dx = x - l->ex, dy = y - l->ey;
      double u = dx * c + dy * s, v = -dx * s + dy * c;
      double F = u * u / (l->ea * l->ea) + v * v / (l->eb * l->eb);
      double gu = 2 * u / (l->ea * l->ea), gv = 2 * v / (l->eb * l->eb);
      double gn = sqrt(gu * gu + gv * gv);
      if (gn > 0 && fabs(F - 1) / gn <= 1.5) {
        img[(size_t)y * W + x] = MP_SYNTH_MARK_VALUE;
        mask[(size_t)y * W + x] = 1;
      }
    }
}

/* Choose lesion size, position and (if annotated) the mark.  Returns false when no
 * room is found in 200 tries.  Positions in the final frame. */
static bool place(const geom *g, mp_synth_lesion *l, const mp_synth_lesion *others, int nothers, mp_rng *r) {
  l->size = l->type == MP_LES_CALC ? unif(r, 14, 40) : unif(r, 12, 45);
  for (int attempt = 0; attempt < 200; attempt++) {
    double th = unif(r, -1.0, 1.0), rr = unif(r, 0.15, 0.72);
    double xl = rr * boundary(g, th) * cos(th), y = g->cy + rr * boundary(g, th) * sin(th);
    if (y < 0 || y >= g->H || xl >= g->W) continue;
    if (in_pectoral(g, xl, y) || in_pectoral(g, xl - l->size, y - l->size)) continue;
    double x = g->right ? g->W - 1 - xl : xl;
    l->cx = x;
    l->cy = y;
    if (l->annotated) {
      double lo = l->big_mark ? 98 : 36, hi = l->big_mark ? 150 : 84;
      l->ea = unif(r, lo, hi);
      l->eb = unif(r, l->big_mark ? 96 : fmax(l->size * 1.2, 30), l->ea);
      if (l->eb < l->size * 1.15) l->eb = fmin(l->ea, l->size * 1.15);
      l->eangle = unif(r, 0, M_PI);
      l->ex = x + unif(r, -6, 6);
      l->ey = y + unif(r, -6, 6);
      /* the whole outline (and a margin for the note) inside the image */
      if (l->ex - l->ea < 4 || l->ex + l->ea > g->W - 5 || l->ey - l->ea < 4 || l->ey + l->ea > g->H - 5) continue;
    } else {
      l->ex = x;
      l->ey = y;
      l->ea = l->eb = 0;
    }
    /* keep lesions (and their marks) apart */
    bool clash = false;
    for (int k = 0; k < nothers; k++) {
      if (!others[k].placed) continue;
      double reach_a = fmax(l->ea, l->size * 3.5) + 40, reach_b = fmax(others[k].ea, others[k].size * 3.5) + 40;
      if (hypot(l->ex - others[k].ex, l->ey - others[k].ey) < reach_a + reach_b) clash = true;
    }
    if (clash) continue;
    return true;
  }
  return false;
}

void mp_synth_render(mp_synth_view *v, uint16_t *pixels) {
  const int W = v->width, H = v->height;
  const size_t npix = (size_t)W * (size_t)H;
  mp_rng r;
  mp_rng_init(&r, v->seed, MP_RNG_SYNTH_PIXELS, v->index);

  geom g;
  memset(&g, 0, sizeof g);
  g.W = W;
  g.H = H;
  g.right = v->laterality == 'R';
  g.mlo = strcmp(v->view, "MLO") == 0 || strcmp(v->view, "ML") == 0;
  if (g.mlo) {
    g.cy = H * unif(&r, 0.52, 0.58);
    g.D = W * unif(&r, 0.60, 0.80);
    g.Hh = H * unif(&r, 0.44, 0.49);
    g.pect_y = H * unif(&r, 0.35, 0.60);
    g.pect_x = W * unif(&r, 0.22, 0.38);
  } else {
    g.cy = H * unif(&r, 0.47, 0.53);
    g.D = W * unif(&r, 0.62, 0.82);
    g.Hh = H * unif(&r, 0.36, 0.44);
    g.pect_x = g.pect_y = 1;
  }
  for (int k = 0; k < NHARM; k++) {
    g.harm_a[k] = unif(&r, -0.03, 0.03);
    g.harm_p[k] = unif(&r, 0, 2 * M_PI);
  }
  g.rtab = mp_malloc((RTAB + 1) * sizeof *g.rtab);
  for (int i = 0; i <= RTAB; i++) g.rtab[i] = boundary_exact(&g, -M_PI + 2 * M_PI * i / RTAB);
  g.fat = unif(&r, 850, 1150);
  g.gland = unif(&r, 900, 1300);
  g.dens_bias = -0.9 + 1.6 * v->density;

  /* texture fields: G x G covering max(W, H) */
  int G = 16;
  while (G < (W > H ? W : H) / 8 && G < 1024) G <<= 1;
  double tscale = (double)(W > H ? W : H) / G;
  float *tex = mp_malloc((size_t)G * G * sizeof *tex), *tex2 = mp_malloc((size_t)G * G * sizeof *tex2);
  mp_synth_powerlaw(tex, tex2, G, 3.0, &r);

  float *img = mp_malloc(npix * sizeof *img);
  uint8_t *mask = mp_calloc(npix, 1);
  const double skin_px = 3.0, fall = 0.14;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      double xl = g.right ? W - 1 - x : x;
      double dy = y - g.cy, r_edge = boundary(&g, atan2(dy, xl));
      double rho = sqrt(xl * xl + dy * dy) / r_edge;
      double val = 40.0;
      if (rho < 1.0) {
        double t = smoothstep(0.0, fall, 1.0 - rho); /* compressed thickness */
        double tx = sample(tex, G, tscale, xl, y);
        double fine = sample(tex2, G, tscale / 6.0, xl, y); /* finer trabecular detail */
        double dens = smoothstep(-1.2, 1.6, 0.9 * tx + g.dens_bias - 2.0 * fabs(rho - 0.45));
        val += t * (g.fat + g.gland * dens * (0.85 + 0.15 * fine) + 35.0 * fine);
        double dpx = (1.0 - rho) * r_edge; /* skin rim: the last few pixels */
        if (dpx < skin_px) val += 220.0 * (1.0 - dpx / skin_px);
        if (in_pectoral(&g, xl, y)) {
          double edge = smoothstep(0.0, 0.06, 1.0 - (xl / g.pect_x + y / g.pect_y));
          double muscle = 1950 + 260 * sample(tex2, G, tscale, xl, y);
          val = val * (1 - edge) + muscle * edge;
        }
      }
      img[(size_t)y * W + x] = (float)val;
    }

  /* lesions */
  for (int k = 0; k < v->nlesions; k++) {
    mp_synth_lesion *l = &v->les[k];
    l->placed = place(&g, l, v->les, k, &r);
    if (!l->placed) continue;
    if (l->type == MP_LES_CALC)
      draw_calcs(img, W, H, l, &r);
    else
      draw_mass(img, W, H, l, &r);
  }

  /* quantum noise (sum of four uniforms, variance matched to a Gaussian of sd 14),
   * then clamp tissue below the marks */
  for (size_t i = 0; i < npix; i++) {
    double n = (double)mp_rng_uniform(&r) + mp_rng_uniform(&r) + mp_rng_uniform(&r) + mp_rng_uniform(&r) - 2.0;
    double val = img[i] + 14.0 * 1.7320508 * n;
    img[i] = (float)(val < 0 ? 0 : val > MP_SYNTH_TISSUE_MAX ? MP_SYNTH_TISSUE_MAX : val);
  }

  /* burned-in marks: ellipses with a note, and the view marker */
  static const char *notes[] = {"M1", "M2", "CALC", "MASS", "12MM", "B", "1", "2"};
  for (int k = 0; k < v->nlesions; k++) {
    mp_synth_lesion *l = &v->les[k];
    if (!l->placed || !l->annotated) continue;
    draw_ellipse(img, mask, W, H, l);
    const char *note = notes[mp_rng_below(&r, 8)];
    int scale = 2 + (int)mp_rng_below(&r, 2), tw, th;
    mp_font_extent(note, scale, &tw, &th);
    /* 16 px from the outline: beyond what the closing (radius 5, bridging gaps up to
     * ~10 px) joins, so the note stays a separate contour as the truth assumes */
    int tx = (int)(l->ex + l->ea + 16), ty = (int)(l->ey - th / 2.0);
    if (tx + tw >= W) tx = (int)(l->ex - l->ea - 16 - tw);
    mp_font_draw(img, mask, W, H, tx, ty, scale, note, MP_SYNTH_MARK_VALUE);
  }
  char marker[16];
  snprintf(marker, sizeof marker, "%c %s", v->laterality, v->view);
  int ms = W >= 1024 ? W / 256 : 3, mw, mh;
  mp_font_extent(marker, ms, &mw, &mh);
  int mx = g.right ? (int)(0.03 * W) : W - mw - (int)(0.03 * W);
  mp_font_draw(img, mask, W, H, mx, (int)(0.03 * H), ms, marker, MP_SYNTH_MARK_VALUE);

  /* the file's window: covers tissue up to just above MP_SYNTH_TISSUE_MAX */
  v->window_center = unif(&r, 1850, 1950);
  v->window_width = unif(&r, 3600, 3800);
  double lo = v->window_center - v->window_width / 2;

  for (size_t i = 0; i < npix; i++) pixels[i] = (uint16_t)lrintf(img[i]);

  /* truth: is the crop at each mark's centre clean? */
  for (int k = 0; k < v->nlesions; k++) {
    mp_synth_lesion *l = &v->les[k];
    l->clean_crop = false;
    l->crop_extreme_frac = 1.0;
    if (!l->placed || !l->annotated) continue;
    long cx = lround(l->ex), cy = lround(l->ey), half = MP_SYNTH_CROP / 2;
    if (cx - half < 0 || cy - half < 0 || cx + half > W || cy + half > H) continue;
    long marked = 0, extreme = 0;
    for (long y = cy - half; y < cy + half; y++)
      for (long x = cx - half; x < cx + half; x++) {
        size_t i = (size_t)y * W + (size_t)x;
        marked += mask[i];
        double w8 = (pixels[i] - lo) / v->window_width * 255.0;
        extreme += w8 <= v->black || w8 >= v->white;
      }
    l->clean_crop = marked == 0;
    l->crop_extreme_frac = (double)extreme / (double)(MP_SYNTH_CROP * MP_SYNTH_CROP);
  }
  mp_free(g.rtab);
  mp_free(tex);
  mp_free(tex2);
  mp_free(img);
  mp_free(mask);
}
