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

# 4. the input tree and the labels: every directory entry ends with one outcome, whatever its
#    name or kind, on 1 and 2 ranks alike; element lengths that do not fit the file (GDCM
#    3.0.21 aborts the process on them) end as failed:not_dicom, not as the end of the batch
t=$tmp/tree
mkdir -p "$t/sub"
/usr/bin/python3 - "$t" "$tmp/c" "$shared" <<'PY'
import csv, io, os, sys, pydicom
out, cohort, shared = sys.argv[1], sys.argv[2], sys.argv[3]
ok = [r for r in csv.DictReader(open(os.path.join(cohort, "truth.csv")))
      if r["outcome"] == "accepted" and r["transfer_syntax"] == "explicit_le"]
src = [open(os.path.join(cohort, r["file"]), "rb").read() for r in ok[:3]]
open(os.path.join(out, "a,comma.dcm"), "wb").write(src[0])
open(os.path.join(out, "b\nnewline.dcm"), "wb").write(src[1])
open(os.path.join(out, 'c"quote.dcm'), "wb").write(src[2])
# cut before the pixel data (in element headers and values, four points spread over the
# data set): GDCM aborted on these; and cut inside the pixel data: the pixel checks' case
# (explicit VR little endian: the patient's name value, ViewPosition's header, Rows' value and
# the pixel data element's header)
px = src[0].find(b"\xe0\x7f\x10\x00OW")
at = [src[0].find(t) for t in (b"\x10\x00\x10\x00PN", b"\x18\x00\x01\x51CS", b"\x28\x00\x10\x00US")]
assert min(at) > 132 and px > 0
for k, n in enumerate([at[0] + 9, at[1] + 5, at[2] + 9, px + 6, px + 1000]):
    open(os.path.join(out, f"cut{k}.dcm"), "wb").write(src[0][:n])
# one-byte faults a fuzzer found (libFuzzer on mp_dicom_open/decode): a second Rows element (GDCM keeps
# the first, pydicom the last), two stray bytes before the preamble (GDCM's guesses for a file
# without "DICM" at byte 128 asserted), and Columns 0 (an empty image, not a decoded one)
rows = src[0][at[2]:at[2] + 10]
open(os.path.join(out, "dup_rows.dcm"), "wb").write(src[0][:at[2] + 10] + rows + src[0][at[2] + 10:])
open(os.path.join(out, "shifted.dcm"), "wb").write(b"\0\0" + src[0])
# and a file meta without its Transfer Syntax UID (GDCM guessed, and read a 16-bit length as a
# 3 GB value)
ts = src[0].find(b"\x02\x00\x10\x00UI")
tl = 8 + int.from_bytes(src[0][ts + 6:ts + 8], "little")
assert src[0][132:138] == b"\x02\x00\x00\x00UL" and ts > 0  # (0002,0000) first, its value at byte 140
gl = int.from_bytes(src[0][140:144], "little") - tl
open(os.path.join(out, "no_syntax.dcm"), "wb").write(src[0][:140] + gl.to_bytes(4, "little") + src[0][144:ts] +
                                                     src[0][ts + tl:])
cols = src[0].find(b"\x28\x00\x11\x00US\x02\x00")
open(os.path.join(out, "no_columns.dcm"), "wb").write(src[0][:cols + 8] + b"\0\0" + src[0][cols + 10:])
if shared and os.path.isdir(shared):
    ct = open(os.path.join(shared, "pydicom", "CT_small.dcm"), "rb").read()
    cpx = ct.find(b"\xe0\x7f\x10\x00")
    for k, n in enumerate((700, 1500, cpx - 5)):
        open(os.path.join(out, f"ct_cut{k}.dcm"), "wb").write(ct[:n])
    # PALETTE COLOR indices dressed as a labelled CC view of a woman: not grayscale
    ds = pydicom.dcmread(os.path.join(shared, "pydicom", "OBXXXX1A_rle.dcm"))
    ds.ViewPosition, ds.PatientSex, ds.ImageLaterality = "CC", "F", "L"
    ds.PatientID, ds.StudyInstanceUID = ok[0]["patient_id"], ok[0]["study_uid"]
    ds.save_as(os.path.join(out, "palette.dcm"))
    # Columns written as IS (a flipped byte in a tag makes that): GDCM's image reader asserted
    # on it in a JPEG 2000 file, ending the batch
    ds = pydicom.dcmread(os.path.join(shared, "pydicom", "emri_small_jpeg_2k_lossless.dcm"))
    ds[0x00280011] = pydicom.dataelem.DataElement(0x00280011, "IS", str(ds.Columns))
    ds.save_as(os.path.join(out, "columns_is.dcm"), write_like_original=False)
    # a JPEG header with two stray bytes where a marker belongs (the fuzzer's mutation of the
    # extended 12-bit WG04 file): libjpeg warns, and GDCM's JPEG codec asserted on the warning
    ds = pydicom.dcmread(os.path.join(shared, "wg04", "RG2_JPLY.dcm"))
    ds.ViewPosition, ds.PatientSex, ds.ImageLaterality = "CC", "F", "L"
    ds.PatientID, ds.StudyInstanceUID = ok[0]["patient_id"], ok[0]["study_uid"]
    buf = io.BytesIO()
    ds.save_as(buf)
    b = bytearray(buf.getvalue())
    soi = b.find(b"\xff\xd8\xff", b.find(b"\xe0\x7f\x10\x00"))
    seg = soi + 4 + int.from_bytes(b[soi + 4:soi + 6], "big")  # after the first marker segment
    assert soi > 0 and b[seg] == 0xFF
    b[seg:seg + 2] = b"\0\0"
    open(os.path.join(out, "jpeg_stray.dcm"), "wb").write(bytes(b))
    # JPEG 2000: a first fragment that is not a codestream, and the pixel data's undefined
    # length turned into 4 GB (a fuzzer's flipped bits): GDCM went on with both and made the
    # process allocate 4-5 GB before it failed
    ds = pydicom.dcmread(os.path.join(shared, "wg04", "RG3_J2KI.dcm"))  # one frame, lossy
    ds.ViewPosition, ds.PatientSex, ds.ImageLaterality = "CC", "F", "R"
    ds.PatientID, ds.StudyInstanceUID = ok[0]["patient_id"], ok[0]["study_uid"]
    buf = io.BytesIO()
    ds.save_as(buf)
    j = bytearray(buf.getvalue())
    pd = max(j.find(b"\xe0\x7f\x10\x00" + vr + b"\0\0\xff\xff\xff\xff") for vr in (b"OB", b"OW"))
    soc = j.find(b"\xff\x4f\xff\x51", pd)
    assert pd > 0 and soc > pd
    k = bytearray(j)
    k[soc:soc + 4] = b"\0\0\0\0"
    open(os.path.join(out, "j2k_no_soc.dcm"), "wb").write(bytes(k))
    # the file ending 5 bytes into the second fragment's item header (GDCM's recovery asserted),
    # and the encapsulated pixel data's VR as OD (GDCM asserted)
    f1 = pd + 12 + 8 + int.from_bytes(j[pd + 16:pd + 20], "little")  # after the offset table
    f2 = f1 + 8 + int.from_bytes(j[f1 + 4:f1 + 8], "little")
    assert j[f1:f1 + 4] == b"\xfe\xff\x00\xe0" and j[f2:f2 + 4] == b"\xfe\xff\x00\xe0"
    open(os.path.join(out, "j2k_cut.dcm"), "wb").write(bytes(j[:f2 + 5]))
    open(os.path.join(out, "j2k_od.dcm"), "wb").write(bytes(j[:pd + 4] + b"OD" + j[pd + 6:]))
    j[pd + 8:pd + 12] = b"\0\xff\xff\xff"
    open(os.path.join(out, "j2k_4gb.dcm"), "wb").write(bytes(j))
PY
ln "$t/a,comma.dcm" "$t/z_hardlink.dcm"           # a second path to one file: a duplicate
ln -s "../c\"quote.dcm" "$t/sub/z_symlink.dcm"     # and through a symbolic link
ln -s .. "$t/sub/up"                              # a loop: walked once
ln -s /nonexistent/x.dcm "$t/dangling.dcm"
mkfifo "$t/pipe.dcm"
"$mp" preprocess --input "$t" --labels "$tmp/c/labels.csv" --out "$tmp/t1.h5" --report "$tmp/rt1" >"$tmp/logt1" 2>&1 \
  && ok "preprocess on the tree (1 rank)" || { bad "preprocess on the tree (1 rank): exit $?"; tail -3 "$tmp/logt1"; }
timeout 120 "$mpiexec" -n 2 --oversubscribe "$mp" preprocess --input "$t" --labels "$tmp/c/labels.csv" --out "$tmp/t2.h5" \
  --report "$tmp/rt2" >"$tmp/logt2" 2>&1 && ok "preprocess on the tree (2 ranks)" \
  || { bad "preprocess on the tree (2 ranks): exit $?"; tail -3 "$tmp/logt2"; }
cmp -s "$tmp/rt1/preprocess_files.csv" "$tmp/rt2/preprocess_files.csv" && h5diff "$tmp/t1.h5" "$tmp/t2.h5" >/dev/null 2>&1 \
  && ok "the tree: same outcomes and store on 1 and 2 ranks" || bad "the tree: 1 and 2 ranks differ"
out=$(/usr/bin/python3 - "$tmp/rt1" "$t" <<'PY'
import csv, json, os, sys
rep, tree = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(os.path.join(rep, "preprocess_files.csv"), newline="")))
got = {r["file"]: r["outcome"] for r in rows}
want = {"a,comma.dcm": "accepted", "b\nnewline.dcm": "accepted", 'c"quote.dcm': "accepted",
        "z_hardlink.dcm": "discarded:duplicate", "sub/z_symlink.dcm": "discarded:duplicate",
        "dangling.dcm": "failed:not_a_file", "pipe.dcm": "failed:not_a_file"}
for k in range(4):
    want[f"cut{k}.dcm"] = "failed:not_dicom"
want["cut4.dcm"] = "discarded:decode_error"
want["dup_rows.dcm"] = want["shifted.dcm"] = want["no_syntax.dcm"] = "failed:not_dicom"
want["no_columns.dcm"] = "discarded:decode_error"
if os.path.exists(os.path.join(tree, "palette.dcm")):
    want["palette.dcm"] = "discarded:decode_error"
    for k in range(3):
        want[f"ct_cut{k}.dcm"] = "failed:not_dicom"
    want["columns_is.dcm"] = "failed:not_dicom"
    want["jpeg_stray.dcm"] = want["j2k_no_soc.dcm"] = want["j2k_4gb.dcm"] = "discarded:decode_error"
    want["j2k_cut.dcm"], want["j2k_od.dcm"] = "discarded:decode_error", "failed:not_dicom"
bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
# the reasons name the fault
detail = {r["file"]: r["detail"].replace(";", ",") for r in rows}  # the audit writes commas as ;
why = {"dup_rows.dcm": "(0028,0010) appears twice", "shifted.dcm": "not a DICOM Part 10 file",
       "no_syntax.dcm": "without a Transfer Syntax UID",
       "no_columns.dcm": "no pixels (Rows", "columns_is.dcm": "(0028,0011) has VR IS where the standard has US",
       "jpeg_stray.dcm": "JPEG pixel data: stray bytes where a marker belongs",
       "j2k_no_soc.dcm": "does not begin with a codestream", "j2k_4gb.dcm": "bytes more than the file holds",
       "j2k_cut.dcm": "the file ends inside its fragments", "j2k_od.dcm": "encapsulated pixel data with VR OD"}
bad.update({k: (detail.get(k), v) for k, v in why.items() if k in want and v not in detail.get(k, "")})
extra = sorted(set(got) - set(want))
j = json.load(open(os.path.join(rep, "preprocess.json")))["files"]
if bad or extra or len(rows) != len(got) or j["found"] != len(want) or \
        j["accepted"] + j["discarded"] + j["failed"] != j["found"]:
    print(f"FAIL wrong: {bad}; unexpected: {extra}; rows {len(rows)}; counts {j}")
    sys.exit(1)
pal = next(r["detail"] for r in rows if r["file"] == "palette.dcm") if "palette.dcm" in got else "-"
print(f"{len(rows)} entries, each its outcome ({j['accepted']} accepted, {j['discarded']} discarded, "
      f"{j['failed']} failed); palette: {pal}")
PY
) && ok "the tree: $out" || bad "the tree: $out"
grep -q "walked once" "$tmp/logt1" && ok "the directory loop is reported" || bad "no word of the directory loop"
# privacy.file_names = pseudonym: no file name in the audit, each row the keyed pseudonym of its path
"$mp" preprocess --input "$t" --labels "$tmp/c/labels.csv" --out "$tmp/t3.h5" --report "$tmp/rt3" \
  --set privacy.file_names=pseudonym >"$tmp/logt3" 2>&1 || bad "preprocess with privacy.file_names=pseudonym: exit $?"
fa=$("$mp" pseudonym --file "a,comma.dcm" 2>/dev/null)
fk=$("$mp" pseudonym --file "z_hardlink.dcm" 2>/dev/null)
! grep -qE "comma|newline|quote|cut[0-9]|pipe\.|hardlink|symlink|palette" "$tmp/rt3/preprocess_files.csv" "$tmp/logt3" \
  && grep -q "^$fa,accepted," "$tmp/rt3/preprocess_files.csv" && grep -q "^$fk,discarded:duplicate,0,the same file as $fa" "$tmp/rt3/preprocess_files.csv" \
  && [[ $(($(wc -l <"$tmp/rt3/preprocess_files.csv") - 1)) == $(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["files"]["found"])' "$tmp/rt1/preprocess.json") ]] \
  && h5diff "$tmp/t1.h5" "$tmp/t3.h5" /patches >/dev/null 2>&1 \
  && ok "privacy.file_names=pseudonym: no file name in the audit or the log; rows are 'mammopatch pseudonym --file' of their paths; same patches" \
  || bad "privacy.file_names=pseudonym: $(head -3 "$tmp/rt3/preprocess_files.csv" | tr '\n' ' ')"
# labels: a patient listed twice with different scores (no study_uid column), scores -1 and 4A
ok3=$(/usr/bin/python3 -c 'import csv,sys; r=[x for x in csv.DictReader(open(sys.argv[1])) if x["outcome"]=="accepted"]
seen=[]
for x in r:
    if x["patient_id"] not in [s["patient_id"] for s in seen]: seen.append(x)
print(" ".join(s["file"]+"|"+s["patient_id"] for s in seen[:3]))' "$tmp/c/truth.csv")
l=$tmp/lab; mkdir -p "$l/in"
printf 'patient_id,birads\n' >"$l/labels.csv"
i=0
for fp in $ok3; do
  cp "$tmp/c/${fp%%|*}" "$l/in/f$i.dcm"
  case $i in
    0) printf '%s,1\n%s,2\n' "${fp#*|}" "${fp#*|}" >>"$l/labels.csv" ;;
    1) printf '%s,-1\n' "${fp#*|}" >>"$l/labels.csv" ;;
    2) printf '%s,4A\n,1\n' "${fp#*|}" >>"$l/labels.csv" ;;
  esac
  i=$((i + 1))
done
"$mp" preprocess --input "$l/in" --labels "$l/labels.csv" --out "$l/p.h5" --report "$l/r" >"$l/log" 2>&1 \
  || bad "preprocess with conflicting labels: exit $?"
want=$'f0.dcm,discarded:label_conflict\nf1.dcm,discarded:birads\nf2.dcm,discarded:birads'
got=$(tail -n +2 "$l/r/preprocess_files.csv" | cut -d, -f1,2)
[[ $got == "$want" ]] && grep -q "BI-RADS '4A'" "$l/r/preprocess_files.csv" && grep -q "without a patient_id skipped" "$l/log" \
  && ok "labels: conflicting rows, -1, 4A and a row without a patient_id each have their outcome" \
  || bad "labels: got $(tr '\n' ' ' <<<"$got"); $(grep -c 'without a patient_id' "$l/log") warnings"

# VOI LUT Function (0028,1056): SIGMOID and LINEAR_EXACT windows, as PS3.3 C.11.2.1.3 defines
# them, in every stored pixel (Hologic mammograms say SIGMOID)
v=$tmp/voi; mkdir -p "$v/in"
/usr/bin/python3 - "$tmp/c" "$v/in" <<'PY'
import csv, os, sys, pydicom
t = next(r for r in csv.DictReader(open(os.path.join(sys.argv[1], "truth.csv")))
         if r["outcome"] == "accepted" and r["transfer_syntax"] == "explicit_le" and r["birads"] == "1")
ds = pydicom.dcmread(os.path.join(sys.argv[1], t["file"]))
for name, fn in (("s.dcm", "SIGMOID"), ("x.dcm", "LINEAR_EXACT")):
    ds.VOILUTFunction = fn
    ds.save_as(os.path.join(sys.argv[2], name))
PY
"$mp" preprocess --input "$v/in" --labels "$tmp/c/labels.csv" --out "$v/p.h5" --report "$v/r" -q || bad "preprocess (VOI LUT Function)"
out=$(/usr/bin/python3 - "$v" <<'PY'
import h5py, numpy as np, pydicom, sys
f = h5py.File(f"{sys.argv[1]}/p.h5", "r")
px, vw, org = f["patches/pixels"][:], f["patches/view"][:], f["patches/origin"][:]
msg = []
for vi, name in enumerate(("s.dcm", "x.dcm")):
    ds = pydicom.dcmread(f"{sys.argv[1]}/in/{name}")
    a = ds.pixel_array.astype(np.float64)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    if ds.VOILUTFunction == "SIGMOID":
        y = 255.0 / (1 + np.exp(-4 * (a - c) / w))
    else:
        y = np.where(a <= c - w / 2, 0, np.where(a > c + w / 2, 255, ((a - c) / w + 0.5) * 255))
    y = np.floor(np.clip(y, 0, 255) + 0.5).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 255 - y
    sel = np.where(vw == vi)[0]
    bad = 0
    for i in sel:
        r, cc = org[i]
        blk = np.zeros((128, 128), np.uint8)
        sub = y[r:r + 128, cc:cc + 128]
        blk[:sub.shape[0], :sub.shape[1]] = sub
        bad += int((blk != px[i]).sum())
    if bad or not len(sel):
        print(f"FAIL {ds.VOILUTFunction}: {len(sel)} patches, {bad} pixels differ")
        sys.exit(1)
    msg.append(f"{ds.VOILUTFunction} {len(sel)} patches")
print(", ".join(msg) + ": every pixel as the standard's formula")
PY
) && ok "VOI LUT Function: $out" || bad "VOI LUT Function: $out"

# Modality LUT Sequence (0028,3000), the modality transform by table (CR, digitised film): a view
# stored reversed (4095 - s) with a 16-bit table that maps it back gives exactly the original's
# patches, also in explicit big endian with the table as OW (GDCM gives its words in host order); an
# 8-bit table packed two entries to a word (s >> 4, the window scaled to match) gives the standard's
# linear window of the table's output in every stored pixel
m=$tmp/mlut; mkdir -p "$m/in"
/usr/bin/python3 - "$tmp/c" "$m/in" <<'PY'
import csv, os, sys, numpy as np, pydicom
from pydicom.dataset import Dataset
t = next(r for r in csv.DictReader(open(os.path.join(sys.argv[1], "truth.csv")))
         if r["outcome"] == "accepted" and r["transfer_syntax"] == "explicit_le" and r["birads"] == "1")
ds = pydicom.dcmread(os.path.join(sys.argv[1], t["file"]))
assert ds.BitsStored == 12 and ds.PixelRepresentation == 0 and "RescaleSlope" not in ds
ds.save_as(os.path.join(sys.argv[2], "o.dcm"))
a = ds.pixel_array.astype(np.uint16)
it = Dataset()
it.LUTDescriptor = [4096, 0, 16]
it.ModalityLUTType = "US"
it.add_new(0x00283006, "US", [4095 - k for k in range(4096)])  # 16-bit entries as US values
ds.ModalityLUTSequence = [it]
ds.PixelData = (4095 - a).astype("<u2").tobytes()
ds.save_as(os.path.join(sys.argv[2], "r.dcm"))
be = pydicom.dcmread(os.path.join(sys.argv[2], "r.dcm"))  # the same view, explicit VR big endian
be.ModalityLUTSequence[0].add_new(0x00283006, "OW", np.arange(4095, -1, -1).astype(">u2").tobytes())
be.PixelData = (4095 - a).astype(">u2").tobytes()
be.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
be.is_little_endian, be.is_implicit_VR = False, False
be.save_as(os.path.join(sys.argv[2], "rb.dcm"), write_like_original=False)
it = Dataset()
it.LUTDescriptor = [4096, 0, 8]
it.ModalityLUTType = "US"
it.add_new(0x00283006, "OW", (np.arange(4096) >> 4).astype(np.uint8).tobytes())
ds.ModalityLUTSequence = [it]
ds.PixelData = a.astype("<u2").tobytes()
ds.WindowCenter, ds.WindowWidth = float(ds.WindowCenter) / 16, float(ds.WindowWidth) / 16
ds.save_as(os.path.join(sys.argv[2], "p.dcm"))
PY
[ -f "$m/in/p.dcm" ] || bad "making the Modality LUT views"
"$mp" preprocess --input "$m/in" --labels "$tmp/c/labels.csv" --out "$m/p.h5" --report "$m/r" -q || bad "preprocess (Modality LUT)"
out=$(/usr/bin/python3 - "$m" <<'PY'
import json, h5py, numpy as np, pydicom, sys
d = sys.argv[1]
f = h5py.File(f"{d}/p.h5", "r")
px, vw, org = f["patches/pixels"][:], f["patches/view"][:], f["patches/origin"][:]
views = {name: i for i, name in enumerate(("o.dcm", "p.dcm", "r.dcm", "rb.dcm"))}  # accepted in name order
mod = [int(x) for x in f["views/modality"][:]]  # the store's record of each view's modality transform
if mod != [0, 2, 2, 2]:
    print(f"FAIL /views/modality {mod}, expected [0, 2, 2, 2] (none for o.dcm, the table for the others)"); sys.exit(1)
def patches(v):
    sel = np.where(vw == v)[0]
    return org[sel], px[sel]
(oo, op) = patches(views["o.dcm"])
for name in ("r.dcm", "rb.dcm"):
    ro, rp = patches(views[name])
    if not len(op) or oo.shape != ro.shape or (oo != ro).any() or (op != rp).any():
        print(f"FAIL reversed + table ({name}): {len(rp)} patches against the original's {len(op)}, not identical"); sys.exit(1)
ds = pydicom.dcmread(f"{d}/in/p.dcm")
x = (ds.pixel_array.astype(np.int64) >> 4).astype(np.float64)  # the 8-bit table's output
c, w = float(ds.WindowCenter), float(ds.WindowWidth)
lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
y = np.where(x <= lo, 0.0, np.where(x > hi, 255.0, ((x - (c - 0.5)) / (w - 1) + 0.5) * 255))
y = np.floor(np.clip(y, 0, 255) + 0.5).astype(np.uint8)
po, pp = patches(views["p.dcm"])
bad = 0
for (r, cc), blk in zip(po, pp):
    want = np.zeros((128, 128), np.uint8)
    sub = y[r:r + 128, cc:cc + 128]
    want[:sub.shape[0], :sub.shape[1]] = sub
    bad += int((want != blk).sum())
if bad or not len(pp):
    print(f"FAIL 8-bit table: {len(pp)} patches, {bad} pixels differ"); sys.exit(1)
n = json.load(open(f"{d}/r/preprocess.json"))["windowing"]["modality_lut"]
if n != 3:
    print(f"FAIL preprocess.json counts {n} views through a Modality LUT, not 3"); sys.exit(1)
print(f"reversed + 16-bit table = the original ({len(rp)} patches identical; also big endian, table as OW); "
      f"8-bit packed table: {len(pp)} patches, every pixel as the standard's; 3 views counted, and recorded in "
      f"/views/modality")
PY
) && ok "Modality LUT Sequence: $out" || bad "Modality LUT Sequence: $out"

finish
