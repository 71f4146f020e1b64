#!/usr/bin/env bash
# `mammopatch pipeline` end to end on the tiny configuration (tests/jobs/tiny.ini: a
# synthetic cohort, preprocessing, the baseline, a one-cell GAN sweep, the gan variant on
# 2 splits): configurations refused before any work (unknown key, missing input, impossible
# values, a stage whose prerequisites are missing), a clean run, a run killed (SIGKILL) in
# the middle of a stage and one stopped by SIGUSR1 in the middle of another whose reruns
# finish with the clean run's numbers, a rerun that skips every stage, a SIGUSR1 pending
# from before the start that `train` honours, and a changed configuration for finished
# outputs refused naming the key.
# Usage: test_pipeline.sh MAMMOPATCH MPIEXEC TESTS_DIR
set -uo pipefail
mp=$1 mpiexec=$2 tests=$3
export OMP_NUM_THREADS=1 MAMMOPATCH_SITE_KEY=test-site-key-for-pipeline-0123
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
cfg="$tests/jobs/tiny.ini"
pipe() { run2 pipeline --config "$cfg" "$@"; }
stage_status() { /usr/bin/python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1]))["stages"][sys.argv[2]]["status"])
except Exception: print("-")' "$1/pipeline.json" "$2"; }

# 1. refused before any work, naming the key (exit 2, nothing written)
refused() { # NAME EXPECTED_TEXT pipeline-args...
  local name=$1 want=$2
  shift 2
  pipe --set pipeline.out="$tmp/r" "$@" > "$tmp/r.log" 2>&1
  local rc=$?
  if [ $rc -eq 2 ] && grep -qF -- "$want" "$tmp/r.log" && [ ! -e "$tmp/r/cohort" ]; then
    ok "refused: $name ($(grep -m1 -F -- "$want" "$tmp/r.log" | sed 's/.*ERROR *//' | cut -c1-110))"
  else
    bad "$name: exit $rc: $(tail -2 "$tmp/r.log")"
  fi
}
printf '[train]\nlrr = 1e-4\n' > "$tmp/typo.ini"
refused "unknown key" "train.lrr" --config "$tmp/typo.ini"
refused "missing input" "pipeline.input" --set pipeline.cohort=dicom --set pipeline.input="$tmp/nowhere" \
  --set pipeline.labels="$tmp/nowhere.csv"
refused "missing labels" "pipeline.labels" --set pipeline.cohort=dicom --set pipeline.input="$tmp" \
  --set pipeline.labels="$tmp/nowhere.csv"
refused "missing site key file" "privacy.site_key_file" --set privacy.site_key_file="$tmp/no.key"
refused "impossible value" "train.lr" --set train.lr=-1
refused "impossible grid" "gan.sweep_filters" --set gan.sweep_filters=7
refused "groups vs ranks" "experiment.groups" --set experiment.groups=3
refused "GAN batch vs ranks" "gan.batch = 31" --set gan.batch=31
refused "GAN statistics group vs a rank's share" "gan.bn_group = 3" --set gan.bn_group=3
refused "classifier statistics group vs a rank's share" "train.bn_group = 24" --set train.bn_group=24
refused "unknown variant" "experiment.variants" --set experiment.variants=baseline,smote-l3
refused "missing sweep" "experiment.gan_sweep" --set experiment.gan_sweep="$tmp/no-sweep"
refused "prerequisite" "stage synth is not complete" --stage experiment
refused "unknown stage" "--stage" --stage preprocess,bogus
# a backend this node cannot run (cuda without a GPU, or a build without it)
if ! nvidia-smi -L >/dev/null 2>&1; then
  refused "backend without its device" "train.backend = 'cuda'" --set train.backend=cuda
fi

# 2. a clean run
t0=$(date +%s)
pipe --set pipeline.out="$tmp/a" > "$tmp/a.log" 2>&1 && ok "clean run ($(( $(date +%s) - t0 )) s)" \
  || { bad "clean run"; tail -20 "$tmp/a.log"; }
[ -s "$tmp/a/experiment/report/index.html" ] && grep -q "REPORT: $tmp/a/experiment/report/index.html" "$tmp/a.log" \
  && ok "report written and named" || bad "no report"
for st in synth preprocess baseline gan experiment report; do
  [ "$(stage_status "$tmp/a" $st)" = done ] || bad "stage $st: $(stage_status "$tmp/a" $st)"
done
grep -q '"gan"' "$tmp/a/experiment/experiment.json" && [ -s "$tmp/a/gan/sweep.json" ] \
  && ok "pipeline.json: every stage done; the experiment has the gan variant" || bad "gan variant missing"

# 3. a rerun skips everything
pipe --set pipeline.out="$tmp/a" > "$tmp/a2.log" 2>&1; rc=$?
n=$(grep -c "complete, skipped" "$tmp/a2.log")
[ $rc -eq 0 ] && [ "$n" -eq 6 ] && ok "rerun: 6 stages skipped" || bad "rerun: exit $rc, $n skipped"

# 3b. a SIGUSR1 that arrived before mammopatch could catch it, held pending because the launcher
#     had it blocked (the mask and the pending signal both survive exec): taken when the
#     stop signals are caught, before MPI starts, so the run stops at its first step with a
#     checkpoint (exit 75) instead of never hearing it (it used to run to the end, exit 0)
/usr/bin/python3 -c 'import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
os.kill(os.getpid(), signal.SIGUSR1)
os.execv(sys.argv[1], sys.argv[1:])' "$mp" train --config "$cfg" --store "$tmp/a/patches.h5" --split-seed 1 \
  --out "$tmp/sig" > "$tmp/sig.log" 2>&1
rc=$?
[ $rc -eq 75 ] && grep -q "stop signal" "$tmp/sig.log" && compgen -G "$tmp/sig/checkpoints/step-*1" >/dev/null \
  && ok "a SIGUSR1 pending from a launcher that blocked it: taken at start, exit 75 after step 1 with its checkpoint" \
  || bad "pending SIGUSR1: exit $rc: $(tail -2 "$tmp/sig.log")"

# 4. SIGKILL in the middle of the baseline stage, then SIGUSR1 (Slurm's warning, forwarded
#    by the batch script) in the middle of the experiment stage (exit 75); the last rerun
#    finishes with the clean run's numbers
"$mpiexec" -n 2 --oversubscribe "$mp" pipeline --config "$cfg" --set pipeline.out="$tmp/b" > "$tmp/b1.log" 2>&1 &
pid=$!
# mid_stage GLOB: after a stage has started, wait until its first job has finished (GLOB
# matches) or 1.5 s have passed, whichever is first: the stages take ~3.5 and ~5 s on a 2-core
# VM, and a fixed wait of 2-3 s once let a fast machine finish the whole stage first
mid_stage() { for _ in $(seq 30); do compgen -G "$1" >/dev/null && break; sleep 0.05; done; }
for _ in $(seq 1500); do [ "$(stage_status "$tmp/b" baseline)" = running ] && break; sleep 0.2; done
mid_stage "$tmp/b/experiment/runs/baseline/split-*/eval.json"
kill -KILL $pid; pkill -KILL -f "$mp pipeline --config $cfg --set pipeline.out=$tmp/b" 2>/dev/null
wait $pid 2>/dev/null
[ "$(stage_status "$tmp/b" baseline)" = running ] && ok "SIGKILL during the baseline stage" \
  || bad "kill missed the baseline stage: $(stage_status "$tmp/b" baseline)"
# (run in $tmp/cores with core dumps on: a rank that died here, once on SIGSEGV and once in free() on a
# corrupted heap, while the other rank's group had stopped, leaves its backtraces in the log if it comes
# back; the second (the first, likely too) was the stop signal handler's frame pushed inside oneDNN's
# GEMM, whose JIT kernels point the stack pointer into the heap; the signals now go to a thread of
# their own: tests/test_signal.c)
mkdir -p "$tmp/cores"
(cd "$tmp/cores" && ulimit -c unlimited && exec "$mpiexec" -n 2 --oversubscribe "$mp" pipeline --config "$cfg" \
  --set pipeline.out="$tmp/b") > "$tmp/b2.log" 2>&1 &
pid=$!  # mpiexec itself (exec): it forwards SIGUSR1 to every rank (SIGTERM it turns into a kill)
for _ in $(seq 1500); do [ "$(stage_status "$tmp/b" experiment)" = running ] && break; sleep 0.2; done
mid_stage "$tmp/b/experiment/runs/gan/split-*/eval.json" # (the baseline jobs are the baseline stage's)
kill -USR1 $pid
wait $pid; rc=$?
[ $rc -eq 75 ] && [ "$(stage_status "$tmp/b" experiment)" = interrupted ] && grep -q "complete, skipped" "$tmp/b2.log" \
  && ok "SIGUSR1 during the experiment stage: exit 75, recorded interrupted, finished stages skipped" \
  || { bad "SIGUSR1: exit $rc, experiment $(stage_status "$tmp/b" experiment): $(tail -3 "$tmp/b2.log")"
       crash_report "$tmp/cores" "$tmp/b2.log"; }
pipe --set pipeline.out="$tmp/b" > "$tmp/b3.log" 2>&1 && ok "the rerun finishes" || bad "rerun: $(tail -3 "$tmp/b3.log")"
out=$(/usr/bin/python3 "$tests/eval/check_experiment.py" same "$tmp/a/experiment/experiment.json" \
  "$tmp/b/experiment/experiment.json") && ok "killed + stopped + rerun = clean run: $out" || bad "numbers differ: $out"
h5diff "$tmp/a/patches.h5" "$tmp/b/patches.h5" >/dev/null \
  && ok "patch stores identical" || bad "patch stores differ"

# a stage that does not apply (a chain's gan job when no gan variant is listed) does nothing
pipe --set pipeline.out="$tmp/a" --set experiment.variants=baseline --stage baseline,gan > "$tmp/a5.log" 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q "nothing to do" "$tmp/a5.log" && ok "stages that do not apply: nothing to do, exit 0" \
  || bad "inapplicable stages: exit $rc: $(tail -2 "$tmp/a5.log")"

# 5. finished outputs are not rebuilt with another configuration: refused, key named
pipe --set pipeline.out="$tmp/a" --set preprocess.close_radius=3 > "$tmp/a3.log" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "preprocess.close_radius" "$tmp/a3.log" && ok "changed preprocessing refused (key named)" \
  || bad "changed preprocess: exit $rc: $(tail -2 "$tmp/a3.log")"
# ... while an experiment-only change reruns the experiment, reusing the finished jobs
pipe --set pipeline.out="$tmp/a" --set experiment.variants=baseline > "$tmp/a4.log" 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q "2 reused" "$tmp/a4.log" && ok "experiment.variants changed: the experiment reruns, jobs reused" \
  || bad "variants change: exit $rc: $(grep -m2 "experiment" "$tmp/a4.log")"
finish
