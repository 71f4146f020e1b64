#!/usr/bin/python3
"""Writes Explicit VR Big Endian copies of the shared LUT files, for test_dicom_read.

Usage: make_big_endian.py SHARED_DICOM_DIR OUT_DIR

The shared data has big-endian files (pydicom's MR_small_bigendian, emri_small_big_endian)
but none with a lookup table, and the LUT reader takes a table's 16-bit words as little
endian, trusting GDCM to have swapped them.  These copies hold that to the little-endian
originals: the same tables, pixels and windowed output must come out.

Written (each a copy of a file in SHARED_DICOM_DIR/pydicom):
  be_mlut_18.dcm     Modality LUT Sequence, LUT Data as US (4096 entries, first -2048),
                     16-bit signed pixels (swapped here: pydicom writes OW pixel data as is)
  be_ow_mlut_18.dcm  the same with LUT Data as OW, its words written big endian here
  le_ow_mlut_18.dcm  that OW table in little endian (the pair's reference)
  be_vlut_04.dcm     VOI LUT Sequence (256 16-bit entries, US), 8-bit pixels

Needs Debian's python3-pydicom and numpy; exits 0 after printing 'skip' without them or
without the shared files, so test_dicom_read skips these pairs with a message.
"""
import os
import sys

try:
    import numpy as np
    import pydicom
    from pydicom.dataelem import DataElement
    from pydicom.uid import ExplicitVRBigEndian
except ImportError as e:  # the test then reports the pairs as skipped
    print(f"skip: {e}")
    sys.exit(0)


def to_big_endian(ds):
    """Marks ds Explicit VR Big Endian; 16-bit pixel data is swapped (pydicom writes
    OW bytes as they are, while US/SS values follow the data set's byte order)."""
    if ds.BitsAllocated == 16:
        ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.is_little_endian = False
    ds.is_implicit_VR = False


def lut_as_ow(ds, big):
    """The Modality LUT's data as OW bytes in the given order."""
    item = ds.ModalityLUTSequence[0]
    words = np.array(item.LUTData, dtype=np.uint16).astype(">u2" if big else "<u2")
    item["LUTData"] = DataElement(0x00283006, "OW", words.tobytes())


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src = os.path.join(sys.argv[1], "pydicom")
    out = sys.argv[2]
    if not os.path.isdir(src):
        print(f"skip: no shared DICOM files at {src}")
        return
    os.makedirs(out, exist_ok=True)

    def write(name, original, ds):
        path = os.path.join(out, name)
        ds.save_as(path, write_like_original=False)
        back = pydicom.dcmread(path)  # pydicom's own reading agrees with the original
        orig = pydicom.dcmread(os.path.join(src, original))
        assert (back.pixel_array == orig.pixel_array).all(), name
        print(f"wrote {path} ({back.file_meta.TransferSyntaxUID.name})")

    ds = pydicom.dcmread(os.path.join(src, "mlut_18.dcm"))
    to_big_endian(ds)
    write("be_mlut_18.dcm", "mlut_18.dcm", ds)

    ds = pydicom.dcmread(os.path.join(src, "mlut_18.dcm"))
    lut_as_ow(ds, big=False)
    write("le_ow_mlut_18.dcm", "mlut_18.dcm", ds)

    ds = pydicom.dcmread(os.path.join(src, "mlut_18.dcm"))
    lut_as_ow(ds, big=True)
    to_big_endian(ds)
    write("be_ow_mlut_18.dcm", "mlut_18.dcm", ds)

    ds = pydicom.dcmread(os.path.join(src, "vlut_04.dcm"))
    to_big_endian(ds)
    write("be_vlut_04.dcm", "vlut_04.dcm", ds)


if __name__ == "__main__":
    main()
