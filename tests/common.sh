# Sourced by the end-to-end test scripts (after they set mp and mpiexec): a temporary
# directory removed on exit (kept when MP_TEST_KEEP is set), pass/fail counters (ok MESSAGE, bad MESSAGE), run2 (the
# mammopatch command on 2 ranks) and finish (the summary line and the exit status).
tmp=$(mktemp -d)
if [ -n "${MP_TEST_KEEP:-}" ]; then echo "keeping $tmp (MP_TEST_KEEP)"; else trap 'rm -rf "$tmp"' EXIT; fi
fails=0 passes=0
ok()  { passes=$((passes + 1)); echo "ok   $*"; }
bad() { fails=$((fails + 1)); echo "FAIL $*"; }
run2() { "$mpiexec" -n 2 --oversubscribe "$mp" "$@"; }
finish() {
  echo "$passes passed, $fails failed"
  ((fails == 0))
}
