#!/usr/bin/env bash
# strict: every command that runs a network, on the `strict` backend (nn/mp_backend_strict.c):
# the host backend's arithmetic under the cuda backend's memory contract, enforced.  Backend
# memory that an asynchronous op left pending is closed to host code until the next wait, so a
# host read or write that a GPU run would race on (a missing mp_backend_sync) kills the run here
# with the op and a backtrace; CI has no GPU to show it otherwise.  Covered: train on 1 rank
# (the same numbers as the backend strict wraps, bit for bit), on 2 ranks with the backend's own
# collective (`strict`: the trainers' device path of mp_dp, NCCL's on a GPU, which no lent
# machine with one GPU runs) and with MPI in host memory (`strict:mpi`); eval; gan train with
# WGAN-GP (the gradient penalty, the interpolates, the device-side real batches) and with
# RaHinge + spectral norm + TTUR; smote features (the kNN's score blocks on the device path,
# gemm_nt and l1_nt) and a smote classifier; predict; an experiment on 4 ranks in 2 rank groups (the
# collective over each group's communicator).
# Usage: test_strict.sh MAMMOPATCH MPIEXEC
set -uo pipefail
mp=$1 mpiexec=$2
export OMP_NUM_THREADS=1 MAMMOPATCH_SITE_KEY=test-site-key-for-strict-0123
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

# strict wraps cpu where the build has oneDNN, else ref, whose convolutions make these runs
# take many minutes (the GPU node's image has no oneDNN): there this is a skip
if ! "$mp" info 2>/dev/null | grep -q '^ *cpu: oneDNN'; then
  echo "skip: this build has no cpu backend (oneDNN); strict over ref would take many minutes here"
  exit 77
fi

cohort48 "$tmp/c" || bad "synth"
# every lesion, the normals of 6 patients: short epochs (nothing here needs to learn)
drop_patients "$tmp/c/labels.csv" "$tmp/labels.csv" 1 6: || bad "labels subset"
run2 preprocess --input "$tmp/c/dicom" --labels "$tmp/labels.csv" --out "$tmp/p.h5" -q || bad "preprocess"
S="$tmp/p.h5"
# a failed run's log: its strict-backend report and the end
why() { { grep -A12 -m1 'strict backend:' "$1" || tail -n 5 "$1"; } | tr '\n' ' ' | cut -c1-1500; }

# 1. train on 1 rank, strict and the backend it wraps: the same numbers
tr=(--store "$S" --split-seed 1 -q --set train.batch=8 --set train.epochs=1 --set train.lesion_fraction=0.5
    --set train.checkpoint_every=0)
"$mp" train "${tr[@]}" --out "$tmp/t-strict" --set train.backend=strict > "$tmp/t-strict.log" 2>&1 \
  && ok "train, 1 rank, strict: no host access to pending memory" || bad "train strict: $(why "$tmp/t-strict.log")"
"$mp" train "${tr[@]}" --out "$tmp/t-cpu" --set train.backend=cpu > "$tmp/t-cpu.log" 2>&1 || bad "train cpu"
same() { # same A B: train.json / eval.json equal but for timings, provenance and the compute record
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
skip = {"provenance", "compute", "seconds", "train_seconds", "patches_per_second", "timing", "config", "train_dir",
        "step_seconds", "fid_seconds", "epoch_seconds", "wall_seconds"}
def diff(x, y, p=""):
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            if k not in skip:
                yield from diff(x.get(k), y.get(k), f"{p}.{k}")
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)):
            yield from diff(u, v, f"{p}[{i}]")
    elif x != y:
        yield f"{p}: {x!r} != {y!r}"
d = list(diff(a, b))
n = sum(1 for _ in json.dumps(a))
print(f"{len(d)} differences" + (": " + "; ".join(d[:5]) if d else f" ({n} bytes of JSON compared)"))
sys.exit(1 if d else 0)
PY
}
out=$(same "$tmp/t-strict/train.json" "$tmp/t-cpu/train.json") && ok "train.json strict = cpu: $out" \
  || bad "train.json strict vs cpu: $out"
out=$(/usr/bin/python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))["compute"]
line = c["engines"][0]["engine"]
assert c["backend"] == "strict" and line.startswith("strict: ") and " over cpu: oneDNN" in line, c
print(line[:60] + "...")' "$tmp/t-strict/train.json" 2>&1) && ok "compute record: $out" || bad "compute record: $out"

# 2. train on 2 ranks: the backend's own collective (pending after it, as NCCL on its stream), and
#    MPI in host memory after a sync
for be in strict strict:mpi; do
  run2 train --store "$S" --split-seed 1 -q --set train.batch=16 --set train.max_steps=4 --set train.checkpoint_every=2 \
    --out "$tmp/t2-$be" --set train.backend=$be > "$tmp/t2-$be.log" 2>&1 || { bad "train, 2 ranks, $be: $(why "$tmp/t2-$be.log")"; continue; }
  out=$(/usr/bin/python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))["compute"]
want = {"strict": "the backend", "strict:mpi": "MPI allreduce in host memory"}[sys.argv[2]]
assert c["ranks"] == 2 and c["gradient_mean"].startswith(want), c
print(c["gradient_mean"])' "$tmp/t2-$be/train.json" "$be" 2>&1) && ok "train, 2 ranks, $be (gradients: $out), checkpoints" \
    || bad "train, 2 ranks, $be: $out"
done

# 3. eval of the 1-rank model on both: the same numbers
"$mp" eval --store "$S" --train-dir "$tmp/t-strict" --out "$tmp/ev-strict" -q --set train.backend=strict \
  > "$tmp/ev-strict.log" 2>&1 || bad "eval strict: $(why "$tmp/ev-strict.log")"
"$mp" eval --store "$S" --train-dir "$tmp/t-cpu" --out "$tmp/ev-cpu" -q --set train.backend=cpu > /dev/null 2>&1 \
  || bad "eval cpu"
out=$(same "$tmp/ev-strict/eval.json" "$tmp/ev-cpu/eval.json") && ok "eval, strict = cpu: $out" || bad "eval: $out"

# 4. gan train: WGAN-GP on the backend's collective, RaHinge + SN/TTUR through host memory
g=(--store "$S" --split-seed 1 --filters 8 --extractor "$tmp/t-cpu" -q --set gan.batch=8 --set gan.epochs=1
   --set gan.fid_every=1)
run2 gan train "${g[@]}" --loss wgan-gp --out "$tmp/g-wgp" --set train.backend=strict > "$tmp/g-wgp.log" 2>&1 \
  && ok "gan train wgan-gp, 2 ranks, strict" || bad "gan wgan-gp strict: $(why "$tmp/g-wgp.log")"
run2 gan train "${g[@]}" --loss rahinge --sn-ttur --out "$tmp/g-rah" --set train.backend=strict:mpi > "$tmp/g-rah.log" 2>&1 \
  && ok "gan train rahinge SN/TTUR, 2 ranks, strict:mpi" || bad "gan rahinge strict:mpi: $(why "$tmp/g-rah.log")"
# the spectral norm's sigma stays in the backend's memory from each forward to its backward
# (nothing waits for it): the same numbers as on cpu
run2 gan train "${g[@]}" --loss rahinge --sn-ttur --out "$tmp/g-rahc" --set train.backend=cpu > /dev/null 2>&1 \
  || bad "gan rahinge cpu"
out=$(same "$tmp/g-rah/gan.json" "$tmp/g-rahc/gan.json") && ok "gan.json rahinge SN (losses, FIDs), strict:mpi = cpu: $out" \
  || bad "gan.json rahinge SN strict:mpi vs cpu: $out"
"$mp" gan train "${g[@]}" --loss wgan-gp --out "$tmp/g-1" --set train.backend=strict > "$tmp/g-1.log" 2>&1 \
  && ok "gan train wgan-gp, 1 rank, strict" || bad "gan wgan-gp 1 rank strict: $(why "$tmp/g-1.log")"
"$mp" gan train "${g[@]}" --loss wgan-gp --out "$tmp/g-1c" --set train.backend=cpu > /dev/null 2>&1 || bad "gan cpu"
out=$(same "$tmp/g-1/gan.json" "$tmp/g-1c/gan.json") && ok "gan.json (losses, FIDs), strict = cpu: $out" \
  || bad "gan.json strict vs cpu: $out"
run2 gan sample --generator "$tmp/g-wgp" --n 20 --out "$tmp/syn.h5" --montage-store "$S" -q \
  --set train.backend=strict > "$tmp/sample.log" 2>&1 && ok "gan sample, 2 ranks, strict" \
  || bad "gan sample strict: $(why "$tmp/sample.log")"

# 5. smote: features (cosine and l2: the score blocks through gemm_nt; l1 through l1_nt), a classifier
for d in cosine l2 l1; do
  run2 smote features --store "$S" --split-seed 1 --baseline "$tmp/t-cpu" --dist $d --out "$tmp/s-$d.h5" -q \
    --set train.backend=strict > "$tmp/s-$d.log" 2>&1 && ok "smote features $d, 2 ranks, strict" \
    || bad "smote $d strict: $(why "$tmp/s-$d.log")"
done
# the vectors against cpu's (its kNN on the host): the same neighbours, so the same vectors
for d in cosine l1; do
  run2 smote features --store "$S" --split-seed 1 --baseline "$tmp/t-cpu" --dist $d --out "$tmp/s-cpu-$d.h5" -q \
    --set train.backend=cpu > /dev/null 2>&1 || bad "smote $d cpu"
  out=$(/usr/bin/python3 - "$tmp/s-$d.h5" "$tmp/s-cpu-$d.h5" <<'PY'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
bad = [n for n in names if n not in b or not np.array_equal(a[n][()], b[n][()], equal_nan=True)]
print(f"{len(names)} datasets, {len(bad)} differ" + (f": {bad[:4]}" if bad else ""))
sys.exit(1 if bad or not names else 0)
PY
  ) && ok "smote vectors $d, strict = cpu: $out" || bad "smote vectors $d strict vs cpu: $out"
done
run2 train --store "$S" --split-seed 1 -q --set train.batch=8 --set train.max_steps=4 --variant smote-cosine \
  --smote "$tmp/s-cosine.h5" --block1 "$tmp/t-cpu" --out "$tmp/t-smote" --set train.backend=strict > "$tmp/t-smote.log" 2>&1 \
  && ok "train smote-cosine, 2 ranks, strict" || bad "train smote strict: $(why "$tmp/t-smote.log")"

# 6. predict on two standard views of the cohort with lesions (not its CAD or other decoys, which
#    preprocessing discards and predict counts as not scored)
mapfile -t views < <(tail -n +2 "$tmp/c/truth_lesions.csv" | cut -d, -f1 | grep -E '/e[0-9]+_[LR](CC|MLO)\.dcm$' |
  sort -u | head -n 2 | sed "s|^|$tmp/c/|")
run2 predict --model "$tmp/t-strict" --out "$tmp/pr" "${views[@]}" -q --set train.backend=strict > "$tmp/pr.log" 2>&1 \
  && ok "predict ${#views[@]} views, 2 ranks, strict" || bad "predict strict: $(why "$tmp/pr.log")"

# 7. an experiment on 4 ranks in 2 rank groups: each job's collective over its group's communicator
"$mpiexec" -n 4 --oversubscribe "$mp" experiment --store "$S" --out "$tmp/x" -q --set experiment.repeats=2 \
  --set experiment.groups=2 --set train.batch=8 --set train.epochs=1 --set train.checkpoint_every=0 \
  --set train.backend=strict > "$tmp/x.log" 2>&1 || bad "experiment strict: $(why "$tmp/x.log")"
out=$(/usr/bin/python3 -c '
import json, sys
res = json.load(open(sys.argv[1]))["results"]
assert len(res) == 2 and {r["rank_group"] for r in res} == {0, 1}, res
for r in res:
    c = r["compute"]
    assert r["status"] == "done" and c["ranks"] == 2 and c["gradient_mean"].startswith("the backend"), r
gm = res[0]["compute"]["gradient_mean"]
print(f"{len(res)} jobs on 2 groups of 2 ranks, gradients: {gm}")' \
  "$tmp/x/experiment.json" 2>&1) && ok "experiment, 4 ranks in 2 groups, strict: $out" || bad "experiment strict: $out"

finish
