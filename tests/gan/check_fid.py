#!/usr/bin/env python3
"""mp_fid (gan/mp_fid.c) against the scipy.linalg.sqrtm computation that pytorch-fid and
the TTUR reference use (with its eps*I retry), on fixtures: well-conditioned sets, sets
with N < dimension (singular covariances), a set against itself (0 within 1e-6), shifted
and scaled sets, and low-rank features.  Usage: check_fid.py FID_TOOL"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from scipy import linalg


def fid_scipy(a, b):
    """The reference formula (float64): sqrtm of S1 S2, eps*I retry when singular."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + off).dot(s2 + off))
    covmean = covmean.real
    d = mu1 - mu2
    return float(d.dot(d) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)), float(np.trace(covmean))


def main():
    tool = sys.argv[1]
    rng = np.random.default_rng(20190601)
    cases = []
    d = 24
    base = rng.normal(size=(300, d)).astype(np.float32)
    mix = rng.normal(size=(d, d)).astype(np.float32) / np.sqrt(d)
    cases.append(("well-conditioned, different", base, (rng.normal(size=(250, d)) @ mix + 0.3).astype(np.float32), 1e-6))
    cases.append(("shifted and scaled", base, (1.5 * base[:200] + 2.0).astype(np.float32), 1e-6))
    small_a = rng.normal(size=(10, 32)).astype(np.float32)
    small_b = (rng.normal(size=(12, 32)) * 0.7 + 0.1).astype(np.float32)
    cases.append(("N < dimension (singular covariances)", small_a, small_b, 1e-4))
    low = (rng.normal(size=(200, 3)) @ rng.normal(size=(3, d))).astype(np.float32)  # rank 3
    cases.append(("rank-3 features", low, (low[::-1] * 1.1).astype(np.float32), 1e-4))
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        def run(a, b):
            pa, pb = os.path.join(tmp, "a.f32"), os.path.join(tmp, "b.f32")
            a.tofile(pa), b.tofile(pb)
            out = subprocess.run([tool, pa, str(len(a)), pb, str(len(b)), str(a.shape[1])],
                                 capture_output=True, text=True, check=True).stdout.split()
            return float(out[0]), float(out[1]), int(out[2])
        for name, a, b, tol in cases:
            got, gtr, flag = run(a, b)
            want, wtr = fid_scipy(a.astype(np.float64), b.astype(np.float64))
            err = abs(got - want) / max(1.0, abs(want))
            want_flag = int(min(len(a), len(b)) < a.shape[1] + 1)
            ok = err <= tol and flag == want_flag
            fails += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name}: mp_fid {got:.10g} scipy {want:.10g} (rel {err:.1e}, "
                  f"tol {tol:g}); rank-deficient flag {flag}")
        for name, a in (("a set against itself", base), ("singular set against itself", small_a)):
            got, _, _ = run(a, a)
            ok = abs(got) <= 1e-6
            fails += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name}: FID {got:.3e} (|FID| <= 1e-6)")
    print(f"{fails} failed")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
