#!/usr/bin/env python3
"""Checks for tests/eval/test_experiment.sh (experiment, report, predict).

  aggregate EXP STORE      experiment.json's summary and differences recomputed with
                           numpy from the jobs' own eval.json files (mean, sample std,
                           min, max per variant / level / metric); results.csv and
                           summary.csv agree with it; every split of every variant has
                           an entry; the report files exist; the report's preprocessing
                           counts equal the store's attributes
  privacy EXP COHORT       no patient ID, name or birth date of the cohort's DICOM headers
                           appears in any file of the experiment directory
  same A.json B.json [JOB_A JOB_B]
                           two experiment.json files hold the same numbers (provenance,
                           timings, statuses and directories aside); with two job
                           directories, also their train.json (curves, every step's loss,
                           best epoch, test) and eval.json
  fabricate EXP OUT V      OUT/runs/{baseline,V}/split-*: the real baseline jobs, and V made
                           from them with known per-split shifts of recall (+), precision (-)
                           and F1 (+) at every level (for the aggregation and highlights)
  highlights OUT           the highlight sentence of V states the shifts fabricate made
  predict COHORT N OUT...  each OUT (predict's output with one model, the first also given an
                           empty file) scored N images (+1 failed); heatmap PNGs valid;
                           over all models and views, the hottest tile contains a lesion
                           centre of truth_lesions.csv in at least a third of the cases, and
                           that many hits by chance (a view's chance: its share of tiles on a
                           lesion, ~4%) has probability below 1e-4; the model's
                           weights named by their SHA-256 in every predict.json.  One model's 12 views are
                           too few for a fixed bar: how many it gets varies with the CPU's
                           kernels (oneDNN's AVX2 and SSE4.1 paths trained split 5's model to
                           6 and 5 of 12, split 6's to 8 and 9)
  tiles128 JSON DCM        with predict.stride = 128 the scored tiles are exactly
                           preprocessing's normal tiling, recomputed with pydicom + numpy
"""
import csv
import glob
import hashlib
import json
import math
import os
import struct
import sys

import numpy as np

LEVELS = ("patch", "view", "patient")
METRICS = ("accuracy", "precision", "recall", "f1", "mcc", "roc_auc", "pr_auc")


def fail(msg):
    print(msg)
    sys.exit(1)


def close(a, b, tol=1e-9):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def aggregate(exp, store):
    x = json.load(open(os.path.join(exp, "experiment.json")))
    variants, R = x["variants"], x["repeats"]
    runs = {}
    for r in x["results"]:
        if r["status"] not in ("done", "reused"):
            fail(f"job {r['variant']} split {r['split_seed']}: {r['status']}")
        e = json.load(open(os.path.join(exp, r["dir"], "eval.json")))
        runs[(r["variant"], r["split_seed"])] = e["test"]
        t = json.load(open(os.path.join(exp, r["dir"], "train.json")))
        if r.get("compute") != t.get("compute") or not r.get("compute", {}).get("engines"):
            fail(f"results entry {r['variant']}/{r['split_seed']}: compute {r.get('compute')} is not train.json's")
        for lv in LEVELS:
            for m in METRICS:
                if not close(r["test"][lv][m], e["test"][lv][m]):
                    fail(f"results entry {r['variant']}/{r['split_seed']} {lv} {m} differs from eval.json")
    seeds = sorted({s for (_, s) in runs})
    if len(runs) != R * len(variants) or len(seeds) != R:
        fail(f"{len(runs)} results for {R} splits x {len(variants)} variants")
    checked = 0
    for v in variants:
        for lv in LEVELS:
            for m in METRICS:
                vals = np.array([runs[(v, s)][lv][m] for s in seeds if runs[(v, s)][lv][m] is not None], float)
                got = x["summary"][v][lv][m]
                want_mean = float(vals.mean()) if len(vals) else None
                want_std = float(vals.std(ddof=1)) if len(vals) > 1 else None
                if got["n"] != len(vals) or not close(got["mean"], want_mean) or not close(got["std"], want_std):
                    fail(f"summary {v} {lv} {m}: {got} vs numpy mean {want_mean} std {want_std} n {len(vals)}")
                if len(vals) and (not close(got["min"], float(vals.min())) or not close(got["max"], float(vals.max()))):
                    fail(f"summary {v} {lv} {m}: min/max")
                checked += 1
    if "baseline" in variants:
        for v in variants:
            if v == "baseline":
                continue
            for lv in LEVELS:
                for m in METRICS:
                    d = [runs[(v, s)][lv][m] - runs[("baseline", s)][lv][m] for s in seeds
                         if runs[(v, s)][lv][m] is not None and runs[("baseline", s)][lv][m] is not None]
                    got = x["differences_from_baseline"][v][lv][m]
                    if not close(got["mean"], float(np.mean(d)) if d else None):
                        fail(f"difference {v} {lv} {m}")
                    checked += 1
    if not x["highlights"]:
        fail("no highlights")
    # the report's files and their numbers
    rep = os.path.join(exp, "report")
    for f in ("index.html", "report.md", "results.csv", "summary.csv", "differences.csv", "training.csv",
              "preprocess.csv", "experiment.json", "montage.png"):
        if not os.path.isfile(os.path.join(rep, f)):
            fail(f"report/{f} missing")
    rows = list(csv.DictReader(open(os.path.join(rep, "results.csv"))))
    if len(rows) != len(runs) * 3:
        fail(f"results.csv: {len(rows)} rows for {len(runs)} runs x 3 levels")
    for row in rows:
        t = runs[(row["variant"], int(row["split_seed"]))][row["level"]]
        for m in METRICS:
            want = t[m]
            if (row[m] == "") != (want is None) or (want is not None and abs(float(row[m]) - want) > 5e-6):
                fail(f"results.csv {row['variant']} {row['split_seed']} {row['level']} {m}: {row[m]} vs {want}")
    for row in csv.DictReader(open(os.path.join(rep, "summary.csv"))):
        got = x["summary"][row["variant"]][row["level"]][row["metric"]]
        if got["mean"] is not None and abs(float(row["mean"]) - got["mean"]) > 5e-6:
            fail(f"summary.csv {row}")
    import h5py
    with h5py.File(store, "r") as h:
        found = int(h.attrs["files_found"])
        acc = int(h.attrs["files_accepted"])
    pre = list(csv.DictReader(open(os.path.join(rep, "preprocess.csv"))))
    if int(pre[0]["remaining"]) != found or int(pre[-1]["remaining"]) != acc:
        fail(f"preprocess.csv: found {pre[0]['remaining']} / remaining {pre[-1]['remaining']} vs store {found} / {acc}")
    print(f"{checked} summary/difference values equal numpy's; {len(rows)} results.csv rows; "
          f"preprocess table {found} -> {acc} files")


def privacy(exp, cohort):
    import pydicom
    planted = set()
    for f in glob.glob(os.path.join(cohort, "dicom", "**", "*.dcm"), recursive=True):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        except Exception:
            continue
        for tag in ("PatientID", "PatientName", "PatientBirthDate", "OtherPatientIDs"):
            v = str(ds.get(tag, "") or "").strip()
            if len(v) >= 4:
                planted.add(v)
    if not planted:
        fail("no identifiers found in the cohort")
    hits, files = [], 0
    for root, _, names in os.walk(exp):
        for n in names:
            data = open(os.path.join(root, n), "rb").read()
            files += 1
            for p in planted:
                if p.encode() in data:
                    hits.append(f"{p} in {os.path.join(root, n)}")
    if hits:
        fail("identifiers found: " + "; ".join(hits[:5]))
    print(f"none of {len(planted)} IDs, names and birth dates in {files} files")


def strip(d):
    if isinstance(d, dict):
        # (the store's path differs between two pipeline outputs; its content is compared apart)
        # (and timings: an epoch's seconds and patches per second in train.json's curve)
        return {k: strip(v) for k, v in d.items()
                if k not in ("provenance", "compute", "seconds", "train_seconds", "patches_per_second", "status", "dir",
                             "train_dir", "store")}
    if isinstance(d, list):
        return [strip(v) for v in d]
    return d


def same(a, b, job_a=None, job_b=None):
    x, y = strip(json.load(open(a))), strip(json.load(open(b)))
    if x != y:
        fail("experiment.json numbers differ after the rerun")
    if job_a is None:
        print("numbers identical")
        return
    for f in ("train.json", "eval.json"):
        x, y = (strip(json.load(open(os.path.join(d, f)))) for d in (job_a, job_b))
        if x != y:
            diff = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            fail(f"{f} differs between {job_a} and {job_b}: {', '.join(diff)}")
    steps = len(json.load(open(os.path.join(job_a, "train.json")))["step_loss"])
    print(f"numbers identical; the job's train.json ({steps} step losses, curves, best epoch) and eval.json too")


# split 1, split 2: precision's two shifts are close enough for its 95% interval (t, 1 df) to exclude 0
SHIFTS = {"recall": (0.05, 0.03), "precision": (-0.02, -0.021), "f1": (0.02, 0.04)}


def fabricate(exp, out, v):
    import shutil
    base = sorted(glob.glob(os.path.join(exp, "runs", "baseline", "split-*")), key=lambda p: int(p.rsplit("-", 1)[1]))
    for i, src in enumerate(base):
        name = os.path.basename(src)
        for var in ("baseline", v):
            dst = os.path.join(out, "runs", var, name)
            os.makedirs(dst, exist_ok=True)
            for f in ("eval.json", "train.json"):
                shutil.copy(os.path.join(src, f), dst)
            if var == "baseline":
                continue
            e = json.load(open(os.path.join(dst, "eval.json")))
            for lv in LEVELS:
                for m, d in SHIFTS.items():
                    e["test"][lv][m] += d[i % 2]
            json.dump(e, open(os.path.join(dst, "eval.json"), "w"))
    print(f"{len(base)} splits x (baseline, {v})")


def highlights(out):
    x = json.load(open(os.path.join(out, "experiment.json")))
    h = [s for s in x["highlights"] if s.startswith("gan vs baseline")]
    if len(h) != 1:
        fail(f"highlights: {x['highlights']}")
    h = h[0]
    pp = {m: (100 * np.mean(d), 100 * np.std(d, ddof=1)) for m, d in SHIFTS.items()}
    want = [f"improves the recall for patch-wise, view-wise and patient-wise classification by "
            + ", ".join([f"{pp['recall'][0]:.1f} ± {pp['recall'][1]:.1f}"] * 2) + f" and "
            f"{pp['recall'][0]:.1f} ± {pp['recall'][1]:.1f}",
            f"lowers the precision for patch-wise, view-wise and patient-wise classification by "
            + ", ".join([f"{-pp['precision'][0]:.1f} ± {pp['precision'][1]:.1f}"] * 2),
            "improves the F1 for patch-wise"]
    for w in want:
        if w not in h:
            fail(f"highlight lacks '{w}': {h}")
    if not h.startswith("gan vs baseline (2 paired splits): improves the F1"):
        fail(f"highlight order: {h}")
    # the 95% intervals of the mean paired differences (Student t) against scipy; only
    # precision's is clear of 0, and the highlight says so, naming it at each level
    from scipy import stats
    dif = x["differences_from_baseline"]["gan"]
    for lv in LEVELS:
        for m in METRICS:
            c = dif[lv][m]
            if m not in SHIFTS:
                continue
            d = np.array(SHIFTS[m])
            half = stats.t.ppf(0.975, 1) * np.std(d, ddof=1) / np.sqrt(2)
            want_ci = (np.mean(d) - half, np.mean(d) + half)
            if c["ci95"] is None or max(abs(c["ci95"][k] - want_ci[k]) for k in (0, 1)) > 1e-6:
                fail(f"{lv} {m}: ci95 {c['ci95']} vs scipy {want_ci}")
            if c["excludes_zero"] != (m == "precision"):
                fail(f"{lv} {m}: excludes_zero {c['excludes_zero']} for the interval {c['ci95']}")
    lo, hi = (100 * (np.mean(SHIFTS["precision"]) + k * stats.t.ppf(0.975, 1) * np.std(SHIFTS["precision"], ddof=1)
                     / np.sqrt(2)) for k in (-1, 1))
    clear = (" Only these are clear of split-to-split variation (95% interval of the mean paired difference, "
             "Student t, 1 df, in percentage points, excluding 0): "
             + "; ".join(f"the precision for {w} classification ({lo:.1f} to {hi:.1f})"
                         for w in ("patch-wise", "view-wise", "patient-wise"))
             + "; the others' intervals contain 0.")
    if not h.endswith(clear):
        fail(f"highlight's interval sentence: {h}\nwanted the end: {clear}")
    rows = list(csv.DictReader(open(os.path.join(out, "report", "differences.csv"))))
    for row in rows:
        c = dif[row["level"]][row["metric"]]
        if c["ci95"] is not None and not close(float(row["ci95_lo"]), c["ci95"][0], 1e-5):
            fail(f"differences.csv ci95_lo {row}")
    md = open(os.path.join(out, "report", "report.md")).read()
    if md.count("* |") < 3:
        fail("report.md marks fewer than 3 differences (precision at 3 levels) as clear of 0")
    print(h[:160] + "...")


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        fail(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


def chance_tail(ps, k):
    """P(X >= k) for X the number of successes of independent trials with probabilities ps."""
    d = np.zeros(len(ps) + 1)
    d[0] = 1.0
    for p in ps:
        d[1:] = d[1:] * (1 - p) + d[:-1] * p
        d[0] *= 1 - p
    return float(d[k:].sum())


def predict(cohort, n, *outs):
    n = int(n)
    lesions, files = {}, {}
    for r in csv.DictReader(open(os.path.join(cohort, "truth_lesions.csv"))):
        key = os.path.basename(os.path.dirname(r["file"])) + "/" + os.path.basename(r["file"])
        lesions.setdefault(key, []).append((float(r["cx"]), float(r["cy"])))
        files[key] = os.path.join(cohort, r["file"])
    marker_px, marker_views = 0, 0  # burned-in view-marker pixels checked blank in the heatmaps, their views
    views = sorted(lesions)  # the order the test passed them in (sort -u of the paths)
    hits, shares, per = 0, [], []
    for m, out in enumerate(outs):
        s = json.load(open(os.path.join(out, "predict.json")))
        imgs = s["images"]
        extra = 1 if m == 0 else 0  # the first run was also given the empty file
        if len(imgs) != n + extra:
            fail(f"{out}: {len(imgs)} images in predict.json, expected {n}" + (" + the empty file" if extra else ""))
        if extra and (imgs[-1]["status"] != "failed" or not imgs[-1].get("error")):
            fail(f"the empty file: {imgs[-1]}")
        # the model named by the SHA-256 of its weight files (what sha256sum prints)
        want = {f: hashlib.sha256(open(os.path.join(s["model"], f), "rb").read()).hexdigest()
                for f in ("block1.h5", "rest.h5")}
        if s.get("model_sha256") != want:
            fail(f"{out}: model_sha256 {s.get('model_sha256')}, the files' are {want}")
        # what computed it: the summary's compute record (2 ranks, no gradient mean), each view its rank's line
        c = s.get("compute") or {}
        engines = [g["engine"] for g in c.get("engines", [])]
        if (c.get("backend") != s["provenance"]["config"]["train"]["backend"] or c.get("ranks") != 2
                or "gradient_mean" in c or sorted(r for g in c["engines"] for r in g["ranks"]) != [0, 1]):
            fail(f"{out}: compute record {c}")
        mh = 0
        for i, key in enumerate(views):
            d = json.load(open(os.path.join(out, f"view-{i + 1}", "predict.json")))
            if d["status"] != "ok" or d["input"] != os.path.basename(key):
                fail(f"{out}/view-{i + 1}: {d.get('status')} {d.get('input')} (expected {key})")
            if d.get("engine") not in engines:
                fail(f"{out}/view-{i + 1}: engine {d.get('engine')!r} is none of the summary's {engines}")
            if d.get("model_sha256") != want or d.get("modality_transform") != "none":
                fail(f"{out}/view-{i + 1}: model_sha256 {d.get('model_sha256')}, modality_transform "
                     f"{d.get('modality_transform')} (no rescale, no table in the synthetic views)")
            h, P = d["hottest"], d["patch_size"]
            inside = lambda t, c: t[0] <= c[1] < t[0] + P and t[1] <= c[0] < t[1] + P
            if any(inside((h["row"], h["col"]), c) for c in lesions[key]):
                mh += 1
            on = sum(1 for t in d["tiles"] if any(inside(t, c) for c in lesions[key]))
            shares.append(on / max(1, len(d["tiles"])))
            w, hh = png_size(os.path.join(out, f"view-{i + 1}", "heatmap.png"))
            if (w, hh) != (d["heatmap"]["width"], d["heatmap"]["height"]) or max(w, hh) > 1024:
                fail(f"{out}/view-{i + 1}: heatmap {w}x{hh} vs {d['heatmap']}")
            m = heatmap_blanks_marker(os.path.join(out, f"view-{i + 1}"), d, files[key])
            marker_px, marker_views = marker_px + (m or 0), marker_views + (m is not None)
            probs = [t[2] for t in d["tiles"]]
            if not all(0 <= p <= 1 for p in probs) or not math.isclose(max(probs), h["probability"], rel_tol=1e-6):
                fail(f"{out}/view-{i + 1}: probabilities")
            if (d["decision"] == "lesion") != (max(probs) >= d["threshold"]):
                fail(f"{out}/view-{i + 1}: decision {d['decision']} with max p {max(probs)}")
        hits += mh
        per.append(f"{mh}/{len(views)}")
    total, chance = len(shares), float(np.mean(shares))
    p = chance_tail(shares, hits)
    said = (f"hottest tile on a lesion in {hits}/{total} views x models ({', '.join(per)}; chance ~{chance:.0%} a view, "
            f"P(>= {hits} by chance) = {p:.1e})")
    if 3 * hits < total or not p < 1e-4:
        fail(said)
    if not marker_views:
        fail("no view's pixels could be read here to check the heatmap's blanked marker")
    print(said + f"; heatmaps valid, the burned-in view marker blank in {marker_views} of them ({marker_px} picture "
          "pixels; the others' transfer syntax needs a decoder pydicom lacks here); models named by their weights' SHA-256")


def heatmap_blanks_marker(vdir, d, dcm):
    """The heatmap draws the breast only: every picture pixel that holds a pixel of the view's
    burned-in marker (stored 4095, above any tissue in the synthetic views) is black where no tile
    colours it. Returns the number of such pixels (there must be some), or None when pydicom cannot
    decode the view here (JPEG-LS, JPEG 2000 and the like need plug-ins this machine may lack)."""
    import cv2, pydicom
    hm = d["heatmap"]
    if not hm.get("outside_breast", "").startswith("blanked") or not 0.05 < hm.get("breast_fraction", 0) < 0.95:
        fail(f"{vdir}: heatmap {hm}")
    try:
        px = pydicom.dcmread(dcm).pixel_array
    except (RuntimeError, NotImplementedError):
        return None
    rgb = cv2.imread(os.path.join(vdir, "heatmap.png"), cv2.IMREAD_COLOR)[:, :, ::-1].astype(int)
    f = -(-d["cols"] // hm["width"])  # the integer downscale factor
    ys, xs = np.nonzero(px >= 4095)
    cells = {(y // f, x // f) for y, x in zip(ys, xs)}
    grey = [c for c in cells if rgb[c][0] == rgb[c][1] == rgb[c][2]]  # untinted, no outline
    if not grey or any(rgb[c][0] != 0 for c in grey):
        fail(f"{vdir}: {sum(rgb[c][0] != 0 for c in grey)} of {len(grey)} picture pixels of the view marker are drawn")
    return len(grey)


def tiles128(path, dcm):
    import pydicom
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "preprocess"))
    from check_preprocess import tiles, window_u8
    d = json.load(open(path))
    got = sorted((int(t[0]), int(t[1])) for t in d["tiles"])
    want = sorted((r, c) for r, c, _ in tiles(window_u8(pydicom.dcmread(dcm))))
    if got != want:
        fail(f"{len(got)} tiles vs {len(want)} recomputed; first difference "
             f"{sorted(set(got) ^ set(want))[:3]}")
    print(f"{len(got)} tiles, positions identical to the recomputation")


def t975(path):
    """experiment_tool t975's quantiles against scipy.stats.t.ppf(0.975, df)"""
    from scipy import stats
    worst = 0.0
    for line in open(path):
        df, v = line.split()
        want = stats.t.ppf(0.975, int(df))
        worst = max(worst, abs(float(v) - want) / want)
    if worst > 1e-7:
        fail(f"t quantile: worst relative error {worst:.1e}")
    print(f"t(0.975, df) for df 1..400 within {worst:.1e} of scipy")


if __name__ == "__main__":
    cmds = {"t975": t975, "aggregate": aggregate, "privacy": privacy, "same": same, "predict": predict, "tiles128": tiles128,
            "fabricate": fabricate, "highlights": highlights}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        fail(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])
