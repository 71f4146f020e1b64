// mp_dicom_gdcm — the GDCM implementation behind mp_dicom.h (the only C++ in the
// suite).  Every GDCM call is wrapped so that neither exceptions nor GDCM's warnings
// leave this file: failures come back as a status and a message.
#include "mp_dicom.h"

#include <cstdio>
#include <unistd.h>
#include <cstdlib>
#include <iostream>
#include <set>
#include <cstring>
#include <exception>
#include <fstream>
#include <new>
#include <vector>
#include <sstream>
#include <string>

#include <gdcmAttribute.h>
#include <gdcmDataElement.h>
#include <gdcmDataSet.h>
#include <gdcmFile.h>
#include <gdcmFileMetaInformation.h>
#include <gdcmImage.h>
#include <gdcmImageChangeTransferSyntax.h>
#include <gdcmImageReader.h>
#include <gdcmImageWriter.h>
#include <gdcmReader.h>
#include <gdcmSequenceOfItems.h>
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

// Collects what GDCM says on its trace streams while it reads or decodes, so that a
// codec's complaint becomes our error message (and is not lost on stderr).
class TraceCapture {
 public:
  TraceCapture() {
    gdcm::Trace::SetErrorStream(err_);
    gdcm::Trace::SetWarningStream(warn_);
    gdcm::Trace::SetError(true);
    gdcm::Trace::SetWarning(true);
    gdcm::Trace::SetDebug(false);
  }
  ~TraceCapture() {
    gdcm::Trace::SetError(false);
    gdcm::Trace::SetWarning(false);
    gdcm::Trace::SetErrorStream(std::cerr);
    gdcm::Trace::SetWarningStream(std::cerr);
  }
  std::string errors() const { return clean(err_.str()); }
  std::string warnings() const { return clean(warn_.str()); }

 private:
  // GDCM writes "Error: In FILE, line N, function SIG\nMESSAGE": keep the last
  // message, without the source location, on one bounded line.
  static std::string clean(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
    size_t nl = s.find_last_of('\n');
    if (nl != std::string::npos) s = s.substr(nl + 1);
    size_t loc = s.rfind("(): ");
    if (loc != std::string::npos) s = s.substr(loc + 4);
    for (char &c : s)
      if (c == '\r' || c == '\t') c = ' ';
    if (s.size() > 300) s = s.substr(0, 300) + "...";
    return s;
  }
  std::ostringstream err_, warn_;
};

// The codecs under GDCM (libjpeg in particular) print some failures straight to
// stderr and still hand back pixels — GDCM 3.0.21 decodes 12-bit lossy JPEG with
// "Unsupported JPEG data precision 12" and ~1% wrong pixels.  While decoding, file
// descriptor 2 goes to a temporary file; anything written there is a decode failure.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    tmp_ = std::tmpfile();
    saved_ = tmp_ ? dup(2) : -1;
    if (saved_ >= 0) dup2(fileno(tmp_), 2);
  }
  ~StderrCapture() { restore(); }
  std::string text() {
    restore();
    if (!tmp_) return "";
    std::string s;
    std::rewind(tmp_);
    char buf[512];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, tmp_)) > 0 && s.size() < 4096) s.append(buf, n);
    std::fclose(tmp_);
    tmp_ = nullptr;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    for (char &c : s)
      if (c == '\n') c = ';';
    return s.size() > 300 ? s.substr(0, 300) + "..." : s;
  }

 private:
  void restore() {
    if (saved_ >= 0) {
      std::fflush(stderr);
      dup2(saved_, 2);
      close(saved_);
      saved_ = -1;
    }
  }
  std::FILE *tmp_ = nullptr;
  int saved_ = -1;
};

// GDCM 3.0.21 aborts the process (an assert) on a file-meta element whose length runs
// past the end of the file.  A bad file must never stop a batch, so before GDCM sees a
// Part 10 file we walk its group-0002 elements (explicit VR little endian by definition)
// and refuse the file when a declared length cannot fit.  Nothing is decoded here: this
// only checks lengths against the file size.  Returns "" when fine, else the reason.
std::string check_file_meta(const char *path, long long fsize) {
  std::ifstream in(path, std::ios::binary);
  std::vector<unsigned char> b(static_cast<size_t>(fsize < 65536 ? fsize : 65536));
  in.read(reinterpret_cast<char *>(b.data()), static_cast<std::streamsize>(b.size()));
  size_t n = static_cast<size_t>(in.gcount());
  if (n < 132 || std::memcmp(b.data() + 128, "DICM", 4) != 0) return "";  // no Part 10 meta: GDCM's own heuristics
  static const char *long_vrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
  long long pos = 132;
  for (int guard = 0; guard < 4096; guard++) {
    if (pos + 8 > static_cast<long long>(n)) return pos + 8 > fsize ? "file meta information cut short" : "";
    const unsigned char *e = b.data() + pos;
    unsigned group = e[0] | (e[1] << 8), elem = e[2] | (e[3] << 8);
    if (group != 0x0002) return "";
    if (e[4] < 'A' || e[4] > 'Z' || e[5] < 'A' || e[5] > 'Z') return "file meta element with an invalid VR";
    bool lng = false;
    for (const char *v : long_vrs) lng |= e[4] == v[0] && e[5] == v[1];
    long long len, hdr = lng ? 12 : 8;
    if (lng) {
      if (pos + 12 > static_cast<long long>(n)) return "file meta information cut short";
      len = static_cast<long long>(e[8] | (e[9] << 8) | (e[10] << 16)) | (static_cast<long long>(e[11]) << 24);
    } else {
      len = e[6] | (e[7] << 8);
    }
    if (len == 0xFFFFFFFFLL || pos + hdr + len > fsize) {
      char msg[160];
      std::snprintf(msg, sizeof msg, "file meta element (0002,%04x) declares %lld bytes but the file has %lld", elem, len,
                    fsize);
      return msg;
    }
    pos += hdr + len;
  }
  return "file meta information too long";
}

std::string value_of(const gdcm::DataSet &ds, uint16_t g, uint16_t e) {
  const gdcm::Tag t(g, e);
  if (!ds.FindDataElement(t)) return "";
  const gdcm::DataElement &de = ds.GetDataElement(t);
  const gdcm::ByteValue *bv = de.GetByteValue();
  if (!bv || bv->GetLength() == 0 || bv->GetLength() > 4096) return "";
  std::string v(bv->GetPointer(), bv->GetLength());
  while (!v.empty() && (v.back() == ' ' || v.back() == '\0')) v.pop_back();
  size_t b = 0;
  while (b < v.size() && v[b] == ' ') b++;
  return v.substr(b);
}

void copy_to(char *dst, size_t cap, const std::string &v) { std::snprintf(dst, cap, "%s", v.c_str()); }

bool first_number(const std::string &s, double *out) {
  if (s.empty()) return false;
  char *end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str()) return false;
  *out = v;
  return true;
}

// US values of an element (little endian after GDCM's reading), up to n.
int us_values(const gdcm::DataSet &ds, const gdcm::Tag &t, int *out, int n) {
  if (!ds.FindDataElement(t)) return 0;
  const gdcm::ByteValue *bv = ds.GetDataElement(t).GetByteValue();
  if (!bv) return 0;
  int k = 0;
  for (uint32_t i = 0; i + 1 < bv->GetLength() && k < n; i += 2, k++) {
    unsigned char lo = static_cast<unsigned char>(bv->GetPointer()[i]);
    unsigned char hi = static_cast<unsigned char>(bv->GetPointer()[i + 1]);
    out[k] = lo | (hi << 8);
  }
  return k;
}

void fill_info(const gdcm::File &file, mp_dicom_info *info, std::vector<uint16_t> *voi) {
  const gdcm::DataSet &ds = file.GetDataSet();
  copy_to(info->patient_id, sizeof info->patient_id, value_of(ds, 0x0010, 0x0020));
  copy_to(info->patient_sex, sizeof info->patient_sex, value_of(ds, 0x0010, 0x0040));
  copy_to(info->view_position, sizeof info->view_position, value_of(ds, 0x0018, 0x5101));
  copy_to(info->laterality, sizeof info->laterality, value_of(ds, 0x0020, 0x0060));
  copy_to(info->image_laterality, sizeof info->image_laterality, value_of(ds, 0x0020, 0x0062));
  copy_to(info->implant, sizeof info->implant, value_of(ds, 0x0028, 0x1300));
  copy_to(info->lut_shape, sizeof info->lut_shape, value_of(ds, 0x2050, 0x0020));
  copy_to(info->image_type, sizeof info->image_type, value_of(ds, 0x0008, 0x0008));
  copy_to(info->photometric, sizeof info->photometric, value_of(ds, 0x0028, 0x0004));
  copy_to(info->study_uid, sizeof info->study_uid, value_of(ds, 0x0020, 0x000d));
  copy_to(info->sop_class_uid, sizeof info->sop_class_uid, value_of(ds, 0x0008, 0x0016));
  copy_to(info->transfer_syntax, sizeof info->transfer_syntax,
          value_of(file.GetHeader(), 0x0002, 0x0010));
  int v[1];
  info->rows = us_values(ds, gdcm::Tag(0x0028, 0x0010), v, 1) ? v[0] : 0;
  info->cols = us_values(ds, gdcm::Tag(0x0028, 0x0011), v, 1) ? v[0] : 0;
  info->samples_per_pixel = us_values(ds, gdcm::Tag(0x0028, 0x0002), v, 1) ? v[0] : 1;
  info->bits_allocated = us_values(ds, gdcm::Tag(0x0028, 0x0100), v, 1) ? v[0] : 0;
  info->bits_stored = us_values(ds, gdcm::Tag(0x0028, 0x0101), v, 1) ? v[0] : 0;
  info->pixel_representation = us_values(ds, gdcm::Tag(0x0028, 0x0103), v, 1) ? v[0] : 0;
  double frames = 1;
  info->frames = first_number(value_of(ds, 0x0028, 0x0008), &frames) ? static_cast<int>(frames) : 1;
  info->has_window = first_number(value_of(ds, 0x0028, 0x1050), &info->window_center) &&
                     first_number(value_of(ds, 0x0028, 0x1051), &info->window_width) && info->window_width > 0;
  info->has_rescale = first_number(value_of(ds, 0x0028, 0x1053), &info->rescale_slope) &&
                      first_number(value_of(ds, 0x0028, 0x1052), &info->rescale_intercept);
  info->has_voi_lut = false;
  const gdcm::Tag voiseq(0x0028, 0x3010);
  if (ds.FindDataElement(voiseq)) {
    gdcm::SmartPointer<gdcm::SequenceOfItems> sq = ds.GetDataElement(voiseq).GetValueAsSQ();
    if (sq && sq->GetNumberOfItems() >= 1) {
      const gdcm::DataSet &it = sq->GetItem(1).GetNestedDataSet();
      int desc[3];
      const gdcm::Tag dtag(0x0028, 0x3006);
      if (us_values(it, gdcm::Tag(0x0028, 0x3002), desc, 3) == 3 && it.FindDataElement(dtag)) {
        int n = desc[0] == 0 ? 65536 : desc[0];
        const gdcm::ByteValue *bv = it.GetDataElement(dtag).GetByteValue();
        if (bv && bv->GetLength() >= static_cast<uint32_t>(2 * n)) {
          voi->resize(static_cast<size_t>(n));
          for (int k = 0; k < n; k++) {
            unsigned char lo = static_cast<unsigned char>(bv->GetPointer()[2 * k]);
            unsigned char hi = static_cast<unsigned char>(bv->GetPointer()[2 * k + 1]);
            (*voi)[static_cast<size_t>(k)] = static_cast<uint16_t>(lo | (hi << 8));
          }
          info->has_voi_lut = true;
          info->voi_lut_entries = n;
          info->voi_lut_first = desc[1] > 32767 && info->pixel_representation ? desc[1] - 65536 : desc[1];
          info->voi_lut_bits = desc[2];
        }
      }
    }
  }
}

}  // namespace

struct mp_dicom_file {
  gdcm::ImageReader reader;
  std::vector<char> pixels;
  std::vector<uint16_t> voi;
  mp_dicom_info info;
  bool decoded = false;
  // native little-endian files: GDCM parsed the attributes and stopped at the pixel
  // data value, which starts at `offset`; decoding is then one read of the frame
  bool native = false;
  std::string path;
  long long offset = 0;
  std::FILE *rows_fp = nullptr; /* mp_dicom_read_rows' handle, opened on first use */
  ~mp_dicom_file() {
    if (rows_fp) std::fclose(rows_fp);
  }
};

// The frame buffer of the native path, reused from file to file (grown, never shrunk):
// a fresh 27 MB buffer per full-field file costs more in page faults and zero-filling
// than reading it.  One per process (the reader is not thread-safe).
std::vector<char> g_frame;

extern "C" {

mp_dicom_file *mp_dicom_open(const char *path, mp_dicom_info *info, char *err, size_t errlen) {
  std::memset(info, 0, sizeof *info);
  mp_dicom_file *f = nullptr;
  try {
    long long fsize = 0; /* measured once, used by every length check below */
    {
      std::ifstream probe(path, std::ios::binary | std::ios::ate);
      if (!probe) {
        set_err(err, errlen, "cannot open the file");
        return nullptr;
      }
      fsize = static_cast<long long>(probe.tellg());
      if (fsize <= 0) {
        set_err(err, errlen, "empty file");
        return nullptr;
      }
      std::string bad = check_file_meta(path, fsize);
      if (!bad.empty()) {
        set_err(err, errlen, "not readable as DICOM: " + bad);
        return nullptr;
      }
    }
    f = new mp_dicom_file();
    TraceCapture cap;
    {
      // Attributes first: GDCM reads up to the pixel data and stops at its value.  For
      // native little-endian data that is all GDCM needs to do; the frame is read by
      // mp_dicom_decode from that offset.  Everything else goes through ImageReader.
      gdcm::Reader hdr;
      hdr.SetFileName(path);
      std::set<gdcm::Tag> skip;
      skip.insert(gdcm::Tag(0x7fe0, 0x0010));
      if (hdr.ReadUpToTag(gdcm::Tag(0x7fe0, 0x0010), skip) && !hdr.GetFile().GetDataSet().IsEmpty()) {
        const gdcm::TransferSyntax ts = hdr.GetFile().GetHeader().GetDataSetTransferSyntax();
        if (ts == gdcm::TransferSyntax::ExplicitVRLittleEndian || ts == gdcm::TransferSyntax::ImplicitVRLittleEndian) {
          fill_info(hdr.GetFile(), &f->info, &f->voi);
          f->native = true;
          f->path = path;
          f->offset = static_cast<long long>(hdr.GetStreamCurrentPosition());
          long long frame = static_cast<long long>(f->info.rows) * f->info.cols * ((f->info.bits_allocated + 7) / 8) *
                            (f->info.samples_per_pixel > 0 ? f->info.samples_per_pixel : 1);
          f->info.pixels_readable = true;
          // the value length GDCM has just read sits in the 4 bytes before the value
          // (explicit VR OB/OW and implicit VR alike): it must fit the file
          long long declared = -1;
          if (f->offset >= 4 && f->offset < fsize) {
            unsigned char l4[4];
            std::ifstream lf(path, std::ios::binary);
            lf.seekg(f->offset - 4);
            if (lf.read(reinterpret_cast<char *>(l4), 4))
              declared = static_cast<long long>(l4[0] | (l4[1] << 8) | (l4[2] << 16)) | (static_cast<long long>(l4[3]) << 24);
          }
          if (f->offset >= fsize) {
            f->info.pixels_readable = false;
            copy_to(f->info.pixel_error, sizeof f->info.pixel_error, "no pixel data");
          } else if (declared < 0 || declared > fsize - f->offset) {
            f->info.pixels_readable = false;
            copy_to(f->info.pixel_error, sizeof f->info.pixel_error,
                    "pixel data truncated: it declares " + std::to_string(declared) + " bytes, the file holds " +
                        std::to_string(fsize - f->offset));
          } else if (declared < frame || fsize - f->offset < frame) {
            f->info.pixels_readable = false;
            copy_to(f->info.pixel_error, sizeof f->info.pixel_error,
                    "pixel data truncated: " + std::to_string(fsize - f->offset) + " of " + std::to_string(frame) +
                        " bytes");
          }
          *info = f->info;
          return f;
        }
      }
    }
    f->reader.SetFileName(path);
    if (f->reader.Read()) {
      fill_info(f->reader.GetFile(), &f->info, &f->voi);
      f->info.pixels_readable = true;
      // GDCM reads a file whose pixel data stops early, zero-fills it and only warns:
      // that is a decode failure for us, never an image with a black band.
      std::string warn = cap.warnings();
      if (warn.find("Incomplete Pixel Data") != std::string::npos) {
        f->info.pixels_readable = false;
        copy_to(f->info.pixel_error, sizeof f->info.pixel_error, "pixel data truncated (GDCM: Incomplete Pixel Data)");
      } else if (f->info.rows > 0 && f->info.cols > 0 && f->info.bits_allocated > 0 &&
                 !f->reader.GetFile().GetHeader().GetDataSetTransferSyntax().IsEncapsulated() &&
                 f->reader.GetFile().GetHeader().GetDataSetTransferSyntax() !=
                     gdcm::TransferSyntax::DeflatedExplicitVRLittleEndian) {
        // native pixel data: the file must at least hold one frame
        long long need = static_cast<long long>(f->info.rows) * f->info.cols * ((f->info.bits_allocated + 7) / 8) *
                         (f->info.samples_per_pixel > 0 ? f->info.samples_per_pixel : 1);
        if (fsize < need) {
          f->info.pixels_readable = false;
          copy_to(f->info.pixel_error, sizeof f->info.pixel_error,
                  "pixel data truncated: the file is shorter than one frame");
        }
      }
    } else {
      // the image part failed: are the attributes readable on their own?
      std::string why = cap.errors();
      gdcm::Reader hdr;
      hdr.SetFileName(path);
      std::set<gdcm::Tag> none;
      if (!hdr.ReadUpToTag(gdcm::Tag(0x7fe0, 0x0010), none) || hdr.GetFile().GetDataSet().IsEmpty()) {
        set_err(err, errlen, std::string("not readable as DICOM") + (why.empty() ? "" : ": " + why));
        delete f;
        return nullptr;
      }
      fill_info(hdr.GetFile(), &f->info, &f->voi);
      f->info.pixels_readable = false;
      copy_to(f->info.pixel_error, sizeof f->info.pixel_error,
              why.empty() ? std::string("GDCM could not read the pixel data") : why);
    }
    *info = f->info;
    return f;
  } catch (const std::bad_alloc &) {
    set_err(err, errlen, "not readable as DICOM: an element declares an impossible length");
  } catch (const std::exception &e) {
    set_err(err, errlen, std::string("not readable as DICOM: ") + e.what());
  } catch (...) {
    set_err(err, errlen, "not readable as DICOM: GDCM threw an unknown exception");
  }
  delete f;
  return nullptr;
}

int mp_dicom_decode(mp_dicom_file *f, const void **data, int *bits, int *is_signed, char *err, size_t errlen) {
  try {
    if (!f->info.pixels_readable) {
      set_err(err, errlen, f->info.pixel_error);
      return -1;
    }
    if (f->native) {
      const mp_dicom_info &in = f->info;
      if (in.samples_per_pixel != 1) {
        set_err(err, errlen, "not a grayscale image (samples per pixel " + std::to_string(in.samples_per_pixel) + ")");
        return -1;
      }
      if (in.bits_allocated != 8 && in.bits_allocated != 16) {
        set_err(err, errlen, "unsupported pixel layout (" + std::to_string(in.bits_allocated) + " bits allocated)");
        return -1;
      }
      size_t frame = static_cast<size_t>(in.rows) * static_cast<size_t>(in.cols) * static_cast<size_t>(in.bits_allocated / 8);
      if (g_frame.size() < frame) g_frame.resize(frame);
      std::FILE *fp = std::fopen(f->path.c_str(), "rb");
      bool ok = fp && fseeko(fp, static_cast<off_t>(f->offset), SEEK_SET) == 0 &&
                std::fread(g_frame.data(), 1, frame, fp) == frame;
      if (fp) std::fclose(fp);
      if (!ok) {
        set_err(err, errlen, "cannot read the pixel data");
        return -1;
      }
      *data = g_frame.data();
      *bits = in.bits_allocated;
      *is_signed = in.pixel_representation == 1;
      return 0;
    }
    const gdcm::Image &img = f->reader.GetImage();
    const mp_dicom_info &in = f->info;
    if (in.samples_per_pixel != 1 || img.GetPixelFormat().GetSamplesPerPixel() != 1) {
      set_err(err, errlen, "not a grayscale image (samples per pixel " + std::to_string(in.samples_per_pixel) + ")");
      return -1;
    }
    const unsigned int *dims = img.GetDimensions();
    unsigned short ba = img.GetPixelFormat().GetBitsAllocated();
    if ((ba != 8 && ba != 16) || dims[0] != static_cast<unsigned>(in.cols) || dims[1] != static_cast<unsigned>(in.rows)) {
      set_err(err, errlen, "unsupported pixel layout (" + std::to_string(ba) + " bits allocated)");
      return -1;
    }
    if (!f->decoded) {
      TraceCapture cap;
      StderrCapture raw;
      unsigned long len = img.GetBufferLength();
      unsigned long frame = static_cast<unsigned long>(in.rows) * static_cast<unsigned long>(in.cols) * (ba / 8);
      if (len < frame) {
        set_err(err, errlen, "pixel data shorter than one frame");
        return -1;
      }
      f->pixels.resize(len);
      bool ok = img.GetBuffer(f->pixels.data());
      std::string why = cap.errors();
      std::string said = raw.text();
      if (why.empty() && !said.empty()) why = "codec: " + said;
      if (!ok || !why.empty()) {
        set_err(err, errlen, why.empty() ? std::string("GDCM could not decode the pixel data") : why);
        return -1;
      }
      f->decoded = true;
      f->info.bits_allocated = ba;
      f->info.pixel_representation = img.GetPixelFormat().GetPixelRepresentation();
    }
    *data = f->pixels.data();
    *bits = f->info.bits_allocated;
    *is_signed = f->info.pixel_representation == 1;
    return 0;
  } catch (const std::bad_alloc &) {
    set_err(err, errlen, "out of memory decoding the pixel data");
  } catch (const std::exception &e) {
    set_err(err, errlen, std::string("GDCM exception: ") + e.what());
  } catch (...) {
    set_err(err, errlen, "GDCM threw an unknown exception while decoding");
  }
  return -1;
}

int mp_dicom_rows(const mp_dicom_file *f, int *bits, int *is_signed) {
  const mp_dicom_info &in = f->info;
  if (!f->native || !in.pixels_readable || in.samples_per_pixel != 1 ||
      (in.bits_allocated != 8 && in.bits_allocated != 16))
    return 0;
  *bits = in.bits_allocated;
  *is_signed = in.pixel_representation == 1;
  return 1;
}

int mp_dicom_read_rows(mp_dicom_file *f, int row0, int n, void *buf, char *err, size_t errlen) {
  int bits, sgn;
  if (!mp_dicom_rows(f, &bits, &sgn)) {
    set_err(err, errlen, "pixel data not readable by rows");
    return -1;
  }
  const mp_dicom_info &in = f->info;
  if (row0 < 0 || n < 0 || row0 + n > in.rows) {
    set_err(err, errlen, "rows out of range");
    return -1;
  }
  const size_t row_bytes = static_cast<size_t>(in.cols) * static_cast<size_t>(bits / 8);
  if (!f->rows_fp) f->rows_fp = std::fopen(f->path.c_str(), "rb");
  const off_t at = static_cast<off_t>(f->offset) + static_cast<off_t>(row0) * static_cast<off_t>(row_bytes);
  const size_t want = static_cast<size_t>(n) * row_bytes;
  if (!f->rows_fp || fseeko(f->rows_fp, at, SEEK_SET) != 0 || std::fread(buf, 1, want, f->rows_fp) != want) {
    set_err(err, errlen, "cannot read the pixel data");
    return -1;
  }
  return 0;
}

const uint16_t *mp_dicom_voi_lut(const mp_dicom_file *f) { return f->voi.empty() ? nullptr : f->voi.data(); }

void mp_dicom_close(mp_dicom_file *f) { delete f; }


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
