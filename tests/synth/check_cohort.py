#!/usr/bin/python3
"""Verify a synthetic mammography cohort written by `mammopatch synth`.

Usage:
    check_cohort.py OUT [--uncompressed OUT2] [--sample N] [--no-gdcmdump]
                        [--no-outcome-rules] [--jobs J]

The later pipeline stages (preprocess, train, eval) trust this cohort and its
ground truth, so the checks here make sure that the DICOM files really are
what truth.csv says they are, and that every decoy fails in the way it is
meant to fail.

What is checked
---------------
Cohort files (OUT/truth.csv, OUT/labels.csv, OUT/truth_lesions.csv):
  * exact headers; enumerated columns hold allowed values; paths have the form
    dicom/pNNNNN/<name>.dcm; no duplicate files or SOP instance UIDs; every
    listed file exists and every file under OUT/dicom is listed;
  * a study UID belongs to one patient only;
  * labels.csv: one row per (patient_id, study_uid), every key is in truth,
    truth's birads equals the label's, exams with an empty birads (and every
    discarded:no_label exam) have no label;
  * truth_lesions.csv: parses, every file is in truth.csv, per-file lesion
    counts equal truth's `lesions`, 0 <= cx < Columns and 0 <= cy < Rows;
  * outcome rules (switch off with --no-outcome-rules): an accepted image has
    view CC|MLO, sex F, no implant, IDENTITY LUT, an ORIGINAL image type and a
    label; discarded:<reason> has the attribute that explains the reason.
Every readable DICOM file (all but failed:not_dicom):
  * Part 10 file readable with force=False; SOP class (mammography for
    presentation, Secondary Capture for DERIVED\\SECONDARY) and SOP instance
    UIDs agree with the file meta and with truth; UIDs are valid;
  * Modality MG, 16 bits allocated / 12 stored / high bit 11, unsigned,
    one sample; photometric, transfer syntax, patient, view, laterality,
    implant, LUT shape, image type and study UID equal truth; birth date is
    a valid YYYYMMDD; window center/width are numbers, width > 0;
  * gdcmdump exits 0 (unless --no-gdcmdump);
  * explicit_le: pixel data is exactly Rows*Columns*2 bytes, pixel_array is
    uint16 (Rows, Columns) with max <= 4095;
  * jpegls / j2k: the codestream itself declares lossless coding (JPEG-LS
    NEAR=0; J2K reversible 5/3 wavelet, no quantisation, no JP2 wrapper),
    its size matches Rows/Columns, and `gdcmconv --raw` decodes it to an
    array with the same shape/dtype/range checks (a reversible J2K stream cut
    to a target rate is still lossy: only --uncompressed can catch that);
  * discarded:decode_error (truncated): only the header checks above, plus
    decoding must fail (pixel data short, missing, or without end marker).
Garbage files (failed:not_dicom): pydicom must not read them as an image.
With --uncompressed OUT2 (same seed, compression off): every compressed file
decodes to exactly OUT2's pixels, and explicit_le files equal OUT2's.

Output: "FAIL <file>: <what>" per failed check, a summary by outcome and by
transfer syntax, and the last line "N passed, M failed" (files). Problems in
the CSV files themselves are counted against the CSV file.  Exit 0 only if
M == 0 and N >= 1.
"""

import argparse
import collections
import concurrent.futures
import csv
import datetime
import os
import re
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pydicom
from pydicom.encaps import generate_pixel_data_frame

# ---------------------------------------------------------------- contract --

TRUTH_HEADER = ["file", "patient_id", "study_uid", "sop_uid", "laterality",
                "view", "birads", "photometric", "transfer_syntax", "sex",
                "implant", "lut_shape", "image_type", "outcome", "lesions"]
LABELS_HEADER = ["patient_id", "study_uid", "birads"]
LESIONS_HEADER = ["file", "lesion", "type", "cx", "cy", "size", "annotated",
                  "ell_cx", "ell_cy", "ell_a", "ell_b", "ell_angle_deg",
                  "clean_crop", "crop_extreme_frac"]

TS_UID = {
    "explicit_le": "1.2.840.10008.1.2.1",
    "jpegls": "1.2.840.10008.1.2.4.80",   # JPEG-LS lossless
    "j2k": "1.2.840.10008.1.2.4.90",      # JPEG 2000 lossless only
}
TS_NAME = {uid: name for name, uid in TS_UID.items()}
SOP_MG_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
SOP_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

ENUMS = {
    "laterality": {"L", "R"},
    "view": {"CC", "MLO", "XCCL", "ML"},
    "photometric": {"MONOCHROME1", "MONOCHROME2"},
    "transfer_syntax": set(TS_UID),
    "sex": {"F", "M"},
    "implant": {"YES", "NO"},
    "lut_shape": {"IDENTITY", "INVERSE"},
}
GARBAGE = "failed:not_dicom"
TRUNCATED = "discarded:decode_error"
DISCARD_REASONS = {"view", "sex", "implant", "presentation_lut", "image_type",
                   "no_label", "birads", "decode_error"}
OUTCOMES = ({"accepted", GARBAGE}
            | {"discarded:" + r for r in DISCARD_REASONS})

# What makes an image usable; a discard reason says which one is violated.
GOOD = {
    "view": lambda r: r["view"] in ("CC", "MLO"),
    "sex": lambda r: r["sex"] == "F",
    "implant": lambda r: r["implant"] == "NO",
    "presentation_lut": lambda r: r["lut_shape"] == "IDENTITY",
    "image_type": lambda r: r["image_type"].split("\\")[0] == "ORIGINAL",
}

DCM_PATH = re.compile(r"dicom/p\d{5}/[^/]+\.dcm")
ANY_PATH = re.compile(r"dicom/p\d{5}/[^/]+")
INT = re.compile(r"-?\d+")
GDCM_TIMEOUT_S = 300


# ----------------------------------------------------------------- helpers --

def uid_problem(uid):
    """Return why `uid` is not a valid DICOM UID, or None."""
    if not isinstance(uid, str) or not uid:
        return "empty"
    if len(uid) > 64:
        return "longer than 64 characters"
    if not re.fullmatch(r"[0-9.]+", uid):
        return "characters other than digits and dots"
    for comp in uid.split("."):
        if comp == "":
            return "empty component"
        if len(comp) > 1 and comp[0] == "0":
            return "component with a leading zero"
    return None


def as_float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_csv(path, header, cohort_fail):
    """Rows of a CSV as dicts, or None (reported) if missing or bad header."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        cohort_fail(name, "missing")
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        got = next(reader, None)
        if got != header:
            cohort_fail(name, "header %r, expected %r" % (got, header))
            return None
        rows = []
        for lineno, cells in enumerate(reader, start=2):
            if len(cells) != len(header):
                cohort_fail(name, "line %d has %d fields, expected %d"
                            % (lineno, len(cells), len(header)))
                continue
            rows.append(dict(zip(header, cells)))
        return rows


def run_tool(argv):
    """Run a GDCM tool; return (exit status, last stderr line)."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=GDCM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return -1, "timed out"
    except OSError as exc:                  # tool not installed
        return -1, str(exc)
    err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    return proc.returncode, (err[-1] if err else "")


def first_frame(ds):
    return next(generate_pixel_data_frame(ds.PixelData, 1))


def segments(data, start, stop_markers):
    """Yield (marker, payload) of length-prefixed JPEG marker segments."""
    i = start
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError("no marker at byte %d" % i)
        marker = data[i + 1]
        if marker == 0xFF:                      # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        yield marker, data[i + 4:i + 2 + length]
        if marker in stop_markers:
            return
        i += 2 + length
    raise ValueError("codestream ends inside its header")


def jpegls_problems(frame, rows, cols):
    """Check a JPEG-LS frame is lossless (NEAR=0) and of the right size."""
    if frame[:2] != b"\xff\xd8":
        return ["JPEG-LS frame does not start with SOI"]
    sof = sos = None
    for marker, seg in segments(frame, 2, {0xDA}):
        if marker == 0xF7:
            sof = seg
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return ["frame is not JPEG-LS (SOF marker FF%02X)" % marker]
        elif marker == 0xDA:
            sos = seg
    if sof is None or sos is None:
        return ["JPEG-LS SOF55 or SOS marker missing"]
    out = []
    precision = sof[0]
    height = int.from_bytes(sof[1:3], "big")
    width = int.from_bytes(sof[3:5], "big")
    if (height, width) != (rows, cols):
        out.append("JPEG-LS size %dx%d != Rows x Columns %dx%d"
                   % (height, width, rows, cols))
    if not 12 <= precision <= 16:
        out.append("JPEG-LS precision %d bits" % precision)
    ns = sos[0]
    near = sos[1 + 2 * ns]
    if near != 0:
        out.append("JPEG-LS NEAR=%d: near-lossless, not lossless" % near)
    if not frame.rstrip(b"\x00").endswith(b"\xff\xd9"):
        out.append("JPEG-LS frame has no EOI marker")
    return out


def j2k_problems(frame, rows, cols):
    """Check a J2K codestream is reversible, unquantised, right-sized."""
    if frame[4:8] == b"jP  ":
        return ["J2K data has a JP2 wrapper (DICOM wants a bare codestream)"]
    if frame[:4] != b"\xff\x4f\xff\x51":
        return ["J2K codestream does not start with SOC+SIZ"]
    out = []
    siz = frame[6:]
    xsiz, ysiz, xo, yo = (int.from_bytes(siz[k:k + 4], "big")
                          for k in (2, 6, 10, 14))
    ncomp = int.from_bytes(siz[34:36], "big")
    ssiz = siz[36]
    if (ysiz - yo, xsiz - xo) != (rows, cols):
        out.append("J2K size %dx%d != Rows x Columns %dx%d"
                   % (ysiz - yo, xsiz - xo, rows, cols))
    if ncomp != 1:
        out.append("J2K has %d components" % ncomp)
    if ssiz & 0x80:
        out.append("J2K samples are signed")
    if not 12 <= (ssiz & 0x7F) + 1 <= 16:
        out.append("J2K precision %d bits" % ((ssiz & 0x7F) + 1))
    cod = qcd = None
    siz_len = int.from_bytes(frame[4:6], "big")
    for marker, seg in segments(frame, 4 + siz_len, {0x90}):
        if marker == 0x52:
            cod = seg
        elif marker == 0x5C:
            qcd = seg
    if cod is None or qcd is None:
        return out + ["J2K COD or QCD marker missing"]
    if cod[9] != 1:
        out.append("J2K uses the irreversible 9/7 wavelet (lossy)")
    if qcd[0] & 0x1F != 0:
        out.append("J2K coefficients are quantised (lossy)")
    if not frame.rstrip(b"\x00").endswith(b"\xff\xd9"):
        out.append("J2K codestream has no EOC marker")
    return out


def pixel_problems(arr, rows, cols, what):
    out = []
    if arr.shape != (rows, cols):
        out.append("%s shape %s != (%d, %d)" % (what, arr.shape, rows, cols))
    if arr.dtype != np.uint16:
        out.append("%s dtype %s, expected uint16" % (what, arr.dtype))
    elif arr.size and int(arr.max()) > 4095:
        out.append("%s max %d > 4095" % (what, int(arr.max())))
    return out


# ------------------------------------------------------- per-file checks --

class Checker:
    def __init__(self, args, lesions_by_file):
        self.out = args.out
        self.out2 = args.uncompressed
        self.gdcmdump = not args.no_gdcmdump
        self.lesions_by_file = lesions_by_file
        self.tmpdir = tempfile.mkdtemp(prefix="check_cohort_")

    def check(self, index, row):
        """Run all checks for one truth row; return a list of problems."""
        path = os.path.join(self.out, row["file"])
        if not os.path.isfile(path):
            return ["file missing"]
        if row["outcome"] == GARBAGE:
            return self.check_garbage(path)
        try:
            hdr = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:            # noqa: BLE001 - any reader error
            return ["header unreadable: %s: %s" % (type(exc).__name__, exc)]
        problems = self.check_header(hdr, row)
        problems += self.check_lesion_positions(hdr, row)
        if self.gdcmdump:
            status, err = run_tool(["gdcmdump", path])
            if status != 0:
                problems.append("gdcmdump exit status %d %s" % (status, err))
        # Pixel checks follow the file's actual transfer syntax (a mismatch
        # with truth is already reported by the header checks).
        kind = TS_NAME.get(hdr.file_meta.get("TransferSyntaxUID"))
        try:
            if row["outcome"] == TRUNCATED:
                problems += self.check_truncated(path, hdr)
            elif kind == "explicit_le":
                problems += self.check_native(path, hdr, row)
            elif kind in ("jpegls", "j2k"):
                problems += self.check_compressed(path, hdr, row, kind, index)
            else:
                problems.append("pixel data not checked: transfer syntax %s"
                                % hdr.file_meta.get("TransferSyntaxUID"))
        except Exception as exc:            # noqa: BLE001
            problems.append("pixel check crashed: %s: %s"
                            % (type(exc).__name__, exc))
        return problems

    @staticmethod
    def check_garbage(path):
        try:
            ds = pydicom.dcmread(path, force=False)
        except Exception:                   # noqa: BLE001 - raising is wanted
            return []
        if "PixelData" in ds:
            return ["garbage file reads as a DICOM image"]
        return []

    def check_header(self, ds, row):
        p = []

        def want(keyword, expected):
            value = ds.get(keyword)
            if value is None:
                p.append("%s missing (truth %r)" % (keyword, expected))
            elif str(value) != expected:
                p.append("%s %r != truth %r" % (keyword, str(value), expected))

        meta = ds.file_meta
        sop_class = ds.get("SOPClassUID")
        expected_class = (SOP_SECONDARY_CAPTURE
                          if row["image_type"] == "DERIVED\\SECONDARY"
                          else SOP_MG_PRESENTATION)
        if sop_class != expected_class:
            p.append("SOPClassUID %s, expected %s"
                     % (sop_class, expected_class))
        if meta.get("MediaStorageSOPClassUID") != sop_class:
            p.append("MediaStorageSOPClassUID %s != SOPClassUID %s"
                     % (meta.get("MediaStorageSOPClassUID"), sop_class))
        sop = ds.get("SOPInstanceUID")
        if meta.get("MediaStorageSOPInstanceUID") != sop:
            p.append("MediaStorageSOPInstanceUID %s != SOPInstanceUID %s"
                     % (meta.get("MediaStorageSOPInstanceUID"), sop))
        want("SOPInstanceUID", row["sop_uid"])
        for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            why = uid_problem(ds.get(kw))
            if why:
                p.append("%s %r invalid: %s" % (kw, ds.get(kw), why))

        ts = meta.get("TransferSyntaxUID")
        if ts != TS_UID.get(row["transfer_syntax"]):
            p.append("TransferSyntaxUID %s, truth says %s (%s)"
                     % (ts, row["transfer_syntax"],
                        TS_UID.get(row["transfer_syntax"])))

        want("Modality", "MG")
        for kw, val in (("BitsAllocated", 16), ("BitsStored", 12),
                        ("HighBit", 11), ("PixelRepresentation", 0),
                        ("SamplesPerPixel", 1)):
            if ds.get(kw) != val:
                p.append("%s %r, expected %d" % (kw, ds.get(kw), val))
        for kw in ("Rows", "Columns"):
            if not isinstance(ds.get(kw), int) or ds.get(kw) <= 0:
                p.append("%s %r invalid" % (kw, ds.get(kw)))
        want("PhotometricInterpretation", row["photometric"])

        want("PatientID", row["patient_id"])
        if not str(ds.get("PatientName", "")).strip():
            p.append("PatientName missing or empty")
        birth = str(ds.get("PatientBirthDate", ""))
        try:
            if not re.fullmatch(r"\d{8}", birth):
                raise ValueError
            datetime.datetime.strptime(birth, "%Y%m%d")
        except ValueError:
            p.append("PatientBirthDate %r is not a YYYYMMDD date" % birth)
        want("PatientSex", row["sex"])
        want("ViewPosition", row["view"])
        want("ImageLaterality", row["laterality"])
        want("BreastImplantPresent", row["implant"])
        want("PresentationLUTShape", row["lut_shape"])
        image_type = ds.get("ImageType")
        if image_type is None:
            p.append("ImageType missing (truth %r)" % row["image_type"])
        else:
            joined = ("\\".join(image_type)
                      if isinstance(image_type, (list, tuple,
                                                 pydicom.multival.MultiValue))
                      else str(image_type))
            if joined != row["image_type"]:
                p.append("ImageType %r != truth %r"
                         % (joined, row["image_type"]))
        want("StudyInstanceUID", row["study_uid"])

        for kw in ("WindowCenter", "WindowWidth"):
            try:
                value = ds.get(kw)
                values = (list(value) if isinstance(
                    value, pydicom.multival.MultiValue) else [value])
                nums = [float(v) for v in values]
            except (TypeError, ValueError):
                p.append("%s missing or not a number" % kw)
                continue
            if kw == "WindowWidth" and not all(v > 0 for v in nums):
                p.append("WindowWidth %r is not > 0" % nums)
        return p

    def check_lesion_positions(self, ds, row):
        rows, cols = ds.get("Rows"), ds.get("Columns")
        if not isinstance(rows, int) or not isinstance(cols, int):
            return []
        out = []
        for les in self.lesions_by_file.get(row["file"], []):
            cx, cy = as_float(les["cx"]), as_float(les["cy"])
            if cx is None or cy is None:
                continue                    # reported by the CSV checks
            if not (0 <= cx < cols and 0 <= cy < rows):
                out.append("lesion %s at (%s, %s) outside the %dx%d image"
                           % (les["lesion"], les["cx"], les["cy"], cols, rows))
        return out

    @staticmethod
    def check_truncated(path, hdr):
        """A truncated file must not decode."""
        try:
            ds = pydicom.dcmread(path)
        except Exception:                   # noqa: BLE001 - failing is wanted
            return []
        if "PixelData" not in ds:
            return []
        data = ds.PixelData
        if not ds.file_meta.TransferSyntaxUID.is_compressed:
            if len(data) < hdr.Rows * hdr.Columns * 2:
                return []
            return ["truncated file still holds all %d bytes of pixel data"
                    % len(data)]
        try:
            frame = first_frame(ds)
        except Exception:                   # noqa: BLE001
            return []
        if frame.rstrip(b"\x00").endswith(b"\xff\xd9"):
            return ["truncated file still holds a complete compressed frame"]
        return []

    def load_reference(self, row):
        """OUT2's pixel array for this file, or (None, problem)."""
        path2 = os.path.join(self.out2, row["file"])
        if not os.path.isfile(path2):
            return None, "missing in --uncompressed cohort"
        ds2 = pydicom.dcmread(path2)
        if ds2.file_meta.TransferSyntaxUID != TS_UID["explicit_le"]:
            return None, ("--uncompressed copy has transfer syntax %s"
                          % ds2.file_meta.TransferSyntaxUID)
        return ds2.pixel_array, None

    def compare(self, arr, row, what):
        if self.out2 is None:
            return []
        ref, why = self.load_reference(row)
        if why:
            return [why]
        if ref.shape != arr.shape or not np.array_equal(ref, arr):
            diff = ("shape %s vs %s" % (arr.shape, ref.shape)
                    if ref.shape != arr.shape else
                    "%d pixels differ" % int(np.count_nonzero(ref != arr)))
            return ["%s differs from the --uncompressed cohort (%s)"
                    % (what, diff)]
        return []

    def check_native(self, path, hdr, row):
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds:
            return ["PixelData missing"]
        expected = hdr.Rows * hdr.Columns * 2
        if len(ds.PixelData) != expected:
            return ["PixelData is %d bytes, expected %d"
                    % (len(ds.PixelData), expected)]
        arr = ds.pixel_array
        return (pixel_problems(arr, hdr.Rows, hdr.Columns, "pixel_array")
                + self.compare(arr, row, "pixel_array"))

    def check_compressed(self, path, hdr, row, kind, index):
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds:
            return ["PixelData missing"]
        frame = first_frame(ds)
        inspect = jpegls_problems if kind == "jpegls" else j2k_problems
        try:
            problems = inspect(frame, hdr.Rows, hdr.Columns)
        except (ValueError, IndexError) as exc:
            problems = ["codestream header unparsable: %s" % exc]
        lossy = ds.get("LossyImageCompression")
        if lossy is not None and str(lossy) != "00":
            problems.append("LossyImageCompression is %r" % str(lossy))

        raw = os.path.join(self.tmpdir, "raw%d.dcm" % index)
        try:
            status, err = run_tool(["gdcmconv", "--raw", path, raw])
            if status != 0:
                return problems + ["gdcmconv --raw failed (%d) %s"
                                   % (status, err)]
            arr = pydicom.dcmread(raw).pixel_array
        finally:
            if os.path.exists(raw):
                os.unlink(raw)
        problems += pixel_problems(arr, hdr.Rows, hdr.Columns, "decoded")
        return problems + self.compare(arr, row, "decoded image")


# ------------------------------------------------------ cohort-level checks --

def check_truth_rows(out, truth, rules, fail):
    """Checks on truth.csv alone (and the files on disk)."""
    seen_files, seen_sops, study_patient = set(), {}, {}
    for row in truth:
        f, outcome = row["file"], row["outcome"]
        if f in seen_files:
            fail(f, "listed more than once in truth.csv")
        seen_files.add(f)
        if outcome not in OUTCOMES:
            fail(f, "outcome %r not allowed" % outcome)
            continue
        if not (ANY_PATH if outcome == GARBAGE else DCM_PATH).fullmatch(f):
            fail(f, "path is not dicom/pNNNNN/<name>.dcm")
        if outcome == GARBAGE:
            if row["lesions"] not in ("", "0"):
                fail(f, "garbage file has lesions %r" % row["lesions"])
            continue
        for col, allowed in ENUMS.items():
            if row[col] not in allowed:
                fail(f, "truth %s %r not in %s"
                     % (col, row[col], sorted(allowed)))
        if row["birads"] and not INT.fullmatch(row["birads"]):
            fail(f, "truth birads %r is not an integer" % row["birads"])
        if not re.fullmatch(r"\d+", row["lesions"]):
            fail(f, "truth lesions %r is not a count" % row["lesions"])
        if not row["image_type"]:
            fail(f, "truth image_type empty")
        if row["sop_uid"] in seen_sops:
            fail(f, "sop_uid also used by %s" % seen_sops[row["sop_uid"]])
        seen_sops[row["sop_uid"]] = f
        owner = study_patient.setdefault(row["study_uid"], row["patient_id"])
        if owner != row["patient_id"]:
            fail(f, "study %s belongs to patients %s and %s"
                 % (row["study_uid"], owner, row["patient_id"]))
        if rules:
            check_outcome_rule(row, fail)

    dicom_dir = os.path.join(out, "dicom")
    for root, _dirs, names in os.walk(dicom_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), out)
            rel = rel.replace(os.sep, "/")
            if rel not in seen_files:
                fail(rel, "file under dicom/ is not listed in truth.csv")


def check_outcome_rule(row, fail):
    """The outcome must follow from the attributes truth.csv records."""
    f, outcome = row["file"], row["outcome"]
    if outcome == "accepted":
        bad = [k for k, good in GOOD.items() if not good(row)]
        if bad:
            fail(f, "accepted although %s disqualifies it" % ", ".join(bad))
        if not row["birads"]:
            fail(f, "accepted without a birads label")
        return
    reason = outcome.split(":", 1)[1]
    if reason in GOOD and GOOD[reason](row):
        fail(f, "%s but truth's %s looks acceptable" % (outcome, reason))
    if reason == "no_label" and row["birads"]:
        fail(f, "discarded:no_label but birads is %r" % row["birads"])
    if reason == "birads" and not row["birads"]:
        fail(f, "discarded:birads but birads is empty")


def check_labels(labels, truth, fail):
    key = lambda r: (r["patient_id"], r["study_uid"])   # noqa: E731
    by_key = {}
    for r in labels:
        k = key(r)
        if not INT.fullmatch(r["birads"]):
            fail("labels.csv", "birads %r of %s/%s is not an integer"
                 % (r["birads"], *k))
        if k in by_key:
            fail("labels.csv", "exam %s/%s labelled twice" % k)
        by_key[k] = r["birads"]
    exams = {key(r) for r in truth if r["outcome"] != GARBAGE}
    for k in sorted(set(by_key) - exams):
        fail("labels.csv", "exam %s/%s is not in truth.csv" % k)
    for r in truth:
        if r["outcome"] == GARBAGE:
            continue
        k = key(r)
        if r["birads"]:
            if k not in by_key:
                fail(r["file"], "birads %s but no labels.csv row"
                     % r["birads"])
            elif by_key[k] != r["birads"]:
                fail(r["file"], "birads %s but labels.csv says %s"
                     % (r["birads"], by_key[k]))
        elif k in by_key:
            fail(r["file"], "empty birads but labels.csv has %s" % by_key[k])
        if r["outcome"] == "discarded:no_label" and k in by_key:
            fail(r["file"], "discarded:no_label but labelled in labels.csv")


def check_lesions(lesions, truth, fail):
    """Parse truth_lesions.csv; return its rows grouped by file."""
    truth_files = {r["file"]: r for r in truth}
    by_file = collections.defaultdict(list)
    for r in lesions:
        f = r["file"]
        where = "%s lesion %s" % (f, r["lesion"])
        if f not in truth_files:
            fail("truth_lesions.csv", "%s: file not in truth.csv" % where)
            continue
        by_file[f].append(r)
        if not INT.fullmatch(r["lesion"]):
            fail("truth_lesions.csv",
                 "%s: lesion index not an integer" % where)
        if not r["type"]:
            fail("truth_lesions.csv", "%s: empty type" % where)
        for col in ("cx", "cy", "size"):
            if as_float(r[col]) is None:
                fail("truth_lesions.csv", "%s: %s %r is not a number"
                     % (where, col, r[col]))
        if (as_float(r["size"]) or 0) <= 0:
            fail("truth_lesions.csv",
                 "%s: size %r not > 0" % (where, r["size"]))
        for col in ("ell_cx", "ell_cy", "ell_a", "ell_b", "ell_angle_deg",
                    "crop_extreme_frac"):
            if r[col] and as_float(r[col]) is None:
                fail("truth_lesions.csv", "%s: %s %r is not a number"
                     % (where, col, r[col]))
    for f, row in truth_files.items():
        ids = [r["lesion"] for r in by_file.get(f, [])]
        if len(set(ids)) != len(ids):
            fail(f, "duplicate lesion indices in truth_lesions.csv")
        want = row["lesions"] or "0"
        if want.isdigit() and int(want) != len(ids):
            fail(f, "truth says %s lesions, truth_lesions.csv has %d"
                 % (want, len(ids)))
    return by_file


# -------------------------------------------------------------------- main --

def select(truth, sample):
    """All rows, or every k-th accepted row (at most `sample`) + all decoys."""
    if sample is None:
        return list(truth)
    regular = [r for r in truth if r["outcome"] == "accepted"]
    decoys = [r for r in truth if r["outcome"] != "accepted"]
    picked = []
    if sample > 0 and regular:
        step = -(-len(regular) // sample)           # ceil division
        picked = regular[::step]
    return sorted(picked + decoys, key=lambda r: r["file"])


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Verify a cohort written by `mammopatch synth`.")
    ap.add_argument("out", help="cohort directory (OUT)")
    ap.add_argument("--uncompressed", metavar="OUT2",
                    help="same cohort generated without compression")
    ap.add_argument("--sample", type=int, metavar="N",
                    help="check at most N accepted files (+ all decoys)")
    ap.add_argument("--no-gdcmdump", action="store_true",
                    help="skip running gdcmdump on every file")
    ap.add_argument("--no-outcome-rules", action="store_true",
                    help="do not require outcomes to follow from attributes")
    ap.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                    help="files checked in parallel (default %(default)s)")
    args = ap.parse_args(argv)
    if args.sample is not None and args.sample < 0:
        ap.error("--sample must be >= 0")
    warnings.simplefilter("ignore")     # pydicom warns on every decoy

    problems = collections.defaultdict(list)

    def fail(name, what):
        problems[name].append(what)

    truth = read_csv(os.path.join(args.out, "truth.csv"), TRUTH_HEADER, fail)
    labels = read_csv(os.path.join(args.out, "labels.csv"), LABELS_HEADER,
                      fail)
    lesions = read_csv(os.path.join(args.out, "truth_lesions.csv"),
                       LESIONS_HEADER, fail)
    truth = truth or []
    lesions_by_file = {}
    if truth:
        check_truth_rows(args.out, truth, not args.no_outcome_rules, fail)
        if labels is not None:
            check_labels(labels, truth, fail)
        if lesions is not None:
            lesions_by_file = check_lesions(lesions, truth, fail)
    elif "truth.csv" not in problems:
        fail("truth.csv", "no rows")

    chosen = select(truth, args.sample)
    checker = Checker(args, lesions_by_file)
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            results = pool.map(lambda ir: checker.check(*ir),
                               enumerate(chosen))
            for row, found in zip(chosen, results):
                problems[row["file"]].extend(found)
    finally:
        os.rmdir(checker.tmpdir)

    checked = {r["file"] for r in chosen}
    failed = {name for name, found in problems.items() if found}
    for name in sorted(failed):
        for what in problems[name]:
            print("FAIL %s: %s" % (name, what))

    by_outcome = collections.Counter(r["outcome"] for r in truth)
    by_ts = collections.Counter(r["transfer_syntax"] or "(none)"
                                for r in truth)
    print("cohort %s: %d files in truth.csv, %d checked%s"
          % (args.out, len(truth), len(checked),
             "" if args.sample is None else " (--sample %d)" % args.sample))
    print("  by outcome: " + ", ".join(
        "%s=%d" % kv for kv in sorted(by_outcome.items())))
    print("  by transfer syntax: " + ", ".join(
        "%s=%d" % kv for kv in sorted(by_ts.items())))
    if args.uncompressed:
        print("  lossless/determinism compared against %s" % args.uncompressed)

    n_failed = len(failed)
    n_passed = len(checked - failed)
    print("%d passed, %d failed" % (n_passed, n_failed))
    return 0 if n_failed == 0 and n_passed >= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
