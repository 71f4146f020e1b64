#!/usr/bin/python3
"""Checks for tests/train/test_train.sh.

  check_train.py split SPLIT.json STORE.h5     no patient in two parts; every patient with
                                               patches in exactly one part
  check_train.py same DIR_1RANK DIR_2RANKS     the same step losses (step 1: 1e-5, 3 steps: 1e-3)
                                               and step-1 gradients (Adam's first moment, 1e-5)
  check_train.py steps TRAIN_A.json TRAIN_B.json   identical step-loss curves
  check_train.py learns TRAIN.json MIN_MCC     the test split's patch MCC >= MIN_MCC
  check_train.py compute RUN.json RANKS [GRADIENT]   the "compute" record: the configured
                                               backend, RANKS ranks, each in one engine group
                                               whose line names the backend (cpu: oneDNN and its
                                               ISA; ref: plain C), GRADIENT the gradient mean
Prints one line; exit status 1 on failure.
"""
import json
import re
import sys

import h5py
import numpy as np


def fail(msg):
    print(msg)
    sys.exit(1)


def tensors(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[:].astype(np.float64)) if isinstance(o, h5py.Dataset) else None)
    return out


def main():
    mode = sys.argv[1]
    if mode == "split":
        d = json.load(open(sys.argv[2]))
        parts = {k: set(d[k]["patients"]) for k in ("train", "validation", "test")}
        for a in parts:
            for b in parts:
                if a < b and parts[a] & parts[b]:
                    fail(f"patients in both {a} and {b}: {sorted(parts[a] & parts[b])[:3]}")
        f = h5py.File(sys.argv[3], "r")
        pseud = [p.decode() if isinstance(p, bytes) else p for p in f["patients/pseudonym"][:]]
        used = set(np.unique(f["views/patient"][:][f["patches/view"][:]]))
        have = {pseud[i] for i in used}
        allp = set().union(*parts.values())
        if have != allp:
            fail(f"{len(have ^ allp)} patients missing from or extra in the split")
        sizes = {k: len(v) for k, v in parts.items()}
        print(f"{len(allp)} patients, no overlap ({sizes})")
    elif mode == "same":
        a, b = (json.load(open(f"{d}/train.json")) for d in sys.argv[2:4])
        # both record statistics groups of B/K = 64 samples (one rank: train.bn_group)
        if not (a.get("bn_batch") == b.get("bn_batch") == 64):
            fail(f"bn_batch {a.get('bn_batch')} and {b.get('bn_batch')}, expected 64 for both")
        la, lb = np.array(a["step_loss"]), np.array(b["step_loss"])
        if len(la) != 3 or len(lb) != 3:
            fail(f"expected 3 step losses, got {len(la)} and {len(lb)}")
        # step 1 sees identical weights: only the summation order differs.  Later steps follow
        # Adam, which moves every element by ~lr whatever its gradient's size, so elements
        # whose gradient is within rounding of 0 may step either way: 1e-3 there
        rel1 = float(abs(la[0] - lb[0]) / abs(lb[0]))
        rel = float(np.abs(la - lb).max() / np.abs(lb).max())
        # the gradient of step 1: Adam's first moment after one step is (1 - beta1) g exactly
        # as computed, so adam_m of the step-1 checkpoints compares the allreduced gradients
        worst, count = 0.0, 0
        # and the running statistics after step 1 (the checkpoint's are averaged over the ranks):
        # one update with the mean of the groups' statistics on one rank, as the ranks' average
        # (several momentum steps a batch would be off by ~1 in nmse)
        rworst, rcount = 0.0, 0
        for f in ("block1.h5", "rest.h5"):
            ga, gb = (tensors(f"{d}/checkpoints/step-00000001/{f}") for d in sys.argv[2:4])
            for name in ga:
                if "running_" in name and not name.startswith("adam_"):
                    rworst = max(rworst, float(((ga[name] - gb[name]) ** 2).sum() / (gb[name] ** 2).sum()))
                    rcount += 1
                # conv biases feed batch norm, which removes them: true gradient 0, rounding noise only
                if not name.startswith("adam_m/") or name.endswith("conv/bias"):
                    continue
                den = (gb[name] ** 2).sum()
                if den > 0:
                    worst = max(worst, float(((ga[name] - gb[name]) ** 2).sum() / den))
                    count += 1
        if rel1 > 1e-5 or rel > 1e-3 or worst > 1e-5 or count == 0 or rworst > 1e-8 or rcount == 0:
            fail(f"step-1 losses differ by {rel1:.2e}, the curves by {rel:.2e} (relative), step-1 gradients by nmse "
                 f"{worst:.2e} ({count} tensors), running statistics by nmse {rworst:.2e} ({rcount} tensors)")
        print(f"step losses {np.round(lb, 5).tolist()} agree to {rel1:.1e} (step 1), {rel:.1e} (3 steps); "
              f"step-1 gradients of {count} tensors: worst nmse {worst:.1e}; running statistics of {rcount} "
              f"tensors: worst nmse {rworst:.1e}")
    elif mode == "steps":
        a, b = (json.load(open(p))["step_loss"] for p in sys.argv[2:4])
        if a != b:
            fail(f"step-loss curves differ: {a} vs {b}")
        print(f"step-loss curves identical over {len(a)} steps")
    elif mode == "epoch-loss":
        # every epoch's training loss is the mean of all its steps' losses, those before a
        # checkpoint and resume included (the same sum in the same order: exact)
        d = json.load(open(sys.argv[2]))
        S, steps, curve = d["steps_per_epoch"], d["step_loss"], d["curve"]
        if not curve:
            fail("no finished epoch in train.json")
        for e in curve:
            i = int(e["epoch"]) - 1
            part = steps[i * S:(i + 1) * S]
            want = sum(part) / len(part)
            if len(part) != S or abs(e["train_loss"] - want) > 1e-12 * abs(want):
                fail(f"epoch {i + 1}: train_loss {e['train_loss']!r} != mean of its {len(part)} step losses {want!r}")
        print(f"the training loss of {len(curve)} epoch(s) is the mean of all {S} of its steps' losses")
    elif mode == "learns":
        d = json.load(open(sys.argv[2]))
        t = d.get("test")
        if not t:
            fail("train.json has no test metrics")
        if t["mcc"] < float(sys.argv[3]):
            fail(f"test MCC {t['mcc']:.3f} below {sys.argv[3]} (curve: {[round(e['validation']['mcc'], 3) for e in d['curve']]})")
        print(f"test-split patch MCC {t['mcc']:.3f} >= {sys.argv[3]} (F1 {t['f1']:.3f}, {int(t['patches'])} patches, "
              f"{int(t['tp'] + t['fn'])} lesions; best validation epoch {t['model_epoch']})")
    elif mode == "eval":
        import csv
        from sklearn import metrics as skm
        d, tr = json.load(open(f"{sys.argv[2]}/eval.json")), json.load(open(f"{sys.argv[2]}/train.json"))
        p = d["test"]["patch"]
        if [p["confusion"][k] for k in ("tp", "fp", "tn", "fn")] != [tr["test"][k] for k in ("tp", "fp", "tn", "fn")]:
            fail(f"eval patch confusion {p['confusion']} differs from train's test metrics")
        rows = list(csv.DictReader(open(f"{sys.argv[2]}/eval_patches.csv")))
        s = np.array([float(r["probability"]) for r in rows])
        t = np.array([int(r["label"]) for r in rows])
        if abs(skm.roc_auc_score(t, s) - p["roc_auc"]) > 1e-5 or abs(skm.average_precision_score(t, s) - p["pr_auc"]) > 1e-5:
            fail("patch AUCs differ from scikit-learn on eval_patches.csv")
        views, pats = {}, {}
        for r, sc, la in zip(rows, s, t):
            v = views.setdefault(r["view"], [0.0, 0, r["patient"]])
            v[0], v[1] = max(v[0], sc), max(v[1], la)
        for v in views.values():
            q = pats.setdefault(v[2], [0.0, 0])
            q[0], q[1] = max(q[0], v[0]), max(q[1], v[1])
        thr = d["threshold"]["value"]
        for level, groups in (("view", views), ("patient", pats)):
            gs = np.array([g[0] for g in groups.values()])
            gt = np.array([g[1] for g in groups.values()])
            gp = (gs >= thr).astype(int)
            c = d["test"][level]["confusion"]
            tn, fp, fn, tp = skm.confusion_matrix(gt, gp, labels=[0, 1]).ravel()
            if [c["tp"], c["fp"], c["tn"], c["fn"]] != [tp, fp, tn, fn]:
                fail(f"{level} roll-up {c} != recomputed {(tp, fp, tn, fn)}")
            if abs(skm.matthews_corrcoef(gt, gp) - d["test"][level]["mcc"]) > 1e-9:
                fail(f"{level} MCC differs from scikit-learn")
        print(f"patch = train's test metrics; AUCs, view ({len(views)}) and patient ({len(pats)}) roll-ups match "
              f"scikit-learn (view MCC {d['test']['view']['mcc']:.3f}, patient MCC {d['test']['patient']['mcc']:.3f})")
    elif mode == "compute":
        d, K = json.load(open(sys.argv[2])), int(sys.argv[3])
        c = d.get("compute")
        if not isinstance(c, dict):
            fail(f"{sys.argv[2]} has no compute record")
        be = d["provenance"]["config"]["train"]["backend"]
        if c.get("backend") != be or c.get("ranks") != K:
            fail(f"compute backend/ranks {c.get('backend')}/{c.get('ranks')}, expected {be}/{K}")
        if len(sys.argv) > 4 and c.get("gradient_mean") != sys.argv[4]:
            fail(f"gradient_mean {c.get('gradient_mean')!r}, expected {sys.argv[4]!r}")
        if len(sys.argv) <= 4 and "gradient_mean" in c:
            fail(f"a gradient mean recorded where nothing trains: {c['gradient_mean']!r}")
        ranks = sorted(r for g in c["engines"] for r in g["ranks"])
        if ranks != list(range(K)):
            fail(f"engine groups cover ranks {ranks}, expected 0..{K - 1}")
        want = {"cpu": r"^cpu: oneDNN \d+\.\d+\.\d+ \([a-z0-9_ ]+\), .+", "ref": r"^ref: plain C, double accumulation, .+",
                "cuda": r"^cuda: .+ \(sm_\d+, \d+ SMs, .+\), driver .+cuDNN \d+\.\d+\.\d+.+; .+"}[be]
        for g in c["engines"]:
            if not re.match(want, g["engine"]):
                fail(f"engine line {g['engine']!r} is not the {be} backend's ({want})")
        print(f"compute: {be} on {K} rank(s), {len(c['engines'])} engine group(s): {c['engines'][0]['engine']}"
              + (f"; gradients: {c['gradient_mean']}" if "gradient_mean" in c else ""))
    else:
        fail(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
