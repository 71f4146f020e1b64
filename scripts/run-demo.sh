#!/usr/bin/env bash
# The main job (README): installs missing Debian packages, builds, and runs the
# pipeline on 2 MPI ranks as far as it is built.  Outputs go to out/demo/.
#
# Built so far: the foundation (build information, MPI layout, configuration), the
# synthetic cohort, preprocessing into the patch store, the baseline classifier's
# data-parallel training and its evaluation.  The report, gan and smote join as they are built.
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${MP_DEMO_RANKS:-2}
out=${MP_DEMO_OUT:-out/demo}

scripts/setup-deps.sh
cmake -S . -B build -G Ninja ${MP_CMAKE_ARGS:-} >/dev/null
cmake --build build -j "$(nproc)"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$out"
mp=(mpiexec -n "$ranks" --oversubscribe build/mammopatch)

echo "== mammopatch on $ranks ranks: build and layout"
"${mp[@]}" info --json "$out/info.json"
echo "== effective configuration (jobs/demo.ini)"
"${mp[@]}" config --config jobs/demo.ini >"$out/config.ini"
echo "   written to $out/config.ini"
echo "== synthetic cohort (DICOM + labels + truth) on $ranks ranks"
rm -rf "$out/cohort"
"${mp[@]}" synth --config jobs/demo.ini --out "$out/cohort" --preview
echo "== preprocess: filters, lesion and normal patches, one parallel HDF5 patch store"
# the demo's site key (a real site keeps its own secret, in privacy.site_key_file)
export MAMMOPATCH_SITE_KEY=${MAMMOPATCH_SITE_KEY:-mammopatch-demo-site-key-not-secret}
"${mp[@]}" preprocess --config jobs/demo.ini --input "$out/cohort/dicom" --labels "$out/cohort/labels.csv" \
  --out "$out/patches.h5" --report "$out/preprocess"
echo
cat "$out/preprocess/preprocess.md"
echo
echo "== train: the baseline classifier, data-parallel on $ranks ranks (split seed 1)"
rm -rf "$out/train/baseline-1"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "${mp[@]}" train --config jobs/demo.ini --store "$out/patches.h5" --split-seed 1 \
  --out "$out/train/baseline-1"
echo "== eval: test-split metrics at patch, view and patient level"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "${mp[@]}" eval --config jobs/demo.ini --store "$out/patches.h5" --train-dir "$out/train/baseline-1"
echo
echo "Cohort: $out/cohort (look at preview.png); patch store: $out/patches.h5;"
echo "reports: $out/preprocess/ (preprocess.json, preprocess.md, preprocess_files.csv);"
echo "training: $out/train/baseline-1/ (train.json: curve, best epoch, test metrics; split.json; best/;"
echo "eval.json and eval_patches.csv: patch/view/patient metrics)."
echo "Pipeline stages built so far: synth, preprocess, train, eval.  The report, gan and smote are the next issues."
