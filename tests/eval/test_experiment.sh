#!/usr/bin/env bash
# experiment, report and predict on a synthetic cohort (48 patients, 60% of exams with
# lesions): 2 splits on 2 rank groups, the aggregation recomputed independently, the
# report rendered in headless Chromium with no network request, a rerun that reuses
# every job, a changed configuration refused before any work, and predict's hottest tile
# (with both splits' models) on the known lesions of views no model has seen (an
# unannotated cohort).
# Usage: test_experiment.sh MAMMOPATCH MPIEXEC TESTS_DIR EXPERIMENT_TOOL
set -uo pipefail
mp=$1 mpiexec=$2 tests=$3 tool=$4
export OMP_NUM_THREADS=1 MAMMOPATCH_SITE_KEY=test-site-key-for-experiment-0123
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
check() { /usr/bin/python3 "$tests/eval/check_experiment.py" "$@"; }

cohort48 "$tmp/c" || bad "synth"
run2 preprocess --input "$tmp/c/dicom" --labels "$tmp/c/labels.csv" --out "$tmp/p.h5" --report "$tmp/pre" -q || bad "preprocess"
S="$tmp/p.h5"
cfg=(--set train.batch=32 --set train.epochs=3 --set train.lr=1e-4 --set train.lesion_fraction=0.5
     --set train.checkpoint_every=0 --set experiment.repeats=2 --set experiment.split_seed=5)

# 1. 2 splits x baseline on 2 rank groups of 1 rank
t0=$(date +%s)
run2 experiment --store "$S" --out "$tmp/e" "${cfg[@]}" > "$tmp/e.log" 2>&1 && ok "experiment ran ($(( $(date +%s) - t0 )) s)" \
  || { bad "experiment"; cat "$tmp/e.log"; }
out=$(check aggregate "$tmp/e" "$S") && ok "aggregation: $out" || bad "aggregation: $out"
out=$(check privacy "$tmp/e" "$tmp/c") && ok "privacy: $out" || bad "privacy: $out"
grep -q "rank groups of 1\|rank group.* of 1" "$tmp/e.log" && ok "jobs spread over 2 rank groups" || bad "not 2 groups: $(grep experiment: "$tmp/e.log" | head -1)"

# 2. the report in headless Chromium: tables, charts, montage, no request leaves the page
out=$(/usr/bin/python3 "$tests/eval/check_report.py" "$tmp/e/report" --min-charts 8 2>&1); rc=$?
if [ $rc -eq 0 ]; then ok "report renders: $(echo "$out" | grep -E '^static|net log' | tr '\n' ' ')"
elif [ $rc -eq 77 ]; then echo "skip report rendering: $out"
else bad "report: $out"; fi

# 2a. `report` again (on a copy) given a configuration of its own: the configuration section is still
#     the one the experiment ran with (train.epochs 3, train.lr 1e-4 above), not 999 / 0.5
mkdir -p "$tmp/rr" && cp "$tmp/e/experiment.json" "$tmp/rr/" \
  && (cd "$tmp/e" && tar cf - --exclude=checkpoints --exclude=best runs) | (cd "$tmp/rr" && tar xf -) || bad "copy for report"
"$mp" report --experiment "$tmp/rr" --store "$S" --set train.epochs=999 --set train.lr=0.5 > "$tmp/rr.log" 2>&1 \
  || bad "report: $(tail -2 "$tmp/rr.log")"
train=$(sed -n '/^```ini$/,/^```$/p' "$tmp/rr/report/report.md" | sed -n '/^\[train\]$/,/^\[/p')
grep -qx "epochs = 3" <<< "$train" && grep -qx "lr = 0.0001" <<< "$train" && ! grep -qx "epochs = 999" <<< "$train" \
  && ok "report's configuration = the experiment's recorded one, not the report command's" \
  || bad "report's configuration section: $(grep -E '^(epochs|lr) =' <<< "$train" | tr '\n' ' ')"

# 2b. two variants: a "gan" fabricated from the real jobs (known per-split shifts of the
#     metrics) through rank 0's aggregation and the report: paired differences, highlights,
#     a two-variant report in Chromium
out=$(check fabricate "$tmp/e" "$tmp/m" gan) && ok "fabricated: $out" || bad "fabricate: $out"
"$tool" "$S" "$tmp/m" 2 5 baseline gan > "$tmp/m.log" 2>&1 || bad "aggregation tool: $(tail -2 "$tmp/m.log")"
out=$(check aggregate "$tmp/m" "$S") && ok "two variants: $out" || bad "two variants: $out"
out=$(check highlights "$tmp/m") && ok "highlights: $out" || bad "highlights: $out"
"$tool" t975 > "$tmp/t975.txt" && out=$(check t975 "$tmp/t975.txt") && ok "$out" || bad "t quantile: $out"
out=$(/usr/bin/python3 "$tests/eval/check_report.py" "$tmp/m/report" --variants baseline,gan --min-charts 8 2>&1); rc=$?
[ $rc -eq 0 ] && ok "two-variant report renders" || { [ $rc -eq 77 ] || bad "two-variant report: $out"; }

# 3. rerun: every job reused, the same numbers
cp "$tmp/e/experiment.json" "$tmp/first.json"
run2 experiment --store "$S" --out "$tmp/e" "${cfg[@]}" > "$tmp/e2.log" 2>&1 || bad "rerun"
grep -q "2 reused" "$tmp/e2.log" && ok "rerun reuses both jobs" || bad "rerun did not reuse: $(grep experiment: "$tmp/e2.log" | head -1)"
out=$(check same "$tmp/first.json" "$tmp/e/experiment.json") && ok "rerun: $out" || bad "rerun: $out"

# 4. SIGUSR1 in the middle (every rank, through mpiexec): checkpoints, exit 75; the rerun
#    finishes and gives exactly the uninterrupted numbers (resume is bit-identical on CPU).
#    Split 5's finished job is copied in from the first run (a job reused beside one that
#    resumes); split 6 starts from the first run's end-of-epoch-2 checkpoint and best model
#    (what a rerun finds after a crash in the last epoch: training all three epochs again would
#    only triple this section's time), is interrupted in epoch 3 and resumed mid-epoch.
b6=$tmp/b/runs/baseline/split-6 e6=$tmp/e/runs/baseline/split-6
ck=$(ls -d "$e6"/checkpoints/step-* | sort | head -1)  # the older of the two kept: epoch 2's end
mkdir -p "$b6/checkpoints" && cp -r "$tmp/e/runs/baseline/split-5" "$tmp/b/runs/baseline/" \
  && cp -r "$e6/best" "$e6/split.json" "$b6/" && cp -r "$ck" "$b6/checkpoints/" || bad "copy split 5 and split 6's checkpoint"
grep -q '"epoch":[[:space:]]*2,' "$ck/state.json" || bad "$ck is not epoch 2's end: $(grep '"epoch"' "$ck/state.json")"
"$mpiexec" -n 2 --oversubscribe "$mp" experiment --store "$S" --out "$tmp/b" "${cfg[@]}" > "$tmp/b.log" 2>&1 &
pid=$!  # mpiexec itself: it forwards SIGUSR1 to every rank
# once epoch 3 runs (train.json is rewritten as "running" just before the first step)
for _ in $(seq 600); do grep -qs '"status":[[:space:]]*"running"' "$b6/train.json" && break; sleep 0.2; done
sleep 2
kill -USR1 $pid
wait $pid; rc=$?
[ $rc -eq 75 ] && ok "SIGUSR1 mid-experiment: exit 75" || bad "SIGUSR1 mid-experiment: exit $rc: $(tail -3 "$tmp/b.log")"
grep -q "; 1 reused" "$tmp/b.log" && ok "the copied finished job is reused" \
  || bad "copied job not reused: $(grep experiment: "$tmp/b.log" | head -1)"
grep -q "interrupted" "$tmp/b/experiment.json" 2>/dev/null && ok "experiment.json says interrupted" \
  || bad "experiment.json after the signal: $(head -c 300 "$tmp/b/experiment.json" 2>&1)"
ck2=$(ls -d "$b6"/checkpoints/step-* | sort | tail -1)
/usr/bin/python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(not (d["epoch"] == 2 and 0 < d["step_in_epoch"]))' \
  "$ck2/state.json" && ok "the signal's checkpoint is inside epoch 3 ($(basename "$ck2"))" \
  || bad "the signal's checkpoint: $(tr -d '\n\t' < "$ck2/state.json" | cut -c1-200)"
run2 experiment --store "$S" --out "$tmp/b" "${cfg[@]}" -q > "$tmp/b2.log" 2>&1 && ok "the rerun after the signal completes" \
  || bad "rerun after the signal: $(tail -3 "$tmp/b2.log")"
out=$(check same "$tmp/first.json" "$tmp/b/experiment.json" "$e6" "$b6") && ok "interrupted + rerun = uninterrupted: $out" \
  || bad "interrupted + rerun: $out"
for f in block1.h5 rest.h5; do
  h5diff "$e6/best/$f" "$b6/best/$f" > /dev/null || bad "best/$f differs from the uninterrupted run's"
done

# 5. a changed configuration is refused before any work, naming the key
run2 experiment --store "$S" --out "$tmp/e" "${cfg[@]}" --set train.lr=1e-3 > "$tmp/e3.log" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "train.lr" "$tmp/e3.log" && ok "changed train.lr refused (exit 2, key named)" \
  || bad "changed config: exit $rc: $(tail -2 "$tmp/e3.log")"
run2 experiment --store "$S" --out "$tmp/x" "${cfg[@]}" --set experiment.variants=baseline,gan > "$tmp/e4.log" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "gan" "$tmp/e4.log" && [ ! -d "$tmp/x/runs" ] && ok "unbuilt variant refused before work" \
  || bad "variant gan: exit $rc: $(tail -2 "$tmp/e4.log")"

# 6. predict on an unannotated cohort (lesions with no mark, never seen in training)
run2 synth --out "$tmp/u" --patients 6 --seed 99 -q --set synth.birads0_frac=1 --set synth.annotated_frac=0 \
  --set synth.missing_view_frac=0 --set synth.male_frac=0 --set synth.implant_frac=0 --set synth.inverse_lut_frac=0 \
  --set synth.nonstandard_view_frac=0 --set synth.cad_frac=0 --set synth.truncated_frac=0 --set synth.garbage_frac=0 \
  || bad "synth (unannotated)"
mapfile -t views < <(tail -n +2 "$tmp/u/truth_lesions.csv" | cut -d, -f1 | sort -u | sed "s|^|$tmp/u/|")
: > "$tmp/empty.dcm"
run2 predict --model "$tmp/e/runs/baseline/split-5" --out "$tmp/pr" "${views[@]}" "$tmp/empty.dcm" > "$tmp/pr.log" 2>&1; rc=$?
[ $rc -eq 1 ] && ok "predict: an unreadable file fails (exit 1), the others are written" || bad "predict exit $rc: $(tail -3 "$tmp/pr.log")"
run2 predict --model "$tmp/e/runs/baseline/split-6" --out "$tmp/pr6" "${views[@]}" -q || bad "predict with split 6's model"
out=$(check predict "$tmp/u" "${#views[@]}" "$tmp/pr" "$tmp/pr6") && ok "predict: $out" || bad "predict: $out"
"$mp" predict --model "$tmp/e/runs/baseline/split-5" --out "$tmp/pr128" "${views[0]}" --set predict.stride=128 -q \
  || bad "predict stride 128"
out=$(check tiles128 "$tmp/pr128/view-1/predict.json" "${views[0]}") && ok "stride 128 = preprocessing's tiling: $out" \
  || bad "stride 128 tiles: $out"
# an image preprocessing would discard (ViewPosition ML) is not scored, and a view with no tissue
# tile (all black) is undetermined, not normal
/usr/bin/python3 - "$tmp/u" "$tmp/ml.dcm" "$tmp/black.dcm" <<'PY'
import csv, os, sys, pydicom
t = next(r for r in csv.DictReader(open(os.path.join(sys.argv[1], "truth.csv")))
         if r["outcome"] == "accepted" and r["transfer_syntax"] == "explicit_le")
ds = pydicom.dcmread(os.path.join(sys.argv[1], t["file"]))
ds.ViewPosition = "ML"
ds.save_as(sys.argv[2])
ds.ViewPosition = "CC"
ds.PixelData = bytes(len(ds.PixelData))
ds.save_as(sys.argv[3])
PY
"$mp" predict --model "$tmp/e/runs/baseline/split-5" --out "$tmp/prml" "$tmp/ml.dcm" "$tmp/black.dcm" -q 2>"$tmp/prml.err"; rc=$?
/usr/bin/python3 -c 'import json, sys; a, b = (json.load(open(f"{sys.argv[1]}/view-{i}/predict.json")) for i in (1, 2))
sys.exit(not (a["status"] == "discarded" and "discarded:view" in a["error"] and "decision" not in a
              and b["status"] == "ok" and b["decision"] == "undetermined" and b["tiles_scored"] == 0
              and b["threshold_from"].startswith("the model\x27s evaluation")))' "$tmp/prml" \
  && [ $rc -eq 1 ] && ok "predict: a view preprocessing discards is not scored (exit 1); an all-background view is undetermined; the threshold is the model's evaluation's" \
  || bad "predict on a discarded and a blank view: exit $rc: $(cat "$tmp/prml/view-1/predict.json" "$tmp/prml/view-2/predict.json" 2>&1 | grep -E 'status|decision|error' | tr -s ' \n' ' ')"

finish
