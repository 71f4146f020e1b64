#!/usr/bin/env bash
# Benchmark of `mammopatch preprocess` against its Python peer (bench/preprocess/peer.py,
# the thesis's pydicom/cv2/skimage/h5py stack, one core) on a synthetic cohort.
#
# Usage: bench/preprocess/run.sh [PATIENTS] [WIDTH] [HEIGHT]    (defaults 8 3328 4096)
#
# Makes an uncompressed cohort (so pydicom reads every file), runs the peer, then
# mammopatch preprocess on 1 and on 2 ranks, ROUNDS times alternating (default 3: this VM's
# timings drift; each round also runs the peer and 1 rank with the pixels stored
# uncompressed, to show deflate's share), and prints for the median run of each files, seconds, images/s,
# images/s per core and peak memory for each, the per-core speed ratio against the peer
# (target >= 5), the parallel efficiency at 2 ranks (target >= 85%) and both
# implementations' patch counts.  A mammopatch run that fails is reported with its
# stderr and the rest is still printed.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# preprocess pseudonymises PatientIDs; a throwaway key for a synthetic cohort
export MAMMOPATCH_SITE_KEY=${MAMMOPATCH_SITE_KEY:-bench-preprocess-throwaway-site-key}

patients=${1:-8}
width=${2:-3328}
height=${3:-4096}
mp=build/mammopatch
py=/usr/bin/python3
peer=bench/preprocess/peer.py
[[ -x $mp ]] || { echo "build/mammopatch is missing: build first (scripts/run-tests.sh or cmake --build build)" >&2; exit 2; }
[[ -x $py ]] || { echo "$py is missing (the peer needs Debian's python3 with pydicom, opencv, skimage, h5py)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# jget FILE KEY.PATH[|KEY.PATH...] -> the first value found, or nothing
jget() {
  [[ -s $1 ]] || return 0
  "$py" - "$1" "$2" <<'EOF' 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1]))
for path in sys.argv[2].split("|"):  # alternatives, first found wins
    v = d
    try:
        for k in path.split("."):
            v = v[k]
    except (KeyError, TypeError, IndexError):
        continue
    if not isinstance(v, (dict, list)):
        print(v)
        break
EOF
}

echo "preprocess benchmark: $patients patients, ${width}x${height}, $(nproc --all) cores, $(date -u +%FT%TZ)"
echo "cohort: synth (uncompressed) ..."
if ! $mp synth --out "$tmp/cohort" --patients "$patients" --width "$width" --height "$height" \
    --set synth.jpegls_frac=0 --set synth.j2k_frac=0 -q 2>"$tmp/synth.err"; then
  echo "synth failed:" >&2
  cat "$tmp/synth.err" >&2
  exit 1
fi
nfiles=$(find "$tmp/cohort/dicom" -name '*.dcm' | wc -l)
echo "cohort: $nfiles files, $(du -sh "$tmp/cohort/dicom" | cut -f1)"

# --- the Python peer (one core), compressing its store at the same deflate level as
# mammopatch's configuration, so neither side wins by compressing less
level=$(build/mammopatch config 2>/dev/null | sed -n 's/^deflate = //p')
level=${level:-1}
# ... and with mammopatch's own extraction parameters (its configuration's values; an
# area of 0 means the SPEC floor pi * BLCK^2 / 2), so both do the same work
cfgv() { build/mammopatch config 2>/dev/null | sed -n "s/^$1 = //p" | head -n 1; }
blck=$(cfgv blck_size)
floor_area=$(awk -v b="$blck" 'BEGIN { printf "%.6f", 3.141592653589793 * b * b / 2 }')
area() { local v; v=$(cfgv "$1"); awk -v v="$v" -v f="$floor_area" 'BEGIN { print (v + 0 > 0) ? v : f }'; }
[[ $(cfgv close_radius) == "$(cfgv dilate_radius)" ]] ||
  echo "note: close_radius and dilate_radius differ; the peer uses one radius (close_radius)" >&2
peer_params=(--block-size "$blck" --annot-thresh "$(cfgv annot_thresh)" --min-contour-area "$(area min_contour_area)"
  --min-ellipse-area "$(area min_ellipse_area)" --min-ellipse-coverage "$(cfgv min_ellipse_coverage)"
  --coverage-samples "$(cfgv coverage_samples)" --max-extreme-frac "$(cfgv max_extreme_frac)"
  --black "$(cfgv black)" --white "$(cfgv white)" --morph-radius "$(cfgv close_radius)"
  --dilate-iterations "$(cfgv dilate_iterations)")
rounds=${ROUNDS:-3}
echo "peer: $peer (gzip level $level, ${peer_params[*]}); then mammopatch on 1 and 2 ranks; $rounds alternating rounds, the median run of each shown ..."
peer_ok=1
for ((r = 1; r <= rounds; r++)); do
  if [[ $peer_ok == 1 ]]; then
    if "$py" "$peer" --input "$tmp/cohort/dicom" --labels "$tmp/cohort/labels.csv" --out "$tmp/peer.h5" \
        --gzip-level "$level" "${peer_params[@]}" >"$tmp/peer.out" 2>"$tmp/peer.err"; then
      tail -n 1 "$tmp/peer.out" >"$tmp/peer.$r.json"
    else
      peer_ok=0
      echo "peer failed (exit $?):" >&2
      tail -n 30 "$tmp/peer.err" >&2
    fi
    rm -f "$tmp/peer.h5"
    # the same work with the patch pixels stored uncompressed, to show what deflate costs
    # each side (the comparison above keeps compression: this one is for reading it)
    if "$py" "$peer" --input "$tmp/cohort/dicom" --labels "$tmp/cohort/labels.csv" --out "$tmp/peer.h5" \
        --gzip-level 0 "${peer_params[@]}" >"$tmp/peer0.out" 2>"$tmp/peer0.err"; then
      tail -n 1 "$tmp/peer0.out" >"$tmp/peer0.$r.json"
    fi
    rm -f "$tmp/peer.h5"
  fi
  rm -rf "$tmp/r0.$r"
  mpiexec -n 1 $mp preprocess --input "$tmp/cohort/dicom" --labels "$tmp/cohort/labels.csv" \
    --out "$tmp/p0.h5" --report "$tmp/r0.$r" --set preprocess.deflate=0 -q >/dev/null 2>"$tmp/mp0.err" ||
    { echo "mammopatch preprocess with deflate = 0 failed; its stderr:" >&2; tail -n 30 "$tmp/mp0.err" >&2; }
  rm -f "$tmp/p0.h5"
  # --- mammopatch preprocess, 1 and 2 ranks
  for n in 1 2; do
    rm -rf "$tmp/r$n.$r"
    mpiexec -n $n --oversubscribe $mp preprocess --input "$tmp/cohort/dicom" --labels "$tmp/cohort/labels.csv" \
      --out "$tmp/p$n.h5" --report "$tmp/r$n.$r" -q >"$tmp/mp$n.out" 2>"$tmp/mp$n.err"
    rc=$?
    if [[ $rc != 0 ]]; then
      echo "mammopatch preprocess on $n rank(s) failed (exit $rc); its stderr:" >&2
      tail -n 30 "$tmp/mp$n.err" >&2
    elif [[ ! -s $tmp/r$n.$r/preprocess.json ]]; then
      echo "mammopatch preprocess -n $n wrote no $tmp/r$n.$r/preprocess.json" >&2
    fi
  done
done
# the median run (by seconds) of each implementation; every round's seconds are printed
median_of() { # KEY FILES... -> the file whose KEY is the median
  local key=$1
  shift
  for f in "$@"; do [[ -s $f ]] && echo "$(jget "$f" "$key") $f"; done | sort -g | awk '{ v[NR] = $2 } END { if (NR) print v[int((NR + 1) / 2)] }'
}
all_s() { local key=$1; shift; for f in "$@"; do [[ -s $f ]] && printf ' %.2f' "$(jget "$f" "$key")"; done; }
pm=$(median_of seconds "$tmp"/peer.*.json)
[[ -n $pm ]] && cp "$pm" "$tmp/peer.json"
for n in 1 2; do
  m=$(median_of stats.seconds "$tmp"/r$n.*/preprocess.json)
  [[ -n $m ]] && { mkdir -p "$tmp/r$n"; cp "$m" "$tmp/r$n/preprocess.json"; }
done
echo "seconds per round: peer$(all_s seconds "$tmp"/peer.*.json) | 1 rank$(all_s stats.seconds "$tmp"/r1.*/preprocess.json) | 2 ranks$(all_s stats.seconds "$tmp"/r2.*/preprocess.json)"

# --- table
pj=$tmp/peer.json
r1=$tmp/r1/preprocess.json
r2=$tmp/r2/preprocess.json
p_files=$(jget "$pj" files);          p_s=$(jget "$pj" seconds);       p_ips=$(jget "$pj" images_per_second)
p_mem=$(jget "$pj" peak_rss_mb)
m1_files=$(jget "$r1" stats.files);   m1_s=$(jget "$r1" stats.seconds); m1_ips=$(jget "$r1" stats.images_per_second)
m1_mem=$(jget "$r1" stats.peak_heap_bytes_max)
m2_files=$(jget "$r2" stats.files);   m2_s=$(jget "$r2" stats.seconds); m2_ips=$(jget "$r2" stats.images_per_second)
m2_mem=$(jget "$r2" stats.peak_heap_bytes_max)

row() { # name files seconds ips cores memMB memkind
  awk -v n="$1" -v f="$2" -v s="$3" -v i="$4" -v c="$5" -v m="$6" -v k="$7" 'BEGIN {
    na = "n/a"
    fs = (f == "") ? na : f
    ss = (s == "") ? na : sprintf("%.2f", s)
    is = (i == "") ? na : sprintf("%.3f", i)
    ps = (i == "") ? na : sprintf("%.3f", i / c)
    ms = (m == "") ? na : sprintf("%.1f MB %s", m, k)
    printf "%-24s %7s %10s %10s %15s  %s\n", n, fs, ss, is, ps, ms }'
}
mb() { [[ -n $1 ]] && awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

echo
printf '%-24s %7s %10s %10s %15s  %s\n' implementation files seconds images/s images/s/core "peak memory"
row "python peer (1 core)" "$p_files" "$p_s" "$p_ips" 1 "$p_mem" "(RSS)"
row "mammopatch, 1 rank" "$m1_files" "$m1_s" "$m1_ips" 1 "$(mb "$m1_mem")" "(heap, max over ranks)"
row "mammopatch, 2 ranks" "$m2_files" "$m2_s" "$m2_ips" 2 "$(mb "$m2_mem")" "(heap, max over ranks)"
echo
if [[ -n $m1_ips && -n $p_ips ]]; then
  awk -v a="$m1_ips" -v b="$p_ips" 'BEGIN {
    if (b > 0) printf "per-core speed vs Python: %.2f (target >= 5)\n", a / b
    else print "per-core speed vs Python: n/a (peer rate is 0)" }'
else
  echo "per-core speed vs Python: n/a (target >= 5)"
fi
if [[ -n $m1_ips && -n $m2_ips ]]; then
  awk -v a="$m1_ips" -v b="$m2_ips" 'BEGIN {
    if (a > 0) printf "parallel efficiency at 2 ranks: %.0f%% (target >= 85%%)\n", 100 * b / (2 * a)
    else print "parallel efficiency at 2 ranks: n/a (1-rank rate is 0)" }'
else
  echo "parallel efficiency at 2 ranks: n/a (target >= 85%)"
fi
[[ $(nproc --all) -lt 2 ]] && echo "note: $(nproc --all) core(s) here; the 2-rank figure is oversubscribed"
# Both sides compress /patches/pixels with zlib at the same level, and that deflate is the
# same library doing the same work on either side: a floor under mammopatch's time that no
# change to mammopatch's own code can remove.  Shown here from runs that store the pixels
# uncompressed: each side's seconds without deflate, what deflate adds to each, and the
# highest per-core ratio reachable at equal compression (the peer's time over deflate's
# cost alone, as if everything else in mammopatch took no time).
p0=$(median_of seconds "$tmp"/peer0.*.json)
m0=$(median_of stats.seconds "$tmp"/r0.*/preprocess.json)
if [[ -n $p0 && -n $m0 && -n $p_s && -n $m1_s ]]; then
  p0_s=$(jget "$p0" seconds)
  m0_s=$(jget "$m0" stats.seconds)
  echo "seconds per round, pixels stored uncompressed: peer$(all_s seconds "$tmp"/peer0.*.json) | 1 rank$(all_s stats.seconds "$tmp"/r0.*/preprocess.json)"
  awk -v p="$p_s" -v p0="$p0_s" -v m="$m1_s" -v m0="$m0_s" -v l="$level" 'BEGIN {
    printf "without deflate (pixels stored raw, both sides): peer %.2f s, mammopatch 1 rank %.2f s: per-core speed vs Python %.2f\n", p0, m0, (m0 > 0) ? p0 / m0 : 0
    printf "deflate level %s adds: peer %.2f s, mammopatch %.2f s; at equal compression the per-core ratio cannot exceed %.2f (peer %.2f s / deflate alone %.2f s)\n", l, p - p0, m - m0, (m > m0) ? p / (m - m0) : 0, p, m - m0 }'
else
  echo "without deflate: n/a (a run with the pixels stored uncompressed failed)"
fi
# What this machine gives two busy processes at all: the same pure-CPU loop once alone,
# then twice at once.  A VM whose two vCPUs share a core (or are stolen from) caps the
# efficiency any program can show here; read the figure above against this one.
spin='import time
t = time.time(); s = 0
for i in range(12000000): s += i
print(time.time() - t)'
one=$("$py" -c "$spin")
two=$( ("$py" -c "$spin" & "$py" -c "$spin"; wait) | sort -n | tail -1)
awk -v a="$one" -v b="$two" 'BEGIN { printf "machine: two concurrent CPU-bound processes run at %.0f%% of one alone (the ceiling for the efficiency above)\n", 100 * a / b }'

echo
printf '%-24s %10s %10s %10s %10s %10s\n' "patch counts" accepted discarded failed normal lesion
cnt() { # name accepted discarded failed normal lesion
  printf '%-24s %10s %10s %10s %10s %10s\n' "$1" "${2:-n/a}" "${3:-n/a}" "${4:-n/a}" "${5:-n/a}" "${6:-n/a}"
}
cnt "python peer" "$(jget "$pj" accepted)" "$(jget "$pj" discarded)" "$(jget "$pj" failed)" \
  "$(jget "$pj" normal_patches)" "$(jget "$pj" lesion_patches)"
for n in 1 2; do
  r=$tmp/r$n/preprocess.json
  cnt "mammopatch, $n rank(s)" "$(jget "$r" 'files.accepted|stats.accepted|outcomes.accepted|by_outcome.accepted')" \
    "$(jget "$r" 'files.discarded|stats.discarded|outcomes.discarded|by_outcome.discarded')" \
    "$(jget "$r" 'files.failed|stats.failed|outcomes.failed|by_outcome.failed')" \
    "$(jget "$r" patches.normal)" "$(jget "$r" patches.lesion)"
done
if [[ -s $tmp/p1.h5 && -s $tmp/p2.h5 ]] && command -v h5diff >/dev/null; then
  if h5diff -q "$tmp/p1.h5" "$tmp/p2.h5" /patches >/dev/null 2>&1; then
    echo "h5diff /patches, 1 rank vs 2 ranks: identical"
  else
    echo "h5diff /patches, 1 rank vs 2 ranks: DIFFERENT (SPEC §4 wants the same bytes)"
  fi
fi
[[ $peer_ok == 1 ]] || exit 1
exit 0
