# shellcheck shell=bash
# Sourced by jobs/mp-job.sh (and tests/jobs/test_slurm.sh): the environment under which a GPU
# job's mpiexec reaches every GPU of its allocation on every node.
#
# Why: mpiexec (Open MPI) starts the ranks of its own node itself, in the batch step, which
# holds all of that node's GPUs; the ranks of every other node come from its daemons, which
# it starts with one `srun` step of ONE task per node.  srun reads the job's --gpus-per-task
# from SLURM_GPUS_PER_TASK (SLURM_TRES_PER_TASK in newer Slurm) and gives that step one GPU
# per node: all the ranks of a node then share one GPU, and under ConstrainDevices the
# node's other GPUs are out of their reach.  Seen on Slurm 22.05 (tests/jobs/test_slurm.sh,
# fake GPUs): in a job of 2 tasks x 1 GPU a one-task step sees CUDA_VISIBLE_DEVICES=0, and
# with this environment 0,1.  So mpiexec runs with the per-task GPU request removed and a
# per-node one instead, SLURM_GPUS_PER_NODE = the node's tasks x GPUs per task, which a
# one-task-per-node step takes whole; each rank then picks its GPU by its node-local rank
# among all of them.  A per-node count is one number for all the daemons' nodes (every node
# but the first, the batch host): where their tasks are spread unevenly (SLURM_TASKS_PER_NODE
# like 4,3,1) the smallest share is given, and the ranks of the fuller nodes share GPUs (said,
# with the fix: submit.sh --gpu-ranks-per-node).  CPUs need nothing of the kind: a step gets all
# of the job's CPUs on its nodes (seen on the same Slurm under task/cgroup with ConstrainCores:
# the one-task step and the ranks of an mpiexec in it had both CPUs of a 2-task job).
#
# mp_gpu_launch_env [force]
#   sets the array mp_launch_env to `env` arguments for mpiexec (empty: nothing to change)
#   and mp_launch_note to a line for the job log (empty when nothing changes).  Changes
#   only jobs that ask GPUs per task and span more than one node (force: any node count;
#   for the tests, which have one node).  Reads SLURM_GPUS_PER_TASK or SLURM_TRES_PER_TASK,
#   SLURM_TASKS_PER_NODE, SLURM_JOB_NUM_NODES.
mp_gpu_launch_env() {
  mp_launch_env=() mp_launch_note=""
  local gpt=${SLURM_GPUS_PER_TASK:-} tres=${SLURM_TRES_PER_TASK:-} keep="" item
  local -a items=()
  # per-task GPUs in the TRES form too (gres/gpu:N, gres/gpu:TYPE:N, or = instead of :),
  # the other per-task TRES kept
  if [[ -n $tres ]]; then
    IFS=, read -r -a items <<< "$tres"
    for item in "${items[@]}"; do
      if [[ $item == gres/gpu[:=]* || $item == gpu[:=]* ]]; then
        [[ -n $gpt ]] || gpt=$(sed -E 's/^(gres\/)?gpu[:=]//; s/=/:/g' <<< "$item")
      else
        keep+=${keep:+,}$item
      fi
    done
  fi
  [[ -n $gpt ]] || return 0
  [[ ${1:-} == force ]] || ((${SLURM_JOB_NUM_NODES:-1} > 1)) || return 0
  local type="" n=$gpt
  if [[ $gpt == *:* ]]; then type=${gpt%:*}: n=${gpt##*:}; fi
  [[ $n =~ ^[0-9]+$ ]] && ((n > 0)) || return 0
  # SLURM_TASKS_PER_NODE: counts with repeats, e.g. 4(x2),3
  local -a counts=()
  local c k
  IFS=, read -r -a items <<< "${SLURM_TASKS_PER_NODE:-}"
  for item in "${items[@]}"; do
    if [[ $item =~ ^([0-9]+)\(x([0-9]+)\)$ ]]; then
      for ((k = 0; k < BASH_REMATCH[2]; k++)); do counts+=("${BASH_REMATCH[1]}"); done
    elif [[ $item =~ ^[0-9]+$ ]]; then
      counts+=("$item")
    else
      mp_launch_note="mp-job: SLURM_TASKS_PER_NODE='${SLURM_TASKS_PER_NODE:-}' not understood: mpiexec keeps the per-task GPU request (the ranks of other nodes than the first may share one GPU)"
      return 0
    fi
  done
  ((${#counts[@]})) || return 0
  # the daemons' nodes: all but the first, the batch host, whose ranks mpiexec starts itself
  # (the first node only where there is no other: force)
  local -a remote=("${counts[@]:1}")
  ((${#remote[@]})) || remote=("${counts[0]}")
  local min=${remote[0]} max=${remote[0]}
  for c in "${remote[@]}"; do
    ((c < min)) && min=$c
    ((c > max)) && max=$c
  done
  mp_launch_env=(-u SLURM_GPUS_PER_TASK)
  if [[ -n $keep ]]; then mp_launch_env+=("SLURM_TRES_PER_TASK=$keep")
  elif [[ -n $tres ]]; then mp_launch_env+=(-u SLURM_TRES_PER_TASK); fi
  mp_launch_env+=("SLURM_GPUS_PER_NODE=$type$((min * n))")
  mp_launch_note="mp-job: GPUs: ${#counts[@]} nodes, tasks per node ${SLURM_TASKS_PER_NODE}, $gpt GPU(s) per task: mpiexec's daemons get $type$((min * n)) GPUs per node (--gpus-per-node), so every rank can reach its own"
  if ((min != max)); then
    mp_launch_note+="; the tasks are spread unevenly, so on the nodes after the first with more than $min ranks, ranks share GPUs (submit with --gpu-ranks-per-node for an even spread)"
  fi
}
