/* mp_window — stored samples to 8 bits (see mp_window.h). */
#include "mp_window.h"

#include <math.h>
#include <string.h>

#include "mp_alloc.h"

const char *mp_window_method_name(mp_window_method m) {
  static const char *n[] = {"voi_lut", "window", "minmax"};
  return n[m];
}

double mp_window_linear(double x, double c, double w) {
  if (w <= 1) return x < c ? 0.0 : 255.0; /* degenerate window: a threshold */
  double lo = c - 0.5 - (w - 1) / 2, hi = c - 0.5 + (w - 1) / 2;
  if (x <= lo) return 0.0;
  if (x > hi) return 255.0;
  return ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0;
}

double mp_window_voi(double x, double c, double w, const char *function) {
  if (function && strcmp(function, "SIGMOID") == 0) /* PS3.3 C.11.2.1.3.1 */
    return w > 0 ? 255.0 / (1.0 + exp(-4.0 * (x - c) / w)) : (x < c ? 0.0 : 255.0);
  if (function && strcmp(function, "LINEAR_EXACT") == 0) { /* C.11.2.1.3.2 */
    if (w <= 0 || x <= c - w / 2) return x < c ? 0.0 : 255.0;
    if (x > c + w / 2) return 255.0;
    return ((x - c) / w + 0.5) * 255.0;
  }
  return mp_window_linear(x, c, w); /* LINEAR, the default (and any value the standard lacks) */
}

/* Raw sample -> its table index and back.  Unsigned samples keep only their stored
 * bits (high bits may hold overlays); signed ones are sign-extended from bits_stored. */
static inline int32_t sample_value(int32_t raw, int bits_stored, int is_signed) {
  if (bits_stored <= 0 || bits_stored >= 32) return raw;
  if (!is_signed) return raw & ((1 << bits_stored) - 1);
  int32_t m = 1 << (bits_stored - 1);
  int32_t v = raw & ((1 << bits_stored) - 1);
  return (v ^ m) - m;
}

mp_window_method mp_window_method_for(const mp_dicom_info *info, const mp_dicom_luts *luts) {
  return info->has_voi_lut && luts && luts->voi ? MP_WIN_VOI_LUT : info->has_window ? MP_WIN_WINDOW : MP_WIN_MINMAX;
}

int mp_window_uses_modality_lut(const mp_dicom_info *info, const mp_dicom_luts *luts) {
  return info->has_modality_lut && info->modality_lut_entries > 0 && luts && luts->modality;
}

/* A LUT's entry for input value x: the first entry below its range, the last above it
 * (PS3.3 C.11.1.1 and C.11.2.1.1). */
static int lut_entry(const uint16_t *t, int entries, int first, long x) {
  long k = x - first;
  return t[k < 0 ? 0 : k >= entries ? entries - 1 : k];
}

static int stored_bits(int bits, const mp_dicom_info *info) {
  return info->bits_stored > 0 && info->bits_stored <= bits ? info->bits_stored : bits;
}

void mp_window_range(const void *data, int bits, int is_signed, size_t n, const mp_dicom_info *info, int32_t *lo,
                     int32_t *hi) {
  const int bs = stored_bits(bits, info);
  int32_t l = *lo, h = *hi;
  for (size_t i = 0; i < n; i++) {
    int32_t raw = bits == 8 ? (is_signed ? ((const int8_t *)data)[i] : ((const uint8_t *)data)[i])
                            : (is_signed ? ((const int16_t *)data)[i] : ((const uint16_t *)data)[i]);
    int32_t v = sample_value(raw, bs, is_signed);
    if (v < l) l = v;
    if (v > h) h = v;
  }
  *lo = l;
  *hi = h;
}

/* The modality value of stored value v: the Modality LUT's entry, or v * slope + intercept. */
static double modality(const mp_dicom_info *info, const uint16_t *mlut, double slope, double icpt, int32_t v) {
  return mlut ? (double)lut_entry(mlut, info->modality_lut_entries, info->modality_lut_first, v) : v * slope + icpt;
}

void mp_window_table(int bits, int is_signed, const mp_dicom_info *info, const mp_dicom_luts *luts, mp_window_method m,
                     int32_t lo, int32_t hi, uint8_t *lut) {
  const int range = bits == 8 ? 256 : 65536, offset = is_signed ? range / 2 : 0;
  const int bs = stored_bits(bits, info);
  /* the modality transform: the Modality LUT Sequence, else rescale slope/intercept */
  const uint16_t *mlut = mp_window_uses_modality_lut(info, luts) ? luts->modality : NULL;
  double slope = info->has_rescale && info->rescale_slope != 0 ? info->rescale_slope : 1.0;
  double icpt = info->has_rescale ? info->rescale_intercept : 0.0;
  double vmin = 0, vmax = 0;
  if (m == MP_WIN_MINMAX) { /* over the stored values actually present */
    vmin = modality(info, mlut, slope, icpt, lo);
    vmax = modality(info, mlut, slope, icpt, hi);
    if (vmin > vmax) {
      double t = vmin;
      vmin = vmax;
      vmax = t;
    }
    for (int32_t v = lo + 1; mlut && v < hi; v++) { /* a table need not be monotonic */
      double x = modality(info, mlut, slope, icpt, v);
      vmin = x < vmin ? x : vmin;
      vmax = x > vmax ? x : vmax;
    }
  }
  const bool invert = strcmp(info->photometric, "MONOCHROME1") == 0;
  for (int idx = 0; idx < range; idx++) {
    int32_t raw = idx - offset;
    double x = modality(info, mlut, slope, icpt, sample_value(raw, bs, is_signed));
    double y;
    if (m == MP_WIN_VOI_LUT) {
      int lb = info->voi_lut_bits > 0 && info->voi_lut_bits <= 16 ? info->voi_lut_bits : 16;
      y = lut_entry(luts->voi, info->voi_lut_entries, info->voi_lut_first, lround(x)) * 255.0 / (double)((1 << lb) - 1);
    } else if (m == MP_WIN_WINDOW) {
      y = mp_window_voi(x, info->window_center, info->window_width, info->voi_function);
    } else {
      y = vmax > vmin ? (x - vmin) / (vmax - vmin) * 255.0 : 0.0;
    }
    y = y < 0 ? 0 : y > 255 ? 255 : y;
    uint8_t v8 = (uint8_t)floor(y + 0.5);
    lut[idx] = invert ? (uint8_t)(255 - v8) : v8;
  }
}

void mp_window_apply(const void *data, int bits, int is_signed, size_t n, const uint8_t *lut, uint8_t *out) {
  const int offset = is_signed ? (bits == 8 ? 128 : 32768) : 0;
  if (bits == 8) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) out[i] = lut[is_signed ? (int)(int8_t)p[i] + offset : p[i]];
  } else {
    const uint16_t *p = data;
    if (is_signed) {
      for (size_t i = 0; i < n; i++) out[i] = lut[(int)(int16_t)p[i] + offset];
    } else { /* the common case: eight table bytes gathered into one 8-byte store (a third
              * faster than a store per pixel: the loop is bound by its memory operations) */
      size_t i = 0;
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      for (; i + 8 <= n; i += 8) {
        uint64_t v = 0;
        for (int k = 0; k < 8; k++) v |= (uint64_t)lut[p[i + k]] << (8 * k);
        memcpy(out + i, &v, 8); /* little-endian: byte k is pixel i + k */
      }
#endif
      for (; i < n; i++) out[i] = lut[p[i]];
    }
  }
}

mp_window_method mp_window_to_u8(const void *data, int bits, int is_signed, size_t n, const mp_dicom_info *info,
                                 const mp_dicom_luts *luts, uint8_t *out) {
  mp_window_method m = mp_window_method_for(info, luts);
  int32_t lo = INT32_MAX, hi = INT32_MIN;
  if (m == MP_WIN_MINMAX) mp_window_range(data, bits, is_signed, n, info, &lo, &hi);
  uint8_t *lut = mp_malloc(bits == 8 ? 256 : 65536);
  mp_window_table(bits, is_signed, info, luts, m, lo, hi, lut);
  mp_window_apply(data, bits, is_signed, n, lut, out);
  mp_free(lut);
  return m;
}
