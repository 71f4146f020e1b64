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

/* Raw sample -> its table index and back.  Unsigned samples keep only their stored
 * bits (high bits may hold overlays); signed ones are sign-extended from bits_stored. */
static inline int32_t sample_value(int32_t raw, int bits_stored, int is_signed) {
  if (bits_stored <= 0 || bits_stored >= 32) return raw;
  if (!is_signed) return raw & ((1 << bits_stored) - 1);
  int32_t m = 1 << (bits_stored - 1);
  int32_t v = raw & ((1 << bits_stored) - 1);
  return (v ^ m) - m;
}

mp_window_method mp_window_to_u8(const void *data, int bits, int is_signed, size_t n, const mp_dicom_info *info,
                                 const uint16_t *voi_lut, uint8_t *out) {
  const int range = bits == 8 ? 256 : 65536, offset = is_signed ? range / 2 : 0;
  int bs = info->bits_stored > 0 && info->bits_stored <= bits ? info->bits_stored : bits;
  double slope = info->has_rescale && info->rescale_slope != 0 ? info->rescale_slope : 1.0;
  double icpt = info->has_rescale ? info->rescale_intercept : 0.0;
  mp_window_method m = info->has_voi_lut && voi_lut ? MP_WIN_VOI_LUT : info->has_window ? MP_WIN_WINDOW : MP_WIN_MINMAX;
  double vmin = 0, vmax = 0;
  if (m == MP_WIN_MINMAX) { /* over the pixels actually present */
    int32_t lo = INT32_MAX, hi = INT32_MIN;
    for (size_t i = 0; i < n; i++) {
      int32_t raw = bits == 8 ? (is_signed ? ((const int8_t *)data)[i] : ((const uint8_t *)data)[i])
                              : (is_signed ? ((const int16_t *)data)[i] : ((const uint16_t *)data)[i]);
      int32_t v = sample_value(raw, bs, is_signed);
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    vmin = lo * slope + icpt;
    vmax = hi * slope + icpt;
    if (vmin > vmax) {
      double t = vmin;
      vmin = vmax;
      vmax = t;
    }
  }
  const bool invert = strcmp(info->photometric, "MONOCHROME1") == 0;
  uint8_t *lut = mp_malloc((size_t)range);
  for (int idx = 0; idx < range; idx++) {
    int32_t raw = idx - offset;
    double x = sample_value(raw, bs, is_signed) * slope + icpt;
    double y;
    if (m == MP_WIN_VOI_LUT) {
      long k = lround(x) - info->voi_lut_first;
      k = k < 0 ? 0 : k >= info->voi_lut_entries ? info->voi_lut_entries - 1 : k;
      int lb = info->voi_lut_bits > 0 && info->voi_lut_bits <= 16 ? info->voi_lut_bits : 16;
      y = voi_lut[k] * 255.0 / (double)((1 << lb) - 1);
    } else if (m == MP_WIN_WINDOW) {
      y = mp_window_linear(x, info->window_center, info->window_width);
    } else {
      y = vmax > vmin ? (x - vmin) / (vmax - vmin) * 255.0 : 0.0;
    }
    y = y < 0 ? 0 : y > 255 ? 255 : y;
    uint8_t v8 = (uint8_t)floor(y + 0.5);
    lut[idx] = invert ? (uint8_t)(255 - v8) : v8;
  }
  if (bits == 8) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) out[i] = lut[is_signed ? (int)(int8_t)p[i] + offset : p[i]];
  } else {
    const uint16_t *p = data;
    if (is_signed)
      for (size_t i = 0; i < n; i++) out[i] = lut[(int)(int16_t)p[i] + offset];
    else
      for (size_t i = 0; i < n; i++) out[i] = lut[p[i]];
  }
  mp_free(lut);
  return m;
}
