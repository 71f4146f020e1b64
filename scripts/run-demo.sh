#!/usr/bin/env bash
# The main job (README): installs missing Debian packages, builds, and runs the
# pipeline on 2 MPI ranks as far as it is built.  Outputs go to out/demo/.
#
# `mammopatch pipeline --config jobs/demo.ini`: the synthetic cohort, preprocessing into
# the patch store, the baseline, a one-cell GAN sweep, the experiment (baseline, gan and
# smote-cosine on repeated patient-level splits) and its report; then predict's heatmaps.
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
echo "== the pipeline (jobs/demo.ini): synthetic cohort -> preprocess -> baseline -> GAN sweep (one cell:"
echo "   rahinge, f = 32, SN/TTUR, FID with split 1's baseline as the domain extractor) -> experiment"
echo "   (baseline, gan, smote-cosine on 2 patient-level splits, one per rank group) -> report"
# the demo's site key (a real site keeps its own secret, in privacy.site_key_file)
export MAMMOPATCH_SITE_KEY=${MAMMOPATCH_SITE_KEY:-mammopatch-demo-site-key-not-secret}
rm -rf "$out/cohort" "$out/patches.h5" "$out/preprocess" "$out/experiment" "$out/gan" "$out/pipeline.json"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "${mp[@]}" pipeline --config jobs/demo.ini --set pipeline.out="$out"
echo
cat "$out/preprocess/preprocess.md"
echo
cat "$out/gan/sweep.md"
echo
echo "== predict: per-tile lesion probabilities and heatmaps for the first four BI-RADS 0 views"
mapfile -t views < <(awk -F, 'NR > 1 && $7 == 0 && $14 == "accepted" {print $1}' "$out/cohort/truth.csv" | head -4 |
                     sed "s|^|$out/cohort/|")
rm -rf "$out/predict"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "${mp[@]}" predict --config jobs/demo.ini \
  --model "$out/experiment/runs/baseline/split-1" --out "$out/predict" "${views[@]}"
echo
echo "Cohort: $out/cohort (preview.png); patch store: $out/patches.h5; preprocessing: $out/preprocess/;"
echo "experiment: $out/experiment/ (runs/VARIANT/split-N/: split, training curve, best model, eval.json);"
echo "GAN sweep: $out/gan/sweep.md (Table 4.4 form), charts/ (FID per epoch, t-SNE map); stage record:"
echo "$out/pipeline.json (a rerun skips finished stages); heatmaps: $out/predict/view-N/heatmap.png."
echo "REPORT: $out/experiment/report/index.html (self-contained; also report.md, CSV, JSON)"
