#!/usr/bin/env bash
# The synthetic cohort end to end:
#  1. the same seed gives byte-identical files (DICOM and CSV) on 1 and on 2 ranks;
#  2. every file reads back with pydicom and gdcmdump with the right tags, decoys
#     behave as the truth says, and every JPEG-LS / JPEG 2000 file decodes to exactly
#     the pixels of an uncompressed twin cohort (check_cohort.py);
#  3. --preview writes a PNG montage.
# Decoy shares are raised so that every kind appears in a small cohort.
# Usage: test_cohort.sh MAMMOPATCH MPIEXEC CHECK_COHORT_PY
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mp=$1 mpiexec=$2 check=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
ok()  { passes=$((passes + 1)); echo "ok   $*"; }
bad() { fails=$((fails + 1)); echo "FAIL $*"; }

common=(--patients 24 --seed 4242 --width 640 --height 800 -q
        --set synth.garbage_frac=0.15 --set synth.truncated_frac=0.1 --set synth.male_frac=0.15
        --set synth.implant_frac=0.15 --set synth.inverse_lut_frac=0.08 --set synth.nonstandard_view_frac=0.2
        --set synth.cad_frac=0.2 --set synth.unlabeled_frac=0.15 --set synth.birads345_frac=0.15
        --set synth.monochrome1_frac=0.3 --set synth.two_exam_frac=0.2)

"$mp" synth --out "$tmp/one" "${common[@]}" --set synth.jpegls_frac=0.25 --set synth.j2k_frac=0.25 \
  && ok "synth on 1 rank" || bad "synth on 1 rank failed"
"$mpiexec" -n 2 --oversubscribe "$mp" synth --out "$tmp/two" "${common[@]}" --set synth.jpegls_frac=0.25 \
  --set synth.j2k_frac=0.25 --preview && ok "synth on 2 ranks" || bad "synth on 2 ranks failed"
"$mp" synth --out "$tmp/raw" "${common[@]}" --set synth.jpegls_frac=0 --set synth.j2k_frac=0 \
  && ok "uncompressed twin" || bad "uncompressed twin failed"

# 1. ranks do not change a byte (synth.json holds timings and the rank count: excluded)
if diff -r -x synth.json -x preview.png "$tmp/one" "$tmp/two" >"$tmp/diff.txt"; then
  n=$(find "$tmp/one/dicom" -name '*.dcm' | wc -l)
  ok "1 and 2 ranks give identical cohorts ($n files)"
else
  bad "1 and 2 ranks differ:"; head -5 "$tmp/diff.txt"
fi
# every decoy kind is present, so the checks below see them
for outcome in accepted discarded:view discarded:sex discarded:implant discarded:presentation_lut \
               discarded:image_type discarded:no_label discarded:birads discarded:decode_error failed:not_dicom; do
  grep -q ",$outcome," "$tmp/one/truth.csv" && ok "truth has $outcome" || bad "truth has no $outcome file"
done
for ts in explicit_le jpegls j2k; do
  grep -q ",$ts," "$tmp/one/truth.csv" && ok "truth has $ts" || bad "no $ts file"
done
grep -q ",MONOCHROME1," "$tmp/one/truth.csv" && ok "truth has MONOCHROME1" || bad "no MONOCHROME1 file"
awk -F, 'NR > 1 && $7 == 1 && $13 == 1 {c++} END {exit !(c > 0)}' "$tmp/one/truth_lesions.csv" \
  && ok "some annotated lesions have a clean crop" || bad "no clean crop"
awk -F, 'NR > 1 && $7 == 1 && $13 == 0 {c++} END {exit !(c > 0)}' "$tmp/one/truth_lesions.csv" \
  && ok "some annotated lesions have no clean crop" || bad "every crop is clean"
# the patients' names and birth dates are in the DICOM files (to prove later stages drop
# them), never in the truth or labels files
if grep -q "\^" "$tmp/one/truth.csv" "$tmp/one/labels.csv"; then bad "a patient name reached a CSV"; else ok "no names in CSVs"; fi

# 2. pydicom + gdcmdump + lossless against the twin
if out=$("$check" "$tmp/one" --uncompressed "$tmp/raw" 2>&1); then
  ok "check_cohort: $(tail -1 <<<"$out")"
else
  bad "check_cohort:"; grep -E "^FAIL|passed" <<<"$out" | head -20
fi

# 3. preview montage: a PNG
if [[ -s "$tmp/two/preview.png" ]] && [[ $(head -c 8 "$tmp/two/preview.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]]; then
  ok "preview.png written"; else bad "preview.png missing or not a PNG"; fi

echo "$passes passed, $fails failed"
((fails == 0))
