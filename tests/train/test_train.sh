#!/usr/bin/env bash
# train: patient-level split, K-independence, kill/resume, signals, bad checkpoints and
# learning, on a synthetic cohort (48 patients, 60% of exams with lesions so that the
# training split holds a few dozen lesion patches).
# Usage: test_train.sh MAMMOPATCH MPIEXEC TESTS_DIR
set -uo pipefail
mp=$1 mpiexec=$2 tests=$3
export OMP_NUM_THREADS=1 MAMMOPATCH_SITE_KEY=test-site-key-for-train-0123
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
check() { /usr/bin/python3 "$tests/train/check_train.py" "$@"; }

cohort48 "$tmp/c" || bad "synth"
run2 preprocess --input "$tmp/c/dicom" --labels "$tmp/c/labels.csv" --out "$tmp/p.h5" -q || bad "preprocess"
S="$tmp/p.h5"

# 1. the split: the same for 1 and 2 ranks, no patient in two parts (train.max_steps=1: the split only)
"$mp" train --store "$S" --split-seed 3 --out "$tmp/s1" -q --set train.batch=32 --set train.max_steps=1 || bad "1-rank split run"
run2 train --store "$S" --split-seed 3 --out "$tmp/s2" -q --set train.batch=32 --set train.max_steps=1 || bad "2-rank split run"
cmp -s "$tmp/s1/split.json" "$tmp/s2/split.json" && ok "split.json identical for 1 and 2 ranks" || bad "split differs between 1 and 2 ranks"
out=$(check split "$tmp/s1/split.json" "$S") && ok "split: $out" || bad "split: $out"
out=$(check compute "$tmp/s1/train.json" 1 "none (one rank)") && ok "1 rank: $out" || bad "1 rank: $out"
out=$(check compute "$tmp/s2/train.json" 2 "MPI allreduce in host memory") && ok "2 ranks: $out" || bad "2 ranks: $out"

# 2. 2 ranks x 64 == 1 rank x 128 (batch-norm groups of 64 on one rank = statistics per rank on two)
common=(--split-seed 3 --set train.batch=128 --set train.max_steps=3 --set train.checkpoint_every=1
        --set train.keep_checkpoints=5 --set train.lr=1e-3 --set train.lesion_fraction=0.25 -q)
run2 train --store "$S" --out "$tmp/k2" "${common[@]}" || bad "2 ranks x 64"
"$mp" train --store "$S" --out "$tmp/k1" "${common[@]}" --set train.bn_group=64 || bad "1 rank x 128"
out=$(check same "$tmp/k1" "$tmp/k2") && ok "2 ranks x 64 vs 1 rank x 128: $out" || bad "K-independence: $out"

# 3. a rank dies mid-epoch (SIGKILL at step 5); --resume from the step-3 checkpoint ends
#    bit-identical to an uninterrupted run
kr=(--split-seed 4 --set train.batch=32 --set train.max_steps=8 --set train.checkpoint_every=3 -q)
run2 train --store "$S" --out "$tmp/u" "${kr[@]}" || bad "uninterrupted run"
MAMMOPATCH_TEST_KILL_AT_STEP=5 run2 train --store "$S" --out "$tmp/r" "${kr[@]}" >/dev/null 2>&1 \
  && bad "the killed run exited 0" || ok "a rank killed at step 5 ends the run"
run2 train --store "$S" --out "$tmp/r" "${kr[@]}" --resume || bad "resume after the kill"
same=1
for f in block1.h5 rest.h5; do
  h5diff "$tmp/u/checkpoints/step-00000008/$f" "$tmp/r/checkpoints/step-00000008/$f" >/dev/null || same=0
done
((same)) && ok "resumed run's final weights, Adam state and running statistics bit-identical (h5diff)" \
  || bad "resumed run differs from the uninterrupted one"
out=$(check steps "$tmp/u/train.json" "$tmp/r/train.json") && ok "$out" || bad "$out"

# 4. SIGUSR1 (Slurm's warning): checkpoint, exit 75, resume completes (12 steps: the signal
#    lands in the first; the rest of 2 epochs would only add time)
sg=(--store "$S" --out "$tmp/sig" --split-seed 4 --set train.batch=32 --set train.epochs=2 --set train.max_steps=12 -q)
"$mp" train "${sg[@]}" &
pid=$!
# train.json is written once the stop signals are caught, just before the first step: a
# short wait after it lands the first signal in the first epoch (a fixed 2 s could outlast a short
# run on a fast machine), then one every 100 us until it ends: each may land inside oneDNN's
# GEMM, whose JIT kernels point the stack pointer into a heap buffer, where a signal handler's
# frame corrupted the heap (a rank died in free() in CI's test_pipeline; 4 of 5 such runs of
# the tiny pipeline's training died so before the signals got a thread of their own)
for _ in $(seq 100); do [[ -f $tmp/sig/train.json ]] && break; sleep 0.05; done
sleep 0.3
/usr/bin/python3 -c 'import os, signal, sys, time
try:
    while True: os.kill(int(sys.argv[1]), signal.SIGUSR1); time.sleep(1e-4)
except ProcessLookupError: pass' $pid &
storm=$!
wait $pid
rc=$?
kill $storm 2>/dev/null; wait $storm 2>/dev/null
[[ $rc == 75 ]] && ok "SIGUSR1 (a stream of them): exit status 75" || bad "SIGUSR1: exit status $rc (expected 75)"
grep -q '"status":[[:space:]]*"interrupted"' "$tmp/sig/train.json" && ok "train.json says interrupted" || bad "train.json status after SIGUSR1"
ls -d "$tmp"/sig/checkpoints/step-* >/dev/null 2>&1 && ok "a checkpoint was written on the signal" || bad "no checkpoint after SIGUSR1"
"$mp" train "${sg[@]}" --resume && grep -q '"status":[[:space:]]*"stopped at train.max_steps"' "$tmp/sig/train.json" \
  && ok "resume after the signal runs to train.max_steps" || bad "resume after the signal"
# a finished run resumed once more trains no further (an experiment's rerun resumes its jobs)
steps() { /usr/bin/python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(len(d["step_loss"]), d["status"])' "$1"; }
s0=$(steps "$tmp/sig/train.json")
"$mp" train "${sg[@]}" --resume && s1=$(steps "$tmp/sig/train.json") && [[ $s1 == "$s0" ]] \
  && ok "a finished run resumed again: no further step ($s1)" || bad "a finished run resumed again: $s0 -> ${s1:-failed}"

# 5. bad checkpoints are refused naming the file
ck=$(ls -d "$tmp"/r/checkpoints/step-* | tail -1)
head -c 1000 "$ck/rest.h5" >"$ck/rest.tmp" && mv "$ck/rest.tmp" "$ck/rest.h5"
out=$("$mp" train --store "$S" --out "$tmp/r" "${kr[@]}" --resume 2>&1) && bad "a corrupt checkpoint was accepted" \
  || { grep -q "rest.h5" <<<"$out" && ok "corrupt checkpoint refused: $(grep -m1 ERROR <<<"$out" | cut -c1-150)" \
       || bad "corrupt checkpoint message does not name the file: $out"; }
out=$("$mp" train --store "$S" --out "$tmp/u" --split-seed 4 --set train.batch=64 -q --resume 2>&1) \
  && bad "a checkpoint of another batch size was accepted" \
  || { grep -q "batch 32" <<<"$out" && ok "mismatched checkpoint refused: $(grep -m1 ERROR <<<"$out" | cut -c1-150)" \
       || bad "mismatch message: $out"; }

# 6. it learns: balanced batches (lesion_fraction 0.5), lr 1e-4 (10x the SPEC's 1e-5, which
#    needs far more epochs than a test affords), 3 epochs (no schedule depends on the count: with
#    4, epoch 3 was the best and its model the same); the test split's patch MCC must reach 0.4:
#    chance is 0 with a standard error of ~0.1 for the ~15 test lesions here.
#    SIGUSR1 early in epoch 1 (through mpiexec, to both ranks) and a resume: epoch 1's training
#    loss must still be the mean of all its steps, those before the signal included
lr=(train --store "$S" --out "$tmp/learn" --split-seed 1 --set train.batch=32 --set train.epochs=3
    --set train.lesion_fraction=0.5 --set train.lr=1e-4 -q)
"$mpiexec" -n 2 --oversubscribe "$mp" "${lr[@]}" &
pid=$!  # mpiexec itself: it forwards SIGUSR1 to both ranks
for _ in $(seq 200); do [[ -f $tmp/learn/train.json ]] && break; sleep 0.05; done
sleep 0.3
kill -USR1 $pid
wait $pid
rc=$?
run2 "${lr[@]}" --resume || bad "learning run"
if [[ $rc == 75 ]]; then
  out=$(check epoch-loss "$tmp/learn/train.json") && ok "resumed in epoch 1: $out" || bad "resumed in epoch 1: $out"
else
  bad "SIGUSR1 to the 2-rank learning run: exit status $rc (expected 75)"
fi
out=$(check learns "$tmp/learn/train.json" 0.4) && ok "$out" || bad "$out"

# 7. eval on the learned model: 2 ranks, patch metrics = train's test metrics, roll-ups and
#    AUCs recomputed from eval_patches.csv (scikit-learn); the validation-optimal threshold;
#    a store that does not give the recorded split is refused
run2 eval --store "$S" --train-dir "$tmp/learn" -q || bad "eval"
out=$(check eval "$tmp/learn" "$S") && ok "eval: $out" || bad "eval: $out"
out=$(check compute "$tmp/learn/eval.json" 2) && ok "eval.json $out" || bad "eval.json $out"
"$mp" eval --store "$S" --train-dir "$tmp/learn" --out "$tmp/ev" --set eval.threshold_from=validation -q \
  && grep -q 'validation' "$tmp/ev/eval.json" && ok "eval with the validation-MCC threshold" || bad "eval threshold_from=validation"
"$mp" synth --out "$tmp/c2" --patients 8 --seed 99 -q --set synth.birads0_frac=0.6 || bad "second cohort"
"$mp" preprocess --input "$tmp/c2/dicom" --labels "$tmp/c2/labels.csv" --out "$tmp/other.h5" -q || bad "second store"
out=$("$mp" eval --store "$tmp/other.h5" --train-dir "$tmp/learn" --out "$tmp/ev2" 2>&1) \
  && bad "eval accepted another cohort's store" \
  || { grep -q "does not give the split" <<<"$out" && ok "eval refuses another cohort's store: $(grep -m1 ERROR <<<"$out" | cut -c1-110)" \
       || bad "eval on another store: $out"; }

finish
