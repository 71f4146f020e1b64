#!/usr/bin/env bash
# tests/gpu/inception.sh — the `inception` FID extractor on a GPU, run by tests/gpu/run.sh:
# random Inception-v3 weights of the FID variant (He-initialised convolutions and fc, the batch
# norms with random statistics; numpy only, through tools/convert_inception_weights.py's table,
# no torchvision needed), N uint8 patches (default 600) through inception_tool on the cuda
# backend in batches of BATCH (default 200, SPEC §12's anchor: PyTorch 4,544 images/s at batch
# 200 on an H100; a GAN on a GPU runs batches of 64), timed after one warm-up batch, and the
# first HOST_N (default 2) through the host backend (HOST: cpu where built, else ref): pool3
# and logits of each image within check_inception.py's tolerances (max |a - b| / max |b| 5e-4,
# NMSE 5e-8).
# Usage: tests/gpu/inception.sh INCEPTION_TOOL; PYTHON (default python3: numpy and h5py), N,
# BATCH, HOST_N, HOST, BACKEND (default cuda; strict checks this script without a GPU).
# Exit 0 when every compared image is within the tolerances, 1 otherwise, 77 without numpy/h5py.
set -uo pipefail
tool=$1 py=${PYTHON:-python3} be=${BACKEND:-cuda} n=${N:-600} batch=${BATCH:-200} hn=${HOST_N:-2}
host=${HOST:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! "$py" - "$tmp" "$n" "$root/tools" >"$tmp/py.out" 2>&1 <<'PY'; then
import sys
import numpy as np, h5py  # noqa: F401 (h5py: the comparison below)
tmp, n = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
from convert_inception_weights import builtin_shapes, convert
rng = np.random.default_rng(5)
sd = {}
for k, shape in builtin_shapes(1008).items():
    if k.endswith("conv.weight"):  # He: activations of order 1 through the 94 layers
        sd[k] = (rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)
    elif k.endswith("bn.weight") or k.endswith("bn.running_var"):
        sd[k] = rng.uniform(0.5, 2.0, size=shape).astype(np.float32)
    elif k == "fc.weight":
        sd[k] = (rng.normal(size=shape) * 0.05).astype(np.float32)
    else:  # bn.bias, bn.running_mean, fc.bias
        sd[k] = (rng.normal(size=shape) * 0.1).astype(np.float32)
convert(sd, f"{tmp}/w.h5", "fid", "random", "")
yy, xx = np.mgrid[0:128, 0:128] / 128.0
u8 = np.stack([np.clip(127 + 80 * np.sin(6 * xx * (1 + i % 5)) * np.cos(4 * yy) + rng.normal(0, 20, (128, 128)), 0, 255)
               for i in range(n)]).astype(np.uint8)
u8.tofile(f"{tmp}/in.u8")
PY
  echo "inception: no numpy/h5py in $py, or the weights could not be made: $(tail -n 2 "$tmp/py.out")"
  exit 77
fi
if [[ -z $host ]]; then # cpu where this build has oneDNN, else ref
  host=ref
  "$tool" "$tmp/w.h5" cpu "$tmp/in.u8" 1 "$tmp/probe.h5" >/dev/null 2>&1 && host=cpu
fi
rc=0
if ! "$tool" "$tmp/w.h5" "$be" "$tmp/in.u8" "$n" "$tmp/dev.h5" "$batch" >"$tmp/dev.log" 2>&1; then
  echo "inception: FAILED: $be run: $(tail -n 3 "$tmp/dev.log")"
  exit 1
fi
head -c "$((hn * 128 * 128))" "$tmp/in.u8" >"$tmp/host.u8"
if ! "$tool" "$tmp/w.h5" "$host" "$tmp/host.u8" "$hn" "$tmp/host.h5" >"$tmp/host.log" 2>&1; then
  echo "inception: FAILED: $host run: $(tail -n 3 "$tmp/host.log")"
  exit 1
fi
rate=$(sed -n 's/.* in \([0-9.]*\) s (\([0-9.]*\) images\/s).*/\2/p' "$tmp/dev.log")
warm=$(sed -n 's/.*warm-up forward of [0-9]* images in \([0-9.]*\) s.*/\1/p' "$tmp/dev.log")
"$py" - "$tmp/dev.h5" "$tmp/host.h5" "$hn" <<'PY' || rc=1
import sys
import h5py, numpy as np
d, h, hn = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r"), int(sys.argv[3])
bad, worst = 0, [0.0, 0.0]
for k in ("pool3", "logits"):
    a, b = d[k][:hn].astype(np.float64), h[k][:hn].astype(np.float64)
    for i in range(hn):
        mr = np.abs(a[i] - b[i]).max() / max(np.abs(b[i]).max(), 1e-30)
        nm = ((a[i] - b[i]) ** 2).sum() / max((b[i] ** 2).sum(), 1e-30)
        worst = [max(worst[0], mr), max(worst[1], nm)]
        bad += not (np.isfinite(a[i]).all() and mr <= 5e-4 and nm <= 5e-8)
    bad += not np.isfinite(d[k][()]).all()
print(f"compare {hn} images: worst max rel {worst[0]:.1e}, NMSE {worst[1]:.1e}" + (f"; {bad} FAILED" if bad else ""))
sys.exit(1 if bad else 0)
PY
if ((rc == 0)); then
  echo "inception $be: $n images, batch $batch: ${rate:-?} images/s (warm-up batch ${warm:-?} s); the first $hn within tolerance of $host"
else
  echo "inception: FAILED: $be's pool3/logits differ from $host's beyond the tolerances"
fi
exit $rc
