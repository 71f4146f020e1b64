// mp_dicom_gdcm — the GDCM implementation behind mp_dicom.h (the only C++ in the
// suite).  Every GDCM call is wrapped so that neither exceptions nor GDCM's warnings
// leave this file: failures come back as a status and a message.
#include "mp_dicom.h"

#include <algorithm>
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

#include <zlib.h>

#include <gdcmAttribute.h>
#include <gdcmDataElement.h>
#include <gdcmDataSet.h>
#include <gdcmDict.h>
#include <gdcmDicts.h>
#include <gdcmFile.h>
#include <gdcmFileMetaInformation.h>
#include <gdcmGlobal.h>
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

// GDCM 3.0.21 (Debian's build keeps its asserts) aborts the process on a file whose
// element lengths do not fit the file: a file cut short inside its header, a length field
// overwritten, a sequence item that is not one.  A bad file must never stop a batch, so
// before GDCM sees a Part 10 file we walk its structure ourselves and refuse it when an
// element cannot be where its header says.  Nothing is decoded here: element headers are
// read (a few bytes each, from a 64 KiB window) and values skipped by their lengths,
// nested sequences and encapsulated pixel data included.  The group-0002 file meta
// information is explicit VR little endian by definition; the data set follows its
// transfer syntax (explicit or implicit VR, little or big endian); a deflated data set is
// inflated (zlib) and walked in memory.

// The top-level pixel data as the structure walk found it (the walk lets pixel data that the
// file cuts short pass, for the pixel checks before GDCM's image reader).
struct PixelLayout {
  long long pos = -1;   // encapsulated: where the first fragment's value starts (-1: none)
  unsigned length = 0;  // and its length
  std::string syntax;   // the file's transfer syntax
  long long overrun = 0;  // bytes its value or one of its fragments declares past the end of the file
  bool cut = false;       // the file ends inside the fragments (GDCM's recovery from that asserts)
};

class ByteWindow {  // positioned reads of a file through one 64 KiB window, or of bytes in memory
 public:
  ByteWindow(const char *path, long long size) : in_(path, std::ios::binary), size_(size) {}
  explicit ByteWindow(const std::vector<unsigned char> &mem)
      : size_(static_cast<long long>(mem.size())), mem_(mem.data()) {}
  long long size() const { return size_; }
  // n (<= 16) bytes at pos, or nullptr when they are not in the file
  const unsigned char *at(long long pos, int n) {
    if (pos < 0 || pos + n > size_) return nullptr;
    if (mem_) return mem_ + pos;
    if (pos < base_ || pos + n > base_ + have_) {
      base_ = pos;
      in_.clear();
      in_.seekg(pos);
      in_.read(reinterpret_cast<char *>(buf_), sizeof buf_);
      have_ = static_cast<long long>(in_.gcount());
      if (pos + n > base_ + have_) return nullptr;
    }
    return buf_ + (pos - base_);
  }

 private:
  std::ifstream in_;
  long long size_, base_ = 0, have_ = 0;
  const unsigned char *mem_ = nullptr;
  unsigned char buf_[65536];

 public:
  bool pixel_data_seen = false;  // a top-level (7FE0,0010) was walked
  PixelLayout pixels;            // and what it holds
};

// A deflated data set (raw deflate after the file meta information), inflated whole, at
// most 1 GiB.  "" when the stream is complete, else why not.
std::string inflate_rest(const char *path, long long from, std::vector<unsigned char> *out) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(from);
  z_stream z{};
  if (inflateInit2(&z, -15) != Z_OK) return "zlib cannot start";
  std::vector<unsigned char> chunk(1 << 16);
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    in.read(reinterpret_cast<char *>(chunk.data()), static_cast<std::streamsize>(chunk.size()));
    z.next_in = chunk.data();
    z.avail_in = static_cast<uInt>(in.gcount());
    if (z.avail_in == 0) break;  // the file ended before the stream did
    while (z.avail_in > 0 && rc != Z_STREAM_END) {
      size_t have = out->size();
      if (have > (size_t(1) << 30)) {
        inflateEnd(&z);
        return "deflated data set larger than 1 GiB";
      }
      out->resize(have + (1 << 18));
      z.next_out = out->data() + have;
      z.avail_out = 1 << 18;
      rc = inflate(&z, Z_NO_FLUSH);
      out->resize(have + (1 << 18) - z.avail_out);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
        inflateEnd(&z);
        return std::string("deflated data set corrupt (zlib: ") + (z.msg ? z.msg : "error") + ")";
      }
    }
  }
  inflateEnd(&z);
  return rc == Z_STREAM_END ? "" : "deflated data set cut short";
}

struct WalkSyntax {
  bool explicit_vr, big_endian;
};

const unsigned kUndefined = 0xFFFFFFFFu;

unsigned rd16(const unsigned char *p, bool be) { return be ? (p[0] << 8) | p[1] : p[0] | (p[1] << 8); }
unsigned rd32(const unsigned char *p, bool be) {
  return be ? (unsigned(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]
            : p[0] | (p[1] << 8) | (p[2] << 16) | (unsigned(p[3]) << 24);
}

bool known_vr(const unsigned char *vr) {  // PS3.5 6.2 (GDCM asserts on any other)
  static const char *v[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL",
                            "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US",
                            "UT", "UV"};
  for (const char *x : v)
    if (vr[0] == x[0] && vr[1] == x[1]) return true;
  return false;
}

bool long_form_vr(const unsigned char *vr) {  // VRs with 2 reserved bytes and a 32-bit length
  static const char *v[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
  for (const char *x : v)
    if (vr[0] == x[0] && vr[1] == x[1]) return true;
  return false;
}

std::string tag_name(unsigned g, unsigned e) {
  char t[16];
  std::snprintf(t, sizeof t, "(%04x,%04x)", g, e);
  return t;
}

// One element header at pos: tag, VR (explicit VR only; "" for items and delimiters),
// value length and header size.  Empty string when fine, else why not.
struct ElementHeader {
  unsigned group, elem, length;
  unsigned char vr[2];
  int size;
};

std::string read_header(ByteWindow &w, long long pos, WalkSyntax ts, ElementHeader *h) {
  const unsigned char *e = w.at(pos, 8);
  if (!e) return "the file ends inside an element header at byte " + std::to_string(pos);
  bool be = ts.big_endian && rd16(e, false) != 0x0002;  // group 2 stays little endian
  h->group = rd16(e, be), h->elem = rd16(e + 2, be);
  h->vr[0] = h->vr[1] = 0;
  if (h->group == 0xFFFE || !(ts.explicit_vr || h->group == 0x0002)) {  // items, delimiters, implicit VR
    h->length = rd32(e + 4, be), h->size = 8;
    return "";
  }
  h->vr[0] = e[4], h->vr[1] = e[5];
  if (!known_vr(e + 4)) return "element " + tag_name(h->group, h->elem) + " has an invalid VR";
  if (long_form_vr(e + 4)) {
    const unsigned char *l = w.at(pos + 8, 4);
    if (!l) return "the file ends inside element " + tag_name(h->group, h->elem) + "'s header";
    h->length = rd32(l, be), h->size = 12;
  } else {
    h->length = rd16(e + 6, be), h->size = 8;
  }
  return "";
}

// GDCM reads the image's own attributes (the Image Pixel module and the rest of group
// 0028, the geometry ones of group 0018/0020, in the data set or in a functional group)
// into typed attributes and asserts, killing the process, when the file gives one of them
// another VR (Columns as IS, Bits Allocated as OW: one flipped byte in a tag makes that).
// In explicit VR such an element's VR must be the dictionary's, one of its alternatives
// (US or SS), or UN (whose bytes GDCM reads as the dictionary's VR).  "" when it is.
std::string typed_vr_mismatch(const ElementHeader &h) {
  const bool geometry = (h.group == 0x0020 && (h.elem == 0x0032 || h.elem == 0x0037)) ||
                        (h.group == 0x0018 && (h.elem == 0x0050 || h.elem == 0x0088 || h.elem == 0x1164));
  if (h.group != 0x0028 && !geometry) return "";
  const char vr[3] = {static_cast<char>(h.vr[0]), static_cast<char>(h.vr[1]), 0};
  const gdcm::VR file_vr(gdcm::VR::GetVRTypeFromFile(vr));
  if (file_vr == gdcm::VR::UN) return "";
  const gdcm::Dict &dict = gdcm::Global::GetInstance().GetDicts().GetPublicDict();
  const gdcm::DictEntry &entry = dict.GetDictEntry(gdcm::Tag(static_cast<uint16_t>(h.group), static_cast<uint16_t>(h.elem)));
  const gdcm::VR want = entry.GetVR();
  if (want == gdcm::VR::INVALID || want == gdcm::VR::UN || want.Compatible(file_vr)) return "";
  return "element " + tag_name(h.group, h.elem) + " has VR " + vr + " where the standard has " + gdcm::VR::GetVRString(want);
}

// Walks a data set from pos: up to `end` (a defined length), or to the item delimiter
// when item_delimited (which it consumes).  *pos ends after what was walked.
std::string walk_dataset(ByteWindow &w, long long *pos, long long end, bool item_delimited, WalkSyntax ts, int depth);

// A sequence's items from pos (its value), up to end or its sequence delimiter.
std::string walk_items(ByteWindow &w, long long *pos, long long end, bool delimited, WalkSyntax ts, int depth,
                       bool fragments) {
  for (int n = 0;; n++) {
    if (!delimited && *pos >= end) return "";
    if (n > 1000000) return "a sequence with more than a million items";
    ElementHeader h;
    std::string bad = read_header(w, *pos, WalkSyntax{false, ts.big_endian}, &h);
    if (!bad.empty()) return bad;
    if (h.group == 0xFFFE && h.elem == 0xE0DD) {  // sequence delimiter
      if (!delimited) return "a sequence delimiter inside a sequence of defined length";
      *pos += 8;
      return "";
    }
    if (h.group != 0xFFFE || h.elem != 0xE000)
      return "a sequence holds " + tag_name(h.group, h.elem) + " where an item belongs";
    *pos += 8;
    if (fragments && depth == 0 && n == 1 && h.length != kUndefined) {  // item 0 is the offset table
      w.pixels.pos = *pos;
      w.pixels.length = h.length;
    }
    if (h.length == kUndefined) {
      if (fragments) return "an encapsulated pixel data fragment of undefined length";
      std::string b = walk_dataset(w, pos, end, true, ts, depth + 1);
      if (!b.empty()) return b;
    } else {
      long long item_end = *pos + static_cast<long long>(h.length);
      if (item_end > (delimited ? w.size() : end)) {
        if (fragments && depth == 0) w.pixels.overrun = std::max(w.pixels.overrun, item_end - w.size());
        if (fragments && n == 0)  // GDCM asserts on this one; a later fragment cut short it reports
          return "the basic offset table of the pixel data declares " + std::to_string(h.length) +
                 " bytes, more than the file holds";
        return "a sequence item declares " + std::to_string(h.length) + " bytes beyond its end";
      }
      if (!fragments) {
        std::string b = walk_dataset(w, pos, item_end, false, ts, depth + 1);
        if (!b.empty()) return b;
      }
      *pos = item_end;
    }
  }
}

std::string walk_dataset(ByteWindow &w, long long *pos, long long end, bool item_delimited, WalkSyntax ts, int depth) {
  if (depth > 32) return "sequences nested more than 32 deep";
  // the top level's tags: one that comes again makes the file mean what a reader picks
  // (GDCM keeps the first, pydicom the last), so it is refused; PS3.5 7.1 allows each once
  std::set<unsigned> seen;
  unsigned last = 0;
  for (int n = 0;; n++) {
    if (!item_delimited && *pos >= end) return *pos == end ? "" : "an item's elements run past its length";
    if (item_delimited && *pos >= w.size()) return "the file ends inside a sequence item";
    if (n > 10000000) return "a data set with more than ten million elements";
    ElementHeader h;
    std::string bad = read_header(w, *pos, ts, &h);
    if (!bad.empty()) return bad;
    if (h.group == 0xFFFE && h.elem == 0xE00D) {  // item delimiter
      if (!item_delimited) return "an item delimiter outside an item of undefined length";
      *pos += 8;
      return "";
    }
    if (h.group == 0xFFFE) return "a sequence item outside a sequence";
    if (depth == 0 && h.group == 0x7FE0 && h.elem == 0x0010) w.pixel_data_seen = true;
    if (depth == 0) {
      const unsigned tag = (h.group << 16) | h.elem;
      if (tag <= last && seen.count(tag)) return "element " + tag_name(h.group, h.elem) + " appears twice";
      seen.insert(tag);
      last = tag > last ? tag : last;
    }
    if (ts.explicit_vr) {
      std::string vr_bad = typed_vr_mismatch(h);
      if (!vr_bad.empty()) return vr_bad;
    }
    *pos += h.size;
    const bool sq = ts.explicit_vr ? (h.vr[0] == 'S' && h.vr[1] == 'Q') : false;
    if (h.length == kUndefined) {
      // undefined length: a sequence (SQ; UN and implicit VR too, which are implicit VR
      // little endian inside), or encapsulated pixel data (fragments)
      const bool pixels = h.group == 0x7FE0 && h.elem == 0x0010;
      const bool un = h.vr[0] == 'U' && h.vr[1] == 'N';
      if (!pixels && ts.explicit_vr && !sq && !un)
        return "element " + tag_name(h.group, h.elem) + " has an undefined length";
      // encapsulated pixel data is OB (PS3.5 A.4); GDCM asserts on another VR (OD: fuzzer)
      if (pixels && ts.explicit_vr && !un && !(h.vr[0] == 'O' && (h.vr[1] == 'B' || h.vr[1] == 'W')))
        return std::string("encapsulated pixel data with VR ") + static_cast<char>(h.vr[0]) +
               static_cast<char>(h.vr[1]);
      WalkSyntax inner = un ? WalkSyntax{false, false} : ts;
      std::string b = walk_items(w, pos, w.size(), true, inner, depth, pixels);
      // encapsulated pixel data that the end of the file cuts short: the pixel checks' case
      if (!b.empty() && pixels && depth == 0 && (b.rfind("the file ends", 0) == 0 || b.find("beyond its end") != b.npos)) {
        w.pixels.cut = true;
        return "";
      }
      if (!b.empty()) return b.find("(") == std::string::npos ? b + ", in element " + tag_name(h.group, h.elem) : b;
      continue;
    }
    const long long value_end = *pos + static_cast<long long>(h.length);
    // pixel data that runs past the end of the file: GDCM reads the attributes before it
    // safely, and the pixel checks report it ("pixel data truncated")
    if (depth == 0 && h.group == 0x7FE0 && h.elem == 0x0010 && value_end > end) {
      w.pixels.overrun = value_end - end;
      return "";
    }
    if (value_end > (item_delimited ? w.size() : end))
      return "element " + tag_name(h.group, h.elem) + " declares " + std::to_string(h.length) + " bytes but " +
             std::to_string((item_delimited ? w.size() : end) - *pos) + " remain";
    if (sq) {
      std::string b = walk_items(w, pos, value_end, false, ts, depth, false);
      if (!b.empty()) return b;
    }
    *pos = value_end;
  }
}

// A JPEG codestream's header (ITU T.81 B.2), from SOI to the first SOS, in the first
// fragment of a JPEG-encapsulated file (PS3.5 A.4.1: each frame's first fragment begins
// with SOI).  GDCM's JPEG codecs assert, killing the process, on any warning libjpeg
// raises while reading the header, such as stray bytes between two marker segments; a
// header that is not a chain of marker segments is therefore a decode error of ours.
// "" when the header walks to SOS.
std::string jpeg_header_fault(const char *path, const PixelLayout &fr) {
  static const char *jpeg[] = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                               "1.2.840.10008.1.2.4.70"};
  bool is_jpeg = false;
  for (const char *t : jpeg) is_jpeg = is_jpeg || fr.syntax == t;
  if (!is_jpeg || fr.pos < 0) return "";
  std::vector<unsigned char> b(std::min<unsigned>(fr.length, 1u << 20));
  std::ifstream in(path, std::ios::binary);
  in.seekg(fr.pos);
  in.read(reinterpret_cast<char *>(b.data()), static_cast<std::streamsize>(b.size()));
  b.resize(static_cast<size_t>(in.gcount()));
  const size_t n = b.size();
  if (n < 2 || b[0] != 0xFF || b[1] != 0xD8) return "JPEG pixel data: the first fragment does not begin with SOI";
  bool sof = false;
  for (size_t i = 2;;) {
    if (i >= n) return "JPEG pixel data: the header ends before its SOS marker";
    if (b[i] != 0xFF)
      return "JPEG pixel data: stray bytes where a marker belongs, at byte " + std::to_string(i) + " of the header";
    while (i < n && b[i] == 0xFF) i++;  // fill bytes
    if (i >= n) return "JPEG pixel data: the header ends before its SOS marker";
    const unsigned m = b[i++];
    if (m == 0x00 || m == 0xD8 || m == 0xD9)
      return "JPEG pixel data: marker 0x" + std::string(m == 0 ? "00" : m == 0xD8 ? "D8" : "D9") + " inside the header";
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // TEM, RSTn: no length
    if (i + 2 > n) return "JPEG pixel data: the header ends inside a marker segment";
    const size_t len = (static_cast<size_t>(b[i]) << 8) | b[i + 1];
    if (len < 2 || i + len > n) return "JPEG pixel data: a marker segment longer than the header holds";
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) sof = true;  // SOFn
    if (m == 0xDA) return sof ? "" : "JPEG pixel data: SOS without a frame header (SOF)";
    i += len;
  }
}

// A JPEG 2000 codestream's main header start (ISO 15444-1 A.5.1: SOC, then SIZ) in the first
// fragment of a JPEG 2000 file, against the image's attributes.  openjpeg trusts SIZ and GDCM
// goes on past a fragment that is not a codestream: corrupt ones made the process allocate
// 4-5 GB for a 512 x 512 image before failing (fuzzer), which a rank with several files in
// flight may not survive.  A fragment that begins with the JP2 signature box (a file format
// some writers wrap the codestream in) is left to openjpeg.  "" when the header fits.
std::string j2k_header_fault(const char *path, const PixelLayout &fr, const mp_dicom_info &in) {
  if ((fr.syntax != "1.2.840.10008.1.2.4.90" && fr.syntax != "1.2.840.10008.1.2.4.91") || fr.pos < 0) return "";
  unsigned char b[44] = {0};
  std::ifstream f(path, std::ios::binary);
  f.seekg(fr.pos);
  f.read(reinterpret_cast<char *>(b), std::min<std::streamsize>(sizeof b, fr.length));
  const long long n = f.gcount();
  static const unsigned char jp2[12] = {0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A};
  if (n >= 12 && std::memcmp(b, jp2, 12) == 0) return "";
  if (n < 4 || b[0] != 0xFF || b[1] != 0x4F || b[2] != 0xFF || b[3] != 0x51)
    return "JPEG 2000 pixel data: the first fragment does not begin with a codestream (SOC, SIZ)";
  if (n < 42) return "JPEG 2000 pixel data: the codestream's SIZ segment is cut short";
  const unsigned xs = rd32(b + 8, true), ys = rd32(b + 12, true), xo = rd32(b + 16, true), yo = rd32(b + 20, true);
  const unsigned xt = rd32(b + 24, true), yt = rd32(b + 28, true), comps = rd16(b + 40, true);
  const bool size_ok = xs > xo && ys > yo && xs - xo == static_cast<unsigned>(in.cols) &&
                       ys - yo == static_cast<unsigned>(in.rows);
  if (!size_ok || xt == 0 || yt == 0 || comps != static_cast<unsigned>(in.samples_per_pixel)) {
    char msg[200];
    std::snprintf(msg, sizeof msg,
                  "JPEG 2000 pixel data: the codestream declares %lld x %lld pixels (tiles %u x %u), %u "
                  "components; the attributes %d x %d, %d",
                  static_cast<long long>(ys) - yo, static_cast<long long>(xs) - xo, yt, xt, comps, in.rows, in.cols,
                  in.samples_per_pixel);
    return msg;
  }
  return "";
}

// The checks of the top-level pixel data before GDCM's image reader runs: GDCM allocates what
// the pixel data declares before it finds the file short (4 GB for a length field with a
// flipped bit) and asserts in its recovery from fragments that the file cuts short; then the
// JPEG and (with the attributes, `in`) the JPEG 2000 headers.  "" when none fails.
std::string pixel_data_fault(const char *path, const PixelLayout &fr, const mp_dicom_info *in) {
  if (fr.overrun > 0)
    return "pixel data truncated: it declares " + std::to_string(fr.overrun) + " bytes more than the file holds";
  if (fr.cut) return "pixel data truncated: the file ends inside its fragments";
  std::string bad = jpeg_header_fault(path, fr);
  return bad.empty() && in ? j2k_header_fault(path, fr, *in) : bad;
}

// Returns "" when the file's structure fits it, else the reason.  Only Part 10 files (a
// 128-byte preamble, "DICM", the file meta information) are read: without them the byte
// order and VR handling are guesses, GDCM's heuristics for such files assert on some (a
// Part 10 file with two stray bytes in front killed the process), and an archive's
// exports are Part 10 files (PS3.10 7.1).  *pixels: false when the file was walked and
// holds no pixel data element.
std::string check_structure(const char *path, long long fsize, bool *pixels, PixelLayout *frag) {
  ByteWindow w(path, fsize);
  *pixels = true;
  *frag = PixelLayout{};
  const unsigned char *pre = w.at(128, 4);
  if (!pre || std::memcmp(pre, "DICM", 4) != 0) return "not a DICOM Part 10 file (no \"DICM\" at byte 128)";
  // the file meta information, noting the transfer syntax
  long long pos = 132;
  std::string syntax;
  for (;;) {
    const unsigned char *e = w.at(pos, 8);
    if (!e) return pos + 8 > fsize ? "file meta information cut short" : "";
    if (rd16(e, false) != 0x0002) break;
    ElementHeader h;
    std::string bad = read_header(w, pos, WalkSyntax{true, false}, &h);
    if (!bad.empty()) return "file meta: " + bad;
    if (h.length == kUndefined || pos + h.size + static_cast<long long>(h.length) > fsize) {
      char msg[160];
      std::snprintf(msg, sizeof msg, "file meta element (0002,%04x) declares %u bytes but the file has %lld", h.elem,
                    h.length, fsize);
      return msg;
    }
    if (h.elem == 0x0010 && h.length < 128) {
      for (unsigned i = 0; i < h.length; i++) {
        const unsigned char *c = w.at(pos + h.size + i, 1);
        if (c && *c && *c != ' ') syntax.push_back(static_cast<char>(*c));
      }
    }
    pos += h.size + static_cast<long long>(h.length);
    if (pos - 132 > (1 << 20)) return "file meta information too long";
  }
  // without it GDCM guesses the encoding, and a guess that differs from this walk's read a
  // 16-bit length as a 3 GB value (fuzzer); PS3.10 7.1 makes it Type 1
  if (syntax.empty()) return "file meta information without a Transfer Syntax UID (0002,0010)";
  if (syntax == "1.2.840.10008.1.2.1.99") {  // deflated: the data set inflated, then walked (explicit VR LE)
    std::vector<unsigned char> ds;
    std::string bad = inflate_rest(path, pos, &ds);
    if (!bad.empty()) return bad;
    ByteWindow m(ds);
    long long p = 0;
    bad = walk_dataset(m, &p, m.size(), false, WalkSyntax{true, false}, 0);
    *pixels = m.pixel_data_seen;
    return bad.empty() ? "" : "deflated data set: " + bad;
  }
  WalkSyntax ts{syntax != "1.2.840.10008.1.2", syntax == "1.2.840.10008.1.2.2"};
  std::string bad = walk_dataset(w, &pos, fsize, false, ts, 0);
  *pixels = w.pixel_data_seen;
  *frag = w.pixels;
  frag->syntax = syntax;
  return bad.empty() ? "" : "data set: " + bad;
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

// A file's lookup tables, one entry per uint16_t (mp_dicom_luts points into them).
struct lut_tables {
  std::vector<uint16_t> modality, voi;
};

// The first item of a LUT sequence (Modality LUT (0028,3000), VOI LUT (0028,3010)): its LUT
// Descriptor (0028,3002) — entries (0 meaning 65536), the first stored value mapped (signed
// when the pixels are), bits per entry — and its LUT Data (0028,3006), one uint16_t per entry.
// 8-bit entries come packed two to a 16-bit word (PS3.3 C.11.1.1.1: "equivalent to 8 bits
// allocated") or, as many writers store them, one per word: the data's length says which.
// false when absent or inconsistent (bits outside 1..16, less data than entries).
bool read_lut(const gdcm::DataSet &ds, uint16_t seq_element, int signed_pixels, std::vector<uint16_t> *lut,
              int *entries, int *first, int *bits) {
  const gdcm::Tag seq(0x0028, seq_element);
  if (!ds.FindDataElement(seq)) return false;
  gdcm::SmartPointer<gdcm::SequenceOfItems> sq = ds.GetDataElement(seq).GetValueAsSQ();
  if (!sq || sq->GetNumberOfItems() < 1) return false;
  const gdcm::DataSet &it = sq->GetItem(1).GetNestedDataSet();
  int desc[3];
  const gdcm::Tag dtag(0x0028, 0x3006);
  if (us_values(it, gdcm::Tag(0x0028, 0x3002), desc, 3) != 3 || !it.FindDataElement(dtag)) return false;
  if (desc[2] < 1 || desc[2] > 16) return false;
  const gdcm::ByteValue *bv = it.GetDataElement(dtag).GetByteValue();
  const uint32_t n = desc[0] == 0 ? 65536u : static_cast<uint32_t>(desc[0]);
  if (!bv) return false;
  const unsigned char *b = reinterpret_cast<const unsigned char *>(bv->GetPointer());
  const uint32_t len = bv->GetLength();
  lut->resize(n);
  if (len >= 2 * n) {
    for (uint32_t k = 0; k < n; k++) (*lut)[k] = static_cast<uint16_t>(b[2 * k] | (b[2 * k + 1] << 8));
  } else if (desc[2] <= 8 && len >= n) {
    for (uint32_t k = 0; k < n; k++) (*lut)[k] = b[k];
  } else {
    lut->clear();
    return false;
  }
  *entries = static_cast<int>(n);
  *first = desc[1] > 32767 && signed_pixels ? desc[1] - 65536 : desc[1];
  *bits = desc[2];
  return true;
}

void fill_info(const gdcm::File &file, mp_dicom_info *info, lut_tables *luts) {
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
  copy_to(info->voi_function, sizeof info->voi_function, value_of(ds, 0x0028, 0x1056));
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
  info->has_voi_lut = read_lut(ds, 0x3010, info->pixel_representation, &luts->voi, &info->voi_lut_entries,
                               &info->voi_lut_first, &info->voi_lut_bits);
  info->has_modality_lut = read_lut(ds, 0x3000, info->pixel_representation, &luts->modality,
                                    &info->modality_lut_entries, &info->modality_lut_first, &info->modality_lut_bits);
}

// A mammogram is a grayscale image: pixels of any other photometric interpretation
// (PALETTE COLOR indices, RGB, YBR) or with more than one sample are not intensities, so they
// are not readable as one (and GDCM's image reader asserts on some sample counts).
// A file without the attribute is taken as MONOCHROME2, as the windowing does.  An image
// needs at least one row and one column: Rows or Columns 0 (or absent, or a value cut to
// one byte) would otherwise decode as an empty image.
void grayscale_only(mp_dicom_info *in) {
  const char *p = in->photometric;
  if (!in->pixels_readable) return;
  if (in->rows <= 0 || in->cols <= 0) {
    in->pixels_readable = false;
    std::snprintf(in->pixel_error, sizeof in->pixel_error, "no pixels (Rows %d, Columns %d)", in->rows, in->cols);
  } else if (in->samples_per_pixel != 1) {
    in->pixels_readable = false;
    std::snprintf(in->pixel_error, sizeof in->pixel_error, "not a grayscale image (samples per pixel %d)",
                  in->samples_per_pixel);
  } else if (*p && std::strcmp(p, "MONOCHROME1") && std::strcmp(p, "MONOCHROME2")) {
    in->pixels_readable = false;
    std::snprintf(in->pixel_error, sizeof in->pixel_error, "not a grayscale image (photometric interpretation %s)", p);
  }
}

}  // namespace

struct mp_dicom_file {
  gdcm::ImageReader reader;
  std::vector<char> pixels;
  lut_tables luts;
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
    bool has_pixels = true;
    PixelLayout frag;
    bool pixels_checked = false; /* the pixel data checks before GDCM's image reader ran */
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
      std::string bad = check_structure(path, fsize, &has_pixels, &frag);
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
          fill_info(hdr.GetFile(), &f->info, &f->luts);
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
          if (f->offset < 0 || f->offset >= fsize) { /* GDCM's stream ended before any pixel data */
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
          grayscale_only(&f->info);
          *info = f->info;
          return f;
        }
        // no pixel data, or pixels that are not grayscale: nothing to decode, so GDCM's image
        // reader (which asserts on some such files: a palette without its LUT data) is not run
        fill_info(hdr.GetFile(), &f->info, &f->luts);
        f->info.pixels_readable = true;
        grayscale_only(&f->info);
        const std::string pixel_bad = !has_pixels              ? "no pixel data"
                                      : f->info.pixels_readable ? pixel_data_fault(path, frag, &f->info)
                                                                : "";
        if (!pixel_bad.empty()) {
          f->info.pixels_readable = false;
          copy_to(f->info.pixel_error, sizeof f->info.pixel_error, pixel_bad);
        }
        if (!f->info.pixels_readable) {
          *info = f->info;
          return f;
        }
        pixels_checked = true;
        f->info = mp_dicom_info{};
        f->luts = lut_tables{};
      }
    }
    if (!pixels_checked) {  // GDCM could not read the attributes alone: the checks that need none
      const std::string bad = pixel_data_fault(path, frag, nullptr);
      if (!bad.empty()) {
        set_err(err, errlen, "not readable as DICOM: " + bad);
        delete f;
        return nullptr;
      }
    }
    f->reader.SetFileName(path);
    if (f->reader.Read()) {
      fill_info(f->reader.GetFile(), &f->info, &f->luts);
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
      fill_info(hdr.GetFile(), &f->info, &f->luts);
      f->info.pixels_readable = false;
      copy_to(f->info.pixel_error, sizeof f->info.pixel_error,
              why.empty() ? std::string("GDCM could not read the pixel data") : why);
    }
    grayscale_only(&f->info);
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

mp_dicom_luts mp_dicom_luts_of(const mp_dicom_file *f) {
  mp_dicom_luts l;
  l.modality = f->info.has_modality_lut && !f->luts.modality.empty() ? f->luts.modality.data() : nullptr;
  l.voi = f->info.has_voi_lut && !f->luts.voi.empty() ? f->luts.voi.data() : nullptr;
  return l;
}

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
