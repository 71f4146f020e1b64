#!/usr/bin/env bash
# bench/gan: the time of ONE FID evaluation (SPEC §8) on mammopatch's `cpu` backend and in
# PyTorch/scipy (Debian's python3-torch and python3-scipy, bench/gan/fid_peer.py), same
# thread count, in one run: features of N generated-like and N real 128x128 uint8 patches
# (default 2,000 each) through the extractor at eval batch 64, then the Fréchet distance
# on the feature sets (mammopatch: mp_fid, two LAPACKE dsyevd; the peer: pytorch-fid's
# np.cov + scipy.linalg.sqrtm formula).  Prints each side's features / FID / total
# seconds and the ratio PyTorch time / mammopatch time (> 1: mammopatch is faster).
#   domain     the SPEC §6 classifier's penultimate 512-d layer (FC512-ReLU), random
#              initial weights (weights do not change the time; batch-norm running
#              statistics from one training batch so the features are not degenerate)
#   inception  its cost is the Inception-v3 forward: bench/gan/inception_bench.sh (beside
#              torchvision on the same weights, with the projected 2,000 + 2,000 FID time).
# Usage: bench/gan/fid_bench.sh; N (default 2000), EVAL_BATCH (default 64), THREADS
#        (default 2), ROUNDS (alternating rounds, default 1) and BUILD_DIR (default build)
#        in the environment.  Each cell is the median over the rounds.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build}
tool=$build/bench/mp_bench_fid
[[ -x $tool ]] || { echo "build first (cmake --build $build --target mp_bench_fid; needs LAPACKE and OpenBLAS)" >&2; exit 2; }
threads=${THREADS:-2}
n=${N:-2000}
eb=${EVAL_BATCH:-64}
rounds=${ROUNDS:-1}
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
# the same glibc malloc settings bench/nn/run.sh gives the PyTorch peer (without them
# every batch's large tensors are mmap'ed and unmapped again: several times slower)
peer_env=(env MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1073741824)
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" <<<"$2"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A mine peer
for k in features_s fid_s total_s fid; do mine[$k]=""; peer[$k]=""; done
mheap="" trss="" retry="" dim=""
for ((i = 0; i < rounds; i++)); do
  out=$("$tool" cpu "$n" "$eb")
  for k in features_s fid_s total_s fid; do mine[$k]+=" $(field $k "$out")"; done
  mheap+=" $(field peak_heap_mb "$out")"
  dim=$(field dim "$out")
  out=$("${peer_env[@]}" /usr/bin/python3 bench/gan/fid_peer.py "$threads" "$n" "$eb")
  for k in features_s fid_s total_s fid; do peer[$k]+=" $(field $k "$out")"; done
  trss+=" $(field rss_mb "$out")"
  retry+=" $(sed -n 's/.*"sqrtm_retry": \([a-z]*\).*/\1/p' <<<"$out")"
done
echo "FID timing: N = $n generated + $n real patches, eval batch $eb, $threads threads, $rounds round(s)"
printf '%-10s %5s %4s %9s %12s %6s %8s %11s %6s %10s %13s %6s %10s %12s\n' extractor N dim mp_feat_s torch_feat_s \
  ratio mp_fid_s torch_fid_s ratio mp_total_s torch_total_s ratio mp_heap_MB torch_rss_MB
awk -v n="$n" -v dim="$dim" -v mf="$(median <<<"${mine[features_s]}")" -v pf="$(median <<<"${peer[features_s]}")" \
    -v md="$(median <<<"${mine[fid_s]}")" -v pd="$(median <<<"${peer[fid_s]}")" \
    -v mt="$(median <<<"${mine[total_s]}")" -v pt="$(median <<<"${peer[total_s]}")" \
    -v mh="$(median <<<"$mheap")" -v tr="$(median <<<"$trss")" \
  'BEGIN { printf "%-10s %5d %4d %9.2f %12.2f %6.2f %8.3f %11.3f %6.2f %10.2f %13.2f %6.2f %10.0f %12.0f\n",
           "domain", n, dim, mf, pf, pf / mf, md, pd, pd / md, mt, pt, pt / mt, mh, tr }'
echo "rounds (mammopatch | PyTorch): total_s${mine[total_s]} |${peer[total_s]}; FID${mine[fid]} |${peer[fid]}" \
  "(different random weights and patches: not comparable); scipy sqrtm eps*I retry:$retry"
echo "inception: not built yet (no row)"
