/* mp_imgops — image operations of patch extraction (see mp_imgops.h). */
#include "mp_imgops.h"

#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static struct {
  void *p;
  size_t n;
} g_scratch[MP_SCRATCH_NSLOTS];

static size_t f_clean; /* leading bytes of the MP_SCRATCH_LABELS buffer known to be zero */

void *mp_imgops_scratch(int slot, size_t bytes) {
  MP_CHECK(slot >= 0 && slot < MP_SCRATCH_NSLOTS, "scratch slot %d", slot);
  if (g_scratch[slot].n < bytes) {
    mp_free(g_scratch[slot].p);
    g_scratch[slot].p = mp_malloc(bytes);
    g_scratch[slot].n = bytes;
    if (slot == MP_SCRATCH_LABELS) f_clean = 0;
  }
  return g_scratch[slot].p;
}

void mp_imgops_scratch_free(void) {
  for (int i = 0; i < MP_SCRATCH_NSLOTS; i++) {
    mp_free(g_scratch[i].p);
    g_scratch[i].p = NULL;
    g_scratch[i].n = 0;
  }
  f_clean = 0;
}

/* ---- median -------------------------------------------------------------------------- */

void mp_median5_u8(const uint8_t *in, uint8_t *out, int W, int H) {
  int hist[256];
  for (int y = 0; y < H; y++) {
    const uint8_t *rows[5];
    for (int k = 0; k < 5; k++) rows[k] = in + (size_t)clampi(y + k - 2, 0, H - 1) * W;
    memset(hist, 0, sizeof hist);
    for (int dx = -2; dx <= 2; dx++) {
      int c = clampi(dx, 0, W - 1);
      for (int k = 0; k < 5; k++) hist[rows[k][c]]++;
    }
    /* med = smallest value v with count(<= v) >= 13; lt = count(< med) */
    int med = 0, lt = 0;
    while (lt + hist[med] < 13) lt += hist[med++];
    uint8_t *o = out + (size_t)y * W;
    o[0] = (uint8_t)med;
    for (int x = 1; x < W; x++) {
      int cr = clampi(x - 3, 0, W - 1), ca = clampi(x + 2, 0, W - 1);
      for (int k = 0; k < 5; k++) {
        int v = rows[k][cr];
        hist[v]--;
        lt -= v < med;
        v = rows[k][ca];
        hist[v]++;
        lt += v < med;
      }
      while (lt >= 13) lt -= hist[--med];
      while (lt + hist[med] < 13) lt += hist[med++];
      o[x] = (uint8_t)med;
    }
  }
}

void mp_threshold_u8(const uint8_t *in, uint8_t *out, size_t n, int t) {
  for (size_t i = 0; i < n; i++) out[i] = in[i] >= t ? 255 : 0;
}

/* Does the row hold a value >= t?  The maximum of each 128-byte block, a reduction of a
 * fixed length that compilers vectorise (pmaxub: 16-64 bytes a step; an early exit inside
 * the block, as an earlier version had, kept GCC 12 to one byte a step) */
static bool row_has_at_least(const uint8_t *row, int W, int t) {
  enum { BLK = 128 };
  int x = 0;
  for (; x + BLK <= W; x += BLK) {
    uint8_t m = 0;
    for (int k = 0; k < BLK; k++) m = row[x + k] > m ? row[x + k] : m;
    if (m >= t) return true;
  }
  for (; x < W; x++)
    if (row[x] >= t) return true;
  return false;
}

/* The thresholded median at column x near a border: the 5 columns' counts, the edge
 * column replicated */
static uint8_t median_bit_border(const uint8_t *col, int x, int W) {
  int v = 0;
  for (int dx = -2; dx <= 2; dx++) v += col[clampi(x + dx, 0, W - 1)];
  return v >= 13 ? 255 : 0;
}

void mp_median5_threshold_u8(const uint8_t *in, uint8_t *out, int W, int H, int t) {
  /* a median >= t needs 13 of 25 pixels >= t: rows whose 5-row window has none are 0 */
  uint8_t *hot = mp_malloc((size_t)H);
  for (int y = 0; y < H; y++) hot[y] = row_has_at_least(in + (size_t)y * W, W, t);
  uint8_t *col = mp_malloc((size_t)W); /* per column: count of (>= t) in rows y-2..y+2 */
  for (int y = 0; y < H; y++) {
    bool any = false;
    for (int k = -2; k <= 2; k++) any |= hot[clampi(y + k, 0, H - 1)] != 0;
    if (!any) {
      memset(out + (size_t)y * W, 0, (size_t)W);
      continue;
    }
    const uint8_t *rows[5];
    for (int k = 0; k < 5; k++) rows[k] = in + (size_t)clampi(y + k - 2, 0, H - 1) * W;
    for (int x = 0; x < W; x++)
      col[x] = (uint8_t)((rows[0][x] >= t) + (rows[1][x] >= t) + (rows[2][x] >= t) + (rows[3][x] >= t) +
                         (rows[4][x] >= t));
    uint8_t *o = out + (size_t)y * W;
    /* the 5 columns' counts summed directly (at most 25: bytes), so the interior loop
     * [x0, x1) has no carried sum and vectorizes; the two columns at each border (every
     * column when W <= 4) replicate the edge */
    const int x0 = W > 4 ? 2 : W, x1 = W > 4 ? W - 2 : W;
    for (int x = x0; x < x1; x++) {
      const uint8_t v = (uint8_t)(col[x - 2] + col[x - 1] + col[x] + col[x + 1] + col[x + 2]);
      o[x] = v >= 13 ? 255 : 0;
    }
    for (int x = 0; x < x0; x++) o[x] = median_bit_border(col, x, W);
    for (int x = x1; x < W; x++) o[x] = median_bit_border(col, x, W);
  }
  mp_free(col);
  mp_free(hot);
}

/* ---- morphology -------------------------------------------------------------------- */

void mp_disc_rows(int r, int *hw) {
  for (int dy = -r; dy <= r; dy++) /* OpenCV: dx = cvRound(c * sqrt((r^2 - dy^2) / r^2)), c = r */
    hw[dy + r] = r == 0 ? 0 : (int)lrint(r * sqrt((double)(r * r - dy * dy) / (double)(r * r)));
}

/* Column extent of the set pixels of each row (lo = -1 for an empty row).  Empty
 * rows (most of them) are skipped eight bytes at a time. */
static void row_extents(const uint8_t *in, int W, int H, int *lo, int *hi) {
  for (int y = 0; y < H; y++) {
    const uint8_t *row = in + (size_t)y * W;
    int a = 0, b = W - 1;
    for (; a + 8 <= W; a += 8) {
      uint64_t w8;
      memcpy(&w8, row + a, 8);
      if (w8) break;
    }
    while (a < W && !row[a]) a++;
    if (a == W) {
      lo[y] = hi[y] = -1;
      continue;
    }
    while (!row[b]) b--;
    lo[y] = a;
    hi[y] = b;
  }
}

/* One pass.  erode == false: out set when any set pixel of in lies under the disc;
 * erode == true: out set when every in-image pixel under the disc is set.  A row's
 * prefix counts (kept in a ring of 2r+1 rows) make each disc row an O(1) range count,
 * and only the columns that can change are visited: marks are sparse in a mammogram,
 * so the cost follows the marks, not the image. */
static void morph_once(const uint8_t *in, uint8_t *out, int W, int H, int r, bool erode) {
  int K = 2 * r + 1;
  int hw[K];
  mp_disc_rows(r, hw);
  MP_CHECK(W < 65536, "image width %d too large for 16-bit prefix counts", W);
  uint16_t *ring = mp_imgops_scratch(MP_SCRATCH_RING, (size_t)K * (size_t)(W + 1) * sizeof *ring);
  int slot_row[K];
  int *lo = mp_imgops_scratch(MP_SCRATCH_EXTENTS, (size_t)H * 2 * sizeof *lo), *hi = lo + H;
  for (int k = 0; k < K; k++) slot_row[k] = -1;
  row_extents(in, W, H, lo, hi);
  for (int y = 0; y < H; y++) {
    uint8_t *o = out + (size_t)y * W;
    memset(o, 0, (size_t)W);
    int xa = W, xb = -1;
    if (erode) { /* the disc holds its centre: only set pixels can stay set */
      if (lo[y] < 0) continue;
      xa = lo[y];
      xb = hi[y];
    } else {
      for (int dy = -r; dy <= r; dy++) {
        int yy = y + dy;
        if (yy < 0 || yy >= H || lo[yy] < 0 || hw[dy + r] < 0) continue;
        if (lo[yy] - hw[dy + r] < xa) xa = lo[yy] - hw[dy + r];
        if (hi[yy] + hw[dy + r] > xb) xb = hi[yy] + hw[dy + r];
      }
      if (xb < 0) continue;
      if (xa < 0) xa = 0;
      if (xb > W - 1) xb = W - 1;
    }
    /* prefix counts of the non-empty rows under the disc */
    const uint16_t *pref[K];
    for (int dy = -r; dy <= r; dy++) {
      int yy = y + dy;
      pref[dy + r] = NULL;
      if (yy < 0 || yy >= H || lo[yy] < 0) continue;
      int sl = yy % K;
      uint16_t *p = ring + (size_t)sl * (W + 1);
      if (slot_row[sl] != yy) {
        const uint8_t *row = in + (size_t)yy * W;
        p[0] = 0;
        for (int x = 0; x < W; x++) p[x + 1] = (uint16_t)(p[x] + (row[x] != 0));
        slot_row[sl] = yy;
      }
      pref[dy + r] = p;
    }
    for (int x = xa; x <= xb; x++) {
      bool v = erode;
      for (int dy = -r; dy <= r; dy++) {
        int yy = y + dy;
        if (yy < 0 || yy >= H) continue; /* dilate: unset outside; erode: set outside */
        int w = hw[dy + r];
        const uint16_t *p = pref[dy + r];
        if (!p) { /* an empty row */
          if (erode) {
            v = false;
            break;
          }
          continue;
        }
        int x0 = x - w < 0 ? 0 : x - w, x1 = x + w + 1 > W ? W : x + w + 1;
        int cnt = p[x1] - p[x0];
        if (erode) {
          if (cnt != x1 - x0) {
            v = false;
            break;
          }
        } else if (cnt > 0) {
          v = true;
          break;
        }
      }
      o[x] = v ? 255 : 0;
    }
  }
}

/* iter passes, ping-ponging between out and one scratch image so that the last pass
 * lands in out without copies.  in == out is allowed (a pass cannot read and write the
 * same image): then in is copied first and an even count ends with one more copy. */
static void morph(const uint8_t *in, uint8_t *out, int W, int H, int r, int iter, bool erode) {
  size_t n = (size_t)W * H;
  if (iter <= 0) {
    if (out != in) memcpy(out, in, n);
    return;
  }
  uint8_t *tmp = iter > 1 || in == out ? mp_imgops_scratch(MP_SCRATCH_MORPH_TMP, n) : NULL;
  if (in == out) {
    memcpy(tmp, in, n);
    const uint8_t *src = tmp;
    for (int i = 0; i < iter; i++) {
      uint8_t *dst = i % 2 == 0 ? out : tmp;
      morph_once(src, dst, W, H, r, erode);
      src = dst;
    }
    if (src != out) memcpy(out, src, n);
    return;
  }
  const uint8_t *src = in;
  for (int i = 0; i < iter; i++) {
    uint8_t *dst = (iter - 1 - i) % 2 == 0 ? out : tmp;
    morph_once(src, dst, W, H, r, erode);
    src = dst;
  }
}

void mp_dilate_u8(const uint8_t *in, uint8_t *out, int W, int H, int r, int iter) { morph(in, out, W, H, r, iter, false); }
void mp_erode_u8(const uint8_t *in, uint8_t *out, int W, int H, int r, int iter) { morph(in, out, W, H, r, iter, true); }

void mp_close_u8(const uint8_t *in, uint8_t *out, int W, int H, int r) {
  uint8_t *tmp = mp_imgops_scratch(MP_SCRATCH_MORPH_TMP, (size_t)W * H);
  morph_once(in, tmp, W, H, r, false);
  morph_once(tmp, out, W, H, r, true);
}

/* ---- contours (Suzuki & Abe 1985, algorithm 1) --------------------------------------- */

/* Directions, counterclockwise on screen starting east: E NE N NW W SW S SE. */
static const int DI[8] = {0, -1, -1, -1, 0, 1, 1, 1};
static const int DJ[8] = {1, 1, 0, -1, -1, -1, 0, 1};

static int dir_of(int di, int dj) {
  for (int k = 0; k < 8; k++)
    if (DI[k] == di && DJ[k] == dj) return k;
  return -1;
}

typedef struct {
  mp_point *p;
  int n, cap;
} pt_vec;

static void pt_push(pt_vec *v, int x, int y) {
  if (v->n == v->cap) {
    v->cap = v->cap ? 2 * v->cap : 1024;
    v->p = mp_realloc(v->p, (size_t)v->cap * sizeof *v->p);
  }
  v->p[v->n].x = x;
  v->p[v->n].y = y;
  v->n++;
}

/* Follow the border starting at (i, j) (padded coordinates) whose 0-neighbour is
 * (i2, j2); label it nbd; append its pixels (image coordinates) to pts when record. */
static void follow(int *f, int PW, int i, int j, int i2, int j2, int nbd, pt_vec *pts, bool record) {
#define F(a, b) f[(size_t)(a) * PW + (b)]
  int d0 = dir_of(i2 - i, j2 - j), k, found = -1;
  for (k = 0; k < 8; k++) { /* 3.1: clockwise from (i2, j2) */
    int d = (d0 - k + 8) & 7;
    if (F(i + DI[d], j + DJ[d]) != 0) {
      found = d;
      break;
    }
  }
  if (found < 0) { /* isolated pixel */
    F(i, j) = -nbd;
    if (record) pt_push(pts, j - 1, i - 1);
    return;
  }
  int i1 = i + DI[found], j1 = j + DJ[found];
  i2 = i1;
  j2 = j1;
  int i3 = i, j3 = j;
  for (;;) {
    if (record) pt_push(pts, j3 - 1, i3 - 1);
    /* 3.3: counterclockwise from the element after (i2, j2) */
    int d = dir_of(i2 - i3, j2 - j3), i4 = 0, j4 = 0;
    bool east_zero = false;
    for (k = 1; k <= 8; k++) {
      int dd = (d + k) & 7;
      int a = i3 + DI[dd], b = j3 + DJ[dd];
      if (F(a, b) != 0) {
        i4 = a;
        j4 = b;
        break;
      }
      if (dd == 0) east_zero = true;
    }
    /* 3.4 */
    if (east_zero)
      F(i3, j3) = -nbd;
    else if (F(i3, j3) == 1)
      F(i3, j3) = nbd;
    /* 3.5 */
    if (i4 == i && j4 == j && i3 == i1 && j3 == j1) break;
    i2 = i3;
    j2 = j3;
    i3 = i4;
    j3 = j4;
  }
#undef F
}

void mp_find_contours_external(const uint8_t *bin, int W, int H, mp_contours *out) {
  int PW = W + 2, PH = H + 2;
  /* label image, zeroed only where set pixels were (it is left clean for the next call:
   * every nonzero label is written on a set pixel, and those are cleared at the end) */
  int *f = mp_imgops_scratch(MP_SCRATCH_LABELS, (size_t)PW * PH * sizeof *f);
  int *lo = mp_malloc((size_t)H * 2 * sizeof *lo), *hi = lo + H;
  row_extents(bin, W, H, lo, hi);
  if (f_clean < (size_t)PW * PH * sizeof *f) {
    memset(f, 0, (size_t)PW * PH * sizeof *f);
    f_clean = (size_t)PW * PH * sizeof *f;
  }
  for (int y = 0; y < H; y++)
    for (int x = lo[y]; x >= 0 && x <= hi[y]; x++) f[(size_t)(y + 1) * PW + x + 1] = bin[(size_t)y * W + x] != 0;
  /* border table: type (1 outer, 0 hole) and parent; border 1 is the frame (a hole) */
  int cap = 256, nbd = 1;
  int *type = mp_malloc((size_t)cap * sizeof *type), *parent = mp_malloc((size_t)cap * sizeof *parent);
  type[1] = 0;
  parent[1] = 0;
  pt_vec pts = {0};
  int ncont = 0, scap = 64;
  int *start = mp_malloc((size_t)scap * sizeof *start);
  for (int i = 1; i <= H; i++) {
    int lnbd = 1;
    if (lo[i - 1] < 0) continue; /* labels are only ever written on set pixels */
    for (int j = lo[i - 1] + 1; j <= hi[i - 1] + 1; j++) {
      int v = f[(size_t)i * PW + j];
      if (v == 0) continue;
      bool outer = v == 1 && f[(size_t)i * PW + j - 1] == 0;
      bool hole = !outer && v >= 1 && f[(size_t)i * PW + j + 1] == 0;
      if (outer || hole) {
        if (hole && v > 1) lnbd = v;
        nbd++;
        if (nbd >= cap) {
          cap *= 2;
          type = mp_realloc(type, (size_t)cap * sizeof *type);
          parent = mp_realloc(parent, (size_t)cap * sizeof *parent);
        }
        type[nbd] = outer;
        if (outer)
          parent[nbd] = type[lnbd] ? parent[lnbd] : lnbd;
        else
          parent[nbd] = type[lnbd] ? lnbd : parent[lnbd];
        bool keep = outer && parent[nbd] == 1;
        if (keep) {
          if (ncont + 2 > scap) start = mp_realloc(start, (size_t)(scap *= 2) * sizeof *start);
          start[ncont++] = pts.n;
        }
        follow(f, PW, i, j, i, outer ? j - 1 : j + 1, nbd, &pts, keep);
      }
      int fv = f[(size_t)i * PW + j];
      if (fv != 1) lnbd = fv < 0 ? -fv : fv;
    }
  }
  start[ncont] = pts.n;
  for (int y = 0; y < H; y++) /* leave f zero for the next call */
    if (lo[y] >= 0) memset(f + (size_t)(y + 1) * PW + lo[y] + 1, 0, (size_t)(hi[y] - lo[y] + 1) * sizeof *f);
  mp_free(lo);
  out->n = ncont;
  out->start = start;
  out->pts = pts.p;
  mp_free(type);
  mp_free(parent);
}

void mp_contours_free(mp_contours *c) {
  mp_free(c->start);
  mp_free(c->pts);
  memset(c, 0, sizeof *c);
}

double mp_contour_area(const mp_point *p, int n) {
  double s = 0;
  for (int k = 0; k < n; k++) {
    const mp_point *a = &p[k], *b = &p[(k + 1) % n];
    s += (double)a->x * b->y - (double)b->x * a->y;
  }
  return fabs(s) / 2;
}

/* ---- ellipse fit ------------------------------------------------------------------- */

/* Inverse of a 3x3 matrix (row-major); returns 0, or -1 when singular. */
static int inv3(const double *m, double *o) {
  double c00 = m[4] * m[8] - m[5] * m[7], c01 = m[5] * m[6] - m[3] * m[8], c02 = m[3] * m[7] - m[4] * m[6];
  double det = m[0] * c00 + m[1] * c01 + m[2] * c02;
  double scale = fabs(m[0]) + fabs(m[4]) + fabs(m[8]);
  if (!(fabs(det) > 1e-14 * scale * scale * scale)) return -1;
  double id = 1.0 / det;
  o[0] = c00 * id;
  o[1] = (m[2] * m[7] - m[1] * m[8]) * id;
  o[2] = (m[1] * m[5] - m[2] * m[4]) * id;
  o[3] = c01 * id;
  o[4] = (m[0] * m[8] - m[2] * m[6]) * id;
  o[5] = (m[2] * m[3] - m[0] * m[5]) * id;
  o[6] = c02 * id;
  o[7] = (m[1] * m[6] - m[0] * m[7]) * id;
  o[8] = (m[0] * m[4] - m[1] * m[3]) * id;
  return 0;
}

int mp_fit_ellipse(const double *px, const double *py, int n, mp_ellipse *e) {
  if (n < 5) return -1;
  /* centre and scale uniformly: the direct fit is equivariant under similarities */
  double mx = 0, my = 0;
  for (int k = 0; k < n; k++) {
    mx += px[k];
    my += py[k];
  }
  mx /= n;
  my /= n;
  double s = 0;
  for (int k = 0; k < n; k++) s += (px[k] - mx) * (px[k] - mx) + (py[k] - my) * (py[k] - my);
  s = sqrt(s / (2.0 * n));
  if (!(s > 0)) return -1;
  /* scatter blocks: D1 = [x^2 xy y^2], D2 = [x y 1] */
  double S1[9] = {0}, S2[9] = {0}, S3[9] = {0};
  for (int k = 0; k < n; k++) {
    double x = (px[k] - mx) / s, y = (py[k] - my) / s;
    double d1[3] = {x * x, x * y, y * y}, d2[3] = {x, y, 1.0};
    for (int a = 0; a < 3; a++)
      for (int b = 0; b < 3; b++) {
        S1[a * 3 + b] += d1[a] * d1[b];
        S2[a * 3 + b] += d1[a] * d2[b];
        S3[a * 3 + b] += d2[a] * d2[b];
      }
  }
  double S3i[9], T[9], M[9];
  if (inv3(S3, S3i)) return -1;
  /* T = -S3^-1 S2^T */
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++) {
      double acc = 0;
      for (int c = 0; c < 3; c++) acc += S3i[a * 3 + c] * S2[b * 3 + c];
      T[a * 3 + b] = -acc;
    }
  /* M = S1 + S2 T, then C1^-1 M with C1 = [[0 0 2][0 -1 0][2 0 0]] */
  double Mt[9];
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++) {
      double acc = S1[a * 3 + b];
      for (int c = 0; c < 3; c++) acc += S2[a * 3 + c] * T[c * 3 + b];
      Mt[a * 3 + b] = acc;
    }
  for (int b = 0; b < 3; b++) {
    M[0 * 3 + b] = Mt[2 * 3 + b] / 2;
    M[1 * 3 + b] = -Mt[1 * 3 + b];
    M[2 * 3 + b] = Mt[0 * 3 + b] / 2;
  }
  double wr[3], wi[3], vr[9];
  if (LAPACKE_dgeev(LAPACK_ROW_MAJOR, 'N', 'V', 3, M, 3, wr, wi, NULL, 3, vr, 3) != 0) return -1;
  int best = -1;
  double bestc = 0;
  for (int k = 0; k < 3; k++) { /* the eigenvector with 4ac - b^2 > 0 */
    double a0 = vr[0 * 3 + k], a1 = vr[1 * 3 + k], a2 = vr[2 * 3 + k];
    double c = 4 * a0 * a2 - a1 * a1;
    if (fabs(wi[k]) < 1e-12 * (fabs(wr[k]) + 1) && c > bestc) {
      bestc = c;
      best = k;
    }
  }
  if (best < 0) return -1;
  double A = vr[0 * 3 + best], B = vr[1 * 3 + best], C = vr[2 * 3 + best];
  double D = T[0] * A + T[1] * B + T[2] * C, E = T[3] * A + T[4] * B + T[5] * C, F = T[6] * A + T[7] * B + T[8] * C;
  /* conic -> centre, axes, angle (normalised coordinates) */
  double den = 4 * A * C - B * B;
  if (!(den > 0)) return -1;
  double x0 = (B * E - 2 * C * D) / den, y0 = (B * D - 2 * A * E) / den;
  double F0 = A * x0 * x0 + B * x0 * y0 + C * y0 * y0 + D * x0 + E * y0 + F;
  if (F0 > 0) { /* make the quadratic form positive and F0 negative */
    A = -A;
    B = -B;
    C = -C;
    F0 = -F0;
  }
  double mean = (A + C) / 2, rad = sqrt((A - C) * (A - C) / 4 + B * B / 4);
  double lp = mean + rad, lm = mean - rad; /* lp >= lm */
  if (!(lm > 0) || !(F0 < 0)) return -1; /* not a real ellipse */
  double semi_major = sqrt(-F0 / lm), semi_minor = sqrt(-F0 / lp);
  if (!isfinite(semi_major) || !isfinite(semi_minor)) return -1;
  double phi = 0.5 * atan2(B, A - C); /* eigenvector of lp: the minor axis */
  double ang = phi + M_PI / 2;
  ang = fmod(ang, M_PI);
  if (ang < 0) ang += M_PI;
  e->cx = x0 * s + mx;
  e->cy = y0 * s + my;
  e->a = semi_major * s;
  e->b = semi_minor * s;
  e->angle = ang;
  return 0;
}

int mp_fit_ellipse_points(const mp_point *p, int n, mp_ellipse *e) {
  if (n < 5) return -1;
  double *x = mp_malloc((size_t)n * 2 * sizeof *x), *y = x + n;
  for (int k = 0; k < n; k++) {
    x[k] = p[k].x;
    y[k] = p[k].y;
  }
  int rc = mp_fit_ellipse(x, y, n, e);
  mp_free(x);
  return rc;
}

double mp_ellipse_coverage_window(const mp_ellipse *e, const uint8_t *mask, int mx, int my, int mw, int mh,
                                  int samples) {
  int hit = 0;
  double c = cos(e->angle), s = sin(e->angle);
  for (int k = 0; k < samples; k++) {
    double t = 2 * M_PI * k / samples, u = e->a * cos(t), v = e->b * sin(t);
    long x = lround(e->cx + u * c - v * s) - mx, y = lround(e->cy + u * s + v * c) - my;
    if (x >= 0 && y >= 0 && x < mw && y < mh && mask[(size_t)y * mw + (size_t)x]) hit++;
  }
  return samples > 0 ? (double)hit / samples : 0.0;
}

double mp_ellipse_coverage_windows(const mp_ellipse *e, const mp_window_u8 *win, int n, int samples) {
  int hit = 0;
  double c = cos(e->angle), s = sin(e->angle);
  for (int k = 0; k < samples; k++) {
    double t = 2 * M_PI * k / samples, u = e->a * cos(t), v = e->b * sin(t);
    long x = lround(e->cx + u * c - v * s), y = lround(e->cy + u * s + v * c);
    for (int i = 0; i < n && y >= win[i].y; i++) { /* rows disjoint and sorted: at most one holds y */
      const mp_window_u8 *m = &win[i];
      if (y < m->y + m->h) {
        if (x >= m->x && x < m->x + m->w && m->pix[(size_t)(y - m->y) * m->w + (size_t)(x - m->x)]) hit++;
        break;
      }
    }
  }
  return samples > 0 ? (double)hit / samples : 0.0;
}

double mp_ellipse_coverage(const mp_ellipse *e, const uint8_t *mask, int W, int H, int samples) {
  return mp_ellipse_coverage_window(e, mask, 0, 0, W, H, samples);
}

bool mp_bbox_u8(const uint8_t *in, int W, int H, int *x0, int *y0, int *x1, int *y1) {
  int *lo = mp_malloc((size_t)H * 2 * sizeof *lo), *hi = lo + H;
  row_extents(in, W, H, lo, hi);
  *x0 = W, *y0 = H, *x1 = -1, *y1 = -1;
  for (int y = 0; y < H; y++) {
    if (lo[y] < 0) continue;
    if (*y0 == H) *y0 = y;
    *y1 = y;
    if (lo[y] < *x0) *x0 = lo[y];
    if (hi[y] > *x1) *x1 = hi[y];
  }
  mp_free(lo);
  return *y1 >= 0;
}

/* Breadth-first fill from the t0 seeds in q (already set to `to`): every pixel with value
 * `from` connected to them (8- or 4-connected) becomes `to`.  q holds W * H entries (each
 * pixel enters once).  Returns the pixels set, seeds included. */
static size_t fill_u8(uint8_t *m, int W, int H, uint32_t *q, size_t t0, uint8_t from, uint8_t to, bool eight) {
  size_t h = 0, t = t0;
  while (h < t) {
    const uint32_t i = q[h++];
    const int y = (int)(i / (uint32_t)W), x = (int)(i % (uint32_t)W);
    for (int dy = -1; dy <= 1; dy++)
      for (int dx = -1; dx <= 1; dx++) {
        if ((!dx && !dy) || (!eight && dx && dy)) continue;
        const int yy = y + dy, xx = x + dx;
        if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
        const size_t j = (size_t)yy * W + xx;
        if (m[j] == from) m[j] = to, q[t++] = (uint32_t)j;
      }
  }
  return t;
}

size_t mp_largest_region_u8(const uint8_t *img, int W, int H, int black, uint8_t *mask) {
  const size_t n = (size_t)W * H;
  enum { BG = 0, FG = 1, SEEN = 2, KEEP = 3, OUT = 4 };
  for (size_t i = 0; i < n; i++) mask[i] = img[i] > black ? FG : BG;
  uint32_t *q = mp_malloc((n ? n : 1) * sizeof *q);
  size_t best = 0, seed = 0; /* the largest region: its size and first pixel */
  for (size_t i = 0; i < n; i++)
    if (mask[i] == FG) {
      mask[i] = SEEN, q[0] = (uint32_t)i;
      const size_t c = fill_u8(mask, W, H, q, 1, FG, SEEN, true);
      if (c > best) best = c, seed = i;
    }
  if (best) mask[seed] = KEEP, q[0] = (uint32_t)seed, fill_u8(mask, W, H, q, 1, SEEN, KEEP, true);
  for (size_t i = 0; i < n; i++)
    if (mask[i] != KEEP) mask[i] = BG;
  /* what the border reaches around the region is outside; the rest of BG is enclosed */
  size_t t = 0;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x += (y == 0 || y == H - 1 || W == 1) ? 1 : W - 1) {
      const size_t i = (size_t)y * W + x;
      if (mask[i] == BG) mask[i] = OUT, q[t++] = (uint32_t)i;
    }
  fill_u8(mask, W, H, q, t, BG, OUT, false);
  mp_free(q);
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    mask[i] = best && mask[i] != OUT;
    kept += mask[i];
  }
  return kept;
}

int mp_row_bands_u8(const uint8_t *in, int W, int H, int gap, int **boxes) {
  int *lo = mp_malloc((size_t)H * 2 * sizeof *lo), *hi = lo + H;
  row_extents(in, W, H, lo, hi);
  int n = 0, cap = 0, last = -1; /* last: the previous row with a nonzero pixel */
  int *b = NULL;
  for (int y = 0; y < H; y++) {
    if (lo[y] < 0) continue;
    if (last < 0 || y - last - 1 > gap) { /* a new band */
      if (n == cap) b = mp_realloc(b, (size_t)(cap = cap ? 2 * cap : 8) * 4 * sizeof *b);
      int *o = b + 4 * n++;
      o[0] = lo[y], o[1] = y, o[2] = hi[y], o[3] = y;
    }
    int *o = b + 4 * (n - 1);
    if (lo[y] < o[0]) o[0] = lo[y];
    if (hi[y] > o[2]) o[2] = hi[y];
    o[3] = y;
    last = y;
  }
  mp_free(lo);
  *boxes = b;
  return n;
}

/* ---- crops and tiles ------------------------------------------------------------------- */

bool mp_crop_u8(const uint8_t *img, int W, int H, int x0, int y0, int size, uint8_t *out) {
  if (x0 < 0 || y0 < 0 || x0 + size > W || y0 + size > H) return false;
  for (int y = 0; y < size; y++) memcpy(out + (size_t)y * size, img + (size_t)(y0 + y) * W + x0, (size_t)size);
  return true;
}

double mp_extreme_fraction(const uint8_t *p, size_t n, int black, int white) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++) c += p[i] <= black || p[i] >= white;
  return n ? (double)c / (double)n : 0.0;
}

/* Pixels of p[0, n) that are <= black or >= white (both in [0, 255]).  Counted in a byte
 * per 255 pixels: the loop then vectorizes to byte compares and adds (16 or 32 pixels an
 * instruction), where a size_t counter widens every byte to 64 bits first. */
static size_t count_extreme(const uint8_t *p, int n, int black, int white) {
  const uint8_t lo = (uint8_t)black, hi = (uint8_t)white;
  size_t c = 0;
  for (int x0 = 0; x0 < n; x0 += 255) {
    const int m = n - x0 < 255 ? n - x0 : 255;
    uint8_t k = 0;
    for (int x = 0; x < m; x++) k = (uint8_t)(k + ((p[x0 + x] <= lo) | (p[x0 + x] >= hi)));
    c += k;
  }
  return c;
}

int mp_tile_normals(const uint8_t *img, int W, int H, int size, int black, int white, uint8_t *scratch,
                    void (*keep)(void *user, const uint8_t *block, size_t stride, int row, int col), void *user) {
  int kept = 0;
  size_t half = (size_t)size * size / 2;
  for (int by = 0; by < H; by += size)
    for (int bx = 0; bx < W; bx += size) {
      const bool whole = by + size <= H && bx + size <= W;
      size_t extreme = 0;
      if (whole) { /* counted and handed over in place */
        const uint8_t *b = img + (size_t)by * W + bx;
        for (int y = 0; y < size; y++) extreme += count_extreme(b + (size_t)y * W, size, black, white);
        if (extreme > half) continue; /* more than half background or labels */
        keep(user, b, (size_t)W, by, bx);
        kept++;
        continue;
      } else { /* at the right or bottom edge: padded with black */
        for (int y = 0; y < size; y++) {
          uint8_t *o = scratch + (size_t)y * size;
          int yy = by + y;
          int nx = yy < H ? (bx + size <= W ? size : W - bx) : 0;
          if (nx > 0) memcpy(o, img + (size_t)yy * W + bx, (size_t)nx);
          memset(o + nx, 0, (size_t)(size - nx));
          extreme += count_extreme(o, size, black, white);
        }
        if (extreme > half) continue;
      }
      keep(user, scratch, (size_t)size, by, bx);
      kept++;
    }
  return kept;
}
