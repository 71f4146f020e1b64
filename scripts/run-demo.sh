#!/usr/bin/env bash
# The main job (README): installs missing Debian packages, builds, and runs the
# pipeline on 2 MPI ranks as far as it is built.  Outputs go to out/demo/.
#
# Built so far: the foundation (build information, MPI layout, configuration), the
# synthetic cohort, preprocessing into the patch store, the experiment (repeated splits
# of the classifier's data-parallel training and evaluation) with its report, a one-cell
# GAN sweep, the gan and smote-cosine variants beside the baseline, and predict's heatmaps.
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
echo "== experiment: 2 patient-level splits x the baseline classifier, one split per rank group;"
echo "   each job trains (data-parallel inside its group), evaluates, and rank 0 writes the report"
rm -rf "$out/experiment"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "${mp[@]}" experiment --config jobs/demo.ini --store "$out/patches.h5" \
  --out "$out/experiment"
echo "== gan: a one-cell sweep (rahinge, f = 64, SN/TTUR) on split 1's training lesions, FID with the"
echo "   domain extractor (split 1's baseline); then the experiment again with the gan and smote-cosine"
echo "   variants beside the baseline (finished baseline jobs are reused): 2 x the training lesions of"
echo "   synthetic patches (gan) or of interpolated block-1 vectors (smote, block 1 frozen) per split"
rm -rf "$out/gan"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "${mp[@]}" gan sweep --config jobs/demo.ini --store "$out/patches.h5" --split-seed 1 \
  --extractor "$out/experiment/runs/baseline/split-1" --out "$out/gan"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "${mp[@]}" experiment --config jobs/demo.ini --store "$out/patches.h5" \
  --out "$out/experiment" --set experiment.variants=baseline,gan,smote-cosine --set experiment.gan_sweep="$out/gan"
echo "== predict: per-tile lesion probabilities and heatmaps for the first four BI-RADS 0 views"
mapfile -t views < <(awk -F, 'NR > 1 && $7 == 0 && $14 == "accepted" {print $1}' "$out/cohort/truth.csv" | head -4 |
                     sed "s|^|$out/cohort/|")
rm -rf "$out/predict"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "${mp[@]}" predict --config jobs/demo.ini \
  --model "$out/experiment/runs/baseline/split-1" --out "$out/predict" "${views[@]}"
echo
echo "Cohort: $out/cohort (preview.png); patch store: $out/patches.h5; preprocessing: $out/preprocess/;"
echo "experiment: $out/experiment/ (runs/baseline/split-N/: split, training curve, best model, eval.json);"
echo "heatmaps: $out/predict/view-N/heatmap.png."
echo "REPORT: $out/experiment/report/index.html (self-contained; also report.md, CSV, JSON)"
echo "GAN sweep: $out/gan/sweep.md (Table 4.4 form), $out/gan/runs/*/gan.json."
echo "Pipeline stages built so far: synth, preprocess, train, eval, experiment + report, gan (train, sweep,"
echo "sample, the gan variant), smote (features, the frozen-block-1 variants), predict."
