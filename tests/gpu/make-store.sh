#!/usr/bin/env bash
# tests/gpu/make-store.sh — makes (here, on a machine with GDCM and parallel HDF5) the patch store
# that tests/gpu/run.sh's `precision` step trains on: the demo's synthetic cohort (jobs/demo.ini:
# 48 patients, 1024x1280 views; ~1600 patches of which ~50 lesion, ~14 MB) through
# `mammopatch preprocess`.  A GPU node image has no GDCM, so the store cannot be made there:
# the folder (default .gpu-store, ignored by git) travels with the tree — name it in the device
# call's `carry` beside .gpu-debs.  Usage: tests/gpu/make-store.sh [DIR]   (needs build/mammopatch)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-.gpu-store}
mp=build/mammopatch
[[ -x $mp ]] || { echo "$mp is missing: build first (cmake --build build)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# pseudonyms of a synthetic cohort: a throwaway key, as in the demo
export MAMMOPATCH_SITE_KEY=${MAMMOPATCH_SITE_KEY:-gpu-precision-check-throwaway-site-key}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mpiexec -n 2 --oversubscribe "$mp" synth --config jobs/demo.ini --out "$tmp/cohort" -q
mpiexec -n 2 --oversubscribe "$mp" preprocess --config jobs/demo.ini --input "$tmp/cohort/dicom" \
  --labels "$tmp/cohort/labels.csv" --out "$tmp/patches.h5" --report "$tmp/report" -q
mkdir -p "$dir"
mv "$tmp/patches.h5" "$dir/patches.h5"
cp "$tmp/report/preprocess.json" "$dir/preprocess.json"
ls -l "$dir"
