#!/usr/bin/env bash
# tests/gpu/knn.sh — SPEC §9's kNN at thesis scale on a GPU ("seconds on a GPU"), run by
# tests/gpu/run.sh: N x D ReLU-like float32 rows (default 2,000 x 65,536, the block-1 features of
# ~2,000 training lesion patches), k = 2, for l2, cosine and l1: knn_tool with the cuda backend's
# score blocks (cuBLAS for l2 and cosine, the own l1 kernel for l1) and on the host (OpenBLAS,
# the blocked l1 loop, every core), both timed (the mp_knn call, the upload included), and the
# neighbours and distances they write compared byte for byte (the exact re-scoring in double
# makes them the same wherever the candidates were scored).
# Usage: tests/gpu/knn.sh KNN_TOOL [N] [D]; PYTHON (default python3: numpy makes the data),
# BACKEND (default cuda; strict checks this script on a machine without a GPU).
# Exit 0 when every distance gave the same answer on both sides, 1 otherwise, 77 without numpy.
set -uo pipefail
tool=$1 n=${2:-2000} d=${3:-65536} py=${PYTHON:-python3} be=${BACKEND:-cuda}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! "$py" -c "
import numpy as np
x = np.maximum(np.random.default_rng(1).normal(size=($n, $d)).astype(np.float32), 0)
x.tofile('$tmp/x.f32')" 2>"$tmp/py.err"; then
  echo "knn: no numpy in $py to make the data: $(tail -n 1 "$tmp/py.err")"
  exit 77
fi
secs() { sed -n 's/.*"knn_seconds": \([0-9.]*\).*/\1/p'; }
threads=$(nproc)
rc=0
for dist in l2 cosine l1; do
  g=$(OMP_NUM_THREADS=$threads "$tool" "$tmp/x.f32" "$n" "$d" "$dist" 2 "$tmp/g-$dist" "$be" | secs)
  h=$(OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$tool" "$tmp/x.f32" "$n" "$d" "$dist" 2 "$tmp/h-$dist" | secs)
  if [[ -z $g || -z $h ]]; then
    echo "knn $dist: FAILED ($be '${g}' s, host '${h}' s: a run gave no time)"
    rc=1
  elif cmp -s "$tmp/g-$dist" "$tmp/h-$dist"; then
    echo "knn $dist $n x $d, k 2: $be $g s, host $h s ($threads threads): the same neighbours and distances"
  else
    echo "knn $dist: FAILED: $be and host neighbours differ ($(cmp "$tmp/g-$dist" "$tmp/h-$dist" 2>&1 | head -n 1))"
    rc=1
  fi
done
exit $rc
