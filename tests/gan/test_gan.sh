#!/usr/bin/env bash
# gan: the five losses against PyTorch, the FID against scipy, and `gan train` end to end
# on a synthetic store (2 ranks, tiny filters): FID per epoch with the domain extractor,
# the lowest-FID generator kept, and a forced divergence recorded as such.
# Usage: test_gan.sh MAMMOPATCH MPIEXEC TESTS_DIR LOSS_TOOL FID_TOOL
set -uo pipefail
mp=$1 mpiexec=$2 tests=$3 loss_tool=$4 fid_tool=$5
export OMP_NUM_THREADS=1 MAMMOPATCH_SITE_KEY=test-site-key-for-gan-0123456
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

out=$(/usr/bin/python3 "$tests/gan/check_losses.py" "$loss_tool" 2>&1) && ok "losses: $out" || bad "losses: $out"
out=$(/usr/bin/python3 "$tests/gan/check_fid.py" "$fid_tool" 2>&1) && ok "FID: $(echo "$out" | tr '\n' ';')" \
  || bad "FID: $out"

cohort48 "$tmp/c" || bad "synth"
# every lesion, the normals of 6 patients (drop_patients): the GAN sees lesions only, and the classifiers here
# (the FID extractor, the experiment's jobs) need not learn
drop_patients "$tmp/c/labels.csv" "$tmp/labels.csv" 1 6: || bad "labels subset"
run2 preprocess --input "$tmp/c/dicom" --labels "$tmp/labels.csv" --out "$tmp/p.h5" -q || bad "preprocess"
S="$tmp/p.h5"
# the domain FID extractor: batches of 8, so that its 42 steps bring the batch-norm running statistics
# (what eval mode uses) near the data's: with a dozen steps its features all but vanish (every FID ~1e-5)
run2 train --store "$S" --split-seed 1 --out "$tmp/cls" -q --set train.batch=8 --set train.epochs=1 \
  --set train.lesion_fraction=0.5 --set train.lr=1e-4 --set train.checkpoint_every=0 || bad "extractor classifier"

gs=(--set gan.batch=8 --set gan.epochs=3 --set gan.fid_every=1)  # (the sweep's log is read below)
g=("${gs[@]}" -q)
run2 gan train --store "$S" --split-seed 1 --loss rahinge --filters 8 --sn-ttur --extractor "$tmp/cls" \
  --out "$tmp/g" "${g[@]}" && ok "gan train rahinge f=8 SN/TTUR on 2 ranks" || bad "gan train"
out=$(/usr/bin/python3 - "$tmp/g" "$tmp/cls" <<'PY'
import hashlib, json, math, os, sys
d = json.load(open(os.path.join(sys.argv[1], "gan.json")))
f = d["fid"]
# the extractor by content: its weight files' SHA-256, in the record and in what reuse compares
sha = {n: hashlib.sha256(open(os.path.join(sys.argv[2], "best", n), "rb").read()).hexdigest() for n in ("block1.h5", "rest.h5")}
assert f["extractor_sha256"] == sha, (f.get("extractor_sha256"), sha)
assert d["config"]["fid_extractor"] == f"domain {sha['block1.h5']} {sha['rest.h5']}", d["config"].get("fid_extractor")
assert d["status"] == "completed", d["status"]
assert d["loss"] == "rahinge" and d["sn_ttur"] and d["optimiser"]["lr_d"] == 4e-4 and d["optimiser"]["beta1"] == 0, d
assert f["extractor"] == "domain" and f["dimension"] == 512 and f["n_real"] == d["real_lesion_patches"] > 0, f
assert f["rank_deficient"] is True, f  # a few dozen lesions < 512 dimensions: flagged
fids = [e["fid"] for e in d["curve"]]
assert len(fids) == 3 and all(math.isfinite(x) and x >= 0 for x in fids), fids
assert min(fids) > 1, fids  # an extractor whose features vanish gives every FID ~0
assert f["best"] == min(fids) and fids[f["best_epoch"] - 1] == f["best"], (f, fids)
assert f["real_vs_real_floor"] is not None and f["real_vs_real_floor"] >= 0, f
assert sum(f["real_vs_real_floor_n"]) == f["n_real"] and min(f["real_vs_real_floor_n"]) == f["n_real"] // 2, f
# the sampler's batch-norm batch: the per-rank batch of training and the FID (8 on 2 ranks)
assert d["bn_batch"] == 4 and d["batch"] == 8 and d["ranks"] == 2, d
assert d["config"]["split_seed"] == 1 and d["config"]["gan.epochs"] == 3 and d["config"]["loss"] == "rahinge", d["config"]
for p in ("best/generator.h5", "final/generator.h5", "final/critic.h5"):
    assert os.path.getsize(os.path.join(sys.argv[1], p)) > 0, p
print(f"FIDs {', '.join(f'{x:.1f}' for x in fids)} (domain, N {f['n_real']}/{f['n_generated']}, "
      f"floor {f['real_vs_real_floor']:.1f}); best epoch {f['best_epoch']} kept")
PY
) && ok "gan.json: $out" || bad "gan.json: $out"
out=$(/usr/bin/python3 "$tests/train/check_train.py" compute "$tmp/g/gan.json" 2 "MPI allreduce in host memory") \
  && ok "gan.json $out" || bad "gan.json $out"
# gan.bn_group: the 2-rank run above (statistics per rank: groups of 4) is the 1-rank run with groups of 4 (G's
# batch norm and the relativistic means per group), up to rounding; the 1-rank run without groups (statistics of
# all 8) is another run.  Epoch 1's mean losses agree to ~1e-7 with the groups, differ by ~1e-3 without (seen:
# 4e-7 against 2e-3 and 5e-3); later epochs drift apart a little (the chaos of training amplifies rounding)
"$mp" gan train --store "$S" --split-seed 1 --loss rahinge --filters 8 --sn-ttur --extractor "$tmp/cls" \
  --out "$tmp/g1g" "${g[@]}" --set gan.bn_group=4 || bad "gan train, 1 rank, gan.bn_group=4"
"$mp" gan train --store "$S" --split-seed 1 --loss rahinge --filters 8 --sn-ttur --extractor "$tmp/cls" \
  --out "$tmp/g1" "${g[@]}" || bad "gan train, 1 rank"
out=$(/usr/bin/python3 - "$tmp/g" "$tmp/g1g" "$tmp/g1" <<'PY'
import json, sys
k2, k1g, k1 = (json.load(open(f"{d}/gan.json")) for d in sys.argv[1:4])
assert (k2["bn_batch"], k1g["bn_batch"], k1["bn_batch"]) == (4, 4, 8), (k2["bn_batch"], k1g["bn_batch"], k1["bn_batch"])
assert k1g["config"]["gan.bn_group"] == 4 and k2["config"]["gan.bn_group"] == 0, k1g["config"]
def rel(a, b, epochs):  # worst relative difference of the epochs' mean D and G losses
    return max(abs(x[k] - y[k]) / abs(y[k]) for x, y in zip(a["curve"][:epochs], b["curve"][:epochs]) for k in ("d_loss", "g_loss"))
same1, same3, other1 = rel(k1g, k2, 1), rel(k1g, k2, 3), rel(k1, k2, 1)
assert same1 < 1e-5 and same3 < 1e-2, f"groups of 4 on 1 rank vs 2 ranks: epoch 1 {same1:.1e}, 3 epochs {same3:.1e}"
assert other1 > 1e-4, f"without groups the 1-rank run should differ from the 2-rank one: {other1:.1e}"
fr = max(abs(x["fid"] - y["fid"]) / y["fid"] for x, y in zip(k1g["curve"], k2["curve"]))
print(f"1 rank with groups of 4 vs 2 ranks: losses agree to {same1:.1e} (epoch 1), {same3:.1e} (3 epochs), FIDs to {fr:.1e};"
      f" 1 rank without groups: {other1:.1e} (epoch 1)")
PY
) && ok "gan.bn_group: $out" || bad "gan.bn_group: $out"
# a group that does not divide the per-rank batch is refused before any work
run2 gan train --store "$S" --split-seed 1 --loss rahinge --filters 8 --out "$tmp/gbad" "${g[@]}" --set gan.bn_group=3 \
  2>"$tmp/gbad.err" && bad "gan.bn_group=3 with 4 samples a rank accepted" \
  || { grep -q "gan.bn_group = 3 does not divide the per-rank batch 4" "$tmp/gbad.err" && [ ! -e "$tmp/gbad/gan.json" ] \
       && ok "gan.bn_group=3 refused (per-rank batch 4)" || bad "gan.bn_group=3: $(cat "$tmp/gbad.err")"; }
# gan.n_critic: two critic steps per generator step; more than an epoch's critic steps is refused
run2 gan train --store "$S" --split-seed 1 --loss wgan-gp --filters 8 --out "$tmp/nc" --set gan.batch=8 \
  --set gan.epochs=1 --set gan.n_critic=2 -q > "$tmp/nc.log" 2>&1 \
  && out=$(/usr/bin/python3 -c 'import json, math, sys
d = json.load(open(sys.argv[1])); e = d["curve"][0]
assert d["status"] == "completed" and d["n_critic"] == 2 and math.isfinite(e["g_loss"]) and math.isfinite(e["d_loss"]), d
print("D loss %.3f, G loss %.3f" % (e["d_loss"], e["g_loss"]))' "$tmp/nc/gan.json") \
  && ok "gan.n_critic = 2: $out" || bad "gan.n_critic = 2: $(tail -2 "$tmp/nc.log") ${out:-}"
out=$(run2 gan train --store "$S" --split-seed 1 --loss wgan-gp --filters 8 --out "$tmp/nc2" --set gan.batch=8 \
  --set gan.epochs=1 --set gan.n_critic=100 2>&1) && bad "gan.n_critic beyond an epoch accepted" \
  || { grep -q "no generator step" <<<"$out" && ok "gan.n_critic beyond an epoch's critic steps: refused" \
  || bad "gan.n_critic = 100: $(grep -m1 ERROR <<<"$out")"; }

# resume: SIGUSR1 mid-run writes a checkpoint and exits 75; the rerun continues from it and
# ends bit-identical to an uninterrupted run (generator, critic with Adam state, curve)
gr=(--store "$S" --split-seed 1 --loss wgan-gp --filters 8 --extractor "$tmp/cls" --set gan.batch=4
    --set gan.epochs=40 --set gan.fid_every=5 --set gan.checkpoint_every=7)
run2 gan train "${gr[@]}" --out "$tmp/ra" > "$tmp/ra.log" 2>&1 || bad "uninterrupted reference run"
"$mpiexec" -n 2 --oversubscribe "$mp" gan train "${gr[@]}" --out "$tmp/rb" > "$tmp/rb.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  n=$(/usr/bin/python3 -c 'import json,sys
try: print(len(json.load(open(sys.argv[1]))["curve"]))
except Exception: print(0)' "$tmp/rb/gan.json")
  [ "$n" -ge 9 ] && break; sleep 0.1
done
kill -USR1 $pid; wait $pid; rc=$?
[ $rc -eq 75 ] && [ -s "$tmp/rb/checkpoint/state.json" ] && ok "SIGUSR1 mid-run: checkpoint, exit 75" \
  || bad "SIGUSR1: exit $rc: $(tail -2 "$tmp/rb.log")"
cp -r "$tmp/rb" "$tmp/rc"  # the interrupted run, checkpoint and all, for the refusal below
run2 gan train "${gr[@]}" --out "$tmp/rb" > "$tmp/rb2.log" 2>&1 && grep -q "resuming from" "$tmp/rb2.log" \
  && ok "the rerun resumes ($(grep -o 'epoch [0-9]*, step [0-9]* of [0-9]*' "$tmp/rb2.log" | head -1))" \
  || bad "resume: $(tail -3 "$tmp/rb2.log")"
h5diff "$tmp/ra/best/generator.h5" "$tmp/rb/best/generator.h5" >/dev/null && h5diff "$tmp/ra/final/critic.h5" \
  "$tmp/rb/final/critic.h5" >/dev/null && [ ! -e "$tmp/rb/checkpoint" ] \
  && /usr/bin/python3 -c 'import json,sys
c=[[{k:v for k,v in e.items() if k!="seconds"} for e in json.load(open(f))["curve"]] for f in sys.argv[1:]]
sys.exit(c[0]!=c[1])' "$tmp/ra/gan.json" "$tmp/rb/gan.json" \
  && ok "interrupted + resumed = uninterrupted (networks and Adam state bit-identical, same curve)" \
  || bad "resumed run differs from the uninterrupted one"
# the t-SNE map of the best epoch, also when that epoch came before the interruption (its
# features are made again from best/): the same map as the uninterrupted run's
best=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fid"]["best_epoch"])' "$tmp/ra/gan.json")
cmp -s "$tmp/ra/tsne.csv" "$tmp/rb/tsne.csv" && ok "t-SNE map of the resumed run = the uninterrupted run's (best epoch $best)" \
  || bad "t-SNE map after the resume: $(ls "$tmp/rb/tsne.csv" 2>&1) (best epoch $best)"
# (the copy of the interrupted run: resuming it with another gan.epochs)
[ -s "$tmp/rc/checkpoint/state.json" ] || bad "no checkpoint in the copy of the interrupted run"
run2 gan train "${gr[@]}" --out "$tmp/rc" --set gan.epochs=61 > "$tmp/rc.log" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "gan.epochs" "$tmp/rc.log" && ok "a checkpoint of another configuration is refused (key named)" \
  || bad "changed configuration on resume: exit $rc: $(tail -2 "$tmp/rc.log")"

# the inception extractor: a random torchvision Inception-v3 (FID variant, 1008 classes)
# through the converter; FID with N named, the Inception Score, the t-SNE map
/usr/bin/python3 - "$tmp/inception.h5" "$tests/../tools" <<'PY' || bad "random Inception weights"
import sys, torch, torchvision
sys.path.insert(0, sys.argv[2])
from convert_inception_weights import convert
torch.manual_seed(3)
m = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
for mod in m.modules():  # activations of order 1 through the 94 layers (He initialisation)
    if isinstance(mod, torch.nn.Conv2d):
        torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    elif isinstance(mod, torch.nn.Linear):
        torch.nn.init.normal_(mod.weight, std=0.05)
convert(m.state_dict(), sys.argv[1], "fid", "random", "")
PY
run2 gan train --store "$S" --split-seed 1 --loss rahinge --filters 8 --sn-ttur --out "$tmp/gi" -q \
  --set gan.batch=8 --set gan.epochs=2 --set gan.fid_every=2 --set gan.inception_weights="$tmp/inception.h5" \
  && out=$(/usr/bin/python3 - "$tmp/gi" <<'PY'
import json, math, os, sys
d = json.load(open(os.path.join(sys.argv[1], "gan.json")))
f, i, t = d["fid"], d["inception_score"], d["tsne"]
assert f["extractor"] == "inception" and f["dimension"] == 2048 and math.isfinite(f["best"]), f
assert 1.0 <= i["mean"] <= 1008 and i["std"] >= 0 and i["splits"] == 10, i
rows = open(os.path.join(sys.argv[1], "tsne.csv")).read().split("\n")[1:-1]
assert len(rows) == t["points_real"] + t["points_generated"] == f["n_real"] + f["n_generated"], (len(rows), t)
assert sum(r.startswith("real,") for r in rows) == f["n_real"], rows[:3]
print(f"FID {f['best']:.1f} (inception, N {f['n_real']}/{f['n_generated']}), IS {i['mean']:.3f} ± {i['std']:.3f}, "
      f"t-SNE {len(rows)} points")
PY
) && ok "inception extractor: $out" || bad "inception extractor: ${out:-gan train failed}"
# the same run on the strict backend (a device emulated over the cpu kernels): Inception then runs
# in the backend's memory (its pools and concatenation as backend ops, in fp32 whatever
# train.precision, batches of 64 instead of the host's 16).  The FIDs are the cpu run's bit for
# bit (pool3 does not depend on the batch); the Inception Scores to 1e-7 (the fc's GEMM rounds
# per batch shape)
run2 gan train --store "$S" --split-seed 1 --loss rahinge --filters 8 --sn-ttur --out "$tmp/gis" -q \
  --set gan.batch=8 --set gan.epochs=2 --set gan.fid_every=2 --set gan.inception_weights="$tmp/inception.h5" \
  --set train.backend=strict \
  && out=$(/usr/bin/python3 - "$tmp/gi" "$tmp/gis" <<'PY'
import json, os, sys
a, b = (json.load(open(os.path.join(d, "gan.json"))) for d in sys.argv[1:3])
assert b["compute"]["backend"] == "strict" and b["compute"]["extractor_engine"].startswith("strict"), b["compute"]
ca, cb = ([(e["epoch"], e.get("fid"), e.get("is")) for e in d["curve"] if "fid" in e] for d in (a, b))
assert ca and [c[:2] for c in ca] == [c[:2] for c in cb] and a["fid"]["best"] == b["fid"]["best"], (ca, cb)
worst = max(abs(x[2] - y[2]) / abs(x[2]) for x, y in zip(ca, cb))
assert worst <= 1e-7, (ca, cb)
print(f"{len(cb)} FIDs identical to cpu's, IS within {worst:.1e} ({b['compute']['extractor_engine'][:40]})")
PY
) && ok "inception extractor on a device backend (strict): $out" || bad "inception on strict: ${out:-gan train or its check failed}"

# a forced divergence (huge learning rates) is recorded, not a crash
run2 gan train --store "$S" --split-seed 1 --loss wgan-gp --filters 8 --out "$tmp/div" "${g[@]}" \
  --set gan.lr_d=1e6 --set gan.lr_g=1e6 > "$tmp/div.log" 2>&1; rc=$?
st=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$tmp/div/gan.json" 2>&1)
[ $rc -eq 1 ] && [ "$st" = diverged ] && ok "huge learning rate: status diverged, exit 1" \
  || bad "forced divergence: exit $rc, status $st: $(tail -3 "$tmp/div.log")"

# a small sweep (2 losses x f=8 x SN/TTUR off/on) on 2 ranks in 2 groups, one run forced
# to diverge: recorded, the others finish, the table is written; a rerun reuses all four
MAMMOPATCH_TEST_DIVERGE=/runs/rsgan-f8 run2 gan sweep --store "$S" --split-seed 1 --extractor "$tmp/cls" \
  --out "$tmp/sw" "${gs[@]}" --set gan.sweep_losses=rsgan,rahinge --set gan.sweep_filters=8 > "$tmp/sw.log" 2>&1 \
  && ok "sweep ran" || bad "sweep: $(tail -3 "$tmp/sw.log")"
grep -q "2 rank groups of 1" "$tmp/sw.log" && ok "sweep on 2 rank groups" || bad "sweep groups: $(grep 'gan sweep:' "$tmp/sw.log" | head -1)"
out=$(/usr/bin/python3 - "$tmp/sw" <<'PY'
import json, math, os, sys
d = json.load(open(os.path.join(sys.argv[1], "sweep.json")))
runs = {r["run"]: r for r in d["runs"]}
assert sorted(runs) == ["rahinge-f8", "rahinge-f8-sn", "rsgan-f8", "rsgan-f8-sn"], sorted(runs)
assert runs["rsgan-f8"]["status"] == "diverged", runs["rsgan-f8"]
done = [r for r in d["runs"] if r["status"] == "completed"]
assert len(done) == 3 and all(math.isfinite(r["best_fid"]) for r in done), d["runs"]
b = min(done, key=lambda r: r["best_fid"])
assert d["best"]["run"] == b["run"] and os.path.isfile(os.path.join(sys.argv[1], d["best"]["generator"])), d["best"]
md = open(os.path.join(sys.argv[1], "sweep.md")).read()
assert "| rsgan | diverged |" in md and "| rahinge |" in md and "domain" in md, md
assert d["fid"]["rank_deficient"] is True and "N < dimension" in md and "two halves of the real set, N " in md, d["fid"]
assert os.path.getsize(os.path.join(sys.argv[1], "charts", "fid.svg")) > 0
print(f"3 completed + 1 diverged; best {b['run']} FID {b['best_fid']:.1f}; Table 4.4 form written")
PY
) && ok "sweep: $out" || bad "sweep: $out"
# (the extractor is named by its weights, not its path: a copy elsewhere is the same extractor)
cp -r "$tmp/cls" "$tmp/cls-copy"
run2 gan sweep --store "$S" --split-seed 1 --extractor "$tmp/cls-copy" --out "$tmp/sw" "${gs[@]}" \
  --set gan.sweep_losses=rsgan,rahinge --set gan.sweep_filters=8 > "$tmp/sw2.log" 2>&1 && grep -q "4 reused" "$tmp/sw2.log" \
  && ok "sweep rerun (the extractor copied elsewhere) reuses the 4 runs" || bad "sweep rerun: $(grep 'gan sweep:' "$tmp/sw2.log" | head -2)"
# ... but not with another extractor (here one weight changed): its FIDs would share a table with the first one's
cp -r "$tmp/cls" "$tmp/cls2"
/usr/bin/python3 -c 'import h5py, sys
with h5py.File(sys.argv[1], "r+") as h: h["00_conv/bias"][0] += 1e-3' "$tmp/cls2/best/rest.h5" || bad "a second extractor"
out=$(run2 gan sweep --store "$S" --split-seed 1 --extractor "$tmp/cls2" --out "$tmp/sw" "${gs[@]}" \
  --set gan.sweep_losses=rsgan,rahinge --set gan.sweep_filters=8 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "was made with fid_extractor = \"domain" <<<"$out" \
  && ok "sweep rerun with another FID extractor: refused (exit 2), naming fid_extractor" \
  || bad "sweep rerun with another extractor: exit $rc: $(grep -m1 ERROR <<<"$out")"
# ... but not for another split: its runs were trained on split 1's lesions
out=$(run2 gan sweep --store "$S" --split-seed 2 --extractor "$tmp/cls" --out "$tmp/sw" "${gs[@]}" \
  --set gan.sweep_losses=rsgan,rahinge --set gan.sweep_filters=8 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "was made with split_seed = 1, now 2" <<<"$out" \
  && ok "sweep rerun for another split: refused (exit 2), naming split_seed" \
  || bad "sweep rerun for another split: exit $rc: $(grep -m1 ERROR <<<"$out")"

# gan sample: from the sweep's best run; the same store on 1 and 2 ranks; label 1, one
# synthetic view; the real-vs-synthetic montage
run2 gan sample --generator "$tmp/sw" --n 20 --out "$tmp/syn2.h5" --montage-store "$S" "${g[@]}" || bad "gan sample (2 ranks)"
"$mp" gan sample --generator "$tmp/sw" --n 20 --out "$tmp/syn1.h5" "${g[@]}" || bad "gan sample (1 rank)"
h5diff "$tmp/syn1.h5" "$tmp/syn2.h5" >/dev/null && ok "gan sample: identical store for 1 and 2 ranks" || bad "gan sample differs by ranks"
out=$(/usr/bin/python3 - "$tmp/syn2.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as h:
    lab, view, px = h["/patches/label"][:], h["/patches/view"][:], h["/patches/pixels"]
    assert px.shape == (20, 128, 128) and (lab == 1).all() and (view == 0).all(), (px.shape, lab, view)
    assert len(h["/views/patient"]) == 1 and h.attrs["synthetic"] == 1, dict(h.attrs)
    assert h["/patients/pseudonym"][0].decode().startswith("SYNTHETIC")
    print(f"20 patches label 1, one synthetic view, generator {h.attrs['generator_run'].decode().split('/')[-1]}")
PY
) && ok "synthetic store: $out" || bad "synthetic store: $out"
[ -s "$tmp/syn2.h5.montage.png" ] && ok "real-vs-synthetic montage written" || bad "no montage"

# the gan classifier variant in an experiment: split 1 uses the sweep's best generator (the
# sweep ran on split 1), split 2 trains that configuration on its own training lesions;
# 2 x (training lesions) synthetic patches join each gan job's training part
run2 experiment --store "$S" --out "$tmp/x" "${g[@]}" --set experiment.variants=baseline,gan \
  --set experiment.gan_sweep="$tmp/sw" --set experiment.repeats=2 --set experiment.split_seed=1 \
  --set train.batch=32 --set train.epochs=1 --set train.lesion_fraction=0.5 --set train.lr=1e-4 \
  --set train.checkpoint_every=0 > "$tmp/x.log" 2>&1 && ok "experiment baseline + gan" \
  || bad "experiment with gan: $(grep -E 'ERROR|failed' "$tmp/x.log" | head -3)"
out=$(/usr/bin/python3 - "$tmp/x" "$tmp/sw" <<'PY'
import json, os, sys
x, sw = sys.argv[1], sys.argv[2]
d = json.load(open(os.path.join(x, "experiment.json")))
assert d["variants"] == ["baseline", "gan"] and all(r["status"] == "done" for r in d["results"]), d["results"]
assert "gan" in d["differences_from_baseline"] and any(h.startswith("gan vs baseline") for h in d["highlights"])
for s in (1, 2):
    b = json.load(open(os.path.join(x, f"runs/baseline/split-{s}/train.json")))
    g = json.load(open(os.path.join(x, f"runs/gan/split-{s}/train.json")))
    assert g["variant"] == "gan" and g["train_synthetic_patches"] == 2 * b["train_lesion_patches"], (s, g["train_synthetic_patches"])
    assert g["train_patches"] == b["train_patches"] + g["train_synthetic_patches"]
best = json.load(open(os.path.join(sw, "sweep.json")))["best"]["run"]
assert not os.path.exists(os.path.join(x, "runs/gan/split-1/gan")), "split 1 should reuse the sweep's generator"
g2 = json.load(open(os.path.join(x, "runs/gan/split-2/gan/gan.json")))
assert g2["status"] == "completed" and f"{g2['loss']}-f{g2['filters']}{'-sn' if g2['sn_ttur'] else ''}" == best, (g2["loss"], best)
print(f"synthetic = 2 x training lesions on both splits; split 2 retrained {best}")
PY
) && ok "gan variant: $out" || bad "gan variant: $out"
out=$(/usr/bin/python3 "$tests/eval/check_report.py" "$tmp/x/report" --variants baseline,gan --min-charts 9 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q 'id="gan-sweep"' "$tmp/x/report/index.html" && ok "report with the gan variant and the sweep renders" \
  || { [ $rc -eq 77 ] || bad "gan report: $out"; }

# a store with other lesion patches for split 1 (every other BI-RADS-0 patient left out): the sweep's
# runs are not this split's data (a generator trained on them may have seen its validation or test
# lesions). A sweep rerun refuses them, naming real_lesions; the experiment's gan job trains the sweep's
# configuration on the split's own lesions instead of sampling the sweep's generator.
drop_patients "$tmp/labels.csv" "$tmp/labels2.csv" 0 ::2 || bad "labels without half the lesion patients"
run2 preprocess --input "$tmp/c/dicom" --labels "$tmp/labels2.csv" --out "$tmp/p2.h5" -q || bad "preprocess (store 2)"
out=$(run2 gan sweep --store "$tmp/p2.h5" --split-seed 1 --extractor "$tmp/cls" --out "$tmp/sw" "${gs[@]}" \
  --set gan.sweep_losses=rsgan,rahinge --set gan.sweep_filters=8 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "was made with real_lesions = " <<<"$out" \
  && ok "sweep rerun on another store's split 1: refused (exit 2), naming real_lesions" \
  || bad "sweep rerun on another store: exit $rc: $(grep -m1 ERROR <<<"$out")"
run2 experiment --store "$tmp/p2.h5" --out "$tmp/x2" "${g[@]}" --set experiment.variants=baseline,gan \
  --set experiment.gan_sweep="$tmp/sw" --set experiment.repeats=1 --set experiment.split_seed=1 \
  --set train.batch=32 --set train.epochs=1 --set train.lesion_fraction=0.5 --set train.lr=1e-4 \
  --set train.checkpoint_every=0 > "$tmp/x2.log" 2>&1 && grep -q "trained on other lesion patches" "$tmp/x2.log" \
  && out=$(/usr/bin/python3 - "$tmp/x2/runs/gan/split-1/gan/gan.json" "$tmp/sw/sweep.json" <<'PY'
import json, sys
g, sw = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
mine = f"{g['loss']}-f{g['filters']}{'-sn' if g['sn_ttur'] else ''}"
theirs = json.load(open(sys.argv[2].replace("sweep.json", f"runs/{mine}/gan.json")))
assert g["status"] == "completed" and mine == sw["best"]["run"] and g["split_seed"] == 1, (g["status"], mine)
assert g["real_lesions_sha256"] != theirs["real_lesions_sha256"], "the same lesion patches?"
print(f"{mine} trained on this store's {g['real_lesion_patches']} split-1 lesion patches "
      f"(the sweep's run: {theirs['real_lesion_patches']})")
PY
) && ok "experiment on another store: $out" || bad "experiment on another store: $(grep -E 'ERROR|WARN' "$tmp/x2.log" | head -3) ${out:-}"

finish
