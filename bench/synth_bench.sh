#!/usr/bin/env bash
# Benchmark of `mammopatch synth` at full-field size (3328 x 4096, 12-bit): images per
# second on 1 and on 2 ranks, with the default encodings (10% JPEG-LS, 10% JPEG 2000
# lossless), and the render/write split.  There is no peer program for this stage (the
# thesis had real data); the number to watch is the scaling from 1 to 2 ranks.
# Usage: bench/synth_bench.sh [PATIENTS] (default 6, about 22 images)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
patients=${1:-6}
mp=build/mammopatch
[[ -x $mp ]] || { echo "build first: scripts/run-tests.sh or cmake --build build" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
field() { sed -n "s/.*\"$1\":[[:space:]]*\([0-9.e+-]*\).*/\1/p" "$2" | head -1; }
echo "synth full-field benchmark: $patients patients, 3328x4096, $(nproc --all) cores"
printf '%-6s %8s %10s %12s %12s %12s\n' ranks images seconds images/s render_s write_s
declare -A ips
for n in 1 2; do
  mpiexec -n $n --oversubscribe $mp synth --out "$tmp/r$n" --patients "$patients" --width 3328 --height 4096 -q
  j="$tmp/r$n/synth.json"
  ips[$n]=$(field images_per_second "$j")
  printf '%-6s %8s %10.2f %12.3f %12.2f %12.2f\n' $n "$(field images "$j")" "$(field seconds "$j")" "${ips[$n]}" \
    "$(field render_seconds_sum "$j")" "$(field write_seconds_sum "$j")"
  rm -rf "$tmp/r$n"
done
awk -v a="${ips[1]}" -v b="${ips[2]}" 'BEGIN {printf "speed-up 2 ranks / 1 rank: %.2fx\n", b / a}'
