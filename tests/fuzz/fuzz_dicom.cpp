// libFuzzer target for the DICOM reader (preprocess/mp_dicom_gdcm.cpp) and the windowing
// after it: every input must come back as a refusal with a reason or as an image, never as
// a crash, an abort inside GDCM or a sanitizer report.  Built and run by fuzz_dicom.sh (not
// part of the test suite: it needs clang's libFuzzer and minutes to hours of CPU).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" {
#include "mp_dicom.h"
#include "mp_window.h"
}

// mp_window allocates through mp_core's allocator; plain malloc here keeps the target free of
// MPI and HDF5 (which mp_core's error paths link)
extern "C" void *mp_malloc(size_t n) {
  void *p = std::malloc(n ? n : 1);
  if (!p) std::abort();
  return p;
}
extern "C" void mp_free(void *p) { std::free(p); }

// the reader takes a path: each input goes through one file per process in /dev/shm
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  if (!path[0]) std::snprintf(path, sizeof path, "/dev/shm/mp-fuzz-%d.dcm", static_cast<int>(getpid()));
  std::FILE *f = std::fopen(path, "wb");
  if (!f) std::abort();
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  mp_dicom_info in;
  char err[512];
  mp_dicom_file *h = mp_dicom_open(path, &in, err, sizeof err);
  if (!h) return 0;
  const void *px;
  int bits, is_signed;
  if (mp_dicom_decode(h, &px, &bits, &is_signed, err, sizeof err) == 0) {
    const size_t n = static_cast<size_t>(in.rows) * static_cast<size_t>(in.cols);
    if (n > 0 && n < (size_t(1) << 26)) {
      const mp_dicom_luts luts = mp_dicom_luts_of(h);
      uint8_t *out = static_cast<uint8_t *>(std::malloc(n));
      mp_window_to_u8(px, bits, is_signed, n, &in, &luts, out);
      std::free(out);
    }
  }
  mp_dicom_close(h);
  return 0;
}
