#!/usr/bin/env bash
# The fatal path end to end: each failure mode of mp_fatal_helper must end the whole
# 2-rank job with its exit code (as mpiexec reports it to the shell, and so to Slurm)
# and print the failing statement, file:line, rank and host.
# Usage: test_fatal.sh HELPER MPIEXEC
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
helper=$1 mpiexec=$2
fails=0 passes=0
host=$(hostname)

check() { # name expected_code command... ; then patterns on stderr via $want
  local name=$1 code=$2; shift 2
  local err rc
  err=$(timeout 120 "$@" 2>&1 >/dev/null); rc=$?
  local ok=1
  [[ $rc -eq $code ]] || { echo "FAIL $name: exit code $rc, expected $code"; ok=0; }
  for pat in "${want[@]}"; do
    grep -qF -- "$pat" <<<"$err" || { echo "FAIL $name: stderr lacks '$pat'"; ok=0; }
  done
  if ((ok)); then passes=$((passes + 1)); echo "ok   $name (exit $rc)"; else
    fails=$((fails + 1)); echo "---- stderr of $name:"; echo "$err" | head -30; fi
}

mpi2=("$mpiexec" -n 2 --oversubscribe)

want=("MP_CHECK_MPI(MPI_Send(&x, 1, MPI_INT, size + 5, 0, mp_mpi_comm(ctx))) failed" "fatal_helper.c:" "rank 1/2 on" "$host")
check mpi 10 "${mpi2[@]}" "$helper" mpi
want=("MP_CHECK_H5(H5Fopen(\"/nonexistent/patches.h5\"" "fatal_helper.c:" "rank " "unable to open file")
check h5 11 "${mpi2[@]}" "$helper" h5
want=("check failed: size < 0 -- size is 2" "fatal_helper.c:" "rank 0/2 on $host")
check check 3 "${mpi2[@]}" "$helper" check
want=("out of memory: could not allocate" "rank 0/2")
check alloc 4 "${mpi2[@]}" "$helper" alloc
want=("check failed: answer == 42 -- answer is 41" "no MPI on $host")
check nompi 3 "$helper" nompi
want=()
check ok 0 "${mpi2[@]}" "$helper" ok

echo "$passes passed, $fails failed"
((fails == 0))
