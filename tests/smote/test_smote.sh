#!/usr/bin/env bash
# smote phase 2 end to end on a synthetic store: block-1 features of the training lesion
# patches, exact kNN per distance (checked against a float64 brute force on the stored
# features), synthetic vectors on their segments with p in [0, 1), k x n_m of them, the
# same file for 1 and 2 ranks, only training-split patients as bases or neighbours, and
# a clear refusal when the split has too few lesion patches.
# Usage: test_smote.sh MAMMOPATCH MPIEXEC
set -uo pipefail
mp=$1 mpiexec=$2
export OMP_NUM_THREADS=1 MAMMOPATCH_SITE_KEY=test-site-key-for-smote-0123456
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

cohort48 "$tmp/c" || bad "synth"
# every lesion, the normals of 6 patients (drop_patients): SMOTE works on lesions, and the classifiers here
# need not learn
drop_patients "$tmp/c/labels.csv" "$tmp/labels.csv" 1 6: || bad "labels subset"
run2 preprocess --input "$tmp/c/dicom" --labels "$tmp/labels.csv" --out "$tmp/p.h5" -q || bad "preprocess"
S="$tmp/p.h5"
# the baseline whose block 1 makes the features: batches of 8, so that its steps bring the batch-norm
# running statistics (what eval mode uses) near the data's
run2 train --store "$S" --split-seed 3 --out "$tmp/b" -q --set train.batch=8 \
  --set train.checkpoint_every=0 --set train.epochs=1 || bad "baseline"

for d in cosine l1 l2; do
  run2 smote features --store "$S" --split-seed 3 --baseline "$tmp/b" --dist $d --out "$tmp/s-$d.h5" -q \
    || bad "smote features $d"
  out=$(/usr/bin/python3 - "$tmp/s-$d.h5" "$d" "$S" "$tmp/b/split.json" <<'PY'
import json, sys
import h5py, numpy as np
path, dist, store, split = sys.argv[1:5]
with h5py.File(path, "r") as h:
    F = h["/real/features"][:].reshape(len(h["/real/index"]), -1).astype(np.float64)
    idx = h["/real/index"][:]
    syn = h["/synthetic/features"][:].reshape(len(h["/synthetic/base"]), -1)
    base, nb, p = h["/synthetic/base"][:], h["/synthetic/neighbour"][:], h["/synthetic/p"][:]
    k = int(h.attrs["k"])
n = len(idx)
assert len(syn) == k * n and (base == np.repeat(np.arange(n), k)).all(), "k x n_m, in base order"
assert ((p >= 0) & (p < 1)).all(), p
# neighbours: float64 brute force on the stored features, ties by index
if dist == "l2":
    D = np.sqrt(((F[:, None] - F[None]) ** 2).sum(-1))
elif dist == "l1":
    D = np.abs(F[:, None] - F[None]).sum(-1)
else:
    nr = np.linalg.norm(F, axis=1)
    D = 1 - F @ F.T / np.outer(nr, nr)
np.fill_diagonal(D, np.inf)
want = np.array([sorted(range(n), key=lambda j: (D[i, j], j))[:k] for i in range(n)]).ravel()
assert (nb == want).all(), f"neighbours differ in {np.nonzero(nb != want)[0][:5]}"
# on the segment: syn = f_base + p (f_nb - f_base)
seg = F[base] + p[:, None] * (F[nb] - F[base])
err = np.abs(syn - seg).max() / max(1e-12, np.abs(F).max())
assert err < 1e-6, err
# bases and neighbours: training-split patients only
with h5py.File(store, "r") as s:
    views, vp = s["/patches/view"][:], s["/views/patient"][:]
    pseudo = [x.decode().rstrip("\x00") for x in s["/patients/pseudonym"][:]]
train = set(json.load(open(split))["train"]["patients"])
others = set(json.load(open(split))["validation"]["patients"]) | set(json.load(open(split))["test"]["patients"])
pats = {pseudo[vp[views[i]]] for i in idx}
assert pats <= train and not (pats & others), "a non-training patient among the bases"
print(f"{n} lesion patches -> {len(syn)} vectors; neighbours = brute force; on segments (rel err {err:.1e}); "
      f"{len(pats)} training patients only")
PY
) && ok "$d: $out" || bad "$d: $out"
done
"$mp" smote features --store "$S" --split-seed 3 --baseline "$tmp/b" --dist cosine --out "$tmp/s1.h5" -q \
  && h5diff "$tmp/s1.h5" "$tmp/s-cosine.h5" >/dev/null && ok "the same file on 1 and 2 ranks" || bad "1 vs 2 ranks differ"
# (k = 40 is within --k's range, 1..50, and above the split's 37 training lesion patches; a k
# beyond the range is the command line's refusal, test_cli)
out=$(run2 smote features --store "$S" --split-seed 3 --baseline "$tmp/b" --dist l2 --k 40 --out "$tmp/x.h5" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "needs at least 41 training lesion patches" <<<"$out" && [ ! -e "$tmp/x.h5" ] \
  && ok "too few lesion patches for k: refused (exit 2)" || bad "k too large: exit $rc: $(grep -m1 ERROR <<<"$out")"

# phase 3: block 1 frozen (bit-identical to the baseline's), the rest trained on its
# embeddings plus the synthetic vectors (counted as lesions)
run2 train --store "$S" --split-seed 3 --out "$tmp/v" -q --variant smote-cosine --smote "$tmp/s-cosine.h5" \
  --block1 "$tmp/b" --set train.batch=32 --set train.epochs=1 --set train.checkpoint_every=0 || bad "phase 3"
out=$(/usr/bin/python3 - "$tmp/v" "$tmp/b" "$tmp/s-cosine.h5" <<'PY'
import json, os, sys
import h5py, numpy as np
v, b, sm = sys.argv[1:4]
tv, tb = json.load(open(os.path.join(v, "train.json"))), json.load(open(os.path.join(b, "train.json")))
with h5py.File(sm, "r") as h:
    ns = len(h["/synthetic/base"])
assert tv["status"] == "completed" and tv["train_synthetic_vectors"] == ns, tv["train_synthetic_vectors"]
assert tv["train_patches"] == tb["train_patches"] + ns and tv["train_lesion_patches"] == tb["train_lesion_patches"] + ns
names = []
with h5py.File(os.path.join(v, "best/block1.h5"), "r") as x, h5py.File(os.path.join(b, "best/block1.h5"), "r") as y:
    x.visit(lambda k: names.append(k) if isinstance(x[k], h5py.Dataset) else None)
    same = all(np.array_equal(x[k][()], y[k][()]) for k in names)
    rest_changed = True
assert names and same, "block 1 changed"
with h5py.File(os.path.join(v, "best/rest.h5"), "r") as x, h5py.File(os.path.join(b, "best/rest.h5"), "r") as y:
    ks = []
    x.visit(lambda k: ks.append(k) if isinstance(x[k], h5py.Dataset) else None)
    assert any(not np.array_equal(x[k][()], y[k][()]) for k in ks), "the rest did not train"
print(f"block 1 bit-identical ({len(names)} tensors); {ns} synthetic vectors joined {tb['train_patches']} real patches; "
      f"test MCC {tv['test']['mcc']:.3f}")
PY
) && ok "phase 3: $out" || bad "phase 3: $out"

# the smote-l2 variant in an experiment beside the baseline (phase 2 on the split's baseline,
# phase 3, eval, aggregation and the difference from the baseline)
run2 experiment --store "$S" --out "$tmp/x" -q --set experiment.variants=baseline,smote-l2 --set experiment.repeats=1 \
  --set experiment.split_seed=3 --set train.batch=32 --set train.epochs=1 --set train.checkpoint_every=0 \
  && ok "experiment baseline + smote-l2" || bad "experiment with smote-l2"
out=$(/usr/bin/python3 - "$tmp/x" <<'PY'
import json, os, sys
x = sys.argv[1]
d = json.load(open(os.path.join(x, "experiment.json")))
assert d["variants"] == ["baseline", "smote-l2"] and all(r["status"] == "done" for r in d["results"]), d["results"]
t = json.load(open(os.path.join(x, "runs/smote-l2/split-3/train.json")))
b = json.load(open(os.path.join(x, "runs/baseline/split-3/train.json")))
assert t["train_synthetic_vectors"] == 2 * b["train_lesion_patches"], t["train_synthetic_vectors"]
assert "smote-l2" in d["differences_from_baseline"] and os.path.isfile(os.path.join(x, "report/index.html"))
print(f"smote-l2: {t['train_synthetic_vectors']} vectors (2 x {b['train_lesion_patches']}); aggregated and reported")
PY
) && ok "smote variant: $out" || bad "smote variant: $out"
# a rerun reuses both jobs; with other neighbours (experiment.smote_k) it is refused, naming the key
out=$(run2 experiment --store "$S" --out "$tmp/x" --set experiment.variants=baseline,smote-l2 --set experiment.repeats=1 \
  --set experiment.split_seed=3 --set train.batch=32 --set train.epochs=1 --set train.checkpoint_every=0 2>&1) \
  && grep -q "; 2 reused" <<<"$out" && ok "rerun: both jobs reused" || bad "rerun: $(grep -m1 'experiment:' <<<"$out")"
out=$(run2 experiment --store "$S" --out "$tmp/x" --set experiment.variants=baseline,smote-l2 --set experiment.repeats=1 \
  --set experiment.split_seed=3 --set train.batch=32 --set train.epochs=1 --set train.checkpoint_every=0 \
  --set experiment.smote_k=1 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "different experiment.smote_k" <<<"$out" && ok "rerun with another smote_k: refused (exit 2)" \
  || bad "rerun with another smote_k: exit $rc: $(grep -m1 ERROR <<<"$out")"

finish
