#!/usr/bin/python3
"""Hold `mammopatch preprocess` to the truth that `mammopatch synth` wrote.

Usage: check_preprocess.py COHORT STORE REPORT_DIR [--logs FILE ...]

Checks (each prints `ok ...` or `FAIL ...`; the last line is `N passed, M failed`):
  * every file of truth.csv has exactly the outcome truth says (preprocess_files.csv),
    and the counts in preprocess.json add up to the files found;
  * every annotated lesion whose truth says a clean 128x128 crop exists yields exactly
    one lesion patch whose fitted ellipse centre is within 2 px of the mark's centre;
  * no lesion patch comes from anything else (an ellipse fitted to text, a small mark);
  * the normal patches of every uncompressed BI-RADS 1 image equal an independent
    re-computation (pydicom + numpy: window, pad, tile, black/white filter), pixel for
    pixel, at the same origins;
  * the store has the SPEC §4 schema, opens in h5py, and its views point at patients;
  * no PatientID, PatientName or PatientBirthDate of any input file appears in the
    store, the reports or the given log files (the raw bytes are searched).
"""
import argparse
import csv
import json
import math
import os
import sys

import h5py
import numpy as np
import pydicom

B = 128
BLACK, WHITE = 20, 235

passes = fails = 0


def ok(msg):
    global passes
    passes += 1
    print("ok   " + msg)


def bad(msg):
    global fails
    fails += 1
    print("FAIL " + msg)


def window_u8(ds):
    """DICOM linear VOI (PS3.3 C.11.2.1.2) to 8 bits, MONOCHROME1 inverted — written
    independently of the C code, from the standard."""
    x = ds.pixel_array.astype(np.float64)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, y)
    y = np.where(x > c - 0.5 + (w - 1) / 2, 255.0, y)
    y = np.floor(np.clip(y, 0, 255) + 0.5).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 255 - y
    return y


def tiles(img):
    H, W = img.shape
    ph, pw = -(-H // B) * B, -(-W // B) * B
    pad = np.zeros((ph, pw), np.uint8)
    pad[:H, :W] = img
    out = []
    for by in range(0, ph, B):
        for bx in range(0, pw, B):
            blk = pad[by:by + B, bx:bx + B]
            if np.count_nonzero((blk <= BLACK) | (blk >= WHITE)) > B * B // 2:
                continue
            out.append((by, bx, blk))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cohort")
    ap.add_argument("store")
    ap.add_argument("report")
    ap.add_argument("--logs", nargs="*", default=[])
    a = ap.parse_args()

    truth = list(csv.DictReader(open(os.path.join(a.cohort, "truth.csv"))))
    lesions = list(csv.DictReader(open(os.path.join(a.cohort, "truth_lesions.csv"))))
    got = list(csv.DictReader(open(os.path.join(a.report, "preprocess_files.csv"))))
    rep = json.load(open(os.path.join(a.report, "preprocess.json")))

    # --- outcomes -------------------------------------------------------------------
    got_by = {"dicom/" + r["file"]: r for r in got}
    mism = [(t["file"], t["outcome"], got_by.get(t["file"], {}).get("outcome")) for t in truth
            if got_by.get(t["file"], {}).get("outcome") != t["outcome"]]
    if mism:
        bad(f"{len(mism)} of {len(truth)} outcomes differ from truth, e.g. {mism[:3]}")
    else:
        ok(f"all {len(truth)} outcomes equal truth")
    f = rep["files"]
    if f["accepted"] + f["discarded"] + f["failed"] == f["found"] == len(got) == len(truth):
        ok(f"counts add up: {f['accepted']} accepted + {f['discarded']} discarded + {f['failed']} failed = {f['found']}")
    else:
        bad(f"counts do not add up: {f}")

    # --- the store ---------------------------------------------------------------------
    h = h5py.File(a.store, "r")
    need = ["patches/pixels", "patches/label", "patches/view", "patches/origin", "views/patient",
            "views/laterality", "views/position", "views/birads", "patients/pseudonym"]
    missing = [n for n in need if n not in h]
    if missing or h.attrs.get("schema_version") != 1 or h["patches/pixels"].shape[1:] != (B, B):
        bad(f"schema: missing {missing}, version {h.attrs.get('schema_version')}")
    else:
        ok(f"schema 1 with {h['patches/pixels'].shape[0]} patches, {h['views/patient'].shape[0]} views, "
           f"{h['patients/pseudonym'].shape[0]} patients")
    pix = h["patches/pixels"][:]
    lab = h["patches/label"][:]
    view = h["patches/view"][:]
    org = h["patches/origin"][:]
    ell = h["patches/ellipse"][:]
    vpat = h["views/patient"][:]
    if len(vpat) and vpat.max() >= h["patients/pseudonym"].shape[0]:
        bad("a view points past the patients table")
    pseud = [p.decode() for p in h["patients/pseudonym"][:]]
    if all(len(p) == 21 and p[0] == "P" for p in pseud):
        ok("pseudonyms are P + 20 hex digits")
    else:
        bad(f"odd pseudonyms {pseud[:3]}")

    # view k = k-th accepted file in file order
    accepted = [r for r in got if r["outcome"] == "accepted"]
    if len(accepted) != h["views/patient"].shape[0]:
        bad(f"{len(accepted)} accepted files but {h['views/patient'].shape[0]} views")
        return
    file_of_view = ["dicom/" + r["file"] for r in accepted]
    per_file = {}
    for i in range(len(lab)):
        per_file.setdefault(file_of_view[view[i]], []).append(i)
    counts_ok = all(len(per_file.get("dicom/" + r["file"], [])) == int(r["patches"]) for r in accepted)
    (ok if counts_ok else bad)("per-file patch counts in preprocess_files.csv match the store")

    # --- lesions ---------------------------------------------------------------------------
    clean = [l for l in lesions if l["annotated"] == "1" and l["clean_crop"] == "1"]
    outcome_of = {t["file"]: t["outcome"] for t in truth}
    clean = [l for l in clean if outcome_of[l["file"]] == "accepted"]
    matched = set()
    miss = []
    for l in clean:
        ex, ey = float(l["ell_cx"]), float(l["ell_cy"])
        hits = [i for i in per_file.get(l["file"], []) if lab[i] == 1
                and math.hypot(ell[i][0] - ex, ell[i][1] - ey) <= 2.0]
        if len(hits) != 1:
            miss.append((l["file"], l["lesion"], len(hits)))
        matched.update(hits)
    if miss:
        bad(f"{len(miss)} of {len(clean)} clean-crop lesions do not yield exactly one patch within 2 px: {miss[:5]}")
    else:
        ok(f"each of the {len(clean)} clean-crop lesions yields exactly one lesion patch within 2 px")
    extra = [i for i in range(len(lab)) if lab[i] == 1 and i not in matched]
    if extra:
        bad(f"{len(extra)} lesion patches match no clean-crop lesion (text or small marks?): "
            f"{[(file_of_view[view[i]], ell[i][:4].round(1).tolist()) for i in extra[:4]]}")
    else:
        ok("no lesion patch from text or from marks smaller than the crop")
    # a lesion patch is the crop at the rounded ellipse centre
    wrong = [i for i in matched if (org[i][0], org[i][1]) != (round(ell[i][1]) - B // 2, round(ell[i][0]) - B // 2)]
    (bad if wrong else ok)(f"lesion patch origins are the crop at the fitted centre ({len(wrong)} wrong)")

    # --- normals, recomputed independently --------------------------------------------------
    checked = mism_n = 0
    for t in truth:
        if t["outcome"] != "accepted" or t["birads"] != "1" or t["transfer_syntax"] != "explicit_le":
            continue
        ds = pydicom.dcmread(os.path.join(a.cohort, t["file"]))
        want = tiles(window_u8(ds))
        have = [i for i in per_file.get(t["file"], []) if lab[i] == 0]
        same = len(want) == len(have) and all(
            (org[i][0], org[i][1]) == (by, bx) and np.array_equal(pix[i], blk)
            for i, (by, bx, blk) in zip(have, want))
        checked += 1
        if not same:
            mism_n += 1
            if mism_n <= 3:
                bad(f"{t['file']}: {len(have)} normal patches, recomputation gives {len(want)}"
                    + ("" if len(want) != len(have) else " (pixels or origins differ)"))
    if checked == 0:
        bad("no uncompressed BI-RADS 1 image to recompute")
    elif mism_n == 0:
        ok(f"normal patches of {checked} BI-RADS 1 images equal the independent recomputation")
    else:
        bad(f"{mism_n} of {checked} images differ in their normal patches")

    # --- privacy ---------------------------------------------------------------------------------
    planted = set()
    for t in truth:
        if t["outcome"] == "failed:not_dicom":
            continue
        ds = pydicom.dcmread(os.path.join(a.cohort, t["file"]), stop_before_pixels=True)
        for v in (str(ds.PatientID), str(ds.PatientName), str(ds.PatientBirthDate)):
            if v:
                planted.add(v.encode())
    outputs = [a.store] + [os.path.join(a.report, n) for n in os.listdir(a.report)] + a.logs
    leaks = []
    for path in outputs:
        data = open(path, "rb").read()
        for v in planted:
            if v in data:
                leaks.append((os.path.basename(path), v.decode()))
    if leaks:
        bad(f"identifiers leaked: {leaks[:5]}")
    else:
        ok(f"none of {len(planted)} planted IDs, names and birth dates in {len(outputs)} outputs")


if __name__ == "__main__":
    main()
    print(f"{passes} passed, {fails} failed")
    sys.exit(0 if fails == 0 and passes > 0 else 1)
