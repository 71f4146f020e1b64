#!/usr/bin/env bash
# Benchmark of one classifier training step (SPEC §6: VGG16/4-BN, 1x128x128, BCE, Adam)
# on mammopatch's `cpu` backend and in PyTorch (Debian's python3-torch), same thread
# count, same batch, in one run; prints patches/s, the ratio and peak memory.
# SPEC §12's anchor: PyTorch 1.13 on 2 Sapphire Rapids cores, batch 32: 62.6 patches/s.
# Usage: bench/nn/run.sh [BATCHES] (default "32 128"); THREADS (default 2) in the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
tool=build/bench/mp_bench_nn
[[ -x $tool ]] || { echo "build first (cmake --build build)" >&2; exit 2; }
threads=${THREADS:-2}
export OMP_NUM_THREADS=$threads
printf '%-8s %-10s %14s %14s %8s %12s %12s\n' batch backend mammopatch/s pytorch/s ratio mp_heap_MB torch_rss_MB
for b in ${1:-32 128}; do
  mine=$("$tool" cpu "$b" 6)
  theirs=$(/usr/bin/python3 - "$b" "$threads" <<'PY'
import json, resource, sys, time
import torch, torch.nn as nn
b, th = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(th)
def cbr(i, o): return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]
L = cbr(1, 16) + cbr(16, 16) + [nn.MaxPool2d(2)]; c = 16
for w, r in [(32, 2), (64, 3), (128, 3), (128, 3)]:
    for _ in range(r): L += cbr(c, w); c = w
    L.append(nn.MaxPool2d(2))
m = nn.Sequential(*L, nn.Flatten(), nn.Linear(2048, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 512), nn.ReLU(),
                  nn.Dropout(0.5), nn.Linear(512, 1)).train()
opt = torch.optim.Adam(m.parameters(), lr=1e-5, betas=(0.5, 0.999))
x = torch.rand(b, 1, 128, 128) * 2 - 1; t = (torch.arange(b) % 2).float()
ts = []
for s in range(8):
    t0 = time.perf_counter(); opt.zero_grad()
    loss = nn.functional.binary_cross_entropy_with_logits(m(x).reshape(-1), t); loss.backward(); opt.step()
    ts.append(time.perf_counter() - t0)
med = sorted(ts[2:])[len(ts[2:]) // 2]
print(json.dumps({"patches_per_second": b / med, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
PY
)
  mp_ps=$(sed -n 's/.*"patches_per_second": \([0-9.]*\).*/\1/p' <<<"$mine")
  mp_mb=$(sed -n 's/.*"peak_heap_mb": \([0-9.]*\).*/\1/p' <<<"$mine")
  th_ps=$(sed -n 's/.*"patches_per_second": \([0-9.]*\).*/\1/p' <<<"$theirs")
  th_mb=$(sed -n 's/.*"rss_mb": \([0-9.]*\).*/\1/p' <<<"$theirs")
  awk -v b="$b" -v a="$mp_ps" -v p="$th_ps" -v m="$mp_mb" -v t="$th_mb" \
    'BEGIN { printf "%-8s %-10s %14.1f %14.1f %8.2f %12.0f %12.0f\n", b, "cpu", a, p, a / p, m, t }'
done
echo "target (issue 5): ratio >= 1.0 with $threads threads"
