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
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
ok()  { passes=$((passes + 1)); echo "ok   $*"; }
bad() { fails=$((fails + 1)); echo "FAIL $*"; }
run2() { "$mpiexec" -n 2 --oversubscribe "$mp" "$@"; }

run2 synth --out "$tmp/c" --patients 48 --seed 7 -q --set synth.birads0_frac=0.6 --set synth.big_mark_frac=1 \
  --set synth.annotated_frac=1 --set synth.second_lesion_frac=0.5 || bad "synth"
run2 preprocess --input "$tmp/c/dicom" --labels "$tmp/c/labels.csv" --out "$tmp/p.h5" -q || bad "preprocess"
S="$tmp/p.h5"
run2 train --store "$S" --split-seed 3 --out "$tmp/b" -q --set train.batch=32 \
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
out=$(run2 smote features --store "$S" --split-seed 3 --baseline "$tmp/b" --dist l2 --k 1000 --out "$tmp/x.h5" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "needs at least 1001 training lesion patches" <<<"$out" && [ ! -e "$tmp/x.h5" ] \
  && ok "too few lesion patches for k: refused (exit 2)" || bad "k too large: exit $rc: $(grep -m1 ERROR <<<"$out")"

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
