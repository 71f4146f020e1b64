#!/usr/bin/env bash
# bench/nn: training steps of the SPEC networks on mammopatch's `cpu` backend and in
# PyTorch (Debian's python3-torch, bench/nn/peer.py), same thread count, same batch, in
# one run; prints patches/s, the ratio and peak memory (mammopatch: peak heap from its
# counting allocator; PyTorch: the process's max RSS, which also counts the interpreter).
#   classifier  SPEC §6 VGG16/4-BN, one step (forward, BCE, backward, Adam), batch 32 and 128
#   gan         SPEC §7 DCGAN f = 64, one iteration (critic step + generator step), batch 64:
#               rahinge without SN/TTUR and wgan-gp (gradient penalty) with SN/TTUR
#   gansteps    SPEC §7 DCGAN, the D step (G(z) for detached fakes, critic loss [+ penalty],
#               backward, Adam on D) and the G step (fresh z, G, critic, backward, Adam on G)
#               timed apart, batch GAN_BATCH: wgan-gp f64, rasgan f64 SN(/TTUR), rahinge f128
#               SN(/TTUR); z = f.  Prints D ms and G ms of each side and the ratios
#               PyTorch ms / mammopatch ms (> 1: mammopatch is faster).
# SPEC §12's anchors: PyTorch 1.13 on 2 Sapphire Rapids cores, classifier batch 32: 62.6 patches/s;
# GAN rasgan f=64 SN, batch 16: D step 709 ms, G step 1452 ms (GAN_BATCH=16 bench/nn/run.sh gansteps).
# Usage: bench/nn/run.sh [classifier] [gan] [gansteps]   (default all three); THREADS (default 2),
#        BATCHES (classifier, default "32 128"), GAN_BATCH (gan and gansteps, default 64),
#        ROUNDS (alternating rounds per classifier row, default 3), GAN_ROUNDS (gan and
#        gansteps, default 1), GAN_REPS (timed steps per gansteps run after two warm-up
#        steps, default 3) and BUILD_DIR (default build) in the environment.
# Each cell is the median over the rounds; the individual rounds are printed after the row.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build}
tool=$build/bench/mp_bench_nn
[[ -x $tool ]] || { echo "build first (cmake --build $build --target mp_bench_nn)" >&2; exit 2; }
threads=${THREADS:-2}
export OMP_NUM_THREADS=$threads
what=${*:-classifier gan gansteps}
rounds=${ROUNDS:-3}
# The peer gets glibc malloc settings that keep freed tensors in the heap: with the
# defaults every step's large tensors are mmap'ed, page-faulted and unmapped again, which
# on this VM makes PyTorch 3.7x slower (18 -> 67 patches/s at batch 32).  mammopatch
# allocates its buffers once and needs none of this.
peer_env=(env MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1073741824)
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" <<<"$2"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# row LABEL BATCH MINE_CMD... -- PEER_CMD...: the two sides alternate for $rounds rounds
# (this VM's cores are shared and drift by 2x over minutes); the medians are compared
row() {
  local label=$1 b=$2; shift 2
  local mine=() peer=() a="" p="" m="" t="" out
  while [[ $1 != -- ]]; do mine+=("$1"); shift; done
  shift
  peer=("$@")
  for ((i = 0; i < rounds; i++)); do
    out=$("${mine[@]}"); a+=" $(field patches_per_second "$out")"; m+=" $(field peak_heap_mb "$out")"
    out=$("${peer[@]}"); p+=" $(field patches_per_second "$out")"; t+=" $(field rss_mb "$out")"
  done
  awk -v l="$label" -v b="$b" -v a="$(median <<<"$a")" -v p="$(median <<<"$p")" -v m="$(median <<<"$m")" \
      -v t="$(median <<<"$t")" -v all_a="$a" -v all_p="$p" \
    'BEGIN { printf "%-26s %6s %13.2f %11.2f %7.2f %11.0f %13.0f   (rounds:%s |%s)\n", l, b, a, p, a / p, m, t, all_a, all_p }'
}
# steprow LABEL BATCH MINE_CMD... -- PEER_CMD...: as row, for the gansteps JSON (d_ms, g_ms);
# the ratios are PyTorch ms / mammopatch ms of the medians
steprow() {
  local label=$1 b=$2; shift 2
  local mine=() peer=() md="" mg="" pd="" pg="" m="" t="" out
  while [[ $1 != -- ]]; do mine+=("$1"); shift; done
  shift
  peer=("$@")
  for ((i = 0; i < rounds; i++)); do
    out=$("${mine[@]}"); md+=" $(field d_ms "$out")"; mg+=" $(field g_ms "$out")"; m+=" $(field peak_heap_mb "$out")"
    out=$("${peer[@]}"); pd+=" $(field d_ms "$out")"; pg+=" $(field g_ms "$out")"; t+=" $(field rss_mb "$out")"
  done
  awk -v l="$label" -v b="$b" -v md="$(median <<<"$md")" -v mg="$(median <<<"$mg")" -v pd="$(median <<<"$pd")" \
      -v pg="$(median <<<"$pg")" -v m="$(median <<<"$m")" -v t="$(median <<<"$t")" \
      -v all="$md |$pd |$mg |$pg" \
    'BEGIN { printf "%-18s %6s %9.0f %10.0f %7.2f %9.0f %10.0f %7.2f %11.0f %13.0f   (rounds D mp|torch, G mp|torch:%s)\n",
             l, b, md, pd, pd / md, mg, pg, pg / mg, m, t, all }'
}
header=""
for w in $what; do
  case $w in
  classifier | gan)
    [[ $header == rate ]] || printf '%-26s %6s %13s %11s %7s %11s %13s\n' step batch mammopatch/s pytorch/s ratio \
      mp_heap_MB torch_rss_MB
    header=rate ;;
  gansteps)
    [[ $header == steps ]] || printf '%-18s %6s %9s %10s %7s %9s %10s %7s %11s %13s\n' gan batch mp_D_ms torch_D_ms \
      D_ratio mp_G_ms torch_G_ms G_ratio mp_heap_MB torch_rss_MB
    header=steps ;;
  esac
  case $w in
  classifier)
    for b in ${BATCHES:-32 128}; do
      row "classifier" "$b" "$tool" cpu classifier "$b" 6 -- "${peer_env[@]}" /usr/bin/python3 bench/nn/peer.py classifier "$b" "$threads" 6
    done ;;
  gan)
    b=${GAN_BATCH:-64}
    for cfg in "rahinge 0" "wgan-gp 1"; do
      set -- $cfg
      rounds=${GAN_ROUNDS:-1} row "gan f64 $1 sn/ttur=$2" "$b" "$tool" cpu gan "$1" "$2" "$b" 3 -- \
          "${peer_env[@]}" /usr/bin/python3 bench/nn/peer.py gan "$1" "$2" "$b" "$threads" 3
    done ;;
  gansteps)
    b=${GAN_BATCH:-64}
    for cfg in "wgan-gp 0 64" "rasgan 1 64" "rahinge 1 128"; do
      set -- $cfg
      sn=""
      [[ $2 == 1 ]] && sn=" SN"
      rounds=${GAN_ROUNDS:-1} steprow "$1 f$3$sn" "$b" "$tool" cpu gansteps "$1" "$2" "$3" "$b" "${GAN_REPS:-3}" -- \
          "${peer_env[@]}" /usr/bin/python3 bench/nn/peer.py gansteps "$1" "$2" "$3" "$b" "$threads" "${GAN_REPS:-3}"
    done ;;
  *) echo "unknown benchmark '$w' (classifier, gan, gansteps)" >&2; exit 2 ;;
  esac
done
echo "target (issue 5): ratio >= 1.0 with $threads threads"
