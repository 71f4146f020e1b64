#!/usr/bin/env bash
# The main job (README): installs missing Debian packages, builds, and runs the
# pipeline on 2 MPI ranks as far as it is built.  Outputs go to out/demo/.
#
# Built so far: the foundation (build information, MPI layout, configuration) and the
# synthetic cohort.  The stages (preprocess, train, gan, smote, eval/report) join this
# script as they are built.
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
echo
echo "Cohort: $out/cohort (labels.csv, truth.csv, truth_lesions.csv, dicom/); look at $out/cohort/preview.png"
echo "Pipeline stages built so far: synth.  Preprocess, train, gan, smote and the report are the next issues."
