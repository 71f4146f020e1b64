#!/usr/bin/env bash
# tests/gpu/precision.sh — what the cuda backend's arithmetic does to the classifier's accuracy
# (issue 10: "bf16 mixed precision as an option, with its accuracy effect reported").
#
# The SPEC §6 classifier is trained (`mammopatch train`) and evaluated (`mammopatch eval`) on one
# patch store in each precision, on the same patient-level splits with the same seed — the same
# initial weights, dropout masks and batches — so that only the arithmetic differs between the
# runs of one split.  Per run: the best epoch (validation MCC), the test split's patch-level MCC,
# ROC AUC and PR AUC, the view- and patient-level ROC AUC; against fp32 on the same split: the
# largest and the mean |difference| of the patches' probabilities and how many patches' decisions
# (threshold eval.threshold) flip.  Then the mean of each over the splits, per precision.
# A model that disagrees with fp32 is not wrong by that alone: the splits' spread (the MCC's
# std over splits in one precision) is the yardstick the differences are read against.
#
# Usage: tests/gpu/precision.sh MAMMOPATCH STORE [SEED...]      (seeds default: 1 2 3)
# Environment:
#   BACKEND      nn backend (default cuda; cpu or ref check this script without a GPU, where every
#                precision computes in fp32, so each split's runs must agree to the last digit)
#   PRECISIONS   default "fp32 tf32 bf16" (the first is the reference of the differences)
#   CONFIG       the experiment configuration (default jobs/demo.ini: the demo's classifier,
#                batch 32, 4 epochs, lr 1e-4, lesion patches half of every batch)
#   RANKS        ranks per run (default 1; mpiexec when > 1; every run's stdin is /dev/null)
#   WORK         scratch folder (default: a fresh temporary one, removed at the end)
#   PYTHON       a python3 for the JSON and CSV arithmetic (default python3)
# Exit status: 0 when every run finished, 1 otherwise.  The accuracy differences are reported,
# not judged: they are what the issue asks to know, not a pass/fail criterion.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
[[ $# -ge 2 ]] || { sed -n 's/^# \{0,1\}//; 2,/^set /p' "$0" | sed '$d'; exit 2; }
mp=$1 store=$2
shift 2
seeds=("$@")
((${#seeds[@]})) || seeds=(1 2 3)
backend=${BACKEND:-cuda}
read -r -a precs <<<"${PRECISIONS:-fp32 tf32 bf16}"
config=${CONFIG:-jobs/demo.ini}
ranks=${RANKS:-1}
py=${PYTHON:-python3}
[[ -x $mp ]] || { echo "$mp is not an executable" >&2; exit 2; }
[[ -s $store ]] || { echo "no patch store $store (tests/gpu/make-store.sh makes one)" >&2; exit 2; }
export MAMMOPATCH_SITE_KEY=${MAMMOPATCH_SITE_KEY:-gpu-precision-check-throwaway-site-key}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [[ -n ${WORK:-} ]]; then
  work=$WORK
  mkdir -p "$work" || exit 2
else
  work=$(mktemp -d) || exit 2
  trap 'rm -rf "$work"' EXIT
fi
launch=()
((ranks > 1)) && launch=(mpiexec -n "$ranks" --oversubscribe)

# the tables of the runs that finished (also when a timeout ends this script early: the TERM
# trap below prints what there is before leaving)
analyse() {
  "$py" - "$work" "${precs[*]}" "${seeds[*]}" "$backend" <<'EOF'
import csv, json, math, os, sys

work, precs, seeds, backend = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
ref = precs[0]

def load(p, s):
    d = os.path.join(work, f"{p}-split-{s}")
    try:
        tr = json.load(open(os.path.join(d, "train.json")))
        ev = json.load(open(os.path.join(d, "eval.json")))
        with open(os.path.join(d, "eval_patches.csv")) as f:
            prob = {int(r["store_index"]): float(r["probability"]) for r in csv.DictReader(f)}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"epoch": tr["best"]["epoch"], "thr": float(ev["threshold"]["value"]), "test": ev["test"], "prob": prob}

def num(v):
    return float("nan") if v is None else float(v)

runs = {(p, s): load(p, s) for p in precs for s in seeds}
cols = ["precision", "split", "best epoch", "patch MCC", "patch ROC AUC", "patch PR AUC", "view ROC AUC",
        "patient ROC AUC", f"max Δp vs {ref}", f"mean Δp vs {ref}", "decisions flipped"]
print()
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
# per precision, per quantity: {split: value}, so that differences pair the same split
agg = {p: {k: {} for k in ("mcc", "auc", "prauc", "vauc", "pauc", "maxd", "meand", "flip")} for p in precs}
missing = 0
for s in seeds:
    base = runs[(ref, s)]
    for p in precs:
        r = runs[(p, s)]
        if r is None:
            print(f"| {p} | {s} | (no result) |" + " |" * (len(cols) - 3))
            missing += 1
            continue
        t = r["test"]
        row = [p, s, str(r["epoch"]), num(t["patch"]["mcc"]), num(t["patch"]["roc_auc"]), num(t["patch"]["pr_auc"]),
               num(t["view"]["roc_auc"]), num(t["patient"]["roc_auc"])]
        a = agg[p]
        for k, v in zip(("mcc", "auc", "prauc", "vauc", "pauc"), row[3:8]):
            a[k][s] = v
        if base is not None and set(base["prob"]) == set(r["prob"]):
            thr = base["thr"]
            diffs = [abs(r["prob"][i] - base["prob"][i]) for i in base["prob"]]
            flips = sum((r["prob"][i] >= thr) != (base["prob"][i] >= thr) for i in base["prob"])
            md, mn = max(diffs) if diffs else 0.0, sum(diffs) / len(diffs) if diffs else 0.0
            a["maxd"][s], a["meand"][s], a["flip"][s] = md, mn, flips
            row += [md, mn, f"{flips} of {len(diffs)}"]
        else:
            row += ["n/a", "n/a", "n/a"]
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")

def mean(v):
    v = [x for x in (v.values() if isinstance(v, dict) else v) if not math.isnan(x)]
    return sum(v) / len(v) if v else float("nan")

def std(v):
    v = [x for x in (v.values() if isinstance(v, dict) else v) if not math.isnan(x)]
    if len(v) < 2:
        return float("nan")
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))

print()
print(f"means over the splits ({len(seeds)}); differences are against {ref} on the same split;"
      f" Δp = |probability - {ref}'s| per test patch")
print()
cols = ["precision", "patch MCC (mean ± std)", f"MCC - {ref}", "patch ROC AUC", f"AUC - {ref}", "view ROC AUC",
        "patient ROC AUC", f"max Δp vs {ref}", f"mean Δp vs {ref}", "decisions flipped (mean)"]
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for p in precs:
    a, b = agg[p], agg[ref]
    dm = [a["mcc"][s] - b["mcc"][s] for s in seeds if s in a["mcc"] and s in b["mcc"]]
    da = [a["auc"][s] - b["auc"][s] for s in seeds if s in a["auc"] and s in b["auc"]]
    sd = std(a["mcc"])
    print(f"| {p} | {mean(a['mcc']):.4f} ± {'n/a' if math.isnan(sd) else format(sd, '.4f')} | {mean(dm):+.4f} | {mean(a['auc']):.4f} | "
          f"{mean(da):+.4f} | {mean(a['vauc']):.4f} | {mean(a['pauc']):.4f} | {max(a['maxd'].values(), default=float('nan')):.4f} | "
          f"{mean(a['meand']):.5f} | {mean(a['flip']):.1f} |")
# host backends compute in fp32 whatever train.precision says: their runs must be identical
drift = backend != "cuda" and any(x > 0 for p in precs for x in agg[p]["maxd"].values())
if drift:
    print(f"backend {backend} computes every precision in fp32, yet the runs differ: FAILED")
sys.exit(1 if missing or drift else 0)
EOF
}
# One command of a run (run_bg LOG COMMAND...: its output appended to LOG), in the background
# and waited for: a TERM (run.sh's budget) interrupts the wait at once, where a foreground child
# would first finish (train ends its step and checkpoints on a TERM, which could outlast the
# grace run.sh gives before its KILL).  The redirection is the command's own, not the call's:
# the trap's tables, printed while the call waits, go to this script's output.  The exit status
# is the command's.
child=
run_bg() {
  local log=$1
  shift
  "$@" </dev/null >>"$log" 2>&1 &
  child=$!
  wait "$child"
  local st=$?
  child=
  return $st
}
# The TERM: the tables of the runs finished so far, printed at once; the command in progress is
# stopped too and given up to 8 s (within run.sh's grace) to end before it is killed, so that
# nothing of it is left on the GPU for the next step.
on_term() {
  echo "precision: stopped by a signal after $SECONDS s; the runs finished by then:"
  local c=$child i
  [[ -n $c ]] && kill -TERM "$c" 2>/dev/null
  analyse
  for ((i = 0; i < 16; i++)); do
    [[ -n $c ]] && kill -0 "$c" 2>/dev/null || break
    sleep 0.5
  done
  [[ -n $c ]] && kill -KILL "$c" 2>/dev/null
  exit 1
}
trap on_term TERM
echo "precision check: backend $backend, precisions ${precs[*]}, splits ${seeds[*]}, $config, $ranks rank(s), store $store"
rc=0
for s in "${seeds[@]}"; do
  for p in "${precs[@]}"; do
    d=$work/$p-split-$s
    rm -rf "$d"
    t=$SECONDS
    : >"$d.log"
    run_bg "$d.log" "${launch[@]}" "$mp" train --config "$config" --store "$store" --split-seed "$s" --out "$d" \
      --set train.backend="$backend" --set train.precision="$p" -q
    prc=$?
    if ((prc == 0)); then
      run_bg "$d.log" "${launch[@]}" "$mp" eval --config "$config" --store "$store" --train-dir "$d" \
        --set train.backend="$backend" --set train.precision="$p" -q
      prc=$?
    fi
    if ((prc == 0)); then
      echo "split $s $p: trained and evaluated in $((SECONDS - t)) s"
    else
      # the first error line on the FAILED line: run.sh makes that line the step's note
      why=$(grep -m 1 -E 'FATAL|ERROR|error|failed' "$d.log" | cut -c1-200)
      echo "split $s $p: FAILED (exit $prc${why:+: $why}); the end of its log:"
      tail -n 25 "$d.log" | sed 's/^/   | /'
      rc=1
    fi
  done
done

analyse || rc=1
exit $rc
