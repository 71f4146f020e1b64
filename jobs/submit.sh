#!/usr/bin/env bash
# Submits the whole mammopatch pipeline to Slurm as four chained batch jobs, each started
# only when the one before it ended with exit code 0 (--dependency=afterok, and
# --kill-on-invalid-dep=yes so that a failure cancels the rest instead of leaving them
# pending):
#   preprocess.sbatch  stages synth,preprocess    CPU ranks   (--cpu-ranks)
#   gan.sbatch         stages baseline,gan        GPU ranks   (--gpu-ranks, --gpus-per-task)
#   experiment.sbatch  stage experiment           GPU ranks
#   report.sbatch      stage report               1 task
# The configuration is checked first with `mammopatch config` (nothing is submitted when it
# is refused). Prints one line `submitted: preprocess=ID gan=ID experiment=ID report=ID`,
# where the job logs go and where the report will be.
#
# Usage: jobs/submit.sh --config EXP.ini [options]
#   --config FILE         the experiment configuration (required); OUT is its pipeline.out
#   --set KEY=VALUE       override a configuration key (repeatable); checked, then passed to
#                         every job (e.g. --set pipeline.out=/scratch/run1)
#   --bin PATH            the mammopatch binary (default: $MP_BIN, else build/mammopatch of
#                         this checkout, else mammopatch on PATH)
#   --mpiexec PATH        mpiexec inside the jobs (default: mpiexec on the jobs' PATH)
#   --cpu-ranks N         tasks of the preprocess job (default: its #SBATCH, 32)
#   --gpu-ranks N         tasks of the gan and experiment jobs (default: their #SBATCH, 4)
#   --gpu-ranks-per-node R   spread those tasks evenly, R on each of N/R nodes (R must divide
#                         N): with R x G GPUs per node every rank reaches a GPU of its own
#                         on every node (jobs/mp-gpu-env.sh); without it Slurm may spread
#                         them unevenly (e.g. 3 + 1), and the ranks of fuller nodes after the
#                         first share GPUs
#   --gpus-per-task G     GPUs per task of those jobs (default 1); 0 = request no GPU (the
#                         ranks train on CPUs, one core each unless --cpus-per-task)
#   --cpus-per-task C     CPUs per task of the gan and experiment jobs (default: their
#                         #SBATCH, 8; 1 with --gpus-per-task 0)
#   --partition P         partition of all four jobs
#   --gpu-partition P     partition of the gan and experiment jobs (default: --partition)
#   --account A           account to charge
#   --time-preprocess T, --time-gan T, --time-experiment T, --time-report T
#                         time limits (Slurm's formats, e.g. 2:00:00, 1-12:00:00); a job
#                         that meets its limit checkpoints and is requeued, so a short limit
#                         costs only restarts
#   --log-dir DIR         the jobs' output files, %x-%j.out (default: OUT/slurm)
#   --sbatch-arg ARG      one more sbatch argument for every job (repeatable),
#                         e.g. --sbatch-arg=--qos=long
#   --dry-run             check the configuration and print the sbatch commands; submit nothing
#   --no-check            skip `mammopatch pipeline --check` (run here, on this node: its inputs,
#                         site key and finished stages; the training backend is not created)
#   -h, --help            this text
#
# The jobs run in the current directory (--chdir), so a relative pipeline.out or input path
# means the same as here; they read the configuration file when they start: leave it
# unchanged until the report job ends. The jobs get this shell's environment
# (--export=ALL), including MAMMOPATCH_SITE_KEY when it is set; on a shared cluster prefer
# privacy.site_key_file (a file only you can read) to a key in the environment.
# Exit: 0 submitted (or dry run); 2 refused (usage, configuration, no sbatch); 1 sbatch failed
# (jobs already submitted are cancelled).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "submit: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

config="" bin=${MP_BIN:-} mpiexec="" cpu_ranks="" gpu_ranks="" gpu_rpn="" gpus=1 cpt="" partition="" gpu_partition=""
account="" log_dir="" dry=0 check=1
sets=() extra=()
declare -A tlim=()
need() { if (($# < 2)) || [[ -z $2 ]]; then die "$1 needs a value"; fi; }
while (($#)); do
  opt=$1 val=""
  if [[ $opt == --*=* ]]; then val=${opt#*=}; opt=${opt%%=*}; set -- "$opt" "$val" "${@:2}"; fi
  case $opt in
    --config) need "$@"; config=$2; shift 2 ;;
    --set) need "$@"; [[ $2 == *=* ]] || die "--set wants KEY=VALUE, not '$2'"; sets+=("$2"); shift 2 ;;
    --bin) need "$@"; bin=$2; shift 2 ;;
    --mpiexec) need "$@"; mpiexec=$2; shift 2 ;;
    --cpu-ranks) need "$@"; cpu_ranks=$2; shift 2 ;;
    --gpu-ranks) need "$@"; gpu_ranks=$2; shift 2 ;;
    --gpu-ranks-per-node) need "$@"; gpu_rpn=$2; shift 2 ;;
    --gpus-per-task) need "$@"; gpus=$2; shift 2 ;;
    --cpus-per-task) need "$@"; cpt=$2; shift 2 ;;
    --partition) need "$@"; partition=$2; shift 2 ;;
    --gpu-partition) need "$@"; gpu_partition=$2; shift 2 ;;
    --account) need "$@"; account=$2; shift 2 ;;
    --time-preprocess|--time-gan|--time-experiment|--time-report) need "$@"; tlim[${opt#--time-}]=$2; shift 2 ;;
    --log-dir) need "$@"; log_dir=$2; shift 2 ;;
    --sbatch-arg) need "$@"; extra+=("$2"); shift 2 ;;
    --dry-run) dry=1; shift ;;
    --no-check) check=0; shift ;;
    -h|--help) usage ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ -n $config ]] || die "--config EXP.ini is required (see --help)"
[[ -f $config && -r $config ]] || die "configuration '$config' is not a readable file"
for v in cpu_ranks gpu_ranks cpt; do
  [[ -z ${!v} || ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v//_/-} wants a positive integer, not '${!v}'"
done
[[ -z $gpu_rpn || $gpu_rpn =~ ^[1-9][0-9]*$ ]] || die "--gpu-ranks-per-node wants a positive integer, not '$gpu_rpn'"
if [[ -n $gpu_rpn ]]; then
  # the GPU jobs' task count: --gpu-ranks, else their #SBATCH --ntasks
  n_gpu=${gpu_ranks:-$(sed -n 's/^#SBATCH --ntasks=\([0-9]*\)$/\1/p' "$here/gan.sbatch")}
  [[ $n_gpu =~ ^[1-9][0-9]*$ ]] || die "cannot tell the GPU jobs' task count: give --gpu-ranks with --gpu-ranks-per-node"
  ((n_gpu % gpu_rpn == 0)) || die "--gpu-ranks-per-node $gpu_rpn does not divide the $n_gpu GPU ranks (an even spread needs whole nodes)"
fi
[[ $gpus =~ ^[0-9]+$ ]] || die "--gpus-per-task wants an integer >= 0, not '$gpus'"

# the binary: --bin, $MP_BIN, this checkout's build, PATH
if [[ -z $bin ]]; then
  if [[ -x $here/../build/mammopatch ]]; then bin=$here/../build/mammopatch
  else bin=$(command -v mammopatch || true); fi
fi
[[ -n $bin ]] || die "no mammopatch binary: build it (cmake --build build) or give --bin PATH"
[[ -f $bin && -x $bin ]] || die "--bin $bin is not an executable file"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")

# the configuration, checked before anything is submitted (its refusal is shown as is)
set_args=()
for s in "${sets[@]}"; do set_args+=(--set "$s"); done
if ! effective=$("$bin" config --config "$config" "${set_args[@]}" 2>&1); then
  echo "$effective" >&2
  die "the configuration is refused (mammopatch config --config $config${sets[*]:+ --set ...}); nothing submitted"
fi
# and the pipeline's own refusals (an unknown key, a missing input or site key, a changed
# configuration of finished stages): what the first job would refuse, refused now
if ((check)) && ! plan=$("$bin" pipeline --check --config "$config" "${set_args[@]}" 2>&1); then
  echo "$plan" >&2
  die "the pipeline refuses this configuration (mammopatch pipeline --check --config $config${sets[*]:+ --set ...}); nothing submitted (--no-check skips this)"
fi
out=$(awk '/^\[/ {sec = $0} sec == "[pipeline]" && /^out *=/ {sub(/^out *= */, ""); print; exit}' <<< "$effective")
[[ -n $out ]] || die "pipeline.out is empty in $config: the pipeline needs an output directory (--set pipeline.out=DIR)"
[[ $out == /* ]] && out_abs=$out || out_abs=$PWD/$out
log_dir=${log_dir:-$out_abs/slurm}

sbatch=$(command -v sbatch || true)
if ((dry == 0)); then
  [[ -n $sbatch ]] || die "sbatch not found: submit from a Slurm login node (or run on one node with jobs/p3.sh); nothing submitted"
  if command -v scontrol >/dev/null && ! ping=$(scontrol ping 2>&1); then
    die "Slurm does not answer (scontrol ping: $(tr '\n' ' ' <<< "$ping")); nothing submitted"
  fi
fi

# the sbatch arguments of each job (command-line options override the scripts' #SBATCH)
common=(--parsable --export=ALL --chdir="$PWD" --output="$log_dir/%x-%j.out" --kill-on-invalid-dep=yes)
[[ -z $account ]] || common+=(--account="$account")
common+=("${extra[@]}")
args_preprocess=() args_gan=() args_experiment=() args_report=()
[[ -z $partition ]] || { args_preprocess+=(--partition="$partition"); args_report+=(--partition="$partition"); }
gpu_partition=${gpu_partition:-$partition}
gpu_args=(--gpus-per-task="$gpus")
[[ -z $gpu_partition ]] || gpu_args+=(--partition="$gpu_partition")
[[ -z $gpu_ranks ]] || gpu_args+=(--ntasks="$gpu_ranks")
[[ -z $gpu_rpn ]] || gpu_args+=(--nodes="$((n_gpu / gpu_rpn))" --ntasks-per-node="$gpu_rpn")
if [[ -n $cpt ]]; then gpu_args+=(--cpus-per-task="$cpt")
elif ((gpus == 0)); then gpu_args+=(--cpus-per-task=1); fi
args_gan+=("${gpu_args[@]}")
args_experiment+=("${gpu_args[@]}")
[[ -z $cpu_ranks ]] || args_preprocess+=(--ntasks="$cpu_ranks")
for j in preprocess gan experiment report; do
  [[ -z ${tlim[$j]:-} ]] && continue
  # shellcheck disable=SC2178  # a names the array args_<job>
  declare -n a=args_$j
  a+=(--time="${tlim[$j]}")
  unset -n a
done

MP_JOBS_DIR=$(cd "$(dirname "$0")" && pwd)
export MP_BIN=$bin MP_CONFIG=$config MP_JOBS_DIR
MP_SET=$(printf '%s\n' "${sets[@]}")
export MP_SET
if [[ -n $mpiexec ]]; then export MP_MPIEXEC=$mpiexec; fi

report=$out_abs/experiment/report/index.html
if ((dry)); then
  echo "submit: dry run; the configuration is accepted; nothing submitted. With MP_BIN=$bin MP_CONFIG=$config${sets[*]:+ MP_SET=(${sets[*]})}:"
  prev=DRYRUN
  for j in preprocess gan experiment report; do
    # shellcheck disable=SC2178
    declare -n a=args_$j
    dep=()
    [[ $j == preprocess ]] || dep=(--dependency="afterok:<$prev>")
    printf '  sbatch'; printf ' %q' "${common[@]}" "${a[@]}" "${dep[@]}" "$here/$j.sbatch"; echo
    unset -n a
    prev=$j
  done
  echo "report (after the four jobs): $report"
  exit 0
fi

mkdir -p "$log_dir"
ids=() names=()
cancel_submitted() {
  ((${#ids[@]})) || return 0
  echo "submit: cancelling the jobs already submitted: ${ids[*]}" >&2
  scancel "${ids[@]}" || true
}
prev=""
for j in preprocess gan experiment report; do
  # shellcheck disable=SC2178
  declare -n a=args_$j
  dep=()
  [[ -z $prev ]] || dep=(--dependency="afterok:$prev")
  if ! id=$("$sbatch" "${common[@]}" "${a[@]}" "${dep[@]}" "$here/$j.sbatch"); then
    echo "submit: sbatch refused the $j job" >&2
    cancel_submitted
    exit 1
  fi
  unset -n a
  id=${id%%;*}  # --parsable prints ID or ID;CLUSTER
  ids+=("$id") names+=("$j=$id")
  prev=$id
done
echo "submitted: ${names[*]}"
echo "logs: $log_dir/mp-<stage>-<id>.out (squeue -j $(IFS=,; echo "${ids[*]}"))"
echo "report (after the four jobs): $report"
