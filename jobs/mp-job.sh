#!/usr/bin/env bash
# The body every mammopatch batch job runs (jobs/*.sbatch exec it with their stages): the
# environment checks (inside Slurm, MP_BIN and MP_CONFIG set by jobs/submit.sh), mpiexec of
# `mammopatch pipeline --stage STAGES` over the job's tasks, USR1/TERM forwarded once to
# mpiexec as USR1 (every rank checkpoints and exits 75), and on 75 `scontrol requeue` so the
# job resumes from its checkpoints; a GPU job on several nodes runs mpiexec so that every
# rank can reach a GPU of its own (jobs/mp-gpu-env.sh).  This file is executed in place
# (sbatch copies only the .sbatch script to its spool), found through MP_JOBS_DIR, which
# submit.sh exports.
# Usage: mp-job.sh STAGES
set -euo pipefail
stages=${1:?usage: mp-job.sh STAGES}

die() { echo "mp-job: $*" >&2; exit 2; }
[[ -n ${SLURM_JOB_ID:-} ]] || die "not inside a Slurm job (no SLURM_JOB_ID); submit the pipeline with jobs/submit.sh --config EXP.ini, or run it on one node with jobs/p3.sh"
[[ -n ${MP_BIN:-} ]] || die "MP_BIN is not set (the mammopatch binary; jobs/submit.sh sets it)"
[[ -x $MP_BIN ]] || die "MP_BIN=$MP_BIN is not an executable file"
[[ -n ${MP_CONFIG:-} ]] || die "MP_CONFIG is not set (the experiment's .ini; jobs/submit.sh sets it)"
[[ -r $MP_CONFIG ]] || die "MP_CONFIG=$MP_CONFIG is not a readable file"
mpiexec=${MP_MPIEXEC:-mpiexec}
command -v "$mpiexec" >/dev/null || die "mpiexec '$mpiexec' not found (set MP_MPIEXEC)"
restarts=${SLURM_RESTART_COUNT:-0}
if ((restarts > ${MP_MAX_REQUEUES:-20})); then
  die "requeued $restarts times (more than MP_MAX_REQUEUES=${MP_MAX_REQUEUES:-20}); raise --time instead"
fi

[[ $(id -u) -ne 0 ]] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
sets=()
while IFS= read -r s; do [[ -z $s ]] || sets+=(--set "$s"); done <<< "${MP_SET:-}"
extra=()
read -r -a extra <<< "${MP_MPIEXEC_ARGS:-}"
ranks=${SLURM_NTASKS:-1}

echo "mp-job: $SLURM_JOB_NAME, job $SLURM_JOB_ID (restart $restarts) on ${SLURM_JOB_NODELIST:-?}:" \
     "$ranks ranks x $OMP_NUM_THREADS threads${SLURM_JOB_GPUS:+, GPUs $SLURM_JOB_GPUS on the first node}, stages $stages, $(date -Is)"
# GPUs per task on several nodes: mpiexec's daemons ask for each node's GPUs whole
# (jobs/mp-gpu-env.sh says why); env execs mpiexec, so $! below is mpiexec's pid
# shellcheck source=SCRIPTDIR/mp-gpu-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/mp-gpu-env.sh"
mp_gpu_launch_env ""
[[ -z $mp_launch_note ]] || echo "$mp_launch_note"
env "${mp_launch_env[@]}" "$mpiexec" -n "$ranks" --bind-to none "${extra[@]}" "$MP_BIN" pipeline --config "$MP_CONFIG" --stage "$stages" "${sets[@]}" &
pid=$!

# USR1 (--signal=B:..., or scancel --signal=USR1 --batch) and TERM reach this shell: forward
# USR1 once to mpiexec (it relays USR1 to every rank; its own TERM handling would kill them)
sig="" forwarded=""
# shellcheck disable=SC2317  # invoked by the traps
forward() {
  sig=$1
  if [[ -z $forwarded ]]; then
    forwarded=$1
    echo "mp-job: SIG$1 received: asking mammopatch to checkpoint and stop ($(date -Is))" >&2
    kill -USR1 "$pid" 2>/dev/null || true
  fi
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
while :; do
  sig=""
  if wait "$pid"; then rc=0; else rc=$?; fi
  # a trapped signal interrupts `wait` with a status above 128: wait again for mpiexec's own
  if [[ -z $sig ]] || ((rc <= 128)); then break; fi
done

case $rc in
  0) echo "mp-job: $SLURM_JOB_NAME done ($(date -Is))" ;;
  75)
    echo "mp-job: stopped with checkpoints written (exit 75); requeueing job $SLURM_JOB_ID to resume" >&2
    scontrol requeue "$SLURM_JOB_ID" || echo "mp-job: the requeue was refused (a cancelled job stays cancelled); submit again to resume" >&2
    ;;
  *) echo "mp-job: $SLURM_JOB_NAME failed (exit $rc); the dependent jobs will not start" >&2 ;;
esac
exit "$rc"
