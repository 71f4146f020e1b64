#!/usr/bin/env bash
# bench/gan: the `inception` FID extractor's cost (SPEC §8, §12): Inception-v3 forward of
# 128x128 uint8 patches (bilinear resize to 299, 3 channels, pool3 + logits) on mammopatch's
# `cpu` backend (nn/mp_inception through tests' inception_tool, batch 8) beside torchvision's
# inception_v3 in PyTorch (Debian python3-torch/torchvision) on the SAME weights (random He
# initialisation converted by tools/convert_inception_weights.py; weights do not change the
# time), same thread count, in one run.  Prints images/s of each, the ratio (> 1: mammopatch
# is faster) and the projected time of one FID evaluation on 2,000 + 2,000 patches (the
# Fréchet distance itself is bench/gan/fid_bench.sh's; it is under a second).
# Usage: bench/gan/inception_bench.sh; N images (default 48), THREADS (default 2) and
#        BUILD_DIR (default build) in the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build}
tool=$build/tests/inception_tool
[[ -x $tool ]] || { echo "build first (cmake --build $build --target inception_tool)" >&2; exit 2; }
n=${N:-48} threads=${THREADS:-2}
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
peer=$(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=100000000000 /usr/bin/python3 - "$tmp" "$n" "$threads" <<'PY' | sed -n 's/peer_images_per_s //p'
import os, sys, time, numpy as np, torch, torchvision
import torch.nn.functional as F
sys.path.insert(0, "tools")
from convert_inception_weights import convert
tmp, n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
m = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008).eval()
for mod in m.modules():
    if isinstance(mod, torch.nn.Conv2d):
        torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
convert(m.state_dict(), os.path.join(tmp, "w.h5"), "fid", "random", "")
u8 = np.random.default_rng(0).integers(0, 256, (n, 128, 128), dtype=np.uint8)
u8.tofile(os.path.join(tmp, "in.u8"))
def run():
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, n, 8):
            x = torch.from_numpy(u8[i:i + 8]).float().div(255).unsqueeze(1).repeat(1, 3, 1, 1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
            m(x)
    return time.perf_counter() - t0
run()  # warm-up
print(f"peer_images_per_s {n / min(run(), run()):.3f}")
PY
)
"$tool" "$tmp/w.h5" cpu "$tmp/in.u8" 8 "$tmp/warm.h5" > /dev/null  # warm-up (oneDNN kernels)
mine=$(for _ in 1 2; do "$tool" "$tmp/w.h5" cpu "$tmp/in.u8" "$n" "$tmp/out.h5"; done |
       sed -n 's/.*s (\([0-9.]*\) images\/s).*/\1/p' | sort -g | tail -1)
awk -v m="$mine" -v p="$peer" -v n="$n" -v t="$threads" 'BEGIN {
  printf "Inception-v3 forward, %d patches 128 -> 299, batch 8, %d threads (best of 2)\n", n, t
  printf "  mammopatch cpu   %8.2f images/s\n  PyTorch          %8.2f images/s\n", m, p
  printf "  ratio (mammopatch / PyTorch): %.2fx\n", m / p
  printf "  one FID on 2,000 + 2,000 patches (inception): mammopatch %.0f s, PyTorch %.0f s (features; + <1 s Frechet)\n", 4000 / m, 4000 / p
}'
