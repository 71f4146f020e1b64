#!/usr/bin/env bash
# test_configure_gpu_image: configures, builds and smoke-tests mammopatch as on a GPU node's
# image (the machine tests/gpu/run.sh runs on: serial HDF5 only, no GDCM, no oneDNN; CUDA,
# cuDNN, cuBLAS and NCCL), so that a change which breaks that build, or a test that assumes
# GDCM or the cpu backend there, shows here and not in a short GPU lease:
#   - the configuration summary says serial HDF5, no GDCM, no oneDNN and, where this
#     machine's build has it, the cuda backend with NCCL;
#   - everything builds with warnings as errors, the tests included;
#   - `mammopatch --help` lists the commands that work there and names synth, preprocess
#     and predict as not in this build; each of those says what it needs (exit 2);
#   - that build's own test suite passes (the store on serial HDF5; tests that need GDCM or
#     the cpu backend skip their parts, said so), but for the tests that run the same there
#     as here.
# The libraries are left out with CMake's switches (CMAKE_DISABLE_FIND_PACKAGE_GDCM / _DNNL)
# and serial HDF5 is Debian's libhdf5-dev beside the parallel one (its h5cc wrapper).
#
# Usage: test_configure_gpu_image.sh SOURCE_DIR CMAKE CUDA_BACKEND(ON|OFF)
# Exit 0 on success, 1 on a failure, 77 (skipped) without serial HDF5 (libhdf5-dev).
set -uo pipefail
src=$1 cmake=$2 cuda=$3
bdir=cfg-gpu-image
h5cc=/usr/bin/h5cc
if [[ ! -x $h5cc ]] || ! "$h5cc" -showconfig 2>/dev/null | grep -q 'Parallel HDF5: no'; then
  echo "SKIP: no serial HDF5 here ($h5cc: Debian's libhdf5-dev; scripts/setup-deps.sh --with-serial-hdf5)"
  exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/common.sh" # ok, bad, finish
# check DESCRIPTION COMMAND...: the command's exit status decides
check() {
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

rm -rf "$bdir"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if ! "$cmake" -S "$src" -B "$bdir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DMP_WERROR=ON \
  -DMP_ENABLE_CUDA="$cuda" -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_DISABLE_FIND_PACKAGE_GDCM=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_DNNL=ON -DHDF5_C_COMPILER_EXECUTABLE="$h5cc" >configure.log 2>&1; then
  tail -n 30 configure.log
  bad "configure as a GPU node's image"
  exit 1
fi
ok "configure as a GPU node's image"
check "summary: HDF5 serial" bash -c "grep -E '^-- +HDF5 \(parallel\) +OFF .*serial' configure.log"
check "summary: no GDCM, synth/preprocess/predict skipped" bash -c "grep -E '^-- +DICOM I/O \(GDCM\) +OFF' configure.log"
check "summary: no oneDNN" bash -c "grep -E '^-- +cpu \(oneDNN\) +OFF' configure.log"
if [[ $cuda == ON ]]; then
  check "summary: the cuda backend with NCCL" bash -c "grep -E '^-- +cuda \(cuDNN, cuBLAS\) +on .*NCCL allreduce: ON' configure.log"
fi

if ! "$cmake" --build "$bdir" -j "$(nproc)" >build.log 2>&1; then
  grep -E -B2 -A8 'error|FAILED' build.log | head -n 60
  bad "build (warnings as errors, tests included)"
  exit 1
fi
ok "build (warnings as errors, tests included)"

mp=$bdir/mammopatch
help=$("$mp" --help)
for c in train eval gan smote experiment report pipeline info; do
  check "--help lists $c" grep -qE "^  $c " <<<"$help"
done
for c in synth preprocess predict; do
  check "--help leaves out $c" bash -c "! grep -qE '^  $c ' <<<\"\$0\"" "$help"
done
check "--help names what is not in this build" grep -qF "Not in this build: synth, preprocess, predict" <<<"$help"
for c in synth preprocess predict; do
  out=$("$mp" "$c" --help 2>&1)
  rc=$?
  check "'$c' says what it needs, exit 2 (got $rc)" bash -c "[[ $rc == 2 ]] && grep -qF \"'$c' is not in this build: it needs GDCM\" <<<\"\$0\"" "$out"
done
info=$("$mp" info 2>&1)
check "info: serial HDF5, no GDCM, no oneDNN" bash -c "grep -q '(serial)' <<<\"\$0\" && grep -q 'GDCM (DICOM):no' <<<\"\$0\" && grep -q 'oneDNN:no' <<<\"\$0\"" "$info"

# that build's own suite, but for the tests that run the same there as here (the emulated-GPU
# kernels, the ref backend's PyTorch parity) and the configure tests (a build inside a build)
listed=$(ctest --test-dir "$bdir" -N)
if grep -q 'test_store' <<<"$listed"; then
  if ctest --test-dir "$bdir" --output-on-failure -j "$(nproc)" -E '(_emu|_parity_ref|^test_configure_)' \
    >ctest.log 2>&1; then
    ok "its suite: $(grep -Eo '[0-9]+% tests passed.*' ctest.log)"
  else
    grep -E -A40 'The following tests FAILED|\*\*\*Failed' ctest.log | head -n 80
    bad "its suite: $(grep -Eo '[0-9]+% tests passed.*' ctest.log)"
  fi
else
  bad "its tests were not configured (cmocka?)"
fi

finish
