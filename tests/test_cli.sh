#!/usr/bin/env bash
# The `mammopatch` command line end to end: help, version agreement across ranks,
# configuration errors and warnings, pseudonyms, info.
# Usage: test_cli.sh MAMMOPATCH MPIEXEC SOURCE_DIR
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mp=$1 mpiexec=$2
mpi2=("$mpiexec" -n 2 --oversubscribe)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
ok()   { passes=$((passes + 1)); echo "ok   $*"; }
bad()  { fails=$((fails + 1)); echo "FAIL $*"; }
# expect NAME CODE PATTERN... -- runs "${cmd[@]}", checks exit code and that stdout+stderr hold each pattern
expect() {
  local name=$1 code=$2; shift 2
  local out rc
  out=$(timeout 120 "${cmd[@]}" 2>&1); rc=$?
  local good=1
  [[ $rc -eq $code ]] || { bad "$name: exit $rc, expected $code"; good=0; }
  for pat in "$@"; do
    grep -qF -- "$pat" <<<"$out" || { bad "$name: output lacks '$pat'"; good=0; }
  done
  ((good)) && ok "$name" || { echo "---- output:"; echo "$out" | head -20; }
  last_out=$out
}

cmd=("$mp" --help);                 expect help 0 "Usage:" "info " "config " "pseudonym " "--set KEY=VALUE"
cmd=("$mp");                        expect no-args 2 "Usage:"
cmd=("$mp" frobnicate);             expect unknown-command 2 "unknown command 'frobnicate'"
for sub in info config pseudonym; do
  cmd=("$mp" "$sub" --help);        expect "$sub-help" 0 "Usage: " "Common options:"
done

# --version on 2 ranks: printed once, ranks agree
cmd=("${mpi2[@]}" "$mp" --version); expect version-2-ranks 0 "mammopatch " "(git " "2 ranks agree"
n=$(grep -c '^mammopatch ' <<<"$last_out")
[[ $n -eq 1 ]] && ok "version printed once" || bad "version printed $n times"

# configuration: bad values refused naming the key, on every rank, message once
printf '[run]\nseed = abc\n' >"$tmp/bad.ini"
cmd=("${mpi2[@]}" "$mp" config --config "$tmp/bad.ini"); expect config-bad-value 2 "bad.ini:2: run.seed = 'abc': not an integer"
n=$(grep -c "not an integer" <<<"$last_out")
[[ $n -eq 1 ]] && ok "config error printed once" || bad "config error printed $n times"
cmd=("$mp" config --set log.level=loud); expect config-bad-choice 2 "log.level = 'loud': must be one of error|warn|info|debug"
cmd=("$mp" config --set run.sed=3);      expect config-unknown-set 2 "unknown configuration key 'run.sed' (did you mean 'run.seed'?)"
cmd=("$mp" config --config "$tmp/missing.ini"); expect config-missing-file 2 "configuration file: cannot open"
printf '[run]\nseed = 5\nsede = 6\n[nosuch]\nkey = 1\n' >"$tmp/unknown.ini"
cmd=("${mpi2[@]}" "$mp" config --config "$tmp/unknown.ini"); expect config-unknown-warn 0 "WARN" "unknown configuration key 'run.sede' ignored (did you mean 'run.seed'?)" "'nosuch.key'" "seed = 5"
n=$(grep -c "run.sede" <<<"$last_out")
[[ $n -eq 1 ]] && ok "unknown-key warning printed once" || bad "unknown-key warning printed $n times"
# the dump is a valid configuration that reproduces itself
"$mp" config --set run.seed=99 --set log.progress_interval=2.5 >"$tmp/dump.ini" 2>/dev/null
"$mp" config --config "$tmp/dump.ini" >"$tmp/dump2.ini" 2>/dev/null
if diff <(grep -v '^; mammopatch' "$tmp/dump.ini") <(grep -v '^; mammopatch' "$tmp/dump2.ini") >/dev/null &&
   grep -q '^seed = 99$' "$tmp/dump2.ini"; then ok "config dump round trip"; else bad "config dump round trip"; fi
cmd=("$mp" config --json --set run.seed=7); expect config-json 0 '"software":' '"mammopatch"' '"seed":'
cmd=("$mp" config --keys);                  expect config-keys 0 "run.seed" "privacy.site_key_file"
cmd=("$mp" info --log-level loud);          expect bad-log-level 2 "--log-level 'loud'"

# pseudonyms: the known answer from Python's hmac, never the ID itself
export MAMMOPATCH_SITE_KEY=mammopatch-test-site-key-0123456789
cmd=("$mp" pseudonym UPITT-000123 12345);   expect pseudonym 0 "P1c33898a506dee8adb1e" "P87d6d9023f82c7ac2db0" "fingerprint"
grep -q "UPITT-000123" <<<"$last_out" && bad "pseudonym output echoes the ID" || ok "pseudonym output holds no ID"
cmd=(bash -c "printf 'UPITT-000123\n' | '$mp' pseudonym -"); expect pseudonym-stdin 0 "P1c33898a506dee8adb1e"
printf 'another-key-for-a-different-site\n' >"$tmp/site.key"
printf '[privacy]\nsite_key_file = %s\n' "$tmp/site.key" >"$tmp/key.ini"
cmd=("$mp" pseudonym --config "$tmp/key.ini" UPITT-000123); expect pseudonym-key-file 0 "P"
grep -q "P1c33898a506dee8adb1e" <<<"$last_out" && bad "key file ignored" || ok "key file used over the environment"
unset MAMMOPATCH_SITE_KEY
cmd=("$mp" pseudonym X);                    expect pseudonym-no-key 2 "no site key"

# numbers on the command line: digits only and in range, or refused before any work (exit 2);
# "12abc" is not read as 12, "-5" not wrapped around to 2^64 - 5
helptext=$("$mp" --help 2>&1)
if grep -q '^  gan ' <<<"$helptext"; then
  for f in 12abc abc 12 -8 0 2048; do
    cmd=("$mp" gan train --store "$tmp/none.h5" --split-seed 1 --loss rahinge --filters "$f" --out "$tmp/g")
    expect "gan-train-filters-$f" 2 "--filters '$f' is not a multiple of 8 from 8 to 1024"
  done
  for n in 0 -5 1x 4294967296; do
    cmd=("$mp" gan sample --generator "$tmp/none" --n "$n" --out "$tmp/s.h5")
    expect "gan-sample-n-$n" 2 "--n (a whole number from 1 to 2^32 - 1)"
  done
fi
if grep -q '^  smote ' <<<"$helptext"; then
  for k in 0 -3 2x 51; do
    cmd=("$mp" smote features --store "$tmp/none.h5" --split-seed 1 --baseline "$tmp/b" --dist l2 --k "$k" --out "$tmp/o.h5")
    expect "smote-k-$k" 2 "--k '$k' is not a whole number from 1 to 50"
  done
fi
[[ ! -e $tmp/g && ! -e $tmp/s.h5 && ! -e $tmp/o.h5 ]] && ok "refused numbers wrote nothing" || bad "a refused number left output"

# info on 2 ranks, with JSON
cmd=("${mpi2[@]}" "$mp" info --json "$tmp/info.json"); expect info 0 "HDF5" "2 ranks on 1 node" "rank 0" "rank 1" \
  "engines     ref: plain C, double accumulation, "
if [[ -s "$tmp/info.json" ]] && grep -q '"hdf5_parallel"' "$tmp/info.json" && grep -q '"local_rank"' "$tmp/info.json" \
  && /usr/bin/python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["ranks"]
sys.exit(not (len(r) == 2 and all(x["engines"][0].startswith("ref: plain C") for x in r)
              and len({len(x["engines"]) for x in r}) == 1))' "$tmp/info.json"; then
  ok "info json (each rank's engines)"; else bad "info json missing or incomplete"; fi

echo "$passes passed, $fails failed"
((fails == 0))
