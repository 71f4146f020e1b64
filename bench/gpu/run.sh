#!/usr/bin/env bash
# bench/gpu: the SPEC networks' training steps on mammopatch's `cuda` backend against PyTorch
# on the same GPU (issue 10; SPEC §12 gives PyTorch's H100 numbers as anchors).
#   classifier  SPEC §6 VGG16/4-BN, one step (forward, BCE, backward, Adam), batch 128 and 512:
#               patches/s, ratio mammopatch / PyTorch
#   gansteps    SPEC §7 DCGAN, D step and G step timed apart, batch 64: wgan-gp f64,
#               rasgan f64 SN(/TTUR), rahinge f128 SN(/TTUR) (bench/nn/run.sh's three):
#               ms, ratio PyTorch ms / mammopatch ms
# each in three precisions: fp32 (mammopatch backend `cuda`; PyTorch with TF32 off), tf32
# (`cuda:tf32`; PyTorch with TF32 on), bf16 (`cuda:bf16`: bf16 convolutions and GEMMs with
# fp32 accumulation and master weights; PyTorch bf16 autocast).  A ratio > 1 means
# mammopatch is faster.
# GPU memory: PyTorch's torch.cuda.max_memory_allocated; mammopatch's `gpu_mb` when
# mp_bench_nn prints one ("-" otherwise).
# The two sides alternate for ROUNDS rounds (clocks and co-tenants drift) and each cell is the
# median of the rounds; the rounds themselves follow the row, as in bench/nn/run.sh.
# Usage: bench/gpu/run.sh [classifier] [gansteps]   (default both).  Environment:
#   BUILD_DIR (default build: its bench/mp_bench_nn, built with -DMP_ENABLE_CUDA=ON)
#   ROUNDS (2), REPS (timed steps per run after two warm-up steps, 20, as SPEC §12),
#   BATCHES ("128 512"), GAN_BATCH (64), PRECISIONS ("fp32 tf32 bf16"),
#   TIME_BUDGET_S (240): a row starts only while ROW_MIN_S (45) of it are left, else it is
#   skipped with a message; each run's timeout is what is left of it (at least 30 s, at most
#   300 s), so the script ends within about 30 s of the budget; a run that the budget stops
#   with under 120 s given leaves a `cut` cell and is no failure (one given more is a FAIL),
#   PYTHON (the PyTorch side: ${PYTHON:-python3}, then /usr/bin/python3; the first whose
#   torch sees a CUDA device; with none, only mammopatch's side is measured),
#   OUT (when set, the table is also written to $OUT/bench.txt).
# Exit status: 0 when every run that was started gave its numbers (or was cut by the budget),
# 1 when some run failed, 2 when there is no GPU or no mp_bench_nn.  Stopped by a signal (a
# caller's timeout) it says which rows were not measured before it leaves.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
build=${BUILD_DIR:-build}
tool=$build/bench/mp_bench_nn
rounds=${ROUNDS:-2}
reps=${REPS:-20}
budget=${TIME_BUDGET_S:-240}
row_min=${ROW_MIN_S:-45}
run_min=30
hang_s=120
what=${*:-classifier gansteps}
t_start=$SECONDS

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "bench/gpu: no NVIDIA GPU here (no nvidia-smi); nothing measured" >&2
  exit 2
fi
if ! gpus=$(timeout 30 nvidia-smi -L 2>&1) || [[ $gpus != *GPU* ]]; then
  echo "bench/gpu: no NVIDIA GPU here (nvidia-smi -L: ${gpus:-no output}); nothing measured" >&2
  exit 2
fi
if [[ ! -x $tool ]]; then
  echo "bench/gpu: $tool is missing; configure with -DMP_ENABLE_CUDA=ON and build it" \
    "(cmake --build $build --target mp_bench_nn), or set BUILD_DIR" >&2
  exit 2
fi

txt=""
if [[ -n ${OUT:-} ]]; then
  mkdir -p "$OUT" && txt=$OUT/bench.txt && : >"$txt"
fi
# say LINE...: print and keep in $OUT/bench.txt
say() {
  printf '%s\n' "$*"
  [[ -z $txt ]] || printf '%s\n' "$*" >>"$txt"
}

# The PyTorch side: the first python whose torch sees the GPU (each probe within the budget:
# at most 120 s, at least 30)
py="" pyinfo="" tried=" "
for cand in "${PYTHON:-python3}" /usr/bin/python3; do
  command -v "$cand" >/dev/null 2>&1 || continue
  real=$(realpath "$(command -v "$cand")" 2>/dev/null || command -v "$cand")
  [[ $tried == *" $real "* ]] && continue # one interpreter under two names: import torch once
  tried+="$real "
  ptmo=$((budget - (SECONDS - t_start)))
  ((ptmo > 120)) && ptmo=120
  ((ptmo < 30)) && ptmo=30
  if pyinfo=$(timeout "$ptmo" "$cand" -c 'import torch; assert torch.cuda.is_available(); print("torch %s (CUDA %s, cuDNN %s) at %s" % (torch.__version__, torch.version.cuda, torch.backends.cudnn.version(), torch.__file__.rsplit("/", 2)[0]))' 2>/dev/null </dev/null); then
    py=$cand
    break
  fi
done

field() { sed -n "s/.*\"$1\": \([-0-9.eE+]*\).*/\1/p" <<<"$2" | head -n 1; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
left() { echo $((budget - (SECONDS - t_start))); }

failed=0 errs="" cuts=""
# run_json VAR CMD...: runs CMD under a timeout (what is left of the budget, at least $run_min s,
# at most 300 s); its last JSON line into VAR (empty on failure, with the first error line kept
# for the notes under the table).  run_cut=1 when the budget's timeout stopped it with under
# $hang_s s given (no failure; a run that had longer and did not end is one).
run_cut=0
run_json() {
  local -n _res=$1
  shift
  local tmo e o rc by_budget=0
  tmo=$(left)
  ((tmo < hang_s)) && by_budget=1
  ((tmo < run_min)) && tmo=$run_min
  ((tmo > 300)) && tmo=300
  e=$(mktemp)
  o=$(mktemp)
  run_cut=0
  # --foreground: in the caller's process group, so that a timeout around this whole script
  # (tests/gpu/run.sh's) ends the run too instead of leaving it on the GPU; stdin from
  # /dev/null (a run in a background process group must not stop on reading a terminal);
  # stdout into a file, not a pipe, which a child of the run that outlived it would hold open
  timeout --foreground -k 5 "$tmo" "$@" </dev/null >"$o" 2>"$e"
  rc=$?
  _res=$(grep '^{' "$o" | tail -n 1)
  if ((rc != 0)) || [[ -z $_res ]]; then
    _res=""
    local why
    why=$(grep -v '^\s*$' "$e" | tail -n 1)
    if ((by_budget && (rc == 124 || rc == 137))); then
      run_cut=1
      cuts+="  ${*#"$build/bench/"}: stopped after ${tmo} s, at the end of TIME_BUDGET_S=$budget"$'\n'
    else
      failed=1
      ((rc == 124 || rc == 137)) && why="timed out after ${tmo} s"
      errs+="  ${*#"$build/bench/"} (exit $rc): ${why:-no output}"$'\n'
    fi
  fi
  rm -f "$e" "$o"
}

# one_decimal "V V ...": the values to one decimal (" -" for none)
one_decimal() { awk -v v="$1" 'BEGIN { n = split(v, a, " "); if (!n) printf " -"; for (i = 1; i <= n; i++) printf " %.1f", a[i] }'; }
fmt_head() {
  say "$(printf '%-9s %-20s %5s %-9s %16s %10s %7s %9s %12s' precision model batch unit mammopatch pytorch ratio \
    mp_gpu_MB torch_gpu_MB)"
}
# cell VALUES NOTE: the median of VALUES, or NOTE when set, or FAIL when VALUES is empty
cell() {
  local m
  if [[ -n $2 ]]; then echo "$2"; return; fi
  m=$(median <<<"$1")
  if [[ -z $m ]]; then echo FAIL; else awk -v v="$m" 'BEGIN { printf "%.1f", v }'; fi
}
# line PREC MODEL BATCH UNIT MINE PEER MINE_MEM PEER_MEM DIRECTION MINE_NOTE PEER_NOTE
# DIRECTION: rate (ratio mine/peer) or time (peer/mine)
line() {
  local a p r mm pm
  a=$(cell "$5" "${10}")
  p=$(cell "$6" "${11}")
  r=-
  if [[ $a =~ ^[0-9.]+$ && $p =~ ^[0-9.]+$ ]]; then
    r=$(awk -v a="$a" -v p="$p" -v d="$9" 'BEGIN { if (a <= 0 || p <= 0) print "-"; else printf "%.2f", d == "rate" ? a / p : p / a }')
  fi
  mm=$(median <<<"$7")
  pm=$(median <<<"$8")
  say "$(printf '%-9s %-20s %5s %-9s %16s %10s %7s %9s %12s   (rounds:%s |%s)' "$1" "$2" "$3" "$4" "$a" "$p" "$r" \
    "${mm:--}" "${pm:--}" "$(one_decimal "$5")" "$(one_decimal "$6")")"
}

# The rows, in order of priority (the budget cuts the tail): PREC|KIND|ARGS
rows=()
for w in $what; do
  case $w in
  classifier)
    for prec in ${PRECISIONS:-fp32 tf32 bf16}; do
      for b in ${BATCHES:-128 512}; do rows+=("$prec|classifier|$b"); done
    done ;;
  gansteps)
    for prec in ${PRECISIONS:-fp32 tf32 bf16}; do
      for cfg in "wgan-gp 0 64" "rasgan 1 64" "rahinge 1 128"; do rows+=("$prec|gansteps|$cfg"); done
    done ;;
  *) echo "bench/gpu: unknown benchmark '$w' (classifier, gansteps)" >&2; exit 2 ;;
  esac
done

say "bench/gpu: $(timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
say "mammopatch: $tool (backends cuda, cuda:tf32, cuda:bf16); rounds $rounds, $reps timed steps per run after 2 warm-up, budget ${budget} s"
if [[ -n $py ]]; then
  say "PyTorch: $py: $pyinfo"
else
  say "PyTorch: not measured: neither ${PYTHON:-python3} nor /usr/bin/python3 has a torch that sees the GPU" \
    "(set PYTHON); mammopatch's side only"
fi
fmt_head

skipped=() out="" row_i=0
# stopped by a signal (tests/gpu/run.sh's timeout): the rows not measured, then leave (bash runs
# this once the run in progress, which got the signal too, has ended)
# shellcheck disable=SC2317 # reached through the trap
stopped() {
  local rest=("${rows[@]:row_i}")
  rm -f "${e:-}" "${o:-}" # run_json's files, when the signal came during a run
  say "stopped by a signal after $((SECONDS - t_start)) s (TIME_BUDGET_S=$budget): the rows above were measured;" \
    "${#rest[@]} not (or not all rounds): $(printf '%s; ' "${rest[@]//|/ }" | sed 's/; $//')"
  exit 1
}
trap stopped TERM INT
for row in "${rows[@]}"; do
  IFS='|' read -r prec kind rest <<<"$row"
  # a row starts only when it has time to finish: each run may take what is left (at least
  # $run_min s), so a row started near the end would overrun the budget
  if (($(left) < row_min)); then
    skipped+=("$prec $kind $rest")
    row_i=$((row_i + 1))
    continue
  fi
  backend=""
  case $prec in
  fp32) backend=cuda ;;
  tf32) backend=cuda:tf32 ;;
  bf16) backend=cuda:bf16 ;;
  esac
  mine_note="" peer_note=""
  [[ -n $backend ]] || mine_note="n/a (not built)"
  [[ -n $py ]] || peer_note="-"
  [[ -n $backend || -n $py ]] || continue  # bf16 without PyTorch: nothing to run
  if [[ $kind == classifier ]]; then
    b=$rest
    mine=("$tool" "$backend" classifier "$b" "$reps")
    peer=("$py" bench/nn/peer.py classifier "$b" 1 "$reps" --device cuda --precision "$prec")
  else
    read -r loss sn f <<<"$rest"
    b=${GAN_BATCH:-64}
    mine=("$tool" "$backend" gansteps "$loss" "$sn" "$f" "$b" "$reps")
    peer=("$py" bench/nn/peer.py gansteps "$loss" "$sn" "$f" "$b" 1 "$reps" --device cuda --precision "$prec")
  fi
  a="" p="" md="" mg="" pd="" pg="" mm="" pm="" mine_cut=0 peer_cut=0
  for ((i = 0; i < rounds; i++)); do
    ((i > 0 && $(left) < run_min)) && break  # a started row keeps what it has
    if [[ -z $mine_note ]]; then
      run_json out "${mine[@]}"
      ((run_cut)) && mine_cut=1
      a+=" $(field patches_per_second "$out")" md+=" $(field d_ms "$out")" mg+=" $(field g_ms "$out")"
      mm+=" $(field gpu_mb "$out")"
    fi
    if [[ -z $peer_note ]]; then
      run_json out "${peer[@]}"
      ((run_cut)) && peer_cut=1
      p+=" $(field patches_per_second "$out")" pd+=" $(field d_ms "$out")" pg+=" $(field g_ms "$out")"
      pm+=" $(field gpu_mb "$out")"
    fi
  done
  # a side whose every run the budget stopped: `cut`, not FAIL
  ((mine_cut)) && [[ -z ${a// /}${md// /} ]] && mine_note="cut"
  ((peer_cut)) && [[ -z ${p// /}${pd// /} ]] && peer_note="cut"
  if [[ $kind == classifier ]]; then
    line "$prec" classifier "$b" patches/s "$a" "$p" "$mm" "$pm" rate "$mine_note" "$peer_note"
  else
    name="$loss f$f"
    [[ $sn == 1 ]] && name+=" SN"
    line "$prec" "$name D" "$b" "ms" "$md" "$pd" "$mm" "$pm" time "$mine_note" "$peer_note"
    line "$prec" "$name G" "$b" "ms" "$mg" "$pg" "$mm" "$pm" time "$mine_note" "$peer_note"
  fi
  row_i=$((row_i + 1))
done
trap - TERM INT

if ((${#skipped[@]})); then
  say "TIME_BUDGET_S=$budget (under ROW_MIN_S=$row_min s of it left) after $((SECONDS - t_start)) s: skipped ${#skipped[@]} rows:" \
    "$(printf '%s; ' "${skipped[@]}" | sed 's/; $//')"
fi
if [[ -n $cuts ]]; then
  say "runs stopped by the budget (cut cells; the rounds list leaves them out):"
  say "${cuts%$'\n'}"
fi
if [[ -n $errs ]]; then
  say "runs that failed (FAIL cells; the rounds list leaves them out):"
  say "$(awk '!seen[$0]++' <<<"${errs%$'\n'}")"
fi
say "SPEC §12 (H100 80GB, PyTorch 2.11, cuDNN 9.19): classifier patches/s at batch 128 / 512: fp32 5114 / 5417," \
  "tf32 6506 / 6967, bf16 channels-last 16124 / 19720; GAN batch 64 ms (precision not stated): wgan-gp f64 D 17.5" \
  "G 5.9, rasgan f64 SN D 10.5 G 11.1, rahinge f128 SN D 16.6 G 24.6"
say "took $((SECONDS - t_start)) s"
exit "$failed"
