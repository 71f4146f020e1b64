#!/usr/bin/python3
"""check_tsne — eval/mp_tsne.c (through tests/eval/tsne_tool.c) against scikit-learn's exact
t-SNE (sklearn.manifold, 1.2).

  usage: check_tsne.py TSNE_TOOL TSNE_TOOL_QFLOOR

(a) P against sklearn.manifold._t_sne._joint_probabilities.  scikit-learn rounds the
    squared distances to float32, so the tight checks use data whose squared distances are
    exact in float32 (integers, multiples of 1/8): there P must agree to 1e-12 relative in
    every entry; on general data (float32 rounding) to 1e-4.
(b) The optimiser step by step: from the tool's own initial layout (ITERS = 0) the two
    stages are replayed with scikit-learn's _gradient_descent and _kl_divergence (float64);
    layouts must agree to 1e-9 relative and the KL to 1e-10.  A small learning rate keeps
    the trajectories from diverging chaotically (the early expansion doubles any 1-ulp
    difference every iteration), which lets 150 iterations cover both stages, the gain
    reset between them and the every-50-iterations checks.  The second tool has the q floor
    raised to 1e-3 and is replayed with scikit-learn's MACHINE_EPSILON patched to match,
    so the floored path is checked too.
(c) Whole maps (1000 iterations, perplexity 30) of Gaussian clusters in 50-d and of the
    first 300 digits against TSNE(method='exact', init='random', random_state=0): the KL
    within 5% (+0.01) of scikit-learn's, trustworthiness (k = 10) not lower by more than
    0.02, and 1-NN / 5-NN accuracy on the map (5-fold) >= 0.95 for the Gaussian clusters
    and not lower than scikit-learn's map by more than 0.03 for the digits.  (Digits: 300,
    not 500 points: scikit-learn's exact method takes 30-40 s for 500 on this VM.)
(d) Determinism: the same bytes for 1 and 2 OpenMP threads and for a repeat (n = 520, above
    the size where the per-iteration loops go parallel); another seed gives another map.
(e) Errors: too few points, perplexity >= n - 1, non-finite input, a short input file:
    non-zero exit and a message.
Every tolerance check is also run on a perturbed copy that it must reject.
Exit status 1 on any failure.
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
from scipy.spatial.distance import pdist, squareform  # noqa: E402
import sklearn.manifold._t_sne as T  # noqa: E402
from sklearn.manifold import TSNE, trustworthiness  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

if len(sys.argv) != 3:
    sys.exit("usage: check_tsne.py TSNE_TOOL TSNE_TOOL_QFLOOR")
TOOL, TOOL_QFLOOR = sys.argv[1], sys.argv[2]
TMP = tempfile.mkdtemp(prefix="check_tsne_")
atexit.register(shutil.rmtree, TMP, True)
failures = []


def check(name, ok, detail):
    print(("ok    " if ok else "FAIL  ") + name + ": " + detail, flush=True)
    if not ok:
        failures.append(name)


def expect_reject(name, ok):
    """A tolerance check applied to perturbed data: it must fail."""
    check(name + " (perturbed copy rejected)", not ok, "the comparison catches the perturbation" if not ok
          else "the perturbed copy PASSED: the check cannot fail")


def write_x(x, tag):
    path = os.path.join(TMP, tag + ".in")
    np.ascontiguousarray(x, dtype="<f8").tofile(path)
    return path


def tool_p(x, perplexity, tag):
    inp, out = write_x(x, tag), os.path.join(TMP, tag + ".p")
    subprocess.run([TOOL, "p", inp, str(len(x)), str(x.shape[1]), repr(perplexity), out], check=True)
    return np.fromfile(out, "<f8").reshape(len(x), len(x))


def tool_embed(x, perplexity, iters, seed, tag, exag=None, lr=None, tool=TOOL, env=None):
    inp, out = write_x(x, tag), os.path.join(TMP, tag + ".y")
    cmd = [tool, "embed", inp, str(len(x)), str(x.shape[1]), repr(perplexity), str(iters), str(seed), out]
    if exag is not None:
        cmd += [str(exag), repr(lr)]
    r = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    line = r.stdout.strip()
    assert line.startswith("kl="), line
    with open(out, "rb") as f:
        raw = f.read()
    return np.frombuffer(raw, "<f8").reshape(len(x), 2).copy(), float(line[3:]), raw, r.stdout


def sk_p(x, perplexity):
    return squareform(T._joint_probabilities(squareform(pdist(x, "sqeuclidean")), perplexity, 0))


def rel_err(ours, ref):
    """max |ours - ref| / ref off the diagonal (ref >= DBL_EPSILON there); diagonal must be 0."""
    off = ~np.eye(len(ref), dtype=bool)
    e = np.max(np.abs(ours[off] - ref[off]) / ref[off])
    return e if np.all(np.diag(ours) == 0) else np.inf


rng = np.random.default_rng(20240611)

# ---- (a) P ------------------------------------------------------------------------------
t0 = time.time()
x_int = rng.integers(-8, 9, size=(200, 10)).astype(float)
centres = rng.integers(-20, 21, size=(4, 20))
lab4 = np.repeat(np.arange(4), 60)
x_clu = np.round((centres[lab4] + rng.normal(scale=1.5, size=(240, 20))) * 8) / 8  # multiples of 1/8
x_gen = rng.normal(size=(150, 30))
for name, x, perp, tol in [("random integers n=200 d=10 perplexity 30", x_int, 30.0, 1e-12),
                           ("4 clusters (1/8 grid) n=240 d=20 perplexity 30", x_clu, 30.0, 1e-12),
                           ("4 clusters (1/8 grid) n=240 d=20 perplexity 10", x_clu, 10.0, 1e-12),
                           ("normal floats n=150 d=30 perplexity 30 (float32-rounded in sklearn)", x_gen, 30.0, 1e-4)]:
    ours, ref = tool_p(x, perp, "p"), sk_p(x, perp)
    e = rel_err(ours, ref)
    check("P " + name, e <= tol,
          "max rel diff %.3g (tol %.0e), max abs diff %.3g, sum %.15f, symmetric %s"
          % (e, tol, np.max(np.abs(ours - ref)), ours.sum(), bool(np.array_equal(ours, ours.T))))
    check("P " + name + " sum/symmetry", abs(ours.sum() - 1) < 1e-9 and np.array_equal(ours, ours.T),
          "|sum - 1| = %.3g" % abs(ours.sum() - 1))
    if tol <= 1e-12:
        bad = ours.copy()
        i, j = 3, 17
        bad[i, j] *= 1 + 1e-9
        bad[j, i] = bad[i, j]
        expect_reject("P " + name + ", one pair x (1 + 1e-9)", rel_err(bad, ref) <= tol)
expect_reject("P at perplexity 31 vs sklearn at 30", rel_err(tool_p(x_clu, 31.0, "p"), sk_p(x_clu, 30.0)) <= 1e-4)
print("  (a) %.1f s" % (time.time() - t0))

# ---- (b) the optimiser, step by step ------------------------------------------------------
t0 = time.time()


def sk_replay(y0, P, iters, exag_iters, lr, exaggeration=12.0):
    """scikit-learn's TSNE._tsne schedule in float64 from y0 (stage 2 starts after stage 1's
    last iteration, as there; at 0 when stage 1 is empty, as mp_tsne)."""
    n = len(y0)
    common = dict(n_iter_check=50, min_grad_norm=1e-7, learning_rate=lr, verbose=0,
                  kwargs=dict(skip_num_points=0))
    p, kl, it = y0.ravel().copy(), None, -1
    if exag_iters > 0:
        p, kl, it = T._gradient_descent(T._kl_divergence, p, it=0, n_iter=exag_iters, momentum=0.5,
                                        n_iter_without_progress=exag_iters, args=[P * exaggeration, 1, n, 2], **common)
    if it + 1 < iters:
        p, kl, it = T._gradient_descent(T._kl_divergence, p, it=it + 1, n_iter=iters, momentum=0.8,
                                        n_iter_without_progress=300, args=[P, 1, n, 2], **common)
    return p.reshape(n, 2), kl


def traj_err(y, ys):
    return np.max(np.abs(y - ys)) / np.max(np.abs(ys))


lab3 = np.repeat(np.arange(3), 50)
x_tr = (rng.integers(-6, 7, size=(3, 12))[lab3] + rng.integers(-2, 3, size=(150, 12))).astype(float)
P_tr = T._joint_probabilities(squareform(pdist(x_tr, "sqeuclidean")), 30.0, 0)
y0, kl0, _, _ = tool_embed(x_tr, 30.0, 0, 5, "tr")
check("initial layout N(0, 1e-4^2)", 0.85e-4 < y0.std() < 1.15e-4 and abs(y0.mean()) < 2e-5,
      "std %.4g, mean %.3g over %d values" % (y0.std(), y0.mean(), y0.size))
sk_kl0 = T._kl_divergence(y0.ravel(), P_tr, 1, 150, 2)[0]
check("KL of the initial layout (ITERS = 0)", abs(kl0 - sk_kl0) <= 1e-12 * sk_kl0,
      "ours %.15f sklearn %.15f" % (kl0, sk_kl0))
y0b = tool_embed(x_tr, 30.0, 0, 6, "tr")[0]
check("another seed, another initial layout", not np.array_equal(y0, y0b), "seed 5 vs 6")

for iters, exag, lr in [(8, 8, 0.0), (150, 30, 1.0)]:
    y, kl, _, _ = tool_embed(x_tr, 30.0, iters, 5, "tr", exag, lr)
    ys, kls = sk_replay(y0, P_tr, iters, exag, lr if lr > 0 else max(150 / 12 / 4, 50))
    e = traj_err(y, ys)
    detail = "%d iterations (%d exaggerated), learning rate %s: layout rel diff %.3g (tol 1e-9)" % (
        iters, exag, lr if lr > 0 else "auto", e)
    if iters > exag:
        detail += ", KL ours %.15f sklearn %.15f" % (kl, kls)
    ok = e <= 1e-9 and (iters <= exag or abs(kl - kls) <= 1e-10 * kls)
    check("optimiser replay n=150", ok, detail)
    if iters == 150:
        # must be caught: the same schedule with the second stage starting one iteration late
        ys1, _ = sk_replay(y0, P_tr, iters, exag + 1, lr)
        expect_reject("optimiser replay, stage switch one iteration late", traj_err(y, ys1) <= 1e-9)

# the floored path: q floor 1e-3 in both
lab3s = np.repeat(np.arange(3), 20)
x_fl = (rng.integers(-6, 7, size=(3, 12))[lab3s] + rng.integers(-2, 3, size=(60, 12))).astype(float)
P_fl = T._joint_probabilities(squareform(pdist(x_fl, "sqeuclidean")), 10.0, 0)
y0f = tool_embed(x_fl, 10.0, 0, 5, "fl", tool=TOOL_QFLOOR)[0]
yf, klf, _, _ = tool_embed(x_fl, 10.0, 120, 5, "fl", 30, 1.0, tool=TOOL_QFLOOR)
saved = T.MACHINE_EPSILON
try:
    T.MACHINE_EPSILON = 1e-3
    ysf, klsf = sk_replay(y0f, P_fl, 120, 30, 1.0)
    w = 1 / (1 + pdist(ysf, "sqeuclidean"))
    floored = int(np.sum(w / (2 * w.sum()) < 1e-3))
finally:
    T.MACHINE_EPSILON = saved
e = traj_err(yf, ysf)
check("optimiser replay, q floored at 1e-3 (n=60, 120 iterations)", e <= 1e-9 and abs(klf - klsf) <= 1e-10 * klsf,
      "%d of %d pairs floored at the end; layout rel diff %.3g, KL ours %.15f sklearn %.15f"
      % (floored, len(w), e, klf, klsf))
ysf0, _ = sk_replay(y0f, P_fl, 120, 30, 1.0)  # sklearn with its own floor
expect_reject("optimiser replay, floor 1e-3 vs DBL_EPSILON", traj_err(yf, ysf0) <= 1e-9)
print("  (b) %.1f s" % (time.time() - t0))

# ---- (c) whole maps against TSNE(method='exact') ----------------------------------------------
t0 = time.time()


def knn_acc(y, labels, k):
    return cross_val_score(KNeighborsClassifier(n_neighbors=k), y, labels, cv=5).mean()


gauss_centres = rng.normal(scale=4, size=(4, 50))
lab_g = np.repeat(np.arange(4), 75)
x_g = gauss_centres[lab_g] + rng.normal(size=(300, 50))
digits = load_digits()
x_d, lab_d = digits.data[:300].astype(float), digits.target[:300]
for name, x, labels, floor_acc in [("4 Gaussian clusters n=300 d=50", x_g, lab_g, 0.95),
                                   ("digits n=300 d=64", x_d, lab_d, None)]:
    t1 = time.time()
    y, kl, _, _ = tool_embed(x, 30.0, 1000, 0, "map")
    t_ours = time.time() - t1
    t1 = time.time()
    sk = TSNE(n_components=2, method="exact", init="random", perplexity=30, random_state=0, learning_rate="auto")
    ys = sk.fit_transform(x)
    t_sk = time.time() - t1
    tw, tws = trustworthiness(x, y, n_neighbors=10), trustworthiness(x, ys, n_neighbors=10)
    acc = {k: (knn_acc(y, labels, k), knn_acc(ys, labels, k)) for k in (1, 5)}
    print("  %s: ours %.2f s, sklearn %.2f s (%d iterations)" % (name, t_ours, t_sk, sk.n_iter_ + 1))
    kls = sk.kl_divergence_
    check("map " + name + " KL", 0.9 * kls - 0.01 <= kl <= 1.05 * kls + 0.01,
          "ours %.5f sklearn %.5f (ours must be within [0.9 sk - 0.01, 1.05 sk + 0.01])" % (kl, kls))
    kl_at_end = T._kl_divergence(y.ravel(), squareform(sk_p(x, 30.0), checks=False), 1, len(x), 2)[0]
    check("map " + name + " reported KL", abs(kl - kl_at_end) <= 1e-3 * kl_at_end,
          "reported %.8f, sklearn's KL of the final layout %.8f (the report is one step earlier)" % (kl, kl_at_end))
    check("map " + name + " trustworthiness", tw >= tws - 0.02, "ours %.4f sklearn %.4f (k = 10)" % (tw, tws))
    for k in (1, 5):
        a, b = acc[k]
        need = floor_acc if floor_acc is not None else b - 0.03
        check("map %s %d-NN accuracy" % (name, k), a >= need, "ours %.4f sklearn %.4f (need >= %.4f)" % (a, b, need))
# the map checks must be able to fail: a map scrambled within clusters keeps 1-NN but not trustworthiness,
# and a random layout fails both
y_bad = rng.normal(size=(300, 2))
expect_reject("trustworthiness of a random layout", trustworthiness(x_g, y_bad, n_neighbors=10) >= tws - 0.02)
expect_reject("1-NN accuracy of a random layout", knn_acc(y_bad, lab_g, 1) >= 0.95)
print("  (c) %.1f s" % (time.time() - t0))

# ---- (d) determinism ---------------------------------------------------------------------------
t0 = time.time()
lab6 = rng.integers(0, 6, size=520)
x_det = rng.normal(scale=3, size=(6, 40))[lab6] + rng.normal(size=(520, 40))  # >= 512 points: threaded loops
runs = []
for threads in ("1", "2", "2"):
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    _, _, raw, out = tool_embed(x_det, 30.0, 270, 11, "det", env=env)
    runs.append((raw, out))
check("determinism n=520, 270 iterations, 1 / 2 / 2 threads", runs[0] == runs[1] == runs[2],
      "%s; %s" % (runs[0][1].strip(), "identical bytes" if runs[0] == runs[1] == runs[2] else "DIFFER"))
_, _, raw12, _ = tool_embed(x_det, 30.0, 270, 12, "det")
check("another seed, another map", raw12 != runs[0][0], "seed 11 vs 12")
print("  (d) %.1f s" % (time.time() - t0))

# ---- (e) errors -----------------------------------------------------------------------------------
small = rng.normal(size=(10, 3))
nan_x = small.copy()
nan_x[4, 1] = np.nan
short = os.path.join(TMP, "short.in")
small[:5].astype("<f8").tofile(short)
cases = [("n = 4", [TOOL, "embed", write_x(small[:4], "e1"), "4", "3", "2", "100", "0"], "at least 5"),
         ("n = 4 (P)", [TOOL, "p", write_x(small[:4], "e1"), "4", "3", "2"], "at least 5"),
         ("perplexity 9 >= n - 1 = 9", [TOOL, "embed", write_x(small, "e2"), "10", "3", "9", "100", "0"], "perplexity"),
         ("perplexity 0", [TOOL, "p", write_x(small, "e2"), "10", "3", "0"], "perplexity"),
         ("NaN input", [TOOL, "embed", write_x(nan_x, "e3"), "10", "3", "3", "100", "0"], "not finite"),
         ("short input file", [TOOL, "embed", short, "10", "3", "3", "100", "0"], "exactly"),
         ("exaggeration_iters > iterations", [TOOL, "embed", write_x(small, "e2"), "10", "3", "3", "10", "0"],
          "exaggeration_iters")]
for name, cmd, needle in cases:
    out = os.path.join(TMP, "err.out")
    if os.path.exists(out):
        os.remove(out)
    if name.startswith("exaggeration"):
        cmd = cmd + [out, "20", "0"]
    else:
        cmd = cmd + [out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    ok = r.returncode != 0 and needle in r.stderr and not os.path.exists(out)
    check("error: " + name, ok, "exit %d, %s" % (r.returncode, r.stderr.strip() or "(no message)"))

if failures:
    print("%d FAILED: %s" % (len(failures), ", ".join(failures)))
    sys.exit(1)
print("all t-SNE checks passed")
