#!/usr/bin/python3
"""Benchmark peer of `mammopatch preprocess`: the thesis's preprocessing stack in Python.

A faithful single-process re-implementation of thesis §3.1.2-§3.1.3 as fixed by
SPEC.md §2-§4, built on the libraries the thesis used (pydicom, cv2, numpy,
skimage) and writing the patch store with h5py.  It is the yardstick for
`bench/preprocess/run.sh`: mammopatch's per-core speed is compared with this.

    peer.py --input DIR --labels labels.csv --out patches.h5 [--limit N] [options]

Per file, in this order (first failing criterion is the reason, SPEC §2):
  dcmread fails                                 -> failed:not_dicom
  ViewPosition not CC/MLO                       -> discarded:view
  PatientSex not F                              -> discarded:sex
  BreastImplantPresent YES                      -> discarded:implant
  PresentationLUTShape INVERSE                  -> discarded:presentation_lut
  ImageType starts with a dropped value         -> discarded:image_type
  no (patient_id[, study_uid]) row in labels    -> discarded:no_label
  BI-RADS not in {0,1,2}                        -> discarded:birads
  pixel data cannot be decoded                  -> discarded:decode_error
  else                                          -> accepted
Accepted images are windowed to 8 bits (file's window centre/width, DICOM linear VOI
function; else min-max), MONOCHROME1 inverted, then BI-RADS 0/2 images go through
lesion extraction and BI-RADS 1 images through normal-block extraction (SPEC §3).

Everything runs on one core (cv2.setNumThreads(1), BLAS/OpenMP threads 1), so the
images/s printed on the last line (a JSON object) is a per-core figure.
"""
import os

# one core, honestly: set before numpy / cv2 load their thread pools
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
           "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from skimage.util import view_as_blocks  # noqa: E402

cv2.setNumThreads(1)
try:
    cv2.ocl.setUseOpenCL(False)
except Exception:  # pragma: no cover
    pass

PEER_VERSION = "mammopatch-peer 1 (python %s, pydicom %s, opencv %s, numpy %s, h5py %s)" % (
    sys.version.split()[0], pydicom.__version__, cv2.__version__, np.__version__, h5py.__version__)


# ----------------------------------------------------------------------------- labels

def load_labels(path):
    """Return (by_study, by_patient, has_study): BI-RADS strings keyed by
    (patient_id, study_uid) and by patient_id."""
    by_study, by_patient = {}, {}
    with open(path, newline="") as f:
        rd = csv.DictReader(f)
        cols = [c.strip() for c in (rd.fieldnames or [])]
        rd.fieldnames = cols
        if "patient_id" not in cols or "birads" not in cols:
            raise SystemExit("labels %s: need columns patient_id,birads (have %s)" % (path, ",".join(cols)))
        has_study = "study_uid" in cols
        for row in rd:
            pid = (row.get("patient_id") or "").strip()
            b = (row.get("birads") or "").strip()
            if not pid:
                continue
            if has_study:
                by_study[(pid, (row.get("study_uid") or "").strip())] = b
            by_patient.setdefault(pid, b)
    return by_study, by_patient, has_study


def lookup_birads(labels, pid, study):
    by_study, by_patient, has_study = labels
    if has_study:
        b = by_study.get((pid, study))
        if b is None:
            b = by_study.get((pid, ""))  # a row without a study UID covers all the patient's exams
        return b
    return by_patient.get(pid)


# ----------------------------------------------------------------------------- DICOM

def attr(ds, name):
    v = ds.get(name, None)
    if v is None:
        return ""
    return str(v).strip().upper()


def image_type_values(ds):
    v = ds.get("ImageType", None)
    if v is None:
        return []
    if isinstance(v, (list, tuple)) or hasattr(v, "__iter__") and not isinstance(v, str):
        return [str(x).strip().upper() for x in v]
    return [x.strip().upper() for x in str(v).split("\\")]


def header_filter(ds, drop_image_types):
    """SPEC §2 header criteria, in order.  Returns a reason or None."""
    if attr(ds, "ViewPosition") not in ("CC", "MLO"):
        return "view"
    if attr(ds, "PatientSex") != "F":
        return "sex"
    if attr(ds, "BreastImplantPresent") == "YES":
        return "implant"
    if attr(ds, "PresentationLUTShape") == "INVERSE":
        return "presentation_lut"
    it = image_type_values(ds)
    for drop in drop_image_types:
        if drop and it[:len(drop)] == drop:
            return "image_type"
    return None


def first_number(v):
    if v is None:
        return None
    if isinstance(v, (list, tuple)) or (hasattr(v, "__iter__") and not isinstance(v, (str, bytes))):
        v = list(v)
        if not v:
            return None
        v = v[0]
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def to_8bit(ds, raw):
    """Modality LUT (rescale), VOI (window centre/width or VOI LUT sequence, else
    min-max) to 8 bits, MONOCHROME1 inverted.  Returns (uint8 image, method)."""
    x = raw.astype(np.float32)
    slope = first_number(ds.get("RescaleSlope", None))
    icpt = first_number(ds.get("RescaleIntercept", None))
    if slope is not None and icpt is not None and (slope != 1.0 or icpt != 0.0):
        x *= np.float32(slope)
        x += np.float32(icpt)
    c = first_number(ds.get("WindowCenter", None))
    w = first_number(ds.get("WindowWidth", None))
    if c is not None and w is not None and w >= 1.0:
        method = "window"
        if w > 1.0:
            # DICOM PS3.3 C.11.2.1.2.1, linear: y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
            y = x
            y -= np.float32(c - 0.5)
            y *= np.float32(255.0 / (w - 1.0))
            y += np.float32(127.5)
        else:  # w == 1: a step at c - 0.5
            y = np.where(x > c - 0.5, np.float32(255), np.float32(0))
    elif "VOILUTSequence" in ds:
        method = "voi_lut"
        from pydicom.pixel_data_handlers.util import apply_voi_lut
        y = apply_voi_lut(raw, ds).astype(np.float32)
        desc = ds.VOILUTSequence[0].LUTDescriptor
        bits = int(desc[2]) if len(desc) > 2 else 16
        top = float((1 << bits) - 1) if bits > 0 else float(y.max() or 1)
        y = y * np.float32(255.0 / top)
    else:
        method = "minmax"
        lo, hi = float(x.min()), float(x.max())
        y = x
        y -= np.float32(lo)
        y *= np.float32(255.0 / (hi - lo) if hi > lo else 0.0)
    np.clip(y, 0, 255, out=y)
    np.rint(y, out=y)
    img = y.astype(np.uint8)
    if attr(ds, "PhotometricInterpretation") == "MONOCHROME1":
        np.subtract(255, img, out=img)  # VOI applies to stored values; then MONOCHROME1 -> 2
    return img, method


# ----------------------------------------------------------------------------- patches

class Params:
    def __init__(self, a):
        self.block = a.block_size
        self.annot_thresh = a.annot_thresh
        self.min_contour_area = a.min_contour_area
        self.min_ellipse_area = a.min_ellipse_area
        self.min_coverage = a.min_ellipse_coverage
        self.coverage_samples = a.coverage_samples
        self.max_extreme = a.max_extreme_frac
        self.black = a.black
        self.white = a.white
        self.median_ksize = a.median_ksize
        self.morph_radius = a.morph_radius
        self.dilate_iterations = a.dilate_iterations
        r = self.morph_radius
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        t = np.arange(self.coverage_samples, dtype=np.float64) * (2.0 * math.pi / self.coverage_samples)
        self.cos_t, self.sin_t = np.cos(t), np.sin(t)


def extreme_count(block, p):
    return int(np.count_nonzero((block <= p.black) | (block >= p.white)))


def lesion_patches(img, p):
    """SPEC §3 lesion procedure.  Returns a list of (patch, (row, col), ellipse)."""
    H, W = img.shape
    blur = cv2.medianBlur(img, p.median_ksize)
    _, th = cv2.threshold(blur, p.annot_thresh - 1, 255, cv2.THRESH_BINARY)  # keep >= ANNOT_THRESH
    closed = cv2.morphologyEx(th, cv2.MORPH_CLOSE, p.kernel)
    mask = cv2.dilate(th, p.kernel, iterations=p.dilate_iterations)
    found = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contours = found[0] if len(found) == 2 else found[1]
    out = []
    half = p.block // 2
    limit = p.max_extreme * p.block * p.block
    for cnt in contours:
        if len(cnt) < 5:
            continue
        if cv2.contourArea(cnt) < p.min_contour_area:
            continue
        (cx, cy), (ew, eh), ang = cv2.fitEllipse(cnt)
        a, b = 0.5 * ew, 0.5 * eh
        if not (math.isfinite(cx) and math.isfinite(cy) and math.isfinite(a) and math.isfinite(b)):
            continue
        if math.pi * a * b < p.min_ellipse_area:
            continue
        # coverage: boundary samples of the fitted ellipse that fall on the mask
        th_r = math.radians(ang)
        ca, sa = math.cos(th_r), math.sin(th_r)
        px = cx + a * p.cos_t * ca - b * p.sin_t * sa
        py = cy + a * p.cos_t * sa + b * p.sin_t * ca
        ix = np.floor(px + 0.5).astype(np.int64)
        iy = np.floor(py + 0.5).astype(np.int64)
        inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
        on = np.zeros(ix.shape, dtype=bool)
        on[inside] = mask[iy[inside], ix[inside]] != 0
        if on.mean() < p.min_coverage:
            continue
        # centre crop from the unfiltered (windowed) image
        icx, icy = int(math.floor(cx + 0.5)), int(math.floor(cy + 0.5))
        r0, c0 = icy - half, icx - half
        if r0 < 0 or c0 < 0 or r0 + p.block > H or c0 + p.block > W:
            continue
        patch = img[r0:r0 + p.block, c0:c0 + p.block]
        if extreme_count(patch, p) > limit:
            continue
        out.append((np.ascontiguousarray(patch), (r0, c0), (cx, cy, a, b, ang)))
    return out


def normal_patches(img, p):
    """SPEC §3 normal procedure.  Returns (patches [n,B,B] uint8, origins [n,2])."""
    H, W = img.shape
    B = p.block
    ph, pw = (-H) % B, (-W) % B
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)), mode="constant", constant_values=0)
    blocks = view_as_blocks(img, (B, B))  # [rows, cols, B, B]
    nr, nc = blocks.shape[:2]
    ext = ((blocks <= p.black) | (blocks >= p.white)).sum(axis=(2, 3))
    keep = ext <= (B * B) // 2  # drop when MORE than half are extreme
    rr, cc = np.nonzero(keep)
    patches = blocks[rr, cc]  # fancy indexing copies: [n, B, B]
    origins = np.stack([rr * B, cc * B], axis=1).astype(np.int32)
    return patches, origins


# ----------------------------------------------------------------------------- store

class Store:
    """Patch store of SPEC §4 (schema 1), appended in whole chunks."""

    def __init__(self, path, block, chunk, gzip_level):
        self.f = h5py.File(path, "w")
        self.chunk = chunk
        self.block = block
        g = self.f.create_group("patches")
        self.pix = g.create_dataset("pixels", shape=(0, block, block), maxshape=(None, block, block),
                                    dtype=np.uint8, chunks=(chunk, block, block),
                                    # level 0: no filter at all, as mammopatch's deflate = 0
                                    compression="gzip" if gzip_level > 0 else None,
                                    compression_opts=gzip_level if gzip_level > 0 else None)
        self.lab = g.create_dataset("label", shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(4096,))
        self.view = g.create_dataset("view", shape=(0,), maxshape=(None,), dtype=np.uint32, chunks=(4096,))
        self.orig = g.create_dataset("origin", shape=(0, 2), maxshape=(None, 2), dtype=np.int32, chunks=(4096, 2))
        self.n = 0
        self.buf_pix, self.buf_lab, self.buf_view, self.buf_orig = [], [], [], []
        self.buffered = 0

    def add(self, pixels, label, view, origins):
        k = len(pixels)
        if not k:
            return
        self.buf_pix.append(pixels)
        self.buf_lab.append(np.full(k, label, np.uint8))
        self.buf_view.append(np.full(k, view, np.uint32))
        self.buf_orig.append(np.asarray(origins, np.int32).reshape(k, 2))
        self.buffered += k
        if self.buffered >= 8 * self.chunk:
            self.flush(final=False)

    def flush(self, final):
        if not self.buffered:
            return
        pix = np.concatenate(self.buf_pix) if len(self.buf_pix) > 1 else np.asarray(self.buf_pix[0])
        lab = np.concatenate(self.buf_lab)
        view = np.concatenate(self.buf_view)
        orig = np.concatenate(self.buf_orig)
        k = len(pix) if final else (len(pix) // self.chunk) * self.chunk
        if k:
            n0, n1 = self.n, self.n + k
            for d in (self.pix, self.lab, self.view, self.orig):
                d.resize(n1, axis=0)
            self.pix[n0:n1] = pix[:k]
            self.lab[n0:n1] = lab[:k]
            self.view[n0:n1] = view[:k]
            self.orig[n0:n1] = orig[:k]
            self.n = n1
        rest = len(pix) - k
        if rest:
            self.buf_pix, self.buf_lab = [pix[k:].copy()], [lab[k:]]
            self.buf_view, self.buf_orig = [view[k:]], [orig[k:]]
        else:
            self.buf_pix, self.buf_lab, self.buf_view, self.buf_orig = [], [], [], []
        self.buffered = rest

    def close(self, views, patients, attrs):
        self.flush(final=True)
        g = self.f.create_group("views")
        g.create_dataset("patient", data=np.asarray([v[0] for v in views], np.uint32).reshape(-1))
        g.create_dataset("laterality", data=np.asarray([v[1].encode() for v in views], "S1").reshape(-1))
        g.create_dataset("position", data=np.asarray([v[2].encode() for v in views], "S3").reshape(-1))
        g.create_dataset("birads", data=np.asarray([v[3] for v in views], np.int8).reshape(-1))
        g = self.f.create_group("patients")
        g.create_dataset("pseudonym", data=np.asarray([s.encode() for s in patients], "S21").reshape(-1))
        for k, v in attrs.items():
            self.f.attrs[k] = v
        self.f.close()


def site_key():
    k = os.environ.get("MAMMOPATCH_SITE_KEY", "")
    if len(k.encode()) >= 16:
        return k.encode(), "env"
    return secrets.token_bytes(32), "ephemeral"  # pseudonyms unique in this file, not linkable


def pseudonym(key, pid):
    h = hmac.new(key, pid.strip(" \0").encode(), hashlib.sha256).hexdigest()
    return "P" + h[:20]


# ----------------------------------------------------------------------------- main

def walk(root):
    files = []
    for d, _dirs, names in os.walk(root):
        for n in names:
            if n.lower().endswith(".dcm"):
                files.append(os.path.join(d, n))
    files.sort(key=lambda s: os.path.relpath(s, root).encode())
    return files


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True, help="DICOM directory (walked recursively for *.dcm)")
    ap.add_argument("--labels", required=True, help="labels CSV: patient_id,birads[,study_uid]")
    ap.add_argument("--out", required=True, help="output HDF5 patch store")
    ap.add_argument("--limit", type=int, default=0, help="process only the first N files (sorted by path)")
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--annot-thresh", type=int, default=250)
    ap.add_argument("--min-contour-area", type=float, default=25700 * 0.5)
    ap.add_argument("--min-ellipse-area", type=float, default=25700 * 0.5)
    ap.add_argument("--min-ellipse-coverage", type=float, default=0.999)
    ap.add_argument("--coverage-samples", type=int, default=360)
    ap.add_argument("--max-extreme-frac", type=float, default=0.5)
    ap.add_argument("--black", type=int, default=20)
    ap.add_argument("--white", type=int, default=235)
    ap.add_argument("--median-ksize", type=int, default=5)
    ap.add_argument("--morph-radius", type=int, default=5)
    ap.add_argument("--dilate-iterations", type=int, default=2)
    ap.add_argument("--drop-image-type", action="append", default=None,
                    help="ImageType prefix to discard, backslash-separated (repeatable; default DERIVED\\SECONDARY)")
    ap.add_argument("--chunk", type=int, default=64, help="patches per HDF5 chunk")
    ap.add_argument("--gzip-level", type=int, default=4, help="deflate level of /patches/pixels (0: stored uncompressed)")
    ap.add_argument("--outcomes", default="", help="also write each file's outcome to this CSV")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap.parse_args(argv)


def main(argv):
    a = parse_args(argv)
    p = Params(a)
    drops = [[x.strip().upper() for x in d.split("\\")] for d in (a.drop_image_type or ["DERIVED\\SECONDARY"])]
    t0 = time.perf_counter()
    labels = load_labels(a.labels)
    files = walk(a.input)
    if a.limit > 0:
        files = files[:a.limit]
    key, key_src = site_key()
    store = Store(a.out, p.block, a.chunk, a.gzip_level)

    counts = {"accepted": 0, "discarded": 0, "failed": 0}
    reasons = {}
    windowing = {}
    n_normal = n_lesion = 0
    views, patients, pat_index = [], [], {}
    stage = {"read": 0.0, "decode_window": 0.0, "lesion": 0.0, "normal": 0.0, "write": 0.0}
    outcome_rows = []
    for path in files:
        rel = os.path.relpath(path, a.input)
        ts = time.perf_counter()
        try:
            ds = pydicom.dcmread(path)
        except Exception as e:  # noqa: BLE001 - any read error is a failed file
            counts["failed"] += 1
            r = "failed:not_dicom" if isinstance(e, pydicom.errors.InvalidDicomError) else \
                "failed:%s" % type(e).__name__
            reasons[r] = reasons.get(r, 0) + 1
            outcome_rows.append((rel, r))
            stage["read"] += time.perf_counter() - ts
            continue
        stage["read"] += time.perf_counter() - ts
        reason = header_filter(ds, drops)
        birads = None
        if reason is None:
            pid = str(ds.get("PatientID", "") or "").strip()
            study = str(ds.get("StudyInstanceUID", "") or "").strip()
            b = lookup_birads(labels, pid, study)
            if b is None:
                reason = "no_label"
            else:
                try:
                    birads = int(float(b))
                except ValueError:
                    birads = -1
                if birads not in (0, 1, 2):
                    reason = "birads"
        img = None
        if reason is None:
            ts = time.perf_counter()
            try:
                raw = ds.pixel_array
                if raw.ndim != 2:
                    raise ValueError("not a single-frame grayscale image (shape %s)" % (raw.shape,))
                img, method = to_8bit(ds, raw)
                del raw
            except Exception:  # noqa: BLE001
                reason = "decode_error"
            stage["decode_window"] += time.perf_counter() - ts
        if reason is not None:
            counts["discarded"] += 1
            reasons["discarded:" + reason] = reasons.get("discarded:" + reason, 0) + 1
            outcome_rows.append((rel, "discarded:" + reason))
            continue
        del ds.PixelData  # keep the dataset small; the 8-bit image is all we need
        counts["accepted"] += 1
        outcome_rows.append((rel, "accepted"))
        windowing[method] = windowing.get(method, 0) + 1
        if pid not in pat_index:
            pat_index[pid] = len(patients)
            patients.append(pseudonym(key, pid))
        lat = attr(ds, "ImageLaterality") or attr(ds, "Laterality") or "U"
        vi = len(views)
        views.append((pat_index[pid], lat[:1], attr(ds, "ViewPosition"), birads))
        if birads in (0, 2):
            ts = time.perf_counter()
            les = lesion_patches(img, p)
            stage["lesion"] += time.perf_counter() - ts
            if les:
                ts = time.perf_counter()
                store.add(np.stack([x[0] for x in les]), 1, vi, [x[1] for x in les])
                stage["write"] += time.perf_counter() - ts
            n_lesion += len(les)
        else:
            ts = time.perf_counter()
            pats, origins = normal_patches(img, p)
            stage["normal"] += time.perf_counter() - ts
            ts = time.perf_counter()
            store.add(pats, 0, vi, origins)
            stage["write"] += time.perf_counter() - ts
            n_normal += len(pats)

    ts = time.perf_counter()
    attrs = {
        "schema_version": 1, "patch_size": p.block, "software": PEER_VERSION,
        "annot_thresh": p.annot_thresh, "min_contour_area": p.min_contour_area,
        "min_ellipse_area": p.min_ellipse_area, "min_ellipse_coverage": p.min_coverage,
        "coverage_samples": p.coverage_samples, "max_extreme_frac": p.max_extreme,
        "black": p.black, "white": p.white, "median_ksize": p.median_ksize,
        "morph_radius": p.morph_radius, "dilate_iterations": p.dilate_iterations,
        "drop_image_types": json.dumps(["\\".join(d) for d in drops]),
        "files": len(files), "files_accepted": counts["accepted"], "files_discarded": counts["discarded"],
        "files_failed": counts["failed"], "outcomes": json.dumps(reasons, sort_keys=True),
        "windowing": json.dumps(windowing, sort_keys=True), "site_key": key_src,
    }
    store.close(views, patients, attrs)
    stage["write"] += time.perf_counter() - ts
    seconds = time.perf_counter() - t0

    if a.outcomes:
        with open(a.outcomes, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "outcome"])
            w.writerows(outcome_rows)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    res = {
        "files": len(files), "accepted": counts["accepted"], "discarded": counts["discarded"],
        "failed": counts["failed"], "normal_patches": n_normal, "lesion_patches": n_lesion,
        "seconds": round(seconds, 4),
        "images_per_second": round(len(files) / seconds, 4) if seconds > 0 else 0.0,
        "peak_rss_mb": round(peak_kb / 1024.0, 1),
        "outcomes": dict(sorted(reasons.items())), "windowing": windowing,
        "stage_seconds": {k: round(v, 3) for k, v in stage.items()},
    }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
