# Sourced by the end-to-end test scripts (after they set mp and mpiexec): a temporary
# directory removed on exit (kept when MP_TEST_KEEP is set), pass/fail counters (ok MESSAGE, bad MESSAGE), run2 (the
# mammopatch command on 2 ranks), cohort48 (the training tests' shared cohort), crash_report (a dead run's log
# tail and core backtraces) and finish (the summary line and the exit status).
tmp=$(mktemp -d)
if [ -n "${MP_TEST_KEEP:-}" ]; then echo "keeping $tmp (MP_TEST_KEEP)"; else trap 'rm -rf "$tmp"' EXIT; fi
fails=0 passes=0
# each line ends with the seconds since the script began (where a slow test spends its time)
ok()  { passes=$((passes + 1)); echo "ok   $* [${SECONDS}s]"; }
bad() { fails=$((fails + 1)); echo "FAIL $* [${SECONDS}s]"; }
run2() { "$mpiexec" -n 2 --oversubscribe "$mp" "$@"; }
# cohort48 DIR [fresh]: the 48-patient synthetic cohort that test_train, test_experiment, test_gan and test_smote
# train on (seed 7, 60% of exams with lesions, every lesion annotated, big marks, half with a second lesion:
# a few dozen training lesion patches). Under ctest, DIR is a link to the one the fixture_cohort48 test made
# (MP_TEST_COHORT48; read only): the same files, made once instead of four times (~40 CPU-seconds each).
# Standalone, or with `fresh` (the fixture itself), it is made here.
cohort48() {
  if [ "${2:-}" != fresh ] && [ -n "${MP_TEST_COHORT48:-}" ] && [ -f "$MP_TEST_COHORT48/COMPLETE" ]; then
    ln -s "$MP_TEST_COHORT48" "$1"
  else
    run2 synth --out "$1" --patients 48 --seed 7 -q --set synth.birads0_frac=0.6 --set synth.big_mark_frac=1 \
      --set synth.annotated_frac=1 --set synth.second_lesion_frac=0.5
  fi
}
# drop_patients LABELS OUT BIRADS SLICE: LABELS (labels.csv) without the BI-RADS-BIRADS exams of the patients
# that the Python slice SLICE picks from those with such an exam, sorted by ID (their other exams stay); a store
# made with OUT discards those files as unlabelled. `1 6:` keeps every lesion and the normals of 6 patients:
# for tests whose classifiers need not learn (gan, smote), with a third of cohort48's normals each classifier
# epoch is about three times shorter.
drop_patients() {
  /usr/bin/python3 - "$@" <<'PY'
import csv, sys
src, out, birads, sl = sys.argv[1:5]
rows = list(csv.DictReader(open(src)))
ids = sorted({r["patient_id"] for r in rows if r["birads"] == birads})
drop = set(ids[slice(*[int(x) if x else None for x in sl.split(":")])])
with open(out, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(r for r in rows if r["birads"] != birads or r["patient_id"] not in drop)
PY
}
# crash_report DIR LOG: after a run that died on a signal, the last lines of LOG and, for each core file in DIR
# (a run started there with `ulimit -c unlimited`), every thread's backtrace (gdb) — a rare crash is then
# diagnosable from the CI log alone
crash_report() {
  echo "---- last lines of $2"
  tail -25 "$2"
  local c found=0
  for c in "$1"/core*; do
    [ -f "$c" ] || continue
    found=1
    echo "---- backtraces of $c ($(file -b "$c" 2>/dev/null | cut -c1-120))"
    if command -v gdb >/dev/null; then
      gdb -q -batch -ex "info threads" -ex "thread apply all bt 30" "$mp" "$c" 2>&1 | grep -v '^\[New LWP\|^warning:\|^$' | head -200
    else
      echo "(gdb is not installed)"
    fi
  done
  [ $found = 1 ] || echo "---- no core file in $1 (core_pattern: $(cat /proc/sys/kernel/core_pattern 2>/dev/null))"
}
finish() {
  echo "$passes passed, $fails failed"
  ((fails == 0))
}
