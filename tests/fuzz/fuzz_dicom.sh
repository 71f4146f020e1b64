#!/usr/bin/env bash
# Fuzzes the DICOM reader with libFuzzer (clang), AddressSanitizer and UBSan, seeded with the
# shared real files (../shared/data/dicom, up to 600 KB each), then replays every artifact and
# prints what the reader made of it.  Not part of the suite; a session that touches
# preprocess/mp_dicom_gdcm.cpp can run it for a while.
#
#   tests/fuzz/fuzz_dicom.sh [SECONDS] [OUT_DIR]      (defaults: 600, /tmp/mp-fuzz)
#
# -fork=1 goes on after a crash; GDCM's own leaks (a broken JPEG-LS stream) are ignored.
# Artifacts: OUT_DIR/artifacts/crash-* (an abort or a sanitizer report), oom-* (over
# 4 GB: openjpeg allocates what a corrupt JPEG 2000 header declares), slow-*, timeout-*.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-600}
out=${2:-/tmp/mp-fuzz}
shared=${MP_SHARED_DICOM:-../shared/data/dicom}
command -v clang++ >/dev/null || { echo "fuzz_dicom: clang++ is needed (Debian: clang)" >&2; exit 2; }
mkdir -p "$out/build" "$out/corpus" "$out/seeds" "$out/artifacts"
flags=(-g -O1 "-fsanitize=address,undefined" -fno-sanitize-recover=undefined -Ipreprocess -Icore)
clang++ "${flags[@]}" -fsanitize=fuzzer-no-link -I/usr/include/gdcm-3.0 -c preprocess/mp_dicom_gdcm.cpp \
  -o "$out/build/dicom.o"
clang "${flags[@]}" -fsanitize=fuzzer-no-link -c preprocess/mp_window.c -o "$out/build/window.o"
clang++ "${flags[@]}" -fsanitize=fuzzer tests/fuzz/fuzz_dicom.cpp "$out/build/dicom.o" "$out/build/window.o" \
  -o "$out/build/fuzz_dicom" -lgdcmMSFF -lgdcmDSED -lgdcmCommon -lgdcmDICT -lgdcmIOD -lz
[[ -d $shared ]] && find "$shared" -type f -name '*.dcm' -size -600k -exec cp {} "$out/seeds/" \;
echo "fuzz_dicom: $(find "$out/seeds" -type f | wc -l) seeds, $secs s; artifacts in $out/artifacts"
"$out/build/fuzz_dicom" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -detect_leaks=0 \
  -max_total_time="$secs" -rss_limit_mb=4096 -timeout=20 -max_len=131072 \
  -artifact_prefix="$out/artifacts/" "$out/corpus" "$out/seeds" >"$out/fuzz.log" 2>&1 || true
grep -E "^#[0-9]+.*cov" "$out/fuzz.log" | tail -1 || true
shopt -s nullglob
for a in "$out"/artifacts/*; do
  [[ -s $a ]] || continue
  if r=$(ASAN_OPTIONS=detect_leaks=0 timeout 120 "$out/build/fuzz_dicom" "$a" 2>&1); then
    echo "ok now  $(basename "$a")"
  else
    echo "FAILS   $(basename "$a"): $(grep -m1 -E "Assertion|ERROR: AddressSanitizer|runtime error|deadly signal|out-of-memory" <<<"$r")"
  fi
done
