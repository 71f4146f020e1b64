#!/usr/bin/env bash
# bench/train: classifier training throughput (SPEC §6: batch 128, cpu backend) on 1 and 2
# ranks of this machine on a synthetic store: patches/s of the third epoch (data exchange
# and steps; validation and the first epoch's kernel set-up excluded), one thread per rank,
# so 2 ranks use 2 cores where 1 rank uses 1: scaling efficiency = rate(2) / (2 rate(1)).
# Also 1 rank with every core as threads (no MPI), and the time per epoch extrapolated to
# the thesis's training set (976,838 normal + 3,783 lesion patches).
# Usage: bench/train/run.sh [PATIENTS] (default 48)
set -euo pipefail
cd "$(dirname "$0")/../.."
mp=build/mammopatch
[[ -x $mp ]] || { echo "build first (cmake --build build)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export MAMMOPATCH_SITE_KEY=${MAMMOPATCH_SITE_KEY:-bench-site-key-0123456789}
cores=$(nproc --all) # not `nproc`: it follows OMP_NUM_THREADS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mpiexec -n 2 --oversubscribe $mp synth --out "$tmp/c" --patients "${1:-48}" --seed 7 -q --set synth.birads0_frac=0.6
mpiexec -n 2 --oversubscribe $mp preprocess --input "$tmp/c/dicom" --labels "$tmp/c/labels.csv" --out "$tmp/p.h5" -q
rate() { # ranks threads -> patches/s of the training steps of the third epoch
  local k=$1 th=$2
  OMP_NUM_THREADS=$th mpiexec -n "$k" --oversubscribe --bind-to none $mp train --store "$tmp/p.h5" --split-seed 1 \
    --out "$tmp/t$k" -q --set train.batch=128 --set train.epochs=3 --set train.checkpoint_every=0 >/dev/null
  /usr/bin/python3 -c "
import json; d = json.load(open('$tmp/t$k/train.json')); e = d['curve'][-1]
print(d['steps_per_epoch'] * d['batch'] / e['train_seconds'])"
}
r1=$(rate 1 1)
r2=$(rate 2 1)
rt=$(rate 1 "$cores")
awk -v a="$r1" -v b="$r2" -v t="$rt" -v c="$cores" 'BEGIN {
  n = 976838 + 3783
  printf "training patches/s (batch 128, one thread per rank): 1 rank %.1f, 2 ranks %.1f; scaling efficiency %.0f%%\n", a, b, 100 * b / (2 * a)
  printf "1 rank x %d threads: %.1f patches/s\n", c, t
  printf "one epoch of the thesis training set (%d patches) at the 2-rank rate: %.1f h\n", n, n / b / 3600
  printf "(PyTorch peer: bench/nn/run.sh classifier measures the same step beside torch)\n" }'
