#!/usr/bin/env python3
"""Oracle for mammopatch's Inception-v3 (SPEC section 8): the converter and inception_tool
against PyTorch / torchvision.

Usage: check_inception.py --tool INCEPTION_TOOL --converter tools/convert_inception_weights.py
                          [--ref-n 1] [--n-is 23] [--no-cpu] [--device-backends strict,cuda]
                          [--keep DIR] [--sabotage NAME]

For each variant (torchvision: 1000 classes, torchvision's blocks; fid: 1008 classes,
pytorch-fid's block arithmetic re-implemented here from its description) a torchvision
inception_v3 (aux_logits=False, transform_input=False, eval mode) is seeded and every
conv and BatchNorm randomised: conv filters are rescaled per output channel, layer by
layer, so each conv output has unit spread on the test images, and each BatchNorm gets
random weight, bias, running_mean (near the channel's mean) and running_var in [0.5, 2],
so eval-mode BN is really exercised and activations stay O(1).  The converter writes the
weights; inception_tool runs them on uint8 patches (1x128x128: smooth structure + noise,
a constant image, a 1-pixel 0/255 checkerboard) with the preprocessing
    x = u8/255 (float32) -> 3 channels -> bilinear 299x299 (align_corners=False) -> 2x-1
and its pool3 (2048-d global average pool) and logits are compared with torch float32:
per image, max|a-b|/max|b| <= MAXREL and sum (a-b)^2 / sum b^2 <= NMSE.  Its Inception
Score (10 splits, [i*N/10, (i+1)*N/10)) is checked against numpy on torch's logits and on
its own logits (NaN when N < 10).  Before that the oracle checks itself: its FID blocks
with torchvision's pooling reproduce torchvision's blocks exactly, and each deliberate
bug in the list SABOTAGES moves the reference by many times the tolerance (so such a bug
in the tool could not pass).  --sabotage NAME compares the tool with such a broken
reference instead (every tool check must then fail).  Exit status 1 on any failure,
77 (skipped) without torchvision, 2 when --tool is not an executable.

The converter checks: its built-in structure table equals torchvision's, AuxLogits and
num_batches_tracked are dropped, values and attributes are exact, a pickled model is
accepted, a missing or misshaped tensor is refused with the key named.
"""
import argparse
import copy
import hashlib
import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import time
import types

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    from torchvision.models import inception_v3
except ImportError:  # exit 77: skipped (ctest SKIP_RETURN_CODE)
    print("check_inception: torchvision is not installed (apt-get install python3-torchvision, "
          "or scripts/setup-deps.sh --with-python); skipped", file=sys.stderr)
    sys.exit(77)

# tolerances (normalised, per image, tool float32 vs torch float32)
# (measured: float32 summation-order noise <= 7e-5 / 5e-9 when the resize weights match
# torch's, see preprocess(); every SABOTAGES bug >= 1e-1 / 2e-3)
MAXREL = 5e-4       # max|a-b| / max|b|
NMSE = 5e-8         # sum (a-b)^2 / sum b^2
IS_REL_TORCH = 1e-4  # IS from the tool vs IS from torch's logits
IS_REL_SELF = 1e-9   # IS from the tool vs numpy on the tool's own logits
SENSE = 10.0        # each sabotage must exceed the tolerance this many times

A_BLOCKS = ("Mixed_5b", "Mixed_5c", "Mixed_5d")
C_BLOCKS = ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")
SABOTAGES = {
    "align_corners": "bilinear resize with align_corners=True",
    "count_include_pad": "branch_pool average pools with count_include_pad flipped",
    "e2_avgpool": "fid Mixed_7c branch_pool: average pool instead of max pool (fid only)",
    "bn_eps": "BatchNorm eps 1e-5 instead of 1e-3",
    "missing_bn": "one BatchNorm (Mixed_6c.branch7x7dbl_3.bn) not applied",
    "pad_replicate": "Conv2d_2b_3x3 padded by edge replication instead of zeros",
    "kernel_transposed": "Conv2d_4a_3x3 filters read transposed (kh <-> kw)",
    "scale_256": "input scaled by 1/256 instead of 1/255",
}

n_checks = 0
n_fail = 0


def check(ok, name, detail=""):
    global n_checks, n_fail
    n_checks += 1
    n_fail += not ok
    print(f"[{n_checks:2d}] {'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


# --------------------------------------------------------------------------- model
def avg_incl(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=True)


def avg_excl(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def max_pool(x):
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def block_a(m, x, pool):
    b1 = m.branch1x1(x)
    b5 = m.branch5x5_2(m.branch5x5_1(x))
    b3 = m.branch3x3dbl_3(m.branch3x3dbl_2(m.branch3x3dbl_1(x)))
    return torch.cat([b1, b5, b3, m.branch_pool(pool(x))], 1)


def block_c(m, x, pool):
    b1 = m.branch1x1(x)
    b7 = m.branch7x7_3(m.branch7x7_2(m.branch7x7_1(x)))
    d = x
    for k in range(1, 6):
        d = getattr(m, f"branch7x7dbl_{k}")(d)
    return torch.cat([b1, b7, d, m.branch_pool(pool(x))], 1)


def block_e(m, x, pool):
    b1 = m.branch1x1(x)
    t = m.branch3x3_1(x)
    b3 = torch.cat([m.branch3x3_2a(t), m.branch3x3_2b(t)], 1)
    t = m.branch3x3dbl_2(m.branch3x3dbl_1(x))
    bd = torch.cat([m.branch3x3dbl_3a(t), m.branch3x3dbl_3b(t)], 1)
    return torch.cat([b1, b3, bd, m.branch_pool(pool(x))], 1)


def set_pools(model, pool_ace, pool_7c):
    """Route Mixed_5b..7b's branch_pool through pool_ace and Mixed_7c's through pool_7c."""
    for name in A_BLOCKS:
        getattr(model, name).forward = types.MethodType(lambda m, x: block_a(m, x, pool_ace), getattr(model, name))
    for name in C_BLOCKS:
        getattr(model, name).forward = types.MethodType(lambda m, x: block_c(m, x, pool_ace), getattr(model, name))
    model.Mixed_7b.forward = types.MethodType(lambda m, x: block_e(m, x, pool_ace), model.Mixed_7b)
    model.Mixed_7c.forward = types.MethodType(lambda m, x: block_e(m, x, pool_7c), model.Mixed_7c)


def build(variant, seed):
    torch.manual_seed(seed)
    m = inception_v3(weights=None, aux_logits=False, init_weights=True, transform_input=False,
                     num_classes=1008 if variant == "fid" else 1000).eval()
    if variant == "fid":
        set_pools(m, avg_excl, max_pool)
    return m


def preprocess(u8, dtype=torch.float32, align_corners=False, scale=255.0):
    """The float32 preprocessing (also for a float64 network: its input is the same).
    torch 1.13's CPU bilinear weights for 128 -> 299, matched bit for bit by: scale =
    (float)128/299; src = (double)scale * (o + 0.5) - 0.5, clamped at 0; i = (int)src;
    l1 = (float)(src - i); l0 = 1.0f - l1.  Weights computed wholly in float (float src)
    are off by up to 4e-6 and ones wholly in double by up to 1e-6; on the 0/255
    checkerboard that alone moves the logits by 1e-3 and 4e-4 (max rel)."""
    x = torch.from_numpy(u8.astype(np.float32)) / np.float32(scale)
    x = x[:, None].repeat(1, 3, 1, 1)
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=align_corners)
    return (x * 2 - 1).to(dtype)


@torch.no_grad()
def forward(model, u8, dtype=torch.float32, align_corners=False, scale=255.0, tensors=False):
    """(pool3, logits) as numpy float64 (or as the torch tensors)."""
    got = {}
    h = model.avgpool.register_forward_hook(lambda mod, i, o: got.__setitem__("p", o))
    try:
        logits = model(preprocess(u8, dtype, align_corners, scale))
    finally:
        h.remove()
    pool3 = torch.flatten(got["p"], 1)
    if tensors:
        return pool3, logits
    return pool3.double().numpy(), logits.double().numpy()


@torch.no_grad()
def randomise(model, u8, seed):
    """Per-channel conv rescaling to unit spread on u8, random BN parameters around the
    channel statistics (running_var in [0.5, 2]); each BasicConv2d is calibrated as the
    forward pass reaches it.  The generator is returned for randomise_fc."""
    g = torch.Generator().manual_seed(seed)

    def uni(n, lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g)

    bn_of = {}

    def hook(conv, inp, out):
        bn = bn_of[id(conv)]
        s = out.std(dim=(0, 2, 3)).clamp_min(1e-6)
        conv.weight /= s[:, None, None, None]
        out = out / s[None, :, None, None]
        c = out.shape[1]
        mu = out.mean(dim=(0, 2, 3))
        bn.running_mean.copy_(mu + 0.2 * torch.randn(c, generator=g))
        bn.running_var.copy_(uni(c, 0.5, 2.0))
        bn.weight.copy_(uni(c, 0.5, 1.5) * torch.where(torch.rand(c, generator=g) < 0.1, -1.0, 1.0))
        bn.bias.copy_(0.3 * torch.randn(c, generator=g))
        return out

    hooks = []
    for mod in model.modules():
        if hasattr(mod, "conv") and hasattr(mod, "bn"):
            bn_of[id(mod.conv)] = mod.bn
            hooks.append(mod.conv.register_forward_hook(hook))
    try:
        forward(model, u8)
    finally:
        for h in hooks:
            h.remove()
    return g


@torch.no_grad()
def randomise_fc(model, f, g):
    """An fc whose logits vary by ~3 over the pool3 features f (a float32 tensor)."""
    w = model.fc.weight
    z = (f - f.mean(0)) @ w.t()
    w *= 3.0 / z.std().clamp_min(1e-6)
    model.fc.bias.copy_(-(f.mean(0) @ w.t()) + 0.5 * torch.randn(w.shape[0], generator=g))


def sabotaged(model, variant, name):
    """A copy of model with the bug `name`, and the forward() options it needs."""
    m = copy.deepcopy(model)
    opts = {}
    if name == "align_corners":
        opts["align_corners"] = True
    elif name == "scale_256":
        opts["scale"] = 256.0
    elif name == "count_include_pad":
        if variant == "fid":
            set_pools(m, avg_incl, max_pool)
        else:
            set_pools(m, avg_excl, avg_excl)
    elif name == "e2_avgpool":
        if variant != "fid":
            return None, None
        set_pools(m, avg_excl, avg_excl)
    elif name == "bn_eps":
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.eps = 1e-5
    elif name == "missing_bn":
        m.Mixed_6c.branch7x7dbl_3.bn = nn.Identity()
    elif name == "pad_replicate":
        m.Conv2d_2b_3x3.conv.padding_mode = "replicate"
    elif name == "kernel_transposed":
        with torch.no_grad():
            w = m.Conv2d_4a_3x3.conv.weight
            w.copy_(w.transpose(2, 3).clone())
    else:
        raise ValueError(name)
    return m, opts


# --------------------------------------------------------------------------- data
def patches(n, rng):
    """n uint8 1x128x128 patches: #1 constant, #2 a 1-pixel 0/255 checkerboard, the rest
    smooth random structure (blobs and a ramp, bilinearly upsampled noise) + pixel noise."""
    out = np.empty((n, 128, 128), np.uint8)
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float64)
    for i in range(n):
        if i == 1:
            out[i] = 137
            continue
        if i == 2:
            out[i] = ((yy + xx) % 2 * 255).astype(np.uint8)
            continue
        img = rng.uniform(40, 120) + rng.uniform(-0.5, 0.5) * (xx * np.cos(i) + yy * np.sin(i))
        for _ in range(rng.integers(2, 7)):
            cy, cx = rng.uniform(0, 128, 2)
            r = rng.uniform(5, 30)
            img += rng.uniform(-80, 120) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        coarse = torch.from_numpy(rng.normal(0, 25, (1, 1, 16, 16)))
        img += F.interpolate(coarse, size=(128, 128), mode="bilinear", align_corners=False)[0, 0].numpy()
        img += rng.normal(0, rng.uniform(2, 12), (128, 128))
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------- metrics
def errors(a, b):
    """Worst per-image (max|a-b|/max|b|, NMSE) over the rows."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mr = max(np.abs(a[i] - b[i]).max() / max(np.abs(b[i]).max(), 1e-30) for i in range(len(b)))
    nm = max(((a[i] - b[i]) ** 2).sum() / max((b[i] ** 2).sum(), 1e-300) for i in range(len(b)))
    return float(mr), float(nm)


def inception_score(logits, splits=10):
    """(mean, population std) of exp(mean KL(p(y|x) || p(y))) over the splits, in double."""
    l = np.asarray(logits, np.float64)
    n = len(l)
    if n < splits:
        return math.nan, math.nan
    logp = l - l.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    p = np.exp(logp)
    s = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        part, lpart = p[lo:hi], logp[lo:hi]
        py = part.mean(0)
        kl = (part * (lpart - np.log(py))).sum(1)
        s.append(math.exp(kl.mean()))
    return float(np.mean(s)), float(np.std(s))


def rel(a, b, floor=0.0):
    return abs(a - b) / max(abs(b), floor, 1e-300)


# --------------------------------------------------------------------------- tool
def run_tool(tool, weights, backend, u8, tmp, tag):
    inp, out = os.path.join(tmp, f"{tag}.u8"), os.path.join(tmp, f"{tag}.out.h5")
    u8.tofile(inp)
    t0 = time.time()
    p = subprocess.run([tool, weights, backend, inp, str(len(u8)), out], capture_output=True, text=True,
                       timeout=1800)
    dt = time.time() - t0
    if p.returncode != 0:
        return None, f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-600:]}", dt
    try:
        with h5py.File(out, "r") as h:
            v = h.attrs.get("variant")
            r = {"pool3": h["pool3"][()], "logits": h["logits"][()],
                 "is_mean": float(h.attrs["is_mean"]), "is_std": float(h.attrs["is_std"]),
                 "variant": v.decode() if isinstance(v, bytes) else (str(v) if v is not None else None),
                 "dtypes": (h["pool3"].dtype, h["logits"].dtype)}
    except (OSError, KeyError) as e:
        return None, f"output {out}: {e}", dt
    return r, "", dt


def compare(name, r, ref_p, ref_l, n, ncls):
    """The pool3/logits checks for one tool run."""
    ok = check(r["pool3"].shape == (n, 2048) and r["logits"].shape == (n, ncls)
               and all(d == np.float32 for d in r["dtypes"]),
               f"{name}: pool3 {r['pool3'].shape} logits {r['logits'].shape} float32")
    if not ok:
        return
    for what, a, b in (("pool3", r["pool3"], ref_p), ("logits", r["logits"], ref_l)):
        fin = bool(np.isfinite(a).all())
        mr, nm = errors(a, b) if fin else (math.inf, math.inf)
        check(fin and mr <= MAXREL and nm <= NMSE, f"{name}: {what} vs torch float32",
              f"max rel {mr:.2e} (tol {MAXREL:g}), NMSE {nm:.2e} (tol {NMSE:g})")


# --------------------------------------------------------------------------- converter checks
def converter_checks(conv, converter, tmp):
    for c in (1000, 1008):
        tv = conv.torchvision_shapes(c)
        bi = conv.builtin_shapes(c)
        check(tv is not None and list(tv.items()) == list(bi.items()),
              f"converter: built-in structure table = torchvision's Inception3 ({c} classes)",
              f"{len(bi)} tensors")

    def cli(args):
        return subprocess.run([sys.executable, converter] + args, capture_output=True, text=True)

    torch.manual_seed(5)
    m = inception_v3(weights=None, aux_logits=True, init_weights=False, num_classes=1000).eval()
    sd = m.state_dict()
    src = os.path.join(tmp, "tv_aux.pth")
    torch.save(sd, src)
    out = os.path.join(tmp, "tv_aux.h5")
    p = cli([src, out])
    detail = (p.stderr or p.stdout).strip()
    if check(p.returncode == 0, "converter: torchvision state_dict with AuxLogits converts", detail):
        want = {k: v for k, v in sd.items() if not k.startswith("AuxLogits.") and not k.endswith("num_batches_tracked")}
        with h5py.File(out, "r") as h:
            keys = set(h.keys())
            same = keys == set(want) and all(
                h[k].dtype == np.float32 and h[k].shape == tuple(want[k].shape)
                and np.array_equal(h[k][()], want[k].numpy()) for k in want)
            a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h.attrs.items()}
        n_aux = sum(k.startswith("AuxLogits.") for k in sd)
        check(same and not any(k.startswith("AuxLogits") or "num_batches" in k for k in keys),
              "converter: AuxLogits and num_batches_tracked dropped, every other tensor exact float32",
              f"{len(keys)} datasets written, {n_aux} AuxLogits tensors dropped")
        sha = hashlib.sha256(open(src, "rb").read()).hexdigest()
        want_a = {"format_version": 1, "model": "inception-v3", "variant": "torchvision", "num_classes": 1000,
                  "source": "tv_aux.pth", "source_sha256": sha, "converter": "tools/convert_inception_weights.py 1"}
        check(a == want_a and isinstance(a["format_version"], np.integer), "converter: root attributes",
              ", ".join(f"{k}={v}" for k, v in a.items() if k != "source_sha256") + f", sha256 {sha[:12]}...")

    mf = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008).eval()
    src = os.path.join(tmp, "model1008.pth")
    torch.save(mf, src)  # a pickled model, not a state_dict
    out = os.path.join(tmp, "model1008.h5")
    p = cli([src, out])
    ok = p.returncode == 0
    if ok:
        with h5py.File(out, "r") as h:
            ok = h.attrs["variant"] == b"fid" and h.attrs["num_classes"] == 1008 and h["fc.weight"].shape == (1008, 2048)
    p2 = cli([src, out + "2", "--variant", "torchvision"])
    ok2 = p2.returncode == 0 and h5py.File(out + "2", "r").attrs["variant"] == b"torchvision"
    check(ok and ok2, "converter: pickled 1008-class model -> variant fid (auto); --variant torchvision honoured",
          (p.stderr + p2.stderr).strip())

    for what, key, edit in (
            ("missing", "Mixed_6c.branch7x7dbl_3.bn.running_var", lambda d, k: d.pop(k)),
            ("misshaped", "Mixed_7b.branch3x3_2a.conv.weight",
             lambda d, k: d.__setitem__(k, d[k].transpose(2, 3).contiguous()))):
        bad = dict(sd)
        edit(bad, key)
        src = os.path.join(tmp, f"{what}.pth")
        torch.save(bad, src)
        out = os.path.join(tmp, f"{what}.h5")
        p = cli([src, out])
        msg = p.stderr.strip()
        check(p.returncode != 0 and key in msg and not os.path.exists(out),
              f"converter: a state_dict with a {what} tensor is refused, the key named",
              f"exit {p.returncode}: {msg[:300]}")
    try:
        bad = dict(sd)
        bad.pop("fc.bias")
        conv.convert(bad, os.path.join(tmp, "x.h5"), "auto", "x", "0")
        ok, msg = False, "accepted"
    except conv.ConversionError as e:
        ok, msg = "fc.bias" in str(e), str(e)
    check(ok, "converter module: convert() raises ConversionError naming a missing key", msg[:200])


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", help="inception_tool (without it only the converter and oracle self-checks run)")
    ap.add_argument("--converter", required=True)
    ap.add_argument("--ref-n", type=int, default=1, help="images through the slow ref backend per variant")
    ap.add_argument("--n-is", type=int, default=23, help="images of the Inception Score run (cpu backend)")
    ap.add_argument("--no-cpu", action="store_true",
                    help="the build has no cpu backend (oneDNN): its runs (N=6 and the IS run) are skipped")
    ap.add_argument("--variants", default="torchvision,fid")
    ap.add_argument("--device-backends", default="strict,cuda",
                    help="backends whose Inception runs in their own memory, N=6 each (a missing GPU: skipped)")
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    ap.add_argument("--sabotage", choices=sorted(SABOTAGES), help="compare the tool with a broken reference")
    ap.add_argument("--float64", action="store_true",
                    help="also print torch float32 and the tool against torch float64 (slow)")
    a = ap.parse_args()
    t_start = time.time()

    spec = importlib.util.spec_from_file_location("convert_inception_weights", a.converter)
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    if a.tool and not os.access(a.tool, os.X_OK):
        print(f"check_inception: no executable tool at {a.tool}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    rng = np.random.default_rng(20151205)
    u8_is = patches(max(a.n_is, 6), rng)
    u8 = u8_is[:6]
    ref_idx = [0, 3, 2, 4, 1, 5][:max(1, min(a.ref_n, 6))]  # structured image first

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = a.keep or tmpd
        os.makedirs(tmp, exist_ok=True)
        converter_checks(conv, a.converter, tmp)

        for vi, variant in enumerate(a.variants.split(",")):
            ncls = 1008 if variant == "fid" else 1000
            model = build(variant, 1000 + vi)
            g = randomise(model, u8, 2000 + vi)
            t0 = time.time()
            f32, _ = forward(model, u8_is, tensors=True)
            randomise_fc(model, f32, g)
            with torch.no_grad():  # = the fc in forward(): Linear on the flattened pool
                p32, l32 = f32.double().numpy(), model.fc(f32).double().numpy()
            print(f"--- {variant}: torch float32 reference, {len(u8_is)} images, {time.time() - t0:.1f} s")
            p64 = l64 = None
            if a.float64:
                p64, l64 = forward(copy.deepcopy(model).double(), u8, torch.float64)
                print(f"--- {variant}: torch float32 vs float64, per image: " + "; ".join(
                    "pool3 %.1e/%.1e logits %.1e/%.1e" % (errors(p32[i:i + 1], p64[i:i + 1])
                                                          + errors(l32[i:i + 1], l64[i:i + 1])) for i in range(6)))
            mean_abs = np.abs(p32).mean(1)
            spread = p32[np.arange(len(p32)) != 1].std(0).mean() / np.abs(p32).mean()
            check(np.isfinite(p32).all() and 0.05 < mean_abs.min() and mean_abs.max() < 20
                  and (p32 > 1e-6).mean() > 0.3 and spread > 0.02,
                  f"{variant}: randomised network is in a sane range",
                  f"mean|pool3| per image {mean_abs.min():.3f}..{mean_abs.max():.3f}, "
                  f"{(p32 > 1e-6).mean():.0%} of pool3 > 0, spread over images {spread:.2f}, "
                  f"logit std {l32.std():.2f}")

            # the oracle's own blocks: with torchvision's pools they are torchvision's blocks
            mt = copy.deepcopy(model)
            set_pools(mt, avg_incl, avg_incl)
            fresh = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=ncls).eval()
            fresh.load_state_dict(mt.state_dict())
            fp, fl = forward(fresh, u8[:2])
            tp, tl = forward(mt, u8[:2])
            check(np.array_equal(fp, tp) and np.array_equal(fl, tl),
                  f"{variant}: oracle's block forwards with count_include_pad=True pools = torchvision's blocks")

            for s in SABOTAGES:
                ms, opts = sabotaged(model, variant, s)
                if ms is None:
                    continue
                sp, sl = forward(ms, u8[:3], **opts)
                ep, el = errors(sp, p32[:3]), errors(sl, l32[:3])
                factor = min(max(ep[0] / MAXREL, ep[1] / NMSE), max(el[0] / MAXREL, el[1] / NMSE))
                check(factor >= SENSE, f"{variant}: sabotage '{s}' would fail the tool checks",
                      f"pool3 max rel {ep[0]:.1e} NMSE {ep[1]:.1e}, logits max rel {el[0]:.1e} NMSE {el[1]:.1e} "
                      f"(>= {factor:.0f}x tolerance)")

            if not a.tool:
                continue
            w = os.path.join(tmp, f"inception-{variant}.h5")
            sd_path = os.path.join(tmp, f"inception-{variant}.pth")
            torch.save(model.state_dict(), sd_path)
            attrs = conv.convert(model.state_dict(), w, "auto", os.path.basename(sd_path), conv.sha256_file(sd_path))
            check(attrs["variant"] == variant, f"{variant}: weights written by convert()", f"{w}")
            if a.sabotage:
                ms, opts = sabotaged(model, variant, a.sabotage)
                if ms is None:
                    print(f"--- sabotage '{a.sabotage}' does not apply to {variant}")
                else:
                    print(f"--- SABOTAGED reference: {SABOTAGES[a.sabotage]}")
                    p32, l32 = forward(ms, u8_is, **opts)

            # cpu backend, N=6: pool3/logits; IS is NaN below 10 images
            r, err, dt = (None, None, 0) if a.no_cpu else run_tool(a.tool, w, "cpu", u8, tmp, f"{variant}-cpu6")
            if not a.no_cpu and check(r is not None, f"{variant}: inception_tool cpu, N=6", err or f"{dt:.1f} s"):
                compare(f"{variant} cpu N=6", r, p32[:6], l32[:6], 6, ncls)
                if p64 is not None:
                    print(f"--- {variant} cpu N=6 against torch float64, per image: " + "; ".join(
                        "pool3 %.1e/%.1e logits %.1e/%.1e" % (errors(r["pool3"][i:i + 1], p64[i:i + 1])
                                                              + errors(r["logits"][i:i + 1], l64[i:i + 1]))
                        for i in range(6)))
                check(r["variant"] == variant, f"{variant} cpu N=6: variant attribute", str(r["variant"]))
                check(math.isnan(r["is_mean"]) and math.isnan(r["is_std"]),
                      f"{variant} cpu N=6: IS is NaN below 10 images", f"{r['is_mean']}, {r['is_std']}")

            # device backends, N=n_is (batches of 8, the last one short: the activation buffers
            # reused across batches, then new sizes): the activations in the backend's memory,
            # pools, concatenation, pool3 and fc there; strict emulates a device over the cpu
            # backend's kernels, so its numbers must be cpu's bit for bit (checked below with
            # the cpu run of the same images); cuda where a GPU is present
            n = a.n_is
            dev_runs = {}
            for dev in [d for d in a.device_backends.split(",") if d]:
                rd, err, dt = run_tool(a.tool, w, dev, u8_is[:n], tmp, f"{variant}-{dev}{n}")
                if rd is None and ("no cuda device" in err.lower() or "no device" in err.lower()):
                    print(f"--- SKIP {variant}: inception_tool {dev}: {err.splitlines()[-1] if err else ''}")
                    continue
                if check(rd is not None, f"{variant}: inception_tool {dev} (device path), N={n}", err or f"{dt:.1f} s"):
                    compare(f"{variant} {dev} N={n}", rd, p32[:n], l32[:n], n, ncls)
                    dev_runs[dev] = rd

            # ref backend on ref_n images
            ru8 = u8[ref_idx]
            r, err, dt = run_tool(a.tool, w, "ref", ru8, tmp, f"{variant}-ref")
            if check(r is not None, f"{variant}: inception_tool ref, N={len(ru8)}", err or f"{dt:.1f} s"):
                compare(f"{variant} ref N={len(ru8)}", r, p32[ref_idx], l32[ref_idx], len(ru8), ncls)

            # cpu backend, N=n_is: IS (uneven splits when N is not a multiple of 10)
            if a.no_cpu:
                print(f"--- SKIP {variant}: no cpu backend in this build (oneDNN): the cpu runs on 6 and {n} "
                      "images and the Inception Score checks are not run; the ref run above is")
                continue
            r, err, dt = run_tool(a.tool, w, "cpu", u8_is[:n], tmp, f"{variant}-cpu{n}")
            if check(r is not None, f"{variant}: inception_tool cpu, N={n}", err or f"{dt:.1f} s"):
                compare(f"{variant} cpu N={n}", r, p32[:n], l32[:n], n, ncls)
                m_t, s_t = inception_score(l32[:n])
                m_s, s_s = inception_score(r["logits"])
                gm, gs = r["is_mean"], r["is_std"]
                check(rel(gm, m_t) <= IS_REL_TORCH and rel(gs, s_t, 1e-3 * m_t) <= IS_REL_TORCH,
                      f"{variant} cpu N={n}: IS vs numpy on torch's logits",
                      f"{gm:.9f} +- {gs:.9f} vs {m_t:.9f} +- {s_t:.9f} (rel {rel(gm, m_t):.1e}, "
                      f"{rel(gs, s_t, 1e-3 * m_t):.1e}; tol {IS_REL_TORCH:g})")
                check(rel(gm, m_s) <= IS_REL_SELF and rel(gs, s_s, 1e-3 * m_s) <= IS_REL_SELF,
                      f"{variant} cpu N={n}: IS vs numpy on the tool's own logits",
                      f"rel {rel(gm, m_s):.1e}, {rel(gs, s_s, 1e-3 * m_s):.1e} (tol {IS_REL_SELF:g})")
                if "strict" in dev_runs:
                    same = all(np.array_equal(dev_runs["strict"][k], r[k]) for k in ("pool3", "logits"))
                    check(same, f"{variant} strict N={n}: pool3 and logits = the cpu backend's, bit for bit",
                          "the device path's resize, pools, concatenation and global mean keep the host loops' arithmetic")

    print(f"{n_checks - n_fail}/{n_checks} checks passed" + (f", {n_fail} FAILED" if n_fail else "")
          + f" ({time.time() - t_start:.0f} s)")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
