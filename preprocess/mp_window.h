/* mp_window — stored DICOM samples to the 8-bit image the patch extraction works on
 * (SPEC §2): the modality transform — the Modality LUT Sequence when present, else rescale
 * slope/intercept when present, else none — then the image's own VOI
 * transform — its VOI LUT Sequence when present, else its window centre/width with
 * DICOM's linear VOI function (PS3.3 C.11.2.1.2), else the image's min-max — then
 * MONOCHROME1 inverted so bright is always attenuating.  One 8-bit lookup table over
 * the stored value range does all of it, so the per-pixel cost is one load. */
#ifndef MP_WINDOW_H
#define MP_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "mp_dicom.h"

typedef enum { MP_WIN_VOI_LUT = 0, MP_WIN_WINDOW = 1, MP_WIN_MINMAX = 2 } mp_window_method;
const char *mp_window_method_name(mp_window_method m); /* "voi_lut", "window", "minmax" */

/* n samples of `bits` (8 or 16) bits, signed or not, described by info (bits_stored,
 * photometric, rescale, window, the LUTs' descriptors) and luts (the tables' entries;
 * NULL, or a NULL table, when there is none) -> out.  Returns the VOI method used. */
mp_window_method mp_window_to_u8(const void *data, int bits, int is_signed, size_t n, const mp_dicom_info *info,
                                 const mp_dicom_luts *luts, uint8_t *out);

/* The same in parts, for pixels that arrive in bands of rows: the method; when it is
 * MP_WIN_MINMAX the stored-value range over every band (start with lo = INT32_MAX,
 * hi = INT32_MIN); the table (1 << bits entries, indexed by the sample, offset by half
 * the range when signed); then each band through the table. */
mp_window_method mp_window_method_for(const mp_dicom_info *info, const mp_dicom_luts *luts);
void mp_window_range(const void *data, int bits, int is_signed, size_t n, const mp_dicom_info *info, int32_t *lo,
                     int32_t *hi);
void mp_window_table(int bits, int is_signed, const mp_dicom_info *info, const mp_dicom_luts *luts, mp_window_method m,
                     int32_t lo, int32_t hi, uint8_t *lut);
/* Whether the modality transform is info's Modality LUT (luts->modality used). */
int mp_window_uses_modality_lut(const mp_dicom_info *info, const mp_dicom_luts *luts);
void mp_window_apply(const void *data, int bits, int is_signed, size_t n, const uint8_t *lut, uint8_t *out);

/* DICOM's linear VOI function for one value x, window centre c and width w >= 1,
 * onto [0, 255] (not rounded). */
double mp_window_linear(double x, double c, double w);
/* The window (c, w) under the image's VOI LUT Function (0028,1056): LINEAR (also for "" and
 * unknown values), LINEAR_EXACT or SIGMOID (PS3.3 C.11.2.1.3), to [0, 255]. */
double mp_window_voi(double x, double c, double w, const char *function);

#endif
