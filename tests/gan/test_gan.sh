#!/usr/bin/env bash
# gan: the five losses against PyTorch, the FID against scipy, and `gan train` end to end
# on a synthetic store (2 ranks, tiny filters): FID per epoch with the domain extractor,
# the lowest-FID generator kept, and a forced divergence recorded as such.
# Usage: test_gan.sh MAMMOPATCH MPIEXEC TESTS_DIR LOSS_TOOL FID_TOOL
set -uo pipefail
mp=$1 mpiexec=$2 tests=$3 loss_tool=$4 fid_tool=$5
export OMP_NUM_THREADS=1 MAMMOPATCH_SITE_KEY=test-site-key-for-gan-0123456
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
ok()  { passes=$((passes + 1)); echo "ok   $*"; }
bad() { fails=$((fails + 1)); echo "FAIL $*"; }
run2() { "$mpiexec" -n 2 --oversubscribe "$mp" "$@"; }

out=$(/usr/bin/python3 "$tests/gan/check_losses.py" "$loss_tool" 2>&1) && ok "losses: $out" || bad "losses: $out"
out=$(/usr/bin/python3 "$tests/gan/check_fid.py" "$fid_tool" 2>&1) && ok "FID: $(echo "$out" | tr '\n' ';')" \
  || bad "FID: $out"

run2 synth --out "$tmp/c" --patients 48 --seed 7 -q --set synth.birads0_frac=0.6 --set synth.big_mark_frac=1 \
  --set synth.annotated_frac=1 --set synth.second_lesion_frac=0.5 || bad "synth"
run2 preprocess --input "$tmp/c/dicom" --labels "$tmp/c/labels.csv" --out "$tmp/p.h5" -q || bad "preprocess"
S="$tmp/p.h5"
run2 train --store "$S" --split-seed 1 --out "$tmp/cls" -q --set train.batch=32 --set train.epochs=1 \
  --set train.lesion_fraction=0.5 --set train.lr=1e-4 --set train.checkpoint_every=0 || bad "extractor classifier"

g=(--set gan.batch=8 --set gan.epochs=3 --set gan.fid_every=1 -q)
run2 gan train --store "$S" --split-seed 1 --loss rahinge --filters 8 --sn-ttur --extractor "$tmp/cls" \
  --out "$tmp/g" "${g[@]}" && ok "gan train rahinge f=8 SN/TTUR on 2 ranks" || bad "gan train"
out=$(/usr/bin/python3 - "$tmp/g" <<'PY'
import json, math, os, sys
d = json.load(open(os.path.join(sys.argv[1], "gan.json")))
f = d["fid"]
assert d["status"] == "completed", d["status"]
assert d["loss"] == "rahinge" and d["sn_ttur"] and d["optimiser"]["lr_d"] == 4e-4 and d["optimiser"]["beta1"] == 0, d
assert f["extractor"] == "domain" and f["dimension"] == 512 and f["n_real"] == d["real_lesion_patches"] > 0, f
assert f["rank_deficient"] is True, f  # a few dozen lesions < 512 dimensions: flagged
fids = [e["fid"] for e in d["curve"]]
assert len(fids) == 3 and all(math.isfinite(x) and x >= 0 for x in fids), fids
assert f["best"] == min(fids) and fids[f["best_epoch"] - 1] == f["best"], (f, fids)
assert f["real_vs_real_floor"] is not None and f["real_vs_real_floor"] >= 0, f
for p in ("best/generator.h5", "final/generator.h5", "final/critic.h5"):
    assert os.path.getsize(os.path.join(sys.argv[1], p)) > 0, p
print(f"FIDs {', '.join(f'{x:.1f}' for x in fids)} (domain, N {f['n_real']}/{f['n_generated']}, "
      f"floor {f['real_vs_real_floor']:.1f}); best epoch {f['best_epoch']} kept")
PY
) && ok "gan.json: $out" || bad "gan.json: $out"

# a forced divergence (huge learning rates) is recorded, not a crash
run2 gan train --store "$S" --split-seed 1 --loss wgan-gp --filters 8 --out "$tmp/div" "${g[@]}" \
  --set gan.lr_d=1e6 --set gan.lr_g=1e6 > "$tmp/div.log" 2>&1; rc=$?
st=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$tmp/div/gan.json" 2>&1)
[ $rc -eq 1 ] && [ "$st" = diverged ] && ok "huge learning rate: status diverged, exit 1" \
  || bad "forced divergence: exit $rc, status $st: $(tail -3 "$tmp/div.log")"

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
