#!/usr/bin/env bash
# preprocess end to end on a synthetic cohort with every decoy:
#  1. -n 1 and -n 2 write identical stores (h5diff), readable by h5dump and h5py;
#  2. check_preprocess.py: outcomes = truth, clean-crop lesions -> exactly one patch
#     within 2 px, no patch from text, normals = an independent recomputation, no
#     identifier in the store, the reports or the logs;
#  3. malformed and real-world files (../shared/data/dicom, when present, plus crafted
#     ones: empty, wrong magic, absurd element length, unsupported transfer syntax)
#     never stop the run and each ends with exactly one outcome.
# Usage: test_preprocess.sh MAMMOPATCH MPIEXEC TESTS_DIR [SHARED_DICOM_DIR]
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export MAMMOPATCH_SITE_KEY=test-site-key-for-preprocess-0123
mp=$1 mpiexec=$2 tests=$3 shared=${4:-}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

"$mp" synth --out "$tmp/c" --patients 28 --seed 777 -q \
  --set synth.garbage_frac=0.1 --set synth.truncated_frac=0.1 --set synth.male_frac=0.1 \
  --set synth.implant_frac=0.1 --set synth.inverse_lut_frac=0.08 --set synth.nonstandard_view_frac=0.2 \
  --set synth.cad_frac=0.2 --set synth.unlabeled_frac=0.1 --set synth.birads345_frac=0.1 \
  --set synth.monochrome1_frac=0.3 --set synth.jpegls_frac=0.15 --set synth.j2k_frac=0.15 \
  --set synth.two_exam_frac=0.15 --set synth.birads0_frac=0.5 || bad "synth failed"

"$mp" preprocess --input "$tmp/c/dicom" --labels "$tmp/c/labels.csv" --out "$tmp/p1.h5" --report "$tmp/r1" \
  >"$tmp/log1" 2>&1 && ok "preprocess on 1 rank" || { bad "preprocess on 1 rank"; tail "$tmp/log1"; }
"$mpiexec" -n 2 --oversubscribe "$mp" preprocess --input "$tmp/c/dicom" --labels "$tmp/c/labels.csv" \
  --out "$tmp/p2.h5" --report "$tmp/r2" --verbose >"$tmp/log2" 2>&1 \
  && ok "preprocess on 2 ranks" || { bad "preprocess on 2 ranks"; tail "$tmp/log2"; }
if h5diff "$tmp/p1.h5" "$tmp/p2.h5" >"$tmp/h5diff.txt" 2>&1; then ok "h5diff: -n 1 and -n 2 identical"
else bad "h5diff finds differences:"; head -5 "$tmp/h5diff.txt"; fi
cmp -s "$tmp/r1/preprocess_files.csv" "$tmp/r2/preprocess_files.csv" && ok "same per-file outcomes on 1 and 2 ranks" \
  || bad "per-file outcomes differ between 1 and 2 ranks"
# rounds of 5 files on 3 ranks (runs of 2, 2 and 1; a middle rank both sends and
# receives; chunks carried across rounds): the same datasets
"$mpiexec" -n 3 --oversubscribe "$mp" preprocess --input "$tmp/c/dicom" --labels "$tmp/c/labels.csv" \
  --out "$tmp/p5.h5" --report "$tmp/r5" --set preprocess.files_per_round=5 -q >"$tmp/log5" 2>&1 \
  || { bad "preprocess on 3 ranks, 5 files per round"; tail "$tmp/log5"; }
same=1
for g in /patches /views /patients; do h5diff "$tmp/p1.h5" "$tmp/p5.h5" "$g" >/dev/null 2>&1 || same=0; done
[[ $same == 1 ]] && ok "rounds of 5 files on 3 ranks: the same patches, views and patients" \
  || bad "rounds of 5 files on 3 ranks change the store's datasets"
h5dump -H "$tmp/p1.h5" >/dev/null 2>&1 && ok "h5dump reads the store" || bad "h5dump cannot read the store"

if out=$("$tests/preprocess/check_preprocess.py" "$tmp/c" "$tmp/p1.h5" "$tmp/r1" --logs "$tmp/log1" "$tmp/log2" 2>&1); then
  ok "check_preprocess: $(tail -1 <<<"$out")"
else
  bad "check_preprocess:"; grep -E "^FAIL|passed" <<<"$out"
fi

# 3. malformed inputs
m=$tmp/bad
mkdir -p "$m"
: >"$m/empty.dcm"
head -c 128 /dev/zero >"$m/wrong_magic.dcm"; printf 'DICX' >>"$m/wrong_magic.dcm"; head -c 3000 /dev/urandom >>"$m/wrong_magic.dcm"
/usr/bin/python3 - "$m" "$tmp/c" <<'PY'
import csv, os, struct, sys, pydicom
out, cohort = sys.argv[1], sys.argv[2]
# an element declaring an absurd length right after the file meta group length
with open(os.path.join(out, "huge_length.dcm"), "wb") as f:
    f.write(b"\0" * 128 + b"DICM")
    f.write(struct.pack("<HH2sH", 2, 0, b"UL", 4) + struct.pack("<I", 28))
    f.write(struct.pack("<HH2sHI", 2, 1, b"OB", 0, 0xFFFFFFF0) + b"\0\1")
# a readable, labelled mammogram whose transfer syntax nobody decodes (MPEG-2)
t = next(r for r in csv.DictReader(open(os.path.join(cohort, "truth.csv")))
         if r["outcome"] == "accepted" and r["transfer_syntax"] == "explicit_le")
ds = pydicom.dcmread(os.path.join(cohort, t["file"]))
from pydicom.encaps import encapsulate
ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
ds.PixelData = encapsulate([ds.PixelData[:5000]])
ds["PixelData"].is_undefined_length = True
ds.save_as(os.path.join(out, "unsupported_syntax.dcm"), write_like_original=True)
# absurd lengths inside the data set: on a text element and on the pixel data
data = bytearray(open(os.path.join(cohort, t["file"]), "rb").read())
i = data.find(b"\x10\x00\x10\x00PN")
d = bytearray(data); d[i + 6:i + 8] = struct.pack("<H", 0xFFF0)
open(os.path.join(out, "huge_text_length.dcm"), "wb").write(d)
j = data.find(b"\xe0\x7f\x10\x00OW")
d = bytearray(data); d[j + 8:j + 12] = struct.pack("<I", 0xFFFFFFF0)
open(os.path.join(out, "huge_pixel_length.dcm"), "wb").write(d)
PY
# the labels as a spreadsheet exports them: byte-order mark and CRLF line ends
printf '\xEF\xBB\xBF' >"$tmp/bad_labels.csv"
sed 's/$/\r/' "$tmp/c/labels.csv" >>"$tmp/bad_labels.csv"
nreal=0
if [[ -n $shared && -d $shared ]]; then
  for f in "$shared"/*/*.dcm; do cp "$f" "$m/real_$(basename "$(dirname "$f")")_$(basename "$f")"; nreal=$((nreal + 1)); done
else
  echo "note: no shared DICOM folder given; real-world files skipped"
fi
nfiles=$(find "$m" -type f | wc -l)
if timeout 300 "$mp" preprocess --input "$m" --labels "$tmp/bad_labels.csv" --out "$tmp/bad.h5" --report "$tmp/rb" >"$tmp/logb" 2>&1; then
  ok "preprocess completes on $nfiles malformed/real-world files ($nreal real)"
else
  bad "preprocess on malformed files failed (exit $?)"; tail -5 "$tmp/logb"
fi
rows=$(($(wc -l <"$tmp/rb/preprocess_files.csv") - 1))
[[ $rows -eq $nfiles ]] && ok "every file has exactly one outcome ($rows)" || bad "$rows outcomes for $nfiles files"
for f in empty wrong_magic huge_length; do
  grep -q "^$f.dcm,failed:not_dicom," "$tmp/rb/preprocess_files.csv" && ok "$f.dcm -> failed:not_dicom" \
    || bad "$f.dcm: $(grep "^$f.dcm," "$tmp/rb/preprocess_files.csv")"
done
grep -q "^huge_pixel_length.dcm,discarded:decode_error," "$tmp/rb/preprocess_files.csv" \
  && ok "absurd pixel data length -> discarded:decode_error" \
  || bad "huge_pixel_length.dcm: $(grep '^huge_pixel_length' "$tmp/rb/preprocess_files.csv")"
grep -q "^huge_text_length.dcm," "$tmp/rb/preprocess_files.csv" && ok "absurd text length -> an outcome" \
  || bad "huge_text_length.dcm has no outcome"
grep -q "^unsupported_syntax.dcm,discarded:decode_error," "$tmp/rb/preprocess_files.csv" \
  && ok "unsupported transfer syntax -> discarded:decode_error" \
  || bad "unsupported_syntax.dcm: $(grep '^unsupported_syntax' "$tmp/rb/preprocess_files.csv")"
if [[ $nreal -gt 0 ]]; then
  for f in real_pydicom_no_meta real_pydicom_MR_truncated real_pydicom_test-SR; do
    line=$(grep "^$f.dcm," "$tmp/rb/preprocess_files.csv")
    [[ -n $line ]] && ok "$f: ${line#*,}" || bad "$f has no outcome"
  done
fi

finish
