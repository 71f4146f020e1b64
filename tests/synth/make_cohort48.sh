#!/usr/bin/env bash
# ctest fixture: makes the training tests' shared 48-patient cohort (common.sh's cohort48) in
# DIR, marked COMPLETE last, so that the tests that need it link to one copy instead of each
# making its own. Usage: make_cohort48.sh MAMMOPATCH MPIEXEC DIR
set -uo pipefail
mp=$1 mpiexec=$2 dir=$3
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
rm -rf "$dir"
cohort48 "$dir" fresh && touch "$dir/COMPLETE" && ok "cohort48 in $dir ($(ls "$dir/dicom" | wc -l) entries)" \
  || bad "synth for cohort48"
finish
