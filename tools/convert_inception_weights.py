#!/usr/bin/env python3
"""Convert Inception-v3 weights (PyTorch) into mammopatch's Inception checkpoint (HDF5).

mammopatch's `inception` feature extractor (SPEC section 8: FID on pool3, Inception Score
on the logits) never downloads anything.  The user fetches the standard FID weights once
and converts them with this script:

  1. Download, on a machine with network access, the asset
         pt_inception-2015-12-05-6726825d.pth
     of pytorch-fid's GitHub release v0.1.0
     (https://github.com/mseitzer/pytorch-fid/releases/tag/v0.1.0).  It is a PyTorch
     state_dict of torchvision's Inception3 structure with 1008 classes, ported from the
     TensorFlow graph that defines FID (TTUR's 2015-12-05 Inception).
  2. Convert it (Debian's python3 with python3-torch, python3-h5py, python3-numpy; with
     python3-torchvision the expected structure is taken from torchvision itself):
         /usr/bin/python3 tools/convert_inception_weights.py \\
             pt_inception-2015-12-05-6726825d.pth inception-fid.h5
  3. Give inception-fid.h5 to mammopatch wherever the Inception weights are asked for.

Usage: convert_inception_weights.py IN.pth OUT.h5 [--variant auto|fid|torchvision]

IN.pth is either that FID file or any torchvision `inception_v3` state_dict or pickled
model (e.g. torch.save(model.state_dict(), ...)); an `AuxLogits` head is dropped.
--variant auto (the default) says "fid" when fc has 1008 outputs, else "torchvision".
The variant selects the block arithmetic the C side runs:
  fid          Mixed_5b..5d, 6b..6e, 7b: branch_pool = avg_pool2d(3, stride 1, pad 1)
               with count_include_pad=False; Mixed_7c: branch_pool = max_pool2d(3, stride
               1, pad 1).  No transform_input.
  torchvision  every branch_pool = avg_pool2d(3, stride 1, pad 1), count_include_pad=True.
               No transform_input either: torchvision's own ImageNet weights were trained
               with transform_input=True, so their logits differ from torchvision's.
Both: BatchNorm eps = 0.001 (torchvision's BasicConv2d), eval mode (running statistics).

Output (format_version 1): one float32 dataset per tensor at the root, named exactly as
the state_dict key, same shape (`Conv2d_1a_3x3.conv.weight` (32,3,3,3),
`Mixed_5b.branch1x1.bn.running_var` (64,), `fc.weight` (C,2048), `fc.bias` (C,)), without
the `*.num_batches_tracked` counters and the `AuxLogits.*` tensors; root attributes
format_version (int 1), model "inception-v3", variant, num_classes (int), source (the input
file's basename), source_sha256, converter "tools/convert_inception_weights.py 1".  String
attributes are fixed-length ASCII.

As a module: convert(state_dict, out_path, variant, source_name, sha) validates and writes;
expected_shapes(num_classes) is the structure it validates against.
"""
import argparse
import hashlib
import os
import sys
from collections import OrderedDict

import h5py
import numpy as np

FORMAT_VERSION = 1
CONVERTER = "tools/convert_inception_weights.py 1"
FID_CLASSES = 1008


class ConversionError(ValueError):
    """The input is not an Inception-v3 of the expected structure."""


# --------------------------------------------------------------------------- structure
# Inception3 as torchvision lays it out (aux_logits=False): every BasicConv2d is a
# bias-free conv followed by a BatchNorm.  (name, in, out, kh, kw) per conv.
def _convs():
    c = [("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3),
         ("Conv2d_2b_3x3", 32, 64, 3, 3), ("Conv2d_3b_1x1", 64, 80, 1, 1),
         ("Conv2d_4a_3x3", 80, 192, 3, 3)]

    def block_a(p, cin, pool):
        return [(p + ".branch1x1", cin, 64, 1, 1), (p + ".branch5x5_1", cin, 48, 1, 1),
                (p + ".branch5x5_2", 48, 64, 5, 5), (p + ".branch3x3dbl_1", cin, 64, 1, 1),
                (p + ".branch3x3dbl_2", 64, 96, 3, 3), (p + ".branch3x3dbl_3", 96, 96, 3, 3),
                (p + ".branch_pool", cin, pool, 1, 1)]

    def block_b(p, cin):
        return [(p + ".branch3x3", cin, 384, 3, 3), (p + ".branch3x3dbl_1", cin, 64, 1, 1),
                (p + ".branch3x3dbl_2", 64, 96, 3, 3), (p + ".branch3x3dbl_3", 96, 96, 3, 3)]

    def block_c(p, cin, c7):
        return [(p + ".branch1x1", cin, 192, 1, 1),
                (p + ".branch7x7_1", cin, c7, 1, 1), (p + ".branch7x7_2", c7, c7, 1, 7),
                (p + ".branch7x7_3", c7, 192, 7, 1),
                (p + ".branch7x7dbl_1", cin, c7, 1, 1), (p + ".branch7x7dbl_2", c7, c7, 7, 1),
                (p + ".branch7x7dbl_3", c7, c7, 1, 7), (p + ".branch7x7dbl_4", c7, c7, 7, 1),
                (p + ".branch7x7dbl_5", c7, 192, 1, 7), (p + ".branch_pool", cin, 192, 1, 1)]

    def block_d(p, cin):
        return [(p + ".branch3x3_1", cin, 192, 1, 1), (p + ".branch3x3_2", 192, 320, 3, 3),
                (p + ".branch7x7x3_1", cin, 192, 1, 1), (p + ".branch7x7x3_2", 192, 192, 1, 7),
                (p + ".branch7x7x3_3", 192, 192, 7, 1), (p + ".branch7x7x3_4", 192, 192, 3, 3)]

    def block_e(p, cin):
        return [(p + ".branch1x1", cin, 320, 1, 1),
                (p + ".branch3x3_1", cin, 384, 1, 1), (p + ".branch3x3_2a", 384, 384, 1, 3),
                (p + ".branch3x3_2b", 384, 384, 3, 1),
                (p + ".branch3x3dbl_1", cin, 448, 1, 1), (p + ".branch3x3dbl_2", 448, 384, 3, 3),
                (p + ".branch3x3dbl_3a", 384, 384, 1, 3), (p + ".branch3x3dbl_3b", 384, 384, 3, 1),
                (p + ".branch_pool", cin, 192, 1, 1)]

    c += block_a("Mixed_5b", 192, 32) + block_a("Mixed_5c", 256, 64) + block_a("Mixed_5d", 288, 64)
    c += block_b("Mixed_6a", 288)
    c += (block_c("Mixed_6b", 768, 128) + block_c("Mixed_6c", 768, 160)
          + block_c("Mixed_6d", 768, 160) + block_c("Mixed_6e", 768, 192))
    c += block_d("Mixed_7a", 768) + block_e("Mixed_7b", 1280) + block_e("Mixed_7c", 2048)
    return c


def builtin_shapes(num_classes):
    """Expected {key: shape} from the table above (no torchvision needed)."""
    out = OrderedDict()
    for name, cin, cout, kh, kw in _convs():
        out[name + ".conv.weight"] = (cout, cin, kh, kw)
        for t in ("weight", "bias", "running_mean", "running_var"):
            out[name + ".bn." + t] = (cout,)
    out["fc.weight"] = (num_classes, 2048)
    out["fc.bias"] = (num_classes,)
    return out


def torchvision_shapes(num_classes):
    """Expected {key: shape} from torchvision's own Inception3, or None without torchvision."""
    try:
        from torchvision.models import inception_v3
    except ImportError:
        return None
    m = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=num_classes)
    return OrderedDict((k, tuple(v.shape)) for k, v in m.state_dict().items() if _kept(k))


def expected_shapes(num_classes):
    """The structure validated against: torchvision's when importable, else the table."""
    s = torchvision_shapes(num_classes)
    return s if s is not None else builtin_shapes(num_classes)


def _kept(key):
    return not key.endswith("num_batches_tracked") and not key.startswith("AuxLogits.")


# --------------------------------------------------------------------------- conversion
def _as_numpy(v):
    if hasattr(v, "detach"):  # a torch tensor
        v = v.detach().cpu()
        if v.is_floating_point():
            v = v.double()
        return v.numpy()
    return np.asarray(v)


def _state_dict_of(obj):
    """A state_dict from a state_dict, a pickled nn.Module, or a {'state_dict': ...} wrapper."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        obj = obj.state_dict()
    if isinstance(obj, dict) and "fc.weight" not in obj:
        for k in ("state_dict", "model_state_dict", "model", "net"):
            if k in obj and (isinstance(obj[k], dict) or hasattr(obj[k], "state_dict")):
                return _state_dict_of(obj[k])
    if not isinstance(obj, dict):
        raise ConversionError(f"not a state_dict or a model (got {type(obj).__name__})")
    keys = list(obj)
    if keys and all(isinstance(k, str) and k.startswith("module.") for k in keys):
        obj = OrderedDict((k[len("module."):], v) for k, v in obj.items())  # DataParallel
    return obj


def convert(state_dict, out_path, variant="auto", source_name="", sha=""):
    """Validate `state_dict` (a torchvision Inception3's, any of the inputs above) and write
    `out_path`.  variant: "auto", "fid" or "torchvision".  Returns the root attributes
    written.  Raises ConversionError naming every missing, misshaped, unexpected or
    non-finite tensor; nothing is written then."""
    sd = _state_dict_of(state_dict)
    kept = OrderedDict((k, v) for k, v in sd.items() if _kept(k))
    if "fc.weight" not in kept:
        raise ConversionError("missing tensor 'fc.weight' (not an Inception-v3 state_dict?)")
    fcw = _as_numpy(kept["fc.weight"])
    if fcw.ndim != 2 or fcw.shape[1] != 2048:
        raise ConversionError(f"tensor 'fc.weight' has shape {tuple(fcw.shape)}, expected (C, 2048)")
    num_classes = int(fcw.shape[0])
    if variant == "auto":
        variant = "fid" if num_classes == FID_CLASSES else "torchvision"
    if variant not in ("fid", "torchvision"):
        raise ConversionError(f"unknown variant '{variant}' (auto, fid or torchvision)")

    want = expected_shapes(num_classes)
    missing = [k for k in want if k not in kept]
    extra = [k for k in kept if k not in want]
    problems = []
    if missing:
        problems.append(f"missing tensor{'s' if len(missing) > 1 else ''} "
                        + ", ".join(f"'{k}' {want[k]}" for k in missing))
    arrays = OrderedDict()
    for k, shape in want.items():
        if k in missing:
            continue
        a = _as_numpy(kept[k])
        if tuple(a.shape) != tuple(shape):
            problems.append(f"tensor '{k}' has shape {tuple(a.shape)}, expected {tuple(shape)}")
            continue
        if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
            problems.append(f"tensor '{k}' has dtype {a.dtype}, expected floating point")
            continue
        a32 = a.astype(np.float32)
        if not np.isfinite(a32).all():
            problems.append(f"tensor '{k}' has non-finite values (in float32)")
            continue
        if k.endswith(".running_var") and (a32 < 0).any():
            problems.append(f"tensor '{k}' has negative variances")
            continue
        arrays[k] = a32
    if extra:
        problems.append(f"unexpected tensor{'s' if len(extra) > 1 else ''} "
                        + ", ".join(f"'{k}'" for k in extra[:10]) + (" ..." if len(extra) > 10 else "")
                        + " (not torchvision's Inception3 structure)")
    if problems:
        raise ConversionError("; ".join(problems))

    attrs = OrderedDict([
        ("format_version", np.int64(FORMAT_VERSION)),
        ("model", "inception-v3"),
        ("variant", variant),
        ("num_classes", np.int64(num_classes)),
        ("source", source_name),
        ("source_sha256", sha),
        ("converter", CONVERTER),
    ])
    tmp = out_path + ".tmp"
    try:
        with h5py.File(tmp, "w") as h:
            for k, a in arrays.items():
                h.create_dataset(k, data=a, dtype=np.float32)
            for k, v in attrs.items():
                if isinstance(v, str):
                    h.attrs.create(k, np.bytes_(v.encode("ascii", "replace") or b"\0"))
                else:
                    h.attrs[k] = v
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return attrs


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(path):
    import torch
    try:
        return torch.load(path, map_location="cpu")
    except ModuleNotFoundError as e:  # a pickled model whose class module is not installed
        raise ConversionError(f"cannot unpickle {path}: {e}; save its state_dict() instead") from e


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="convert_inception_weights.py",
        description="Convert Inception-v3 weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                    "or a torchvision inception_v3 state_dict / model) into mammopatch's HDF5 checkpoint.")
    ap.add_argument("input", metavar="IN.pth")
    ap.add_argument("output", metavar="OUT.h5")
    ap.add_argument("--variant", choices=("auto", "fid", "torchvision"), default="auto",
                    help="block arithmetic: fid (pytorch-fid's blocks) or torchvision; auto: fid when fc "
                         "has 1008 outputs (default)")
    a = ap.parse_args(argv)
    try:
        sd = load(a.input)
        attrs = convert(sd, a.output, a.variant, os.path.basename(a.input), sha256_file(a.input))
    except (ConversionError, OSError) as e:
        print(f"convert_inception_weights: error: {a.input}: {e}", file=sys.stderr)
        return 1
    with h5py.File(a.output, "r") as h:
        n = len(h.keys())
    print(f"{a.output}: inception-v3, variant {attrs['variant']}, {attrs['num_classes']} classes, "
          f"{n} tensors (from {attrs['source']}, sha256 {attrs['source_sha256'][:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
