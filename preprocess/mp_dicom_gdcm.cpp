// mp_dicom_gdcm — the GDCM implementation behind mp_dicom.h (the only C++ in the
// suite).  Every GDCM call is wrapped so that neither exceptions nor GDCM's warnings
// leave this file: failures come back as a status and a message.
#include "mp_dicom.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>

#include <gdcmAttribute.h>
#include <gdcmDataElement.h>
#include <gdcmDataSet.h>
#include <gdcmFile.h>
#include <gdcmFileMetaInformation.h>
#include <gdcmImage.h>
#include <gdcmImageChangeTransferSyntax.h>
#include <gdcmImageWriter.h>
#include <gdcmPhotometricInterpretation.h>
#include <gdcmPixelFormat.h>
#include <gdcmTrace.h>
#include <gdcmTransferSyntax.h>
#include <gdcmVersion.h>

namespace {

void set_err(char *err, size_t len, const std::string &msg) {
  if (err && len) std::snprintf(err, len, "%s", msg.c_str());
}

// Put a string value on tag (group, element) with the VR of the public dictionary.
// Values of odd length are padded as DICOM requires (space; UIDs with NUL).
void put(gdcm::DataSet &ds, uint16_t g, uint16_t e, gdcm::VR vr, const char *value) {
  if (!value || !*value) return;
  std::string v(value);
  if (v.size() % 2) v.push_back(vr == gdcm::VR::UI ? '\0' : ' ');
  gdcm::DataElement de(gdcm::Tag(g, e));
  de.SetVR(vr);
  de.SetByteValue(v.data(), static_cast<uint32_t>(v.size()));
  ds.Replace(de);
}

std::string decimal(double x) {
  std::ostringstream s;
  s.precision(10);
  s << x;
  return s.str();
}

gdcm::TransferSyntax::TSType ts_of(mp_dicom_ts ts) {
  switch (ts) {
  case MP_TS_JPEGLS_LOSSLESS: return gdcm::TransferSyntax::JPEGLSLossless;
  case MP_TS_J2K_LOSSLESS: return gdcm::TransferSyntax::JPEG2000Lossless;
  default: return gdcm::TransferSyntax::ExplicitVRLittleEndian;
  }
}

int write_impl(const char *path, const mp_dicom_image *m, char *err, size_t errlen) {
  if (!m->pixels || m->rows <= 0 || m->cols <= 0) {
    set_err(err, errlen, "no pixel data to write");
    return -1;
  }
  gdcm::ImageWriter w;
  gdcm::Image &img = w.GetImage();
  img.SetNumberOfDimensions(2);
  img.SetDimension(0, static_cast<unsigned int>(m->cols));
  img.SetDimension(1, static_cast<unsigned int>(m->rows));
  gdcm::PixelFormat pf(1, 16, static_cast<unsigned short>(m->bits_stored), static_cast<unsigned short>(m->bits_stored - 1), 0);
  img.SetPixelFormat(pf);
  const bool mono1 = m->photometric && std::strcmp(m->photometric, "MONOCHROME1") == 0;
  img.SetPhotometricInterpretation(mono1 ? gdcm::PhotometricInterpretation::MONOCHROME1
                                         : gdcm::PhotometricInterpretation::MONOCHROME2);
  img.SetTransferSyntax(gdcm::TransferSyntax::ExplicitVRLittleEndian);
  const size_t bytes = static_cast<size_t>(m->rows) * static_cast<size_t>(m->cols) * 2;
  gdcm::DataElement pixeldata(gdcm::Tag(0x7fe0, 0x0010));
  pixeldata.SetVR(gdcm::VR::OW);
  pixeldata.SetByteValue(reinterpret_cast<const char *>(m->pixels), static_cast<uint32_t>(bytes));
  img.SetDataElement(pixeldata);

  gdcm::DataSet &ds = w.GetFile().GetDataSet();
  put(ds, 0x0008, 0x0016, gdcm::VR::UI, m->sop_class_uid);
  put(ds, 0x0008, 0x0018, gdcm::VR::UI, m->sop_instance_uid);
  put(ds, 0x0020, 0x000d, gdcm::VR::UI, m->study_uid);
  put(ds, 0x0020, 0x000e, gdcm::VR::UI, m->series_uid);
  put(ds, 0x0008, 0x0008, gdcm::VR::CS, m->image_type);
  put(ds, 0x0008, 0x0020, gdcm::VR::DA, m->study_date);
  put(ds, 0x0008, 0x0030, gdcm::VR::TM, m->study_time);
  put(ds, 0x0008, 0x0050, gdcm::VR::SH, m->accession_number);
  put(ds, 0x0008, 0x0060, gdcm::VR::CS, "MG");
  put(ds, 0x0008, 0x0070, gdcm::VR::LO, m->manufacturer);
  put(ds, 0x0008, 0x103e, gdcm::VR::LO, m->series_description);
  put(ds, 0x0010, 0x0010, gdcm::VR::PN, m->patient_name);
  put(ds, 0x0010, 0x0020, gdcm::VR::LO, m->patient_id);
  put(ds, 0x0010, 0x0030, gdcm::VR::DA, m->patient_birth_date);
  put(ds, 0x0010, 0x0040, gdcm::VR::CS, m->patient_sex);
  put(ds, 0x0018, 0x5101, gdcm::VR::CS, m->view_position);
  put(ds, 0x0020, 0x0062, gdcm::VR::CS, m->image_laterality);
  put(ds, 0x0028, 0x1300, gdcm::VR::CS, m->implant_present);
  put(ds, 0x2050, 0x0020, gdcm::VR::CS, m->presentation_lut);
  if (m->window_width > 0) {
    put(ds, 0x0028, 0x1050, gdcm::VR::DS, decimal(m->window_center).c_str());
    put(ds, 0x0028, 0x1051, gdcm::VR::DS, decimal(m->window_width).c_str());
  }
  // MediaStorage comes from the SOP class in the data set.
  gdcm::FileMetaInformation &fmi = w.GetFile().GetHeader();
  fmi.Clear();

  if (m->ts != MP_TS_EXPLICIT_LE) {
    gdcm::ImageChangeTransferSyntax change;
    change.SetTransferSyntax(gdcm::TransferSyntax(ts_of(m->ts)));
    change.SetInput(img);
    if (!change.Change()) {
      set_err(err, errlen, std::string("GDCM could not convert to ") + mp_dicom_ts_name(m->ts));
      return -1;
    }
    img = change.GetOutput();
  }
  w.GetFile().GetHeader().SetDataSetTransferSyntax(img.GetTransferSyntax());
  w.SetFileName(path);
  if (!w.Write()) {
    set_err(err, errlen, std::string("GDCM could not write '") + path + "'");
    return -1;
  }
  return 0;
}

}  // namespace

extern "C" {

const char *mp_dicom_ts_name(mp_dicom_ts ts) {
  switch (ts) {
  case MP_TS_JPEGLS_LOSSLESS: return "jpegls";
  case MP_TS_J2K_LOSSLESS: return "j2k";
  default: return "explicit_le";
  }
}

int mp_dicom_write(const char *path, const mp_dicom_image *img, char *err, size_t errlen) {
  gdcm::Trace::SetWarning(false);
  gdcm::Trace::SetDebug(false);
  try {
    return write_impl(path, img, err, errlen);
  } catch (const std::exception &e) {
    set_err(err, errlen, std::string("GDCM exception: ") + e.what());
  } catch (...) {
    set_err(err, errlen, "GDCM threw an unknown exception");
  }
  return -1;
}

const char *mp_dicom_library_version(void) {
  static char v[64];
  std::snprintf(v, sizeof v, "GDCM %s", gdcm::Version::GetVersion());
  return v;
}

}  // extern "C"
