#!/usr/bin/env bash
# tests/gpu/run.sh — the one script a GPU machine runs for the CUDA backend (issue 10).
# CI has no GPU, so everything that needs one is checked here, in one pass that fits a short
# device lease (under 8 minutes in all): the build with CUDA on, every op and the SPEC nets of
# the `cuda` backend against `ref`, PyTorch parity through `cuda`, the NCCL gradient check on
# 1 and 2 ranks, and the GPU benchmark against PyTorch.  It keeps going after a failing step
# (except a failed configure or build, after which nothing can run), and exits 1 when any
# step failed, 0 otherwise.
#   steps   gpu         nvidia-smi -L and nvidia-smi; the toolchain (nvcc, cmake, ninja, mpiexec,
#                       python/torch, required libraries) is listed in the same log
#           configure   cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMP_ENABLE_CUDA=ON
#                       -DCMAKE_CUDA_ARCHITECTURES=90 [-G Ninja when ninja is there]
#           build       cmake --build build-gpu -j$(nproc) --target <the targets the steps run:
#                       mp_backend_cuda test_cudnn_graph test_backend test_net gpu_nccl_check
#                       knn_tool inception_tool nn_parity_tool mp_bench_nn mammopatch;
#                       BUILD_TARGETS overrides>
#           test_cudnn_graph   the graph-API graphs, heuristics and plans for a described H100
#                       (no GPU needed; here against the machine's own cuDNN)
#           test_backend, test_net   build-gpu/tests/{test_backend,test_net} (cuda vs ref; test_backend
#                       also with MP_CUDA_CONV_OWN=wgrad3|gemm and MP_CUDA_CONV_GRAPH=force; a
#                       pass that skipped cuda, e.g. a driver too old for the runtime, is a FAIL;
#                       test_backend's note counts the convolutions' picks: legacy cuDNN, graph
#                       engine, own algorithm, and candidates that failed, differed, were
#                       nondeterministic or had a zero reference)
#           parity_classifier, parity_gan   nn_parity_tool cuda ... | tests/nn/torch_parity.py,
#                       torch_gan_parity.py ... cuda (as ctest runs them for ref/cpu), when a
#                       python has torch, h5py and numpy
#           nccl_1, nccl_2   mpiexec -n 1 / -n 2 --oversubscribe build-gpu/tests/gpu_nccl_check
#                       under NCCL_DEBUG=WARN (unless set); nccl_2 is a SKIP where one GPU is in
#                       the Exclusive_Process compute mode (its 2 ranks cannot share it)
#                       (exit 0 pass, 77 skip, else fail; the build's mpiexec; a pass must name
#                       n ranks; with one GPU the 2 ranks share it and reduce through MPI, which
#                       the note says: the 2-rank NCCL reduction needs a machine with 2 GPUs; NCCL
#                       itself runs on one-rank communicators, one per rank, and the note says so)
#           bench       BUILD_DIR=build-gpu TIME_BUDGET_S=<left, at most BENCH_BUDGET_S> bench/gpu/run.sh
#           precision   (after the bench, in what it leaves, at most 180 s)
#                       tests/gpu/precision.sh: the classifier trained and evaluated in fp32, tf32
#                       and bf16 on the same splits of the carried store (GPU_STORE), the accuracy
#                       effect of each precision (test MCC, AUCs, probability drift from fp32);
#                       its tables go into tests.log and the summary
#           knn         (after precision, before the profile; at most 90 s) tests/gpu/knn.sh
#                       build-gpu/tests/knn_tool: SPEC §9's kNN at thesis scale (2,000 x 65,536,
#                       k 2; l2, cosine, l1) with the cuda backend's score blocks and on the host,
#                       timed, the answers compared byte for byte (into tests.log)
#           inception   (after knn; at most 75 s) tests/gpu/inception.sh build-gpu/tests/inception_tool:
#                       the FID's Inception-v3 on the cuda backend (random FID-variant weights,
#                       600 patches in batches of 200: images/s after a warm-up batch), its first
#                       2 images' pool3 and logits against the host backend's (into tests.log)
#           profile     last, in what time the bench and precision leave: mp_bench_nn under MP_NN_PROFILE=1
#                       (per-layer times and the cuDNN algorithms: classifier fp32, tf32 and bf16,
#                       bf16 also at batch 512, a WGAN-GP iteration), the
#                       classifier with MP_CUDA_DETERMINISTIC=0, with MP_CUDA_CONV_OWN=off and/or
#                       MP_CUDA_CONV_GRAPH=off (fp32; bf16 at 128 and 512; a WGAN-GP iteration
#                       with legacy cuDNN only and as chosen) and with a 4 GiB workspace,
#                       PyTorch's per-kernel table of the same step (bench/gpu/torch_profile.py,
#                       fp32 and bf16) and nsys's kernel table where nsys exists, into bench.log
# Output in $OUT (default build-gpu-out): summary.md (a Markdown table: step, PASS/FAIL/SKIP
# (PARTIAL: a step after the build that TOTAL_BUDGET_S cut short: its timeout was the budget's,
# not its own cap, and it ran out; a step that ran out of its own cap, or crashed, is a FAIL;
# RUNNING: the step the lease ended in), wall time,
# log, note: for nccl how the gradients were reduced, for the bench how many rows it measured
# and whether PyTorch ran; rewritten whole after every change) and the logs, grouped so that $OUT never holds more than 8 files
# (what a device lease brings back): gpu.log, build.log (configure + build), tests.log,
# parity.log, nccl.log, bench.log, and bench/gpu's own bench.txt.  Each step's result and
# the tail of its log are also printed, and summary.md last.
# Environment:
#   SKIP_BUILD=1        no configure or build: use an existing $BUILD_DIR (to check this
#                       script, or to rerun the checks on a warm machine)
#   BUILD_DIR           default build-gpu (kept between calls on a warm machine: the next
#                       build is incremental; removed first when it was configured elsewhere
#                       or with another generator)
#   BUILD_TARGETS       build only these targets (default: the ones the steps run, listed under
#                       `build` above; those this configuration lacks, e.g. the tests without
#                       cmocka, are left out and named in build.log); "all" builds everything
#   CUDA_ARCHS          CMAKE_CUDA_ARCHITECTURES (default 90: H100/H200)
#   STEPS               run only these steps (space-separated names from the list above;
#                       gpu, configure and build always run): the others are recorded as SKIP
#   PROFILE_TORCH=0     the profile step leaves out PyTorch's per-kernel table
#                       (bench/gpu/torch_profile.py)
#   BENCH_BUDGET_S      the most the bench step may take (default 240; it also leaves 60 s
#                       of the total budget, PRECISION_RESERVE_S more where precision runs and
#                       KNN_RESERVE_S where knn does, INCEPTION_RESERVE_S where inception does)
#   PRECISION_RESERVE_S what the bench leaves for the precision step (default 100)
#   KNN_RESERVE_S       and for the knn step (default 45)
#   INCEPTION_RESERVE_S and for the inception step (default 40)
#   MP_GIT_DESCRIBE     the commit, where the tree came without .git (a device lease copies the
#                       working tree only): the caller's `git describe --always --dirty --tags
#                       --abbrev=10`; the summary's header and the built version name it
#   BENCH_WHAT          what the bench step measures: bench/gpu/run.sh's arguments
#                       (classifier, gansteps; default both)
#   TOTAL_BUDGET_S      wall-clock budget of the whole script (default 450); every step runs
#                       under `timeout` within what is left (stdin from /dev/null), and steps
#                       that no longer fit are skipped
#   PYTHON              the python for the parity fixtures and the benchmark's PyTorch side
#                       (default: python3, then /usr/bin/python3)
#   GPU_STORE           the patch store of the precision step (default .gpu-store/patches.h5, made
#                       here by tests/gpu/make-store.sh and carried with the tree: a GPU node image
#                       has no GDCM to make one)
#   PRECISION_SEEDS     the precision step's split seeds (default "1 2 3")
#   GPU_DEBS            a folder of Debian 12 .deb files (default .gpu-debs, made by
#                       tests/gpu/fetch-debs.sh and carried with the tree): the groups the
#                       machine lacks (cJSON, inih, cmocka, OpenSSL's libcrypto, OpenBLAS +
#                       LAPACKE) are unpacked under $BUILD_DIR-deps and put on the compiler's,
#                       pkg-config's and the loader's paths
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
root=$PWD
bdir=${BUILD_DIR:-build-gpu}
babs=$bdir
[[ $babs == /* ]] || babs=$root/$bdir
OUT=${OUT:-$root/build-gpu-out}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
total=${TOTAL_BUDGET_S:-450}
t0=$SECONDS
summary=$OUT/summary.md
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none  # no CMA/ptrace needed inside VMs and containers
[[ -d /usr/local/cuda/bin ]] && PATH=/usr/local/cuda/bin:$PATH

# ---- the summary -----------------------------------------------------------------------------
names=() results=() secs=() logs=() notes=() details="" header="" step_out=""
write_summary() {
  {
    echo "# GPU checks (tests/gpu/run.sh)"
    echo
    printf '%s\n' "$header"
    echo
    echo "| step | result | wall s | log | note |"
    echo "|---|---|---|---|---|"
    local i
    for i in "${!names[@]}"; do
      printf '| %s | %s | %s | %s | %s |\n' "${names[$i]}" "${results[$i]}" "${secs[$i]}" "${logs[$i]}" "${notes[$i]}"
    done
    echo
    echo "total $((SECONDS - t0)) s of a ${total} s budget"
    [[ -z $details ]] || printf '\n%s\n' "$details"
  } >"$summary.tmp" && mv -f "$summary.tmp" "$summary" # whole, even if the lease ends mid-write
}
# record NAME RESULT SECONDS LOG NOTE
record() {
  local note=${5//$'\n'/ }
  note=${note//|/\\|}
  names+=("$1") results+=("$2") secs+=("$3") logs+=("$4") notes+=("${note:0:160}")
  printf '== %-18s %-4s %4ss  %s%s\n' "$1" "$2" "$3" "$4" "${5:+  ($5)}"
  write_summary
}
skip() { record "$1" SKIP 0 "$2" "$3"; }
# unrecord: drops the row recorded last (a RUNNING row, once its step has ended)
unrecord() {
  local i=$((${#names[@]} - 1))
  unset "names[$i]" "results[$i]" "secs[$i]" "logs[$i]" "notes[$i]"
}
left() { echo $((total - (SECONDS - t0))); }

boilerplate='^[[:space:]]*$|^-{5,}$|^ *(Process name|Exit code):|Primary job|non-zero exit code|(mpiexec|mpirun) detected|the job to be terminated'
failure_re='\[ *(ERROR|FAILED) *\] ---|^ *FAIL|: FAILED|error:|differs|mismatch|Assertion|NCCL WARN'
# renote NOTE: replaces the note of the step recorded last
renote() {
  local note=${1//$'\n'/ }
  notes[${#notes[@]} - 1]=${note//|/\\|}
  write_summary
}
# Steps whose timeout, when the budget (not their own cap) set it, leaves a partial result that
# is no failure but PARTIAL: every step after the build (the tests: what ran is in the log; the
# bench: the rows measured by then; precision: its TERM trap prints the runs finished; the
# profile: diagnosis).  Not gpu, configure or build: without them nothing runs, so a cut there
# stays a FAIL.
partial_ok=" test_cudnn_graph test_backend test_net parity_classifier parity_gan nccl_1 nccl_2 bench precision profile "
# step NAME LOG CAP CMD...: CMD under `timeout` (CAP seconds, or what is left of the budget;
# stdin from /dev/null), its output appended to $OUT/LOG; PASS on exit 0, SKIP on 77, FAIL
# otherwise (PARTIAL for a step in $partial_ok cut short by the budget).  While it runs, the
# summary holds a RUNNING row, so that a lease that ends mid-step leaves the step named.  Prints
# the tail of the step's output, and leaves that output in $step_out for the caller's own
# checks.  Returns CMD's exit status.
step() {
  local name=$1 log=$2 cap=$3
  shift 3
  local lf=$OUT/$log room tmo rc t n res note last
  step_out=""
  if [[ -n ${STEPS:-} && " gpu configure build $STEPS " != *" $name "* ]]; then
    skip "$name" "$log" "not in STEPS"
    return 0
  fi
  room=$(($(left) - 10))
  if ((room < 15)); then
    skip "$name" "$log" "out of time (TOTAL_BUDGET_S=$total)"
    return 124
  fi
  tmo=$((cap < room ? cap : room))
  touch "$lf"
  n=$(wc -l <"$lf")
  local shown=${*//$'\n'/ }
  printf '\n===== %s (timeout %s s): %s\n' "$name" "$tmo" "${shown//  / }" >>"$lf"
  echo "-- $name: ${shown//  / } (timeout $tmo s)"
  t=$SECONDS
  names+=("$name") results+=(RUNNING) secs+=("-") logs+=("$log")
  notes+=("started at $((SECONDS - t0)) s of the budget, timeout $tmo s: no result came back if this row stays")
  write_summary
  # stdin from /dev/null: `timeout` runs CMD in a process group of its own, in the background
  # of a terminal if there is one, where a read of it (Open MPI's mpiexec forwards stdin to
  # rank 0) would stop the step on SIGTTIN until its timeout
  timeout -k 10 "$tmo" "$@" </dev/null >>"$lf" 2>&1
  rc=$?
  unrecord
  # the note: the first line that names a failure, else the last line (mpiexec's banner and
  # blank lines left out); through a variable, not a pipe whose early-exiting grep would
  # fail the pipeline under pipefail and run the fallback too
  local sect
  step_out=$(tail -n +$((n + 3)) "$lf")
  sect=$(grep -Ev "$boilerplate" <<<"$step_out")
  last=$(grep -Em 1 "$failure_re" <<<"$sect" || true)
  [[ -n $last ]] || last=$(tail -n 1 <<<"$sect")
  tail -n 20 <<<"$sect" | sed 's/^/   | /'
  local took=$((SECONDS - t))
  case $rc in
  0) res=PASS note="" ;;
  77) res=SKIP note="skipped by the program: $last" ;;
  124 | 137)
    if ((tmo < cap)); then
      # the budget's timeout, not the step's own: the step did not fail, it ran out of time
      note="cut by TOTAL_BUDGET_S=$total after $took s (its own cap $cap s): what it printed by then is in $log"
      res=FAIL
      [[ $partial_ok == *" $name "* ]] && res=PARTIAL
    else
      res=FAIL note="timed out after $took s (its own cap $cap s): $last"
    fi
    ;;
  *) res=FAIL note="exit $rc: $last" ;;
  esac
  record "$name" "$res" "$took" "$log" "$note"
  return "$rc"
}

finish() {
  local failed=0 r
  for r in "${results[@]}"; do [[ $r == FAIL ]] && failed=1; done
  write_summary
  echo
  cat "$summary"
  exit "$failed"
}

# ---- the machine -----------------------------------------------------------------------------
have_gpu=0
gpu_name="" gpu_count=0 compute_mode=""
if step gpu gpu.log 60 bash -c 'command -v nvidia-smi >/dev/null || { echo "no nvidia-smi on PATH: no NVIDIA driver"; exit 1; }
    nvidia-smi -L | grep GPU || { echo "nvidia-smi -L lists no GPU"; exit 1; }
    nvidia-smi'; then
  have_gpu=1
  gpu_name=$(timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null </dev/null | head -n 1)
  # the compute mode of each GPU (Default, Exclusive_Process, Prohibited): nccl_2's two ranks
  # share one GPU, which Exclusive_Process refuses to the second
  modes=$(timeout 30 nvidia-smi --query-gpu=compute_mode --format=csv,noheader 2>/dev/null </dev/null)
  gpu_count=$(grep -c . <<<"$modes")
  compute_mode=$(head -n 1 <<<"$modes" | tr -d '[:space:]')
  echo "compute mode: ${modes//$'\n'/, } ($gpu_count GPU(s))" >>"$OUT/gpu.log"
fi

# Python with torch (+ h5py, numpy for the parity fixtures)
py="" pyinfo="" tried=" "
for cand in "${PYTHON:-python3}" /usr/bin/python3; do
  command -v "$cand" >/dev/null 2>&1 || continue
  real=$(realpath "$(command -v "$cand")" 2>/dev/null || command -v "$cand")
  [[ $tried == *" $real "* ]] && continue # one interpreter under two names: import torch once
  tried+="$real "
  if pyinfo=$(timeout 120 "$cand" -c 'import torch, h5py, numpy; print("torch", torch.__version__, "cuda available:", torch.cuda.is_available())' 2>/dev/null); then
    py=$(command -v "$cand")
    break
  fi
done

# Libraries carried as .deb files (GPU_DEBS, fetched here by tests/gpu/fetch-debs.sh): unpacked
# under $BUILD_DIR-deps, never installed into /, and only for the groups the machine lacks (its
# own libraries win where it has them).  A group: the pkg-config names that must all be found,
# then the package-name prefixes of its .deb files.
debs=${GPU_DEBS:-.gpu-debs}
carried=""
if compgen -G "$debs/*.deb" >/dev/null; then
  deps=$babs-deps
  rm -rf "$deps" && mkdir -p "$deps"
  groups=("libcjson|libcjson-dev libcjson1" "inih|libinih-dev libinih1 libinireader0"
    "cmocka|libcmocka-dev libcmocka0" "libcrypto|libssl-dev libssl3"
    "lapacke openblas|libopenblas0-pthread libopenblas-pthread-dev liblapacke liblapacke-dev libtmglib3")
  {
    echo "===== carried packages ($debs -> $deps)"
    for g in "${groups[@]}"; do
      IFS='|' read -r pcs pkgs <<<"$g"
      # shellcheck disable=SC2086 # word splitting of the pkg-config names is meant
      if pkg-config --exists $pcs 2>/dev/null; then
        echo "the machine has $pcs: not carried"
        continue
      fi
      # (not `ldconfig -p | grep -q`: under pipefail grep's early exit fails the pipeline)
      [[ $pcs == *openblas* ]] && ! grep -q 'libgfortran\.so\.5 ' <<<"$(ldconfig -p 2>/dev/null)" && pkgs+=" libgfortran5 libquadmath0"
      for p in $pkgs; do
        d=$(compgen -G "$debs/${p}_*.deb" | head -n 1)
        if [[ -z $d ]]; then
          echo "missing $debs/${p}_*.deb (run tests/gpu/fetch-debs.sh)"
          continue
        fi
        dpkg -x "$d" "$deps" && echo "unpacked $d" && carried+=" $p"
      done
    done
    lib=$deps/usr/lib/x86_64-linux-gnu
    if [[ -d $lib/openblas-pthread ]]; then
      # what Debian's alternatives would link: OpenBLAS as the BLAS and LAPACK
      for so in libopenblas.so libopenblas.so.0 libblas.so libblas.so.3 liblapack.so liblapack.so.3; do
        ln -sf "openblas-pthread/$so" "$lib/$so"
      done
      mkdir -p "$lib/pkgconfig"
      cp "$lib/openblas-pthread/pkgconfig/openblas.pc" "$lib/pkgconfig/openblas.pc"
      cp "$lib/openblas-pthread/pkgconfig/blas-openblas.pc" "$lib/pkgconfig/blas.pc"
      cp "$lib/openblas-pthread/pkgconfig/lapack-openblas.pc" "$lib/pkgconfig/lapack.pc"
    fi
    # their pkg-config files name /usr: point them at the unpacked tree
    find "$deps" -name '*.pc' -exec sed -i -E "s#^prefix=/usr\$#prefix=$deps/usr#; s#(=|-I|-L)/usr/#\1$deps/usr/#g" {} +
  } >>"$OUT/gpu.log" 2>&1
  if [[ -n $carried ]]; then
    export CMAKE_PREFIX_PATH=$deps/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
    export PKG_CONFIG_PATH=$lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
    export CPATH=$deps/usr/include:$deps/usr/include/x86_64-linux-gnu/openblas-pthread${CPATH:+:$CPATH}
    export LIBRARY_PATH=$lib${LIBRARY_PATH:+:$LIBRARY_PATH}
    export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
fi

cmake_bin=$(command -v cmake || true)
ninja_bin=$(command -v ninja || true)
mpiexec_bin=$(command -v mpiexec || command -v mpirun || true)
# the MPI the build found (its mpiexec starts the ranks as one job; another MPI's would start
# each rank alone): from the CMake cache once configured
{
  echo
  echo "===== toolchain"
  uname -a
  grep PRETTY_NAME /etc/os-release 2>/dev/null
  echo "cores: $(nproc)"
  echo "nvcc: $(command -v nvcc || echo none) $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*')"
  echo "cmake: ${cmake_bin:-none} $(cmake --version 2>/dev/null | head -n 1)"
  echo "ninja: ${ninja_bin:-none} $(ninja --version 2>/dev/null)"
  echo "mpiexec: ${mpiexec_bin:-none} $(mpiexec --version 2>/dev/null | head -n 1)"
  echo "python with torch, h5py, numpy: ${py:-none} ${pyinfo}"
  for pc in libcjson inih cmocka openssl hdf5 hdf5-serial hdf5-openmpi ompi-c libpng lapacke openblas; do
    echo "pkg-config $pc: $(pkg-config --modversion "$pc" 2>/dev/null || echo missing)"
  done
  for lib in libcudnn.so libnccl.so libcublas.so libhdf5.so libhdf5_serial.so libcjson.so libinih.so libcmocka.so; do
    echo "$lib: $(ldconfig -p 2>/dev/null | grep -m 1 -F "$lib " | sed 's/.*=> //' || true)"
  done
} >>"$OUT/gpu.log" 2>&1

# the commit: git's, or where the tree came without its .git (a device lease copies the working
# tree only) MP_GIT_DESCRIBE, which the caller sets to `git describe --always --dirty --tags
# --abbrev=10` of the tree it sends (the build's version reads it too: cmake/GitVersion.cmake)
if commit=$(git rev-parse --short HEAD 2>/dev/null); then
  commit="$commit ($(git status --porcelain 2>/dev/null | wc -l) changed files)"
else
  commit="unknown (no .git here, MP_GIT_DESCRIBE unset)"
  [[ -n ${MP_GIT_DESCRIBE:-} ]] && commit="$MP_GIT_DESCRIBE (named by MP_GIT_DESCRIBE: no .git here)"
fi
header="$(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname), GPU: ${gpu_name:-none}, commit $commit, python: ${py:-no torch+h5py+numpy} ${pyinfo}"
write_summary

# ---- configure and build ---------------------------------------------------------------------
build_steps_ok=1
if [[ ${SKIP_BUILD:-0} == 1 ]]; then
  skip configure build.log "SKIP_BUILD=1: using $bdir as it is"
  skip build build.log "SKIP_BUILD=1"
  if [[ ! -d $bdir ]]; then
    details+="SKIP_BUILD=1 but $bdir does not exist: nothing to test."$'\n'
    build_steps_ok=0
  fi
elif [[ -z $cmake_bin ]]; then
  record configure FAIL 0 build.log "no cmake on PATH"
  skip build build.log "not configured"
  build_steps_ok=0
else
  gen=()
  [[ -n $ninja_bin ]] && gen=(-G Ninja)
  want_gen=${ninja_bin:+Ninja}
  want_gen=${want_gen:-Unix Makefiles}
  if [[ -f $bdir/CMakeCache.txt ]]; then
    had_gen=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$bdir/CMakeCache.txt")
    had_home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$bdir/CMakeCache.txt")
    if [[ $had_gen != "$want_gen" || $had_home != "$root" ]]; then
      echo "removing $bdir: configured for '$had_home' with '$had_gen'" >>"$OUT/build.log"
      rm -rf "$bdir"
    fi
  fi
  if ! step configure build.log 150 "$cmake_bin" -S . -B "$bdir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DMP_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}"; then
    skip build build.log "configure failed"
    build_steps_ok=0
  else
    # only what the steps run (the cuda module, which mp_nn depends on anyway, named so that its
    # compile comes first): test_cudnn_graph, test_backend, test_net (the tests), nn_parity_tool
    # (parity), gpu_nccl_check (nccl), mp_bench_nn (bench, profile), mammopatch (precision),
    # knn_tool (knn), inception_tool (inception).
    # Those this configuration does not define (the tests without cmocka) are left out here, and
    # their steps say so, instead of failing the whole build on an unknown target.
    want=${BUILD_TARGETS-mp_backend_cuda test_cudnn_graph test_backend test_net gpu_nccl_check knn_tool inception_tool nn_parity_tool mp_bench_nn mammopatch}
    targets=() missing=""
    if [[ -n ${want// /} && $want != all ]]; then
      for tg in $want; do
        if { [[ $want_gen == Ninja ]] && grep -q "^build $tg:" "$bdir/build.ninja" 2>/dev/null; } ||
          { [[ $want_gen != Ninja ]] && grep -q "^$tg:" "$bdir/Makefile" 2>/dev/null; }; then
          targets+=("$tg")
        else
          missing+=" $tg"
        fi
      done
      [[ -z $missing ]] || echo "not targets of this configuration, left out of the build:$missing" | tee -a "$OUT/build.log"
      ntg=${#targets[@]}
      if ((ntg == 0)); then
        echo "none of BUILD_TARGETS ($want) is a target here: building all" | tee -a "$OUT/build.log"
      else
        targets=(--target "${targets[@]}")
      fi
    fi
    step build build.log 330 "$cmake_bin" --build "$bdir" -j"$(nproc)" "${targets[@]}" || build_steps_ok=0
    [[ -z $missing || $build_steps_ok == 0 ]] || renote "built $ntg targets; not targets of this configuration:$missing"
  fi
  if ((!build_steps_ok)); then
    details+="### the end of build.log"$'\n\n```\n'"$(grep -v '^\s*$' "$OUT/build.log" | tail -n 40)"$'\n```\n'
    if grep -q 'required dependencies not found' "$OUT/build.log" && ! compgen -G "$debs/*.deb" >/dev/null; then
      details+="Libraries are missing and no $debs/*.deb was carried: run tests/gpu/fetch-debs.sh on a Debian 12"
      details+=" machine and carry $debs with the tree."$'\n'
    fi
  fi
fi
if ((!build_steps_ok)); then
  for s in test_cudnn_graph test_backend test_net parity_classifier parity_gan nccl_1 nccl_2 precision bench knn inception profile; do
    skip "$s" - "nothing built"
  done
  finish
fi

cached_mpiexec=$(sed -n 's/^MPIEXEC_EXECUTABLE:[A-Z]*=//p' "$bdir/CMakeCache.txt" 2>/dev/null | head -n 1)
[[ -n $cached_mpiexec && -x $cached_mpiexec ]] && mpiexec_bin=$cached_mpiexec
# what the build says of this machine (libraries, each backend's engine line: the card, driver,
# CUDA runtime, cuDNN, cuBLAS and NCCL versions) into gpu.log; diagnosis only, never a step
if [[ -x $bdir/mammopatch ]]; then
  { echo "---- mammopatch info"; timeout 60 "$bdir/mammopatch" info 2>&1; } >>"$OUT/gpu.log" || true
fi

# ---- correctness: cuda against ref -----------------------------------------------------------
# conv_picks OUTPUT: what the cuda backend chose for test_backend's convolutions (the describe
# text each conv line carries: every pass, precision and forced mode together) and how the
# other candidates fared, for the step's note: whether the graph engines and own algorithms run
# at all on this machine shows at a glance
conv_picks() {
  local o=$1 pre='\[(data: |weights: )?'
  local legacy graph own failed differ nondet zero
  legacy=$(grep -oE "${pre}cudnn (forward|backward-data|backward-filter) algo" <<<"$o" | wc -l)
  graph=$(grep -oE "${pre}cudnn graph engine" <<<"$o" | wc -l)
  own=$(grep -oE "${pre}own (wgrad3|gemm)," <<<"$o" | wc -l)
  failed=$(grep -oE ' (e[0-9]+|wgrad3|gemm) failed' <<<"$o" | wc -l)
  differ=$(grep -oE ' (e[0-9]+|wgrad3|gemm) differs' <<<"$o" | wc -l)
  nondet=$(grep -oE ' e[0-9]+ nondeterministic' <<<"$o" | wc -l)
  zero=$(grep -oE ' (e[0-9]+|wgrad3|gemm) unchecked' <<<"$o" | wc -l)
  echo "conv picks: legacy $legacy, graph $graph, own $own; candidates failed $failed, differing $differ," \
    "nondeterministic $nondet, unchecked (zero reference) $zero"
}
tests=$bdir/tests
nogpu="no GPU (see gpu.log)"
for t in test_cudnn_graph test_backend test_net; do
  if ((!have_gpu)) && [[ $t != test_cudnn_graph ]]; then
    skip "$t" tests.log "$nogpu"
  elif [[ ! -x $tests/$t ]]; then
    record "$t" FAIL 0 tests.log "$tests/$t was not built (the tests need cmocka: see gpu.log)"
  else
    step "$t" tests.log 240 env -C "$tests" "./$t"
    # on a machine with a GPU a pass must have run the cuda backend: the tests skip a backend
    # whose device they cannot see (or a build without it) and still exit 0
    if [[ $t != test_cudnn_graph && ${results[${#results[@]} - 1]} == PASS ]]; then
      why=$(grep -Em 1 'skipped: no device|skipped \(no device\)|no cuda backend in this build' <<<"$step_out" || true)
      if [[ -n $why ]]; then
        results[${#results[@]} - 1]=FAIL
        renote "passed without running cuda on this GPU: ${why#"${why%%[! ]*}"} (see gpu.log: driver, CUDA runtime)"
      fi
    fi
    if [[ $t == test_backend ]] && grep -q 'cuda.*conv' <<<"$step_out"; then
      last_note=${notes[${#notes[@]} - 1]}
      # the backend's own line for the runs' compute record (card, libraries, precision)
      engine=$(grep -oEm 1 '^  cuda +cuda: .*' <<<"$step_out" | sed -E 's/^  cuda +//' || true)
      renote "${last_note:+$last_note; }$(conv_picks "$step_out")${engine:+; engine: $engine}"
    fi
  fi
done

# ---- PyTorch parity through the cuda backend (as ctest runs the ref and cpu ones) -------------
parity_tool=$babs/tests/nn_parity_tool
scratch=$babs/gpu-parity
for kind in classifier gan; do
  name=parity_$kind
  if ((!have_gpu)); then
    skip "$name" parity.log "$nogpu"
  elif [[ -z $py ]]; then
    skip "$name" parity.log "no python with torch, h5py and numpy (${PYTHON:-python3}, /usr/bin/python3)"
  elif [[ ! -x $parity_tool ]]; then
    record "$name" FAIL 0 parity.log "$parity_tool was not built"
  else
    mkdir -p "$scratch"
    # shellcheck disable=SC2016 # the positional parameters expand in the inner bash
    if [[ $kind == classifier ]]; then
      step "$name" parity.log 150 bash -c 'cd "$1" && "$2" cuda parity_cuda.h5 && "$3" "$4/tests/nn/torch_parity.py" parity_cuda.h5' \
        _ "$scratch" "$parity_tool" "$py" "$root"
    else
      step "$name" parity.log 180 bash -c 'cd "$1" && "$2" cuda gan_parity_cuda.h5 gan && "$3" "$4/tests/nn/torch_gan_parity.py" gan_parity_cuda.h5 cuda' \
        _ "$scratch" "$parity_tool" "$py" "$root"
    fi
  fi
done

# ---- NCCL: gradients all-reduced over ranks ---------------------------------------------------
nccl=$tests/gpu_nccl_check
[[ -x $nccl ]] || nccl=$(find "$bdir" -name gpu_nccl_check -type f -perm -u+x 2>/dev/null | head -n 1)
[[ -z $nccl ]] || nccl=$(realpath "$nccl") # absolute: the ranks' command lines name it (see below)
# kill_ranks PROG: the ranks of PROG left running after their mpiexec was timed out (Open MPI
# starts them in sessions of their own, out of `timeout`'s reach): killed by process id, so that
# no stray rank holds the GPU through the bench and the profile
kill_ranks() {
  local d pid arg hit=()
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    ((pid == $$)) && continue
    while IFS= read -r -d '' arg; do
      if [[ $arg == "$1" ]]; then
        hit+=("$pid")
        break
      fi
    done 2>/dev/null <"$d/cmdline"
  done
  ((${#hit[@]})) || return 0
  kill -KILL "${hit[@]}" 2>/dev/null
  echo "killed ${#hit[@]} rank(s) of $1 left running after the timeout: ${hit[*]}" | tee -a "$OUT/nccl.log"
}
for n in 1 2; do
  name=nccl_$n
  if ((!have_gpu)); then
    skip "$name" nccl.log "$nogpu"
  elif [[ -z $nccl ]]; then
    if [[ -f tests/gpu/nccl_check.c ]]; then
      record "$name" FAIL 0 nccl.log "tests/gpu/nccl_check.c is there but gpu_nccl_check was not built"
    else
      skip "$name" nccl.log "no gpu_nccl_check yet (tests/gpu/nccl_check.c)"
    fi
  elif [[ -z $mpiexec_bin ]]; then
    record "$name" FAIL 0 nccl.log "no mpiexec on PATH"
  elif ((n == 2 && gpu_count < 2)) && [[ $compute_mode == Exclusive_Process ]]; then
    skip "$name" nccl.log "the GPU's compute mode is Exclusive_Process: 2 ranks cannot share this machine's one GPU"
  else
    # NCCL's own warnings (why an init or a collective failed) into nccl.log, at no cost
    if ((n == 1)); then
      step "$name" nccl.log 90 env NCCL_DEBUG="${NCCL_DEBUG:-WARN}" "$mpiexec_bin" -n 1 "$nccl"
    else
      step "$name" nccl.log 90 env NCCL_DEBUG="${NCCL_DEBUG:-WARN}" "$mpiexec_bin" -n 2 --oversubscribe "$nccl"
    fi
    case $? in 124 | 137) kill_ranks "$nccl" ;; esac
    # the note says how the gradients were reduced (with one GPU, two ranks share it and NCCL,
    # one GPU per rank, is not used) and a pass must have run on n ranks as one job
    # (and whether NCCL itself ran on the one-rank communicators of step 0)
    how=$(grep -m 1 'gpu_nccl_check: backend' <<<"$step_out" || true)
    solo=$(grep -m 1 'NCCL on one-rank communicators' <<<"$step_out" || true)
    if [[ $solo == *": ok" ]]; then
      solo="NCCL ran on one-rank communicators"
    elif [[ -n $solo ]]; then
      solo="NCCL did not run: ${solo#*communicators: }"
    else
      solo="no one-rank NCCL line"
    fi
    if [[ ${results[${#results[@]} - 1]} == PASS ]]; then
      if [[ $how != *" $n rank(s),"* ]]; then
        results[${#results[@]} - 1]=FAIL
        renote "not $n ranks in one job (${how:-no backend line}): $mpiexec_bin is not the build's MPI?"
      elif ((n == 1)); then
        renote "${how#*rank(s), } (one rank: nothing to reduce); $solo"
      elif [[ $how == *NCCL* ]]; then
        renote "${how#*rank(s), }; $solo"
      else
        renote "${how#*rank(s), }: the 2-rank NCCL reduction not exercised (ranks share this machine's GPU); $solo"
      fi
    fi
  fi
done

# ---- the benchmark ------------------------------------------------------------------------------
if ((!have_gpu)); then
  skip bench bench.log "$nogpu"
else
  # what the bench leaves: 60 s of margin, and where the precision step can run, its reserve
  # (PRECISION_RESERVE_S, default 100: three train + eval runs, each process starting CUDA and
  # trying its convolutions' algorithms; without it the bench took all but the margin whenever
  # the steps before it ran long, and precision got seconds)
  reserve=60
  [[ -x $bdir/mammopatch && -s ${GPU_STORE:-.gpu-store/patches.h5} && " ${STEPS:-precision} " == *" precision "* ]] &&
    reserve=$((reserve + ${PRECISION_RESERVE_S:-100}))
  [[ -x $tests/knn_tool && " ${STEPS:-knn} " == *" knn "* ]] && reserve=$((reserve + ${KNN_RESERVE_S:-45}))
  [[ -x $tests/inception_tool && " ${STEPS:-inception} " == *" inception "* ]] &&
    reserve=$((reserve + ${INCEPTION_RESERVE_S:-40}))
  budget=$(($(left) - reserve))
  ((budget > ${BENCH_BUDGET_S:-240})) && budget=${BENCH_BUDGET_S:-240}
  read -r -a bench_what <<<"${BENCH_WHAT:-}"
  if ((budget < 30)); then
    skip bench bench.log "out of time ($(left) s left)"
  else
    # bench/gpu/run.sh starts a row only with 45 s of its budget left and ends within about
    # 30 s of it; the 60 s more here are its margin.  Stopped by this timeout (the total budget
    # cut it) it is PARTIAL, its rows so far kept in bench.txt and counted below.
    step bench bench.log $((budget + 60)) env BUILD_DIR="$bdir" TIME_BUDGET_S="$budget" OUT="$OUT" \
      ${py:+PYTHON="$py"} bench/gpu/run.sh "${bench_what[@]}"
    brc=$?
    if [[ -s $OUT/bench.txt ]]; then
      # what the table holds: rows measured, rows the budget skipped, whether PyTorch ran
      # (gansteps rows are two lines, D and G)
      nrows=$(grep -cE '^(fp32|tf32|bf16) ' "$OUT/bench.txt" || true)
      nskip=$(sed -n 's/.* skipped \([0-9]*\) rows:.*/\1/p' "$OUT/bench.txt" | head -n 1)
      ncut=$(grep -c ': stopped after [0-9]* s, at the end of TIME_BUDGET_S' "$OUT/bench.txt" || true)
      peer="PyTorch measured"
      grep -q '^PyTorch: not measured' "$OUT/bench.txt" && peer="PyTorch NOT measured"
      what="$nrows rows, ${nskip:-0} skipped by the budget"
      ((ncut > 0)) && what+=", $ncut runs cut by it"
      unmeasured=$(sed -n 's/^stopped by a signal after .*: the rows above were measured; \([0-9]*\) not.*/\1/p' "$OUT/bench.txt" | head -n 1)
      [[ -n $unmeasured ]] && what+=", $unmeasured not measured when it was stopped"
      what+="; $peer"
      nfail=$(grep -c ' (exit [0-9]*): ' "$OUT/bench.txt" || true)
      if ((nfail > 0)); then
        what+="; $nfail kinds of run failed (bench.txt), first: $(grep -m 1 ' (exit [0-9]*): ' "$OUT/bench.txt" | sed 's/^ *//')"
      fi
      if ((brc != 0 && brc != 124 && brc != 137 && nfail > 0)); then
        renote "$what"
      else
        renote "$what${notes[${#notes[@]} - 1]:+; ${notes[${#notes[@]} - 1]}}"
      fi
    fi
  fi
fi
# ---- the accuracy effect of TF32 and bf16: the classifier trained in each precision ------------
gpu_store=${GPU_STORE:-.gpu-store/patches.h5}
if ((!have_gpu)); then
  skip precision tests.log "$nogpu"
elif [[ ! -x $bdir/mammopatch ]]; then
  record precision FAIL 0 tests.log "$bdir/mammopatch was not built"
elif [[ ! -s $gpu_store ]]; then
  skip precision tests.log "no $gpu_store: run tests/gpu/make-store.sh on the Debian machine and carry .gpu-store"
else
  read -r -a pseeds <<<"${PRECISION_SEEDS:-1 2 3}"
  # after the bench (the issue's proof), before the profile (diagnosis): at most 180 s
  step precision tests.log 180 env PYTHON="${py:-python3}" tests/gpu/precision.sh "$bdir/mammopatch" "$gpu_store" "${pseeds[@]}"
  # its tables (per run, then means per precision) into the summary
  tables=$(sed -n '/^| precision | split/,$p' <<<"$step_out")
  [[ -z $tables ]] || details+="### precision: the classifier trained in each precision (tests/gpu/precision.sh)"$'

'"$tables"$'
'
  write_summary
fi

# ---- SPEC §9's kNN at thesis scale: the cuda score blocks against the host's --------------------
knn=$tests/knn_tool
if ((!have_gpu)); then
  skip knn tests.log "$nogpu"
elif [[ ! -x $knn ]]; then
  skip knn tests.log "no knn_tool in $bdir (built with the smote component)"
else
  step knn tests.log 90 env PYTHON="${py:-python3}" tests/gpu/knn.sh "$knn"
  # the note: each distance's times
  [[ ${results[${#results[@]} - 1]} == PASS ]] &&
    renote "$(grep -E '^knn (l2|cosine|l1) ' <<<"$step_out" | sed -E 's/^knn ([a-z0-9]+) [0-9]+ x [0-9]+, k 2: cuda ([0-9.]+) s, host ([0-9.]+) s.*/\1 \2 s (host \3 s)/' | paste -sd ';' - | sed 's/;/; /g'), 2000 x 65536, k 2: the same answers"
fi

# ---- the FID's Inception-v3 on the device: its speed, and its features against the host's -------
inc=$tests/inception_tool
if ((!have_gpu)); then
  skip inception tests.log "$nogpu"
elif [[ ! -x $inc ]]; then
  skip inception tests.log "no inception_tool in $bdir (built with the tests)"
else
  step inception tests.log 75 env PYTHON="${py:-python3}" tests/gpu/inception.sh "$inc"
  [[ ${results[${#results[@]} - 1]} == PASS ]] &&
    renote "$(grep -E '^inception cuda: ' <<<"$step_out" | sed -E 's/^inception cuda: //')"
fi

# ---- where the time goes: MP_NN_PROFILE's per-layer tables (each layer between two syncs) for
# the classifier in fp32 and bf16 and a WGAN-GP GAN iteration, and what deterministic cuDNN
# algorithms cost (the default against MP_CUDA_DETERMINISTIC=0) ----------------------------------
tool=$bdir/bench/mp_bench_nn
if ((!have_gpu)); then
  skip profile bench.log "$nogpu"
elif [[ ! -x $tool ]]; then
  record profile FAIL 0 bench.log "$tool was not built"
else
  # shellcheck disable=SC2016 # the positional parameter expands in the inner bash
  step profile bench.log 200 bash -c 'rc=0
    MP_NN_PROFILE=1 "$1" cuda classifier 128 10 || rc=1
    MP_NN_PROFILE=1 "$1" cuda:tf32 classifier 128 10 || rc=1
    MP_NN_PROFILE=1 "$1" cuda:bf16 classifier 128 10 || rc=1
    MP_NN_PROFILE=1 "$1" cuda:bf16 classifier 512 5 || rc=1
    MP_NN_PROFILE=1 "$1" cuda gansteps wgan-gp 0 64 64 10 || rc=1
    echo "classifier fp32 batch 128, deterministic cuDNN algorithms (the default):"
    "$1" cuda classifier 128 10 || rc=1
    echo "the same with MP_CUDA_DETERMINISTIC=0 (the fastest algorithm, as PyTorch'"'"'s cudnn.benchmark):"
    MP_CUDA_DETERMINISTIC=0 "$1" cuda classifier 128 10 || rc=1
    echo "the same with cuDNN'"'"'s convolutions only (MP_CUDA_CONV_OWN=off: no wgrad3, no gemm):"
    MP_CUDA_CONV_OWN=off "$1" cuda classifier 128 10 || rc=1
    echo "the same without cuDNN'"'"'s graph-API engines (MP_CUDA_CONV_GRAPH=off), then with neither:"
    MP_CUDA_CONV_GRAPH=off "$1" cuda classifier 128 10 || rc=1
    MP_CUDA_CONV_GRAPH=off MP_CUDA_CONV_OWN=off "$1" cuda classifier 128 10 || rc=1
    echo "classifier bf16 batch 128 and 512 without the graph-API engines (legacy cuDNN only), then as chosen:"
    for nb in 128 512; do
      MP_CUDA_CONV_GRAPH=off "$1" cuda:bf16 classifier $nb 10 || rc=1
      "$1" cuda:bf16 classifier $nb 10 || rc=1
    done
    echo "a WGAN-GP iteration with cuDNN'"'"'s legacy convolutions only (MP_CUDA_CONV_OWN=off MP_CUDA_CONV_GRAPH=off), then as chosen:"
    MP_CUDA_CONV_OWN=off MP_CUDA_CONV_GRAPH=off "$1" cuda gansteps wgan-gp 0 64 64 10 || rc=1
    "$1" cuda gansteps wgan-gp 0 64 64 10 || rc=1
    echo "the same, deterministic, with a 4 GiB workspace cap (MP_CUDA_WORKSPACE_MB=4096):"
    MP_CUDA_WORKSPACE_MB=4096 "$1" cuda classifier 128 10 || rc=1
    if [[ -n $2 && ${PROFILE_TORCH:-1} != 0 ]]; then
      for p in fp32 bf16; do "$2" bench/gpu/torch_profile.py $p 128 10 || rc=1; done
    fi
    ns=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n 1)
    if [[ -n $ns ]]; then
      d=$(mktemp -d)
      "$ns" profile -q -t cuda -o "$d/r" "$1" cuda classifier 128 10 >/dev/null 2>&1 &&
        "$ns" stats -q -r cuda_gpu_kern_sum,cuda_gpu_mem_time_sum -f csv "$d/r.nsys-rep" 2>/dev/null |
        cut -c1-220 | head -n 70
      rm -rf "$d"
    else
      echo "no nsys on this machine: no per-kernel table for mammopatch"
    fi
    exit $rc' _ "$tool" "$py"
fi

finish
