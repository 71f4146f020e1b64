/* mp_dicom — the suite's only door to DICOM: a C interface over GDCM, implemented in
 * one C++ file (mp_dicom_gdcm.cpp).  No DICOM is encoded or decoded by hand anywhere
 * else.  Exceptions never cross this boundary: every function returns a status and a
 * message.
 *
 * Writing (synth): one grayscale image, 16-bit words, with the attributes the
 * preprocessing filters read, in explicit VR little endian or converted in-process
 * to JPEG-LS lossless or JPEG 2000 lossless with gdcm::ImageChangeTransferSyntax.
 */
#ifndef MP_DICOM_H
#define MP_DICOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MP_TS_EXPLICIT_LE = 0, MP_TS_JPEGLS_LOSSLESS = 1, MP_TS_J2K_LOSSLESS = 2 } mp_dicom_ts;

/* Short names used in tables and truth files: "explicit_le", "jpegls", "j2k". */
const char *mp_dicom_ts_name(mp_dicom_ts ts);

#define MP_SOP_MG_PRESENTATION "1.2.840.10008.5.1.4.1.1.1.2"
#define MP_SOP_SECONDARY_CAPTURE "1.2.840.10008.5.1.4.1.1.7"

/* What to write.  Strings are DICOM values as they should appear (multi-valued with
 * backslash, e.g. "ORIGINAL\\PRIMARY"); NULL or "" leaves an attribute out. */
typedef struct {
  const char *sop_class_uid, *sop_instance_uid, *study_uid, *series_uid;
  const char *patient_id, *patient_name, *patient_birth_date, *patient_sex;
  const char *study_date, *study_time, *accession_number;
  const char *view_position;       /* (0018,5101) CC, MLO, ... */
  const char *image_laterality;    /* (0020,0062) L or R */
  const char *implant_present;     /* (0028,1300) YES or NO */
  const char *presentation_lut;    /* (2050,0020) IDENTITY or INVERSE */
  const char *image_type;          /* (0008,0008) */
  const char *photometric;         /* MONOCHROME1 or MONOCHROME2 */
  const char *manufacturer, *series_description;
  double window_center, window_width; /* written when window_width > 0 */
  int rows, cols;
  int bits_stored;                 /* 12: 12-bit data in 16-bit words */
  const uint16_t *pixels;          /* rows*cols, row-major */
  mp_dicom_ts ts;
} mp_dicom_image;

/* Write img to path.  Returns 0, or -1 with GDCM's complaint in err. */
int mp_dicom_write(const char *path, const mp_dicom_image *img, char *err, size_t errlen);

/* ---- reading (preprocess, predict) ------------------------------------------------ */

typedef struct mp_dicom_file mp_dicom_file;

/* What the filters and the windowing need.  Strings are trimmed of DICOM padding;
 * multi-valued ones keep their backslashes ("DERIVED\SECONDARY"); absent = "". */
typedef struct {
  char patient_id[68], patient_sex[20], view_position[20], laterality[20], image_laterality[20];
  char implant[20], lut_shape[20], image_type[132], photometric[20];
  char study_uid[68], sop_class_uid[68], transfer_syntax[68];
  int rows, cols, frames, samples_per_pixel, bits_allocated, bits_stored, pixel_representation;
  bool has_window;
  double window_center, window_width; /* first values when multi-valued */
  char voi_function[20];              /* (0028,1056) VOI LUT Function: LINEAR (or ""), LINEAR_EXACT, SIGMOID */
  bool has_voi_lut;                   /* VOI LUT Sequence (0028,3010): first item */
  int voi_lut_entries, voi_lut_first, voi_lut_bits;
  bool has_rescale;
  double rescale_slope, rescale_intercept;
  /* Modality LUT Sequence (0028,3000): stored values to modality values by table (CR and
   * digitised film); it takes the place of rescale slope/intercept (PS3.3 C.11.1: the two
   * are exclusive; when a file has both, the sequence is used) */
  bool has_modality_lut;
  int modality_lut_entries, modality_lut_first, modality_lut_bits;
  /* false when the tags were read but the pixel data could not be (then pixel_error says
   * why: truncated data, unsupported transfer syntax, a codec complaint) */
  bool pixels_readable;
  char pixel_error[512];
} mp_dicom_info;

/* Open a file and read its attributes (and, when it can, its pixel data).  NULL when
 * the file is not readable DICOM at all (err says why: empty, no DICM magic and no
 * parsable data set, truncated header, absurd element lengths, ...).  Never throws,
 * never aborts. */
mp_dicom_file *mp_dicom_open(const char *path, mp_dicom_info *info, char *err, size_t errlen);

/* Decode the first frame.  *data points to rows*cols samples of *bits (8 or 16) bits,
 * signed when *is_signed, valid until the next mp_dicom_decode or mp_dicom_close (the
 * reader reuses one frame buffer per process: not thread-safe).  Returns 0, or -1 with the reason (GDCM's own
 * words when it has any) in err.  A codec that reports an error while producing pixels
 * (e.g. GDCM's 12-bit lossy JPEG trap) counts as a failure. */
int mp_dicom_decode(mp_dicom_file *f, const void **data, int *bits, int *is_signed, char *err, size_t errlen);

/* Native (uncompressed little-endian) grayscale pixel data can be read a band of rows
 * at a time, so that a full-field frame (27 MB at 16 bits) never needs a frame-sized
 * buffer.  mp_dicom_rows: 1 when this file's first frame can be read that way (its
 * sample *bits, 8 or 16, and signedness returned), else 0 (use mp_dicom_decode).
 * mp_dicom_read_rows: rows [row0, row0 + n) into buf (n * cols * bits / 8 bytes);
 * 0, or -1 with the reason. */
int mp_dicom_rows(const mp_dicom_file *f, int *bits, int *is_signed);
int mp_dicom_read_rows(mp_dicom_file *f, int row0, int n, void *buf, char *err, size_t errlen);

/* A file's lookup tables (valid until mp_dicom_close): the Modality LUT's entries when
 * has_modality_lut, the first VOI LUT's when has_voi_lut, else NULL.  8-bit tables (LUT
 * Descriptor's third value 8) come widened to one entry per uint16_t. */
typedef struct {
  const uint16_t *modality, *voi;
} mp_dicom_luts;
mp_dicom_luts mp_dicom_luts_of(const mp_dicom_file *f);

void mp_dicom_close(mp_dicom_file *f);

/* "GDCM 3.0.21" */
const char *mp_dicom_library_version(void);

#ifdef __cplusplus
}
#endif

#endif
