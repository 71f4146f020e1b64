#!/usr/bin/env bash
# A private, throw-away Slurm on this one machine, for the jobs tests (run as root).
#
#   slurm_local.sh start DIR [GPUS]
#                               write DIR/slurm.conf and start munged, slurmctld and slurmd
#                               with all their state, spool, sockets, logs and pid files
#                               under DIR; wait until the node is idle. DIR must not exist
#                               or be empty. GPUS > 0: the node also has that many fake GPUs
#                               (gres gpu on character devices made under DIR, each a copy
#                               of /dev/null: Slurm binds them to jobs and sets
#                               CUDA_VISIBLE_DEVICES as for real ones); where mknod is refused
#                               the node has none, and the last line says so. Exit 0 when
#                               Slurm answers; 3 when it cannot be started (not root,
#                               packages missing, a daemon fails: the reason and the logs'
#                               tails on stderr). Clean up with stop even after a failed start.
#   slurm_local.sh stop DIR     cancel every job of this private controller, then stop
#                               slurmd, slurmctld and munged by their pid files (TERM, then
#                               KILL after 10 s). Safe to call twice or after a failed start.
#
# Then point the clients at it: export SLURM_CONF=DIR/slurm.conf. Nothing under /etc is
# read or changed: munged gets its own key and socket (AuthInfo=socket=...), the daemons
# listen on two free TCP ports, and the node is this host (CPUs = nproc, RealMemory = 90%
# of MemTotal) in one partition "local" (Default, OverSubscribe). Finished jobs' states are
# appended to DIR/jobcomp.log (jobcomp/filetxt: JobId=... JobState=... ExitCode=...), since
# there is no accounting database for sacct.
set -euo pipefail

usage() { echo "usage: slurm_local.sh start DIR [GPUS] | stop DIR" >&2; exit 2; }
[[ $# -eq 2 || ($# -eq 3 && $1 == start) ]] || usage
cmd=$1 dir=$2 gpus=${3:-0}
[[ $gpus =~ ^[0-9]+$ ]] || usage

die3() { echo "slurm_local: $*" >&2; exit 3; }

# alive PID: the process exists and is not a zombie waiting for its parent
alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $st && $st != Z* ]]
}

# kill_pidfile FILE NAME: TERM the process named in FILE, wait up to 10 s, then KILL
kill_pidfile() {
  local f=$1 name=$2 pid
  [[ -s $f ]] || return 0
  pid=$(tr -dc '0-9' < "$f")
  [[ -n $pid ]] || return 0
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "slurm_local: $name ($pid) ignored TERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

stop() {
  [[ -d $dir ]] || return 0
  if [[ -f $dir/slurm.conf && -s $dir/slurmctld.pid ]] && command -v scancel >/dev/null; then
    # jobs first, so that no slurmstepd outlives its slurmd
    SLURM_CONF=$dir/slurm.conf timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 50); do
      [[ -z $(SLURM_CONF=$dir/slurm.conf timeout 5 squeue -h -o %i 2>/dev/null) ]] && break
      sleep 0.2
    done
  fi
  kill_pidfile "$dir/slurmd.pid" slurmd
  kill_pidfile "$dir/slurmctld.pid" slurmctld
  kill_pidfile "$dir/munge/munged.pid" munged
}

# two free TCP ports on localhost (bound together, so they differ)
free_ports() {
  /usr/bin/python3 - <<'EOF'
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
EOF
}

tails() {
  local f
  for f in "$dir"/munge/munged.log "$dir"/slurmctld.log "$dir"/slurmd.log; do
    [[ -s $f ]] && { echo "--- ${f#"$dir"/} (last lines)"; tail -n 15 "$f"; }
  done >&2
  return 0
}

start() {
  [[ $(id -u) -eq 0 ]] || die3 "needs root (SlurmUser=root, slurmd runs jobs as their user)"
  local b
  for b in munged mungekey slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
    command -v "$b" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$b" >/dev/null \
      || die3 "'$b' not found (scripts/setup-deps.sh --with-slurm installs munge and Slurm)"
  done
  export PATH=$PATH:/usr/sbin:/sbin
  mkdir -p "$dir"
  [[ -z $(ls -A "$dir") ]] || die3 "$dir is not empty"
  dir=$(cd "$dir" && pwd)
  mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
  chmod 700 "$dir/munge"

  # munge: a private key and socket, the daemon as root (the key is root's, mode 400)
  mungekey --create --keyfile="$dir/munge/munge.key" --bits=1024 >/dev/null 2>&1 \
    || dd if=/dev/urandom of="$dir/munge/munge.key" bs=128 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket.2" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed" 2> "$dir/munge/munged.err" \
    || { cat "$dir/munge/munged.err" >&2; tails; die3 "munged did not start"; }
  munge --socket="$dir/munge/munge.socket.2" -n | unmunge --socket="$dir/munge/munge.socket.2" >/dev/null \
    || { tails; die3 "munge round trip failed"; }

  local host cpus mem ports
  host=$(hostname -s)
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS
  mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  read -r -a ports <<< "$(free_ports)"
  # fake GPUs: character devices (1, 3) = /dev/null's, which is what gres.conf's File wants
  local gres_node="" gres_types="" fake="" i
  if ((gpus > 0)); then
    fake="fake GPUs: $gpus"
    for ((i = 0; i < gpus; i++)); do
      mknod "$dir/gpu$i" c 1 3 2> "$dir/mknod.err" || { fake="fake GPUs: none (mknod: $(head -1 "$dir/mknod.err"))"; break; }
    done
    if [[ $fake == "fake GPUs: $gpus" ]]; then
      gres_node=" Gres=gpu:$gpus" gres_types="GresTypes=gpu"
      echo "NodeName=$host Name=gpu File=$dir/gpu[0-$((gpus - 1))]" > "$dir/gres.conf"
    fi
  fi
  cat > "$dir/slurm.conf" <<EOF
# private Slurm of tests/jobs/slurm_local.sh (removed with its directory)
ClusterName=mplocal
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${ports[0]}
SlurmdPort=${ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket.2,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
$gres_types
ReturnToService=2
MinJobAge=3600
InactiveLimit=0
KillWait=30
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus RealMemory=$mem$gres_node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE OverSubscribe=YES State=UP
EOF
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF" 2> "$dir/slurmctld.err" || { cat "$dir/slurmctld.err" >&2; tails; die3 "slurmctld did not start"; }
  slurmd -f "$SLURM_CONF" 2> "$dir/slurmd.err" || { cat "$dir/slurmd.err" >&2; tails; die3 "slurmd did not start"; }
  local st=""
  for _ in $(seq 120); do
    st=$(timeout 5 sinfo -h -N -o %t 2>/dev/null | head -1) || true
    [[ $st == idle ]] && break
    sleep 0.5
  done
  [[ $st == idle ]] || { tails; die3 "the node is not idle after 60 s (state '${st:-no answer}')"; }
  echo "slurm_local: Slurm $(sinfo -V | awk '{print $2}') up: node $host ($cpus CPUs, $mem MB${fake:+, $fake}), ports ${ports[*]}, SLURM_CONF=$SLURM_CONF"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
