#!/usr/bin/env bash
# The whole mammopatch pipeline on one p3.2xlarge-like node (8 vCPU, 1 NVIDIA GPU), without
# Slurm, in two mpiexec runs:
#   1. mpiexec -n 8 (--cpu-ranks)  pipeline --stage synth,preprocess
#        one rank per vCPU, OMP_NUM_THREADS=1 (preprocessing is rank-sharded)
#   2. mpiexec -n 1                pipeline --stage baseline,gan,experiment,report
#        the one GPU's rank; its host-side threads get every vCPU (OMP_NUM_THREADS=nproc
#        unless set)
# The configuration is checked first (mammopatch config). A rerun skips the stages already
# complete and resumes an interrupted one from its checkpoints.
#
# Usage: jobs/p3.sh --config EXP.ini [options]
#   --config FILE     the experiment configuration (required); outputs go to pipeline.out
#   --set KEY=VALUE   override a configuration key (repeatable)
#   --bin PATH        the mammopatch binary (default: $MP_BIN, else build/mammopatch of this
#                     checkout, else mammopatch on PATH)
#   --mpiexec PATH    (default: mpiexec on PATH)
#   --cpu-ranks N     ranks of the preprocessing run (default 8)
#   --allow-cpu       run even when no NVIDIA GPU is visible (nvidia-smi -L fails): the GPU
#                     stages then train on the CPU, far slower; without it p3.sh refuses
#   --in-allocation   run inside a Slurm allocation (refused by default, see below)
#   -h, --help        this text
#
# Inside a Slurm job or allocation (SLURM_JOB_ID set) p3.sh refuses unless --in-allocation:
# there mpiexec places ranks on the allocation's slots rather than on the node's 8 vCPUs
# (-n 8 fails in a smaller allocation), and time limits, USR1 and requeueing are the batch
# scripts' business: use jobs/submit.sh on a cluster. --in-allocation is for a whole node
# taken with salloc --exclusive.
# SIGINT, SIGTERM and SIGUSR1 are passed to mammopatch as USR1: it writes checkpoints and
# exits 75, and so does p3.sh (run it again to continue). Exit: 0 done, 1 a stage failed,
# 2 refused (usage, configuration, no GPU, inside Slurm), 75 interrupted.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "p3: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
need() { if (($# < 2)) || [[ -z $2 ]]; then die "$1 needs a value"; fi; }

config="" bin=${MP_BIN:-} mpiexec=mpiexec cpu_ranks=8 allow_cpu=0 in_alloc=0
sets=()
while (($#)); do
  if [[ $1 == --*=* ]]; then set -- "${1%%=*}" "${1#*=}" "${@:2}"; fi
  case $1 in
    --config) need "$@"; config=$2; shift 2 ;;
    --set) need "$@"; [[ $2 == *=* ]] || die "--set wants KEY=VALUE, not '$2'"; sets+=(--set "$2"); shift 2 ;;
    --bin) need "$@"; bin=$2; shift 2 ;;
    --mpiexec) need "$@"; mpiexec=$2; shift 2 ;;
    --cpu-ranks) need "$@"; cpu_ranks=$2; shift 2 ;;
    --allow-cpu) allow_cpu=1; shift ;;
    --in-allocation) in_alloc=1; shift ;;
    -h|--help) usage ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ -n $config ]] || die "--config EXP.ini is required (see --help)"
[[ -f $config && -r $config ]] || die "configuration '$config' is not a readable file"
[[ $cpu_ranks =~ ^[1-9][0-9]*$ ]] || die "--cpu-ranks wants a positive integer, not '$cpu_ranks'"
if [[ -n ${SLURM_JOB_ID:-} ]] && ((!in_alloc)); then
  die "inside Slurm job $SLURM_JOB_ID: p3.sh is for a node without a batch system; on a cluster submit with jobs/submit.sh (or, on a whole node taken with salloc --exclusive, add --in-allocation)"
fi
if ! gpus=$(nvidia-smi -L 2>&1) || [[ -z $gpus ]]; then
  if ((!allow_cpu)); then
    die "no NVIDIA GPU visible (nvidia-smi -L: $(head -1 <<< "${gpus:-no output}")); p3.sh is for a one-GPU node. --allow-cpu trains on the CPU instead (slow)"
  fi
  echo "p3: no NVIDIA GPU visible; --allow-cpu: the GPU stages run on the CPU" >&2
  gpus=""
fi

if [[ -z $bin ]]; then
  if [[ -x $here/../build/mammopatch ]]; then bin=$here/../build/mammopatch
  else bin=$(command -v mammopatch || true); fi
fi
[[ -n $bin && -f $bin && -x $bin ]] || die "no mammopatch binary (${bin:-none found}): build it or give --bin PATH"
command -v "$mpiexec" >/dev/null || die "mpiexec '$mpiexec' not found (--mpiexec PATH)"
if ! msg=$("$bin" config --config "$config" "${sets[@]}" 2>&1 >/dev/null); then
  echo "$msg" >&2
  die "the configuration is refused; nothing run"
fi

vcpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS
[[ $(id -u) -ne 0 ]] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
pid=""
forwarded=""
# shellcheck disable=SC2317  # invoked by the traps
forward() {
  sig=$1
  [[ -n $pid && -z $forwarded ]] || return 0
  forwarded=$1
  echo "p3: SIG$1: asking mammopatch to checkpoint and stop" >&2
  kill -USR1 "$pid" 2>/dev/null || true
}
trap 'forward INT' INT
trap 'forward TERM' TERM
trap 'forward USR1' USR1

# run RANKS THREADS STAGES: one mpiexec run in the background, waited for across signals
run() {
  local n=$1 threads=$2 stages=$3 rc
  echo "p3: mpiexec -n $n ($threads threads each): pipeline --stage $stages"
  OMP_NUM_THREADS=$threads "$mpiexec" -n "$n" --oversubscribe --bind-to none \
    "$bin" pipeline --config "$config" --stage "$stages" "${sets[@]}" &
  pid=$!
  while :; do
    sig=""
    if wait "$pid"; then rc=0; else rc=$?; fi
    if [[ -z $sig ]] || ((rc <= 128)); then break; fi
  done
  pid=""
  return "$rc"
}

echo "p3: $vcpus vCPU${gpus:+, $(wc -l <<< "$gpus") GPU(s): $(head -1 <<< "$gpus")}"
rc=0
run "$cpu_ranks" 1 synth,preprocess || rc=$?
if ((rc == 0)) && [[ -z $forwarded ]]; then
  run 1 "${OMP_NUM_THREADS:-$vcpus}" baseline,gan,experiment,report || rc=$?
fi
case $rc in
  0) [[ -z $forwarded ]] || { echo "p3: stopped by SIG$forwarded after a finished stage; run it again to go on"; exit 75; }
     echo "p3: done" ;;
  75) echo "p3: stopped with checkpoints written (exit 75); run the same command again to continue" >&2 ;;
  2) echo "p3: mammopatch refused the run (exit 2)" >&2 ;;
  *) echo "p3: a stage failed (exit $rc)" >&2; rc=1 ;;
esac
exit "$rc"
