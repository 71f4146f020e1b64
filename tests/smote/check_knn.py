#!/usr/bin/env python3
"""mp_knn (smote/mp_knn.c) against a brute-force float64 reference (indices exactly, with
ties broken by the lower index, and distances) and against scikit-learn's
NearestNeighbors(algorithm="brute") with metric cosine / manhattan / euclidean (distances),
on random data with planted exact duplicates and equal-distance ties, on 1 and 2 ranks.
Usage: check_knn.py KNN_TOOL MPIEXEC"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from sklearn.neighbors import NearestNeighbors

METRIC = {"l2": "euclidean", "cosine": "cosine", "l1": "manhattan"}


def brute(x, dist, k):
    x = x.astype(np.float64)
    if dist == "l2":
        D = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    elif dist == "l1":
        D = np.abs(x[:, None, :] - x[None, :, :]).sum(-1)
    else:
        nrm = np.linalg.norm(x, axis=1)
        D = 1 - (x @ x.T) / np.outer(nrm, nrm)
    np.fill_diagonal(D, np.inf)
    idx = np.array([sorted(range(len(x)), key=lambda j: (D[i, j], j))[:k] for i in range(len(x))])
    return idx, np.take_along_axis(D, idx, 1)


def main():
    tool, mpiexec = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(3)
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, d in ((300, 64), (120, 257), (60, 4096)):  # 300 rows: two row blocks (ROWS = 256)
            x = rng.normal(size=(n, d)).astype(np.float32)
            x[5] = x[17]                     # an exact duplicate pair
            x[30] = x[31] = x[32]            # a triple: ties at distance 0, broken by index
            x[40] = 2.0 * x[41]              # cosine distance 0 between different rows
            x[50] = np.zeros(d, np.float32)  # integer-valued rows with equal l1/l2 distances
            x[50, :4] = [1, 0, 0, 0]
            x[51] = 0
            x[51, :4] = [0, 1, 0, 0]
            x[52] = 0
            x[52, :4] = [0, 0, 1, 0]
            path = os.path.join(tmp, "x.f32")
            x.tofile(path)
            for dist in ("l2", "cosine", "l1"):
                k = 2
                ref_i, ref_d = brute(x, dist, k)
                nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric=METRIC[dist]).fit(x.astype(np.float64))
                sk_d = np.sort(nn.kneighbors(x.astype(np.float64))[0], 1)
                for ranks in (1, 2):
                    out = os.path.join(tmp, f"o{ranks}.txt")
                    cmd = ([mpiexec, "-n", "2", "--oversubscribe"] if ranks == 2 else []) + [tool, path, str(n), str(d), dist, str(k), out]
                    subprocess.run(cmd, check=True, capture_output=True)
                    got = np.loadtxt(out)
                    gi, gd = got[:, :k].astype(int), got[:, k:]
                    bad_i = np.nonzero((gi != ref_i).any(1))[0]
                    derr = np.abs(gd - ref_d).max()
                    # sklearn includes each row itself at distance 0 (or a duplicate): compare
                    # the k smallest distances to OTHER rows, i.e. drop one zero per row
                    sk = np.array([np.delete(r, 0)[:k] for r in sk_d])
                    serr = np.abs(np.sort(gd, 1) - sk).max()
                    ok = len(bad_i) == 0 and derr < 1e-9 * max(1, np.abs(ref_d).max()) and serr < 1e-6 * max(1, np.abs(sk).max())
                    fails += not ok
                    print(f"{'ok  ' if ok else 'FAIL'} n={n} d={d} {dist:6s} {ranks} rank(s): indices "
                          f"{'identical' if not len(bad_i) else f'differ in rows {bad_i[:5]}'} to the float64 brute "
                          f"force (ties by index); max distance error {derr:.1e}; vs scikit-learn {serr:.1e}")
                    if ranks == 2:
                        one = np.loadtxt(os.path.join(tmp, "o1.txt"))
                        if not np.array_equal(one, got):
                            fails += 1
                            print(f"FAIL {dist}: 1 and 2 ranks differ")
    print(f"{fails} failed")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
