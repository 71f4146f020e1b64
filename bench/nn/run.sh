#!/usr/bin/env bash
# bench/nn: training steps of the SPEC networks on mammopatch's `cpu` backend and in
# PyTorch (Debian's python3-torch, bench/nn/peer.py), same thread count, same batch, in
# one run; prints patches/s, the ratio and peak memory (mammopatch: peak heap from its
# counting allocator; PyTorch: the process's max RSS, which also counts the interpreter).
#   classifier  SPEC §6 VGG16/4-BN, one step (forward, BCE, backward, Adam), batch 32 and 128
#   gan         SPEC §7 DCGAN f = 64, one iteration (critic step + generator step), batch 64:
#               rahinge without SN/TTUR and wgan-gp (gradient penalty) with SN/TTUR
# SPEC §12's anchor: PyTorch 1.13 on 2 Sapphire Rapids cores, classifier batch 32: 62.6 patches/s.
# Usage: bench/nn/run.sh [classifier] [gan]   (default both); THREADS (default 2),
#        BATCHES (classifier, default "32 128") and GAN_BATCH (default 64) in the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
tool=build/bench/mp_bench_nn
[[ -x $tool ]] || { echo "build first (cmake --build build)" >&2; exit 2; }
threads=${THREADS:-2}
export OMP_NUM_THREADS=$threads
what=${*:-classifier gan}
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" <<<"$2"; }
row() { # label batch mine theirs
  awk -v l="$1" -v b="$2" -v a="$(field patches_per_second "$3")" -v p="$(field patches_per_second "$4")" \
      -v m="$(field peak_heap_mb "$3")" -v t="$(field rss_mb "$4")" \
    'BEGIN { printf "%-26s %6s %13.2f %11.2f %7.2f %11.0f %13.0f\n", l, b, a, p, a / p, m, t }'
}
printf '%-26s %6s %13s %11s %7s %11s %13s\n' step batch mammopatch/s pytorch/s ratio mp_heap_MB torch_rss_MB
for w in $what; do
  case $w in
  classifier)
    for b in ${BATCHES:-32 128}; do
      row "classifier" "$b" "$("$tool" cpu classifier "$b" 6)" "$(/usr/bin/python3 bench/nn/peer.py classifier "$b" "$threads" 6)"
    done ;;
  gan)
    b=${GAN_BATCH:-64}
    for cfg in "rahinge 0" "wgan-gp 1"; do
      set -- $cfg
      row "gan f64 $1 sn/ttur=$2" "$b" "$("$tool" cpu gan "$1" "$2" "$b" 3)" \
          "$(/usr/bin/python3 bench/nn/peer.py gan "$1" "$2" "$b" "$threads" 3)"
    done ;;
  *) echo "unknown benchmark '$w' (classifier, gan)" >&2; exit 2 ;;
  esac
done
echo "target (issue 5): ratio >= 1.0 with $threads threads"
