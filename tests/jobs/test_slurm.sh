#!/usr/bin/env bash
# The batch jobs (jobs/*.sbatch, jobs/submit.sh) under a real Slurm on this machine:
#  1. refusals without Slurm: each batch script run outside a job, or in one without
#     MP_BIN/MP_CONFIG; submit.sh with no sbatch on PATH and with an unknown key (nothing
#     submitted); p3.sh with no GPU visible and inside a Slurm job
#  2. a private Slurm (tests/jobs/slurm_local.sh: munged, slurmctld, slurmd as root, free
#     ports, state in the temporary directory; stopped on exit, even on failure or SIGKILL
#     of this script, by a watchdog)
#  3. jobs/submit.sh --config tests/jobs/tiny.ini --gpus-per-task 1 --cpus-per-task 1 (0 without
#     fake GPUs) --cpu-ranks 2 --gpu-ranks 2 --set pipeline.out=TMP: four chained jobs (the
#     gan and experiment jobs hold the node's 2 fake GPUs, and train on the CPU); the experiment job gets
#     `scancel --signal=USR1 --batch` in the middle of its stage: the batch shell forwards it,
#     mammopatch checkpoints and exits 75, the job requeues itself and finishes; every job
#     ends COMPLETED with exit code 0 (jobcomp/filetxt record), the report exists, every
#     stage is done in pipeline.json
#  4. GPUs per task (the private Slurm's node has 2 fake GPUs, slurm_local.sh start DIR 2):
#     in a job of 2 tasks x 1 GPU, a one-task step (what Open MPI's daemons get on every node
#     but the first) sees one GPU as the job leaves it, and both under jobs/mp-gpu-env.sh's
#     launch environment, as do 2 ranks of mpiexec started inside it; mammopatch info's ranks
#     see both GPUs of the batch step, and ranks started by srun --mpi=pmix one GPU each.
#     Skipped with a note where mknod is refused.
#  5. the same pipeline run directly (mpiexec -n 2): the same patch store and the same
#     experiment numbers (experiment.json without provenance, paths, timings, statuses)
# Skips (exit 77, with the reason) only when Slurm cannot be installed or started (not
# root, no package, a daemon that does not come up).
# Usage: test_slurm.sh MAMMOPATCH MPIEXEC SOURCE_DIR
# (set -e is off, as in the other end-to-end tests: every check reports ok or FAIL and the
# test goes on; ok and bad always succeed, hence `check && ok ... || bad ...`)
# shellcheck disable=SC2015
set -uo pipefail
mp=$1 mpiexec=$2 src=$3
export OMP_NUM_THREADS=1 MAMMOPATCH_SITE_KEY=test-site-key-for-slurm-jobs-0123
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# shellcheck source=SCRIPTDIR/../common.sh
source "$src/tests/common.sh"
cfg=$src/tests/jobs/tiny.ini
jobs=$src/jobs
t_start=$(date +%s)
deadline=$((t_start + 900))  # the Slurm jobs' end, leaving the direct run time within ctest's 1200 s
elapsed() { echo "$(( $(date +%s) - t_start )) s"; }
unset SLURM_JOB_ID SLURM_JOBID SLURM_CONF
export PATH=$PATH:/usr/sbin:/sbin

# --- 1. refusals, no Slurm needed -------------------------------------------------------
for s in preprocess gan experiment report; do
  out=$(MP_BIN=$mp MP_CONFIG=$cfg bash "$jobs/$s.sbatch" 2>&1); rc=$?
  [ $rc -ne 0 ] && grep -q "not inside a Slurm job" <<< "$out" && ok "$s.sbatch outside Slurm refused (exit $rc)" \
    || bad "$s.sbatch outside Slurm: exit $rc: $out"
done
out=$(SLURM_JOB_ID=1 MP_CONFIG=$cfg bash "$jobs/gan.sbatch" 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "MP_BIN is not set" <<< "$out" && ok "a job without MP_BIN refused: $out" || bad "no MP_BIN: exit $rc: $out"
out=$(SLURM_JOB_ID=1 MP_BIN=$mp bash "$jobs/experiment.sbatch" 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "MP_CONFIG is not set" <<< "$out" && ok "a job without MP_CONFIG refused" || bad "no MP_CONFIG: exit $rc: $out"
# submit.sh with no sbatch on PATH: every PATH entry that holds sbatch replaced by a
# directory of links to all its other files (mammopatch's MPI start needs the usual tools)
nosb=$tmp/nosbatch path=$tmp/nosbatch
mkdir -p "$nosb"
IFS=: read -ra dirs <<< "$PATH"
for d in "${dirs[@]}"; do
  if [ -e "$d/sbatch" ]; then ln -sfn "$d"/* "$nosb"/; else path=$path:$d; fi
done
rm -f "$nosb/sbatch"
out=$(PATH=$path "$BASH" "$jobs/submit.sh" --config "$cfg" --bin "$mp" --set pipeline.out="$tmp/x" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "sbatch not found" <<< "$out" && [ ! -e "$tmp/x" ] && ok "submit.sh without sbatch refused: $out" \
  || bad "submit.sh without sbatch: exit $rc: $out"
out=$(bash "$jobs/submit.sh" --config "$cfg" --bin "$mp" --set train.lrr=1 --set pipeline.out="$tmp/x" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "train.lrr" <<< "$out" && [ ! -e "$tmp/x" ] && ok "submit.sh: unknown key refused before submitting" \
  || bad "submit.sh unknown key: exit $rc: $out"
# an unknown key in the file (which `config` only warns about): refused by pipeline --check
{ cat "$cfg"; printf '\n[train]\nbach = 64\n'; } >"$tmp/typo.ini"
out=$(bash "$jobs/submit.sh" --config "$tmp/typo.ini" --bin "$mp" --set pipeline.out="$tmp/x" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "train.bach" <<< "$out" && grep -q "pipeline --check" <<< "$out" && [ ! -e "$tmp/x" ] \
  && ok "submit.sh: an unknown key in the file refused by pipeline --check" || bad "submit.sh typo in the file: exit $rc: $out"
out=$(bash "$jobs/submit.sh" --config "$cfg" --bin "$mp" --set pipeline.out="$tmp/x" --gpus-per-task 0 --dry-run 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$(grep -c '^  sbatch ' <<< "$out")" -eq 4 ] && grep -q -- "--dependency=afterok" <<< "$out" \
  && ok "submit.sh --dry-run: 4 chained sbatch commands" || bad "dry run: exit $rc: $out"
out=$(bash "$jobs/submit.sh" --config "$cfg" --bin "$mp" --set pipeline.out="$tmp/x" --gpu-ranks 4 --gpu-ranks-per-node 2 \
  --dry-run 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$(grep -c -- '--gpus-per-task=1 --ntasks=4 --nodes=2 --ntasks-per-node=2 ' <<< "$out")" -eq 2 ] \
  && ok "submit.sh --gpu-ranks-per-node 2: the gan and experiment jobs on 2 nodes of 2 ranks" || bad "ranks per node: exit $rc: $out"
out=$(bash "$jobs/submit.sh" --config "$cfg" --bin "$mp" --set pipeline.out="$tmp/x" --gpu-ranks 3 --gpu-ranks-per-node 2 \
  --dry-run 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "does not divide the 3 GPU ranks" <<< "$out" && ok "submit.sh: 3 ranks at 2 per node refused" \
  || bad "uneven ranks per node: exit $rc: $out"
if ! nvidia-smi -L >/dev/null 2>&1; then
  out=$(bash "$jobs/p3.sh" --config "$cfg" --bin "$mp" 2>&1); rc=$?
  [ $rc -eq 2 ] && grep -q "no NVIDIA GPU" <<< "$out" && ok "p3.sh without a GPU refused" || bad "p3.sh no GPU: exit $rc: $out"
fi
out=$(SLURM_JOB_ID=1 bash "$jobs/p3.sh" --config "$cfg" --bin "$mp" --allow-cpu 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "inside Slurm job" <<< "$out" && ok "p3.sh inside a Slurm job refused" || bad "p3.sh in Slurm: exit $rc: $out"

# --- 2. a private Slurm --------------------------------------------------------------------
skip() { echo "SKIP test_slurm: $*"; echo "$passes passed, $fails failed before the skip"; ((fails == 0)) && exit 77; exit 1; }
[ "$(id -u)" -eq 0 ] || skip "a private Slurm needs root (SlurmUser=root and slurmd)"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
  echo "installing munge and Slurm (scripts/setup-deps.sh --with-slurm)"
  "$src/scripts/setup-deps.sh" --with-slurm > "$tmp/deps.log" 2>&1 || skip "cannot install Slurm: $(tail -3 "$tmp/deps.log")"
fi
sdir=$tmp/slurm
cleanup() {
  bash "$src/tests/jobs/slurm_local.sh" stop "$sdir"
  [ -n "${MP_TEST_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
# a watchdog outside this process group stops the daemons should this script be killed
# shellcheck disable=SC2016  # expanded by the watchdog's own shell
setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; bash "$2" stop "$3"' _ $$ \
  "$src/tests/jobs/slurm_local.sh" "$sdir" > /dev/null 2>&1 < /dev/null &
out=$(bash "$src/tests/jobs/slurm_local.sh" start "$sdir" 2 2>&1); rc=$?
slurm_line=$(tail -1 <<< "$out")
[ $rc -eq 0 ] || { [ $rc -eq 3 ] && skip "cannot start Slurm: $out"; bad "slurm_local.sh start: exit $rc: $out"; finish; exit; }
ok "$(tail -1 <<< "$out") ($(elapsed))"
export SLURM_CONF=$sdir/slurm.conf

# stuck JOBS: a job pending for a reason that never clears by itself (not Dependency,
# Resources, Priority, BeginTime: a requeued job waits for its BeginTime)
stuck() { squeue -h -j "$1" -o "%i %T %r" 2>/dev/null | awk '$2 == "PENDING" && $3 !~ /^(None|Dependency|Resources|Priority|BeginTime)$/' | head -1; }

# the jobs' final states: the last jobcomp record of each id (JobState, ExitCode)
final_state() { awk -v id="JobId=$1" '$1 == id {s = ""; for (i = 2; i <= NF; i++) if ($i ~ /^(JobState|ExitCode)=/) s = s " " $i; last = s}
  END {print substr(last, 2)}' "$sdir/jobcomp.log" 2>/dev/null; }
job_logs() { for f in "$o1"/slurm/*.out; do [ -f "$f" ] && { echo "--- $(basename "$f")"; tail -n "${1:-15}" "$f"; }; done; }
stage_status() { /usr/bin/python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1]))["stages"][sys.argv[2]]["status"])
except Exception: print("-")' "$1/pipeline.json" "$2"; }

# --- 3. the pipeline as four chained jobs ------------------------------------------------
o1=$tmp/via-slurm
cd "$tmp" || exit 1
# (1 GB per CPU: the scripts' cluster defaults of 4-8 GB exceed a small CI runner's memory,
# and sbatch refuses a request above the node's RealMemory; the tiny run needs ~100 MB)
# With the fake GPUs the gan and experiment jobs ask, as by default, one GPU per rank (and one
# CPU: the node has 2); they train on the CPU (tiny.ini), so only the request and its binding
# are exercised.  Without them: --gpus-per-task 0.
gpu_opt=(--gpus-per-task 0)
grep -q "fake GPUs: 2" <<< "$slurm_line" && gpu_opt=(--gpus-per-task 1 --cpus-per-task 1)
out=$(bash "$jobs/submit.sh" --config "$cfg" --bin "$mp" --mpiexec "$mpiexec" "${gpu_opt[@]}" --cpu-ranks 2 \
  --gpu-ranks 2 --set pipeline.out="$o1" --sbatch-arg=--mem-per-cpu=1G 2>&1); rc=$?
sub=$(sed -n 's/^submitted: //p' <<< "$out")
declare -A id=()
for kv in $sub; do id[${kv%%=*}]=${kv#*=}; done
if [ $rc -eq 0 ] && [ ${#id[@]} -eq 4 ]; then ok "submitted: $sub"; else bad "submit.sh: exit $rc: $out"; finish; exit; fi
grep -q "report.*$o1/experiment/report/index.html" <<< "$out" && ok "submit.sh names the report" || bad "report not named: $out"
ids="${id[preprocess]},${id[gan]},${id[experiment]},${id[report]}"
deps=$(squeue -h -j "$ids" -o "%i %E" 2>/dev/null | awk '$2 != "(null)" {printf "%s<-%s ", $1, $2}')
grep -q "afterok:${id[gan]}" <<< "$deps" && ok "chained with afterok: $deps" || bad "dependencies: $deps"

# USR1 in the middle of the experiment stage (Slurm's time-limit warning, sent by hand)
signalled=0
while [ "$(date +%s)" -lt $deadline ]; do
  if [ "$(stage_status "$o1" experiment)" = running ] \
     && [ "$(squeue -h -j "${id[experiment]}" -o %T 2>/dev/null)" = RUNNING ]; then
    sleep 1
    scancel --signal=USR1 --batch "${id[experiment]}" && signalled=1
    break
  fi
  [ -z "$(squeue -h -j "$ids" -o %i 2>/dev/null)" ] && break
  [ -n "$(stuck "$ids")" ] && break
  sleep 0.2
done
[ $signalled -eq 1 ] && ok "USR1 sent to the experiment job's batch shell ($(elapsed))" \
  || bad "the experiment stage was never seen running: $(squeue -j "$ids" 2>&1 | tail -4)"

# wait for all four (a failed job cancels its dependents: --kill-on-invalid-dep)
waited=0
while [ "$(date +%s)" -lt $deadline ]; do
  [ -z "$(squeue -h -j "$ids" -o %i 2>/dev/null)" ] && { waited=1; break; }
  s=$(stuck "$ids")
  [ -n "$s" ] && { bad "a job cannot run: $s"; break; }
  sleep 0.2
done
[ $waited -eq 1 ] && ok "all four jobs finished ($(elapsed))" || { bad "jobs still queued: $(squeue -j "$ids" 2>&1)"; scancel "${id[@]}"; }
all=1
for j in preprocess gan experiment report; do
  st=$(final_state "${id[$j]}")
  if [ "$st" = "JobState=COMPLETED ExitCode=0:0" ]; then ok "$j job ${id[$j]}: $st"; else bad "$j job ${id[$j]}: '${st:-no record}'"; all=0; fi
done
[ $all -eq 1 ] || job_logs 25
restarts=$(scontrol show job "${id[experiment]}" 2>/dev/null | grep -o 'Restarts=[0-9]*')
log=$(cat "$o1"/slurm/mp-experiment-"${id[experiment]}".out 2>/dev/null)
if [ $signalled -eq 1 ]; then
  grep -q "SIGUSR1 received" <<< "$log" && grep -q "requeueing job" <<< "$log" && [ "$restarts" = Restarts=1 ] \
    && ok "USR1: forwarded, exit 75, requeued ($restarts) and resumed to completion" \
    || bad "USR1 path: $restarts: $(grep "mp-job" <<< "$log")"
fi
if [ "${gpu_opt[1]}" = 1 ]; then
  for j in gan experiment; do
    line=$(grep -m 1 "^mp-job: mp-$j" "$o1"/slurm/mp-"$j"-"${id[$j]}".out 2>/dev/null)
    grep -q "2 ranks .*, GPUs 0,1 on the first node" <<< "$line" && ok "$j job held the node's 2 GPUs: $line" \
      || bad "$j job's GPUs: '$line'"
  done
fi
[ -s "$o1/experiment/report/index.html" ] && ok "report: $o1/experiment/report/index.html" || bad "no report in $o1"
st=""
for s in synth preprocess baseline gan experiment report; do st="$st $s:$(stage_status "$o1" $s)"; done
[ "$(grep -o ':done' <<< "$st" | wc -l)" -eq 6 ] && ok "pipeline.json: every stage done" || bad "pipeline.json:$st"

# --- 4. GPUs per task, under fake GPUs ------------------------------------------------------
if grep -q "fake GPUs: 2" <<< "$slurm_line"; then
  cat > "$tmp/gpu-probe.sh" <<'EOF'
#!/bin/bash
# SRC MPIEXEC MAMMOPATCH INFO_JSON, inside a job of 2 tasks x 1 GPU
set -u
# shellcheck source=/dev/null
source "$1/jobs/mp-gpu-env.sh"
cvd() { echo "${CUDA_VISIBLE_DEVICES-unset}"; }
export -f cvd
echo "plain: $(srun -n 1 --ntasks-per-node=1 bash -c cvd 2>&1)"
mp_gpu_launch_env force
echo "env: ${mp_launch_env[*]}"
echo "fixed: $(env "${mp_launch_env[@]}" srun -n 1 --ntasks-per-node=1 bash -c cvd 2>&1)"
echo "fixed-mpiexec: $(env "${mp_launch_env[@]}" srun -n 1 --ntasks-per-node=1 "$2" -n 2 --oversubscribe bash -c cvd 2>&1 | sort | tr '\n' ' ')"
"$2" -n 2 --oversubscribe "$3" info --json "$4" > /dev/null 2>&1 || echo "info failed"
srun --mpi=pmix -n 2 "$3" info --json "$4.srun" > /dev/null 2>&1 || echo "srun-info failed"
EOF
  gjid=$(sbatch --parsable -n 2 --gpus-per-task=1 --mem-per-cpu=1G --output="$tmp/gpu-probe.out" \
    "$tmp/gpu-probe.sh" "$src" "$mpiexec" "$mp" "$tmp/info.json" 2>&1)
  for _ in $(seq 300); do
    [ -z "$(squeue -h -j "$gjid" -o %i 2>/dev/null)" ] && break
    sleep 0.2
  done
  probe=$(cat "$tmp/gpu-probe.out" 2>/dev/null)
  plain=$(sed -n 's/^plain: //p' <<< "$probe") fixed=$(sed -n 's/^fixed: //p' <<< "$probe")
  fixed_mpi=$(sed -n 's/^fixed-mpiexec: //p' <<< "$probe")
  if [ "$plain" = 0 ]; then ok "a one-task step of a 2 x 1-GPU job sees GPU 0 only (the daemons' step without mp-gpu-env.sh)"
  else echo "note: this Slurm gives a one-task step '$plain', not one GPU: the launch environment changes nothing here"; fi
  [ "$fixed" = 0,1 ] && grep -q "SLURM_GPUS_PER_NODE=2" <<< "$probe" \
    && ok "under mp-gpu-env.sh's launch environment ($(sed -n 's/^env: //p' <<< "$probe")) it sees both: $fixed" \
    || bad "launch environment: a one-task step sees '$fixed' (job $gjid): $probe"
  [ "$fixed_mpi" = "0,1 0,1 " ] && ok "2 ranks of an mpiexec in that step both see GPUs 0,1" || bad "mpiexec in the step: '$fixed_mpi'"
  out=$(/usr/bin/python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["ranks"]
print(" ".join(str(x.get("cuda_visible_devices")) for x in r))' "$tmp/info.json" 2>&1)
  [ "$out" = "0,1 0,1" ] && ok "mammopatch info: both ranks see CUDA_VISIBLE_DEVICES=0,1 in the batch step" || bad "info: '$out' ($probe)"
  # ranks started by srun itself (PMIx): one GPU each, bound by Slurm (mammopatch then uses
  # device 0 of the one it sees: mp_gpu_pick)
  if grep -q "srun-info failed" <<< "$probe"; then echo "note: srun --mpi=pmix could not start mammopatch here: not checked"
  else
    out=$(/usr/bin/python3 -c 'import json, sys
r = sorted(json.load(open(sys.argv[1]))["ranks"], key=lambda x: x["rank"])
print(" ".join(str(x.get("cuda_visible_devices")) for x in r))' "$tmp/info.json.srun" 2>&1)
    [ "$out" = "0 1" ] && ok "srun --mpi=pmix --gpus-per-task=1: the ranks see GPU 0 and GPU 1, one each" || bad "srun info: '$out'"
  fi
else
  echo "note: no fake GPUs ($slurm_line): the GPU binding checks are skipped"
fi

# --- 5. the same pipeline run directly -----------------------------------------------------
o2=$tmp/direct
t0=$(date +%s)
"$mpiexec" -n 2 --oversubscribe "$mp" pipeline --config "$cfg" --set pipeline.out="$o2" > "$tmp/direct.log" 2>&1 \
  && ok "direct run ($(( $(date +%s) - t0 )) s)" || { bad "direct run"; tail -20 "$tmp/direct.log"; }
if command -v h5diff >/dev/null; then
  h5diff "$o1/patches.h5" "$o2/patches.h5" > /dev/null && ok "patch stores identical" || bad "patch stores differ"
fi
out=$(/usr/bin/python3 - "$o1/experiment/experiment.json" "$o2/experiment/experiment.json" "$o1" "$o2" <<'EOF'
import json, sys
# the numbers of two experiment.json files: provenance, timings, statuses (ran/reused),
# directories and paths aside; numbers must be identical, not close
SKIP = {"provenance", "seconds", "status", "dir", "store", "created_utc"}
def norm(x, root):
    if isinstance(x, dict):
        return {k: norm(v, root) for k, v in x.items() if k not in SKIP}
    if isinstance(x, list):
        return [norm(v, root) for v in x]
    if isinstance(x, str):
        return x.replace(root, "OUT")
    return x
def diff(a, b, path="", found=None):
    if type(a) != type(b):
        found.append(f"{path}: {a!r} vs {b!r}")
    elif isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                found.append(f"{path}.{k}: only in one")
            else:
                diff(a[k], b[k], f"{path}.{k}", found)
    elif isinstance(a, list):
        if len(a) != len(b):
            found.append(f"{path}: {len(a)} vs {len(b)} entries")
        for i, (u, v) in enumerate(zip(a, b)):
            diff(u, v, f"{path}[{i}]", found)
    elif a != b:
        found.append(f"{path}: {a!r} vs {b!r}")
    return found
def count(x):
    if isinstance(x, dict):
        return sum(count(v) for v in x.values())
    if isinstance(x, list):
        return sum(count(v) for v in x)
    return 1 if isinstance(x, (int, float)) and not isinstance(x, bool) else 0
a = norm(json.load(open(sys.argv[1])), sys.argv[3])
b = norm(json.load(open(sys.argv[2])), sys.argv[4])
d = diff(a, b, "", [])
if d:
    print(f"{len(d)} differences: " + "; ".join(d[:5]))
    sys.exit(1)
if not a.get("results") or not a.get("summary"):
    print("no results or summary")
    sys.exit(1)
print(f"{count(a)} numbers identical ({len(a['results'])} jobs, variants {', '.join(a['variants'])})")
EOF
); rc=$?
[ $rc -eq 0 ] && ok "Slurm run = direct run: $out" || bad "experiment numbers: $out"

echo "wall time $(elapsed)"
finish
