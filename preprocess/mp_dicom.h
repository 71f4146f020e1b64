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

/* "GDCM 3.0.21" */
const char *mp_dicom_library_version(void);

#ifdef __cplusplus
}
#endif

#endif
