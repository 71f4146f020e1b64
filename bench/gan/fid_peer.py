#!/usr/bin/python3
"""PyTorch/scipy peer of mp_bench_fid (bench/gan/fid_bench.sh): ONE FID evaluation with the
`domain` extractor as the thesis's stack does it: the SPEC §6 VGG16/4-BN classifier
(bench/nn/peer.py's) in torch eval mode under no_grad, batches of EVAL_BATCH uint8 patches
scaled to [-1, 1], features = the penultimate 512-d layer (the FC512-ReLU output before
the last dropout), for N generated-like and N real patches; then pytorch-fid's statistics
(np.mean, np.cov(rowvar=False)) and calculate_frechet_distance (scipy.linalg.sqrtm of
sigma1 @ sigma2, the eps * I retry when it is not finite, the real part).  As in
mp_bench_fid: random initial weights, uniform-noise patches, batch-norm running statistics
set to those of one training batch, one warm-up batch before the clock starts.

  fid_peer.py THREADS [N [EVAL_BATCH]]     (defaults 2000, 64)
Prints one JSON line: features_s, fid_s, total_s, fid, dim, sqrtm_retry, rss_mb.
"""
import json
import os
import resource
import sys
import time

import numpy as np
import torch
from scipy import linalg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nn"))
from peer import classifier  # noqa: E402  (the same SPEC §6 network as bench/nn)


def calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's formula; returns (fid, whether the eps * I retry ran)."""
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    retry = not np.isfinite(covmean).all()
    if retry:
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            # pytorch-fid raises here; a timing run reports it and goes on
            print(f"fid_peer: imaginary component {np.max(np.abs(covmean.imag))}", file=sys.stderr)
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)), retry


def main():
    a = sys.argv[1:]
    th = int(a[0])
    n = int(a[1]) if len(a) > 1 else 2000
    eb = int(a[2]) if len(a) > 2 else 64
    torch.set_num_threads(th)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    gen = rng.integers(0, 256, size=(n, 1, 128, 128), dtype=np.uint8)
    real = rng.integers(0, 256, size=(n, 1, 128, 128), dtype=np.uint8)
    m = classifier()
    extractor = m[:-2]  # up to the FC512-ReLU before the last dropout and FC1
    # batch-norm running statistics := those of one training batch (see mp_bench_fid)
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    m.train()
    with torch.no_grad():
        extractor(torch.from_numpy(real[:eb]).float() / 127.5 - 1)
    for bn in bns:
        bn.momentum = 0.1
    m.eval()

    def features(px):
        out = []
        with torch.no_grad():
            for i in range(0, len(px), eb):
                x = torch.from_numpy(px[i:i + eb]).float() / 127.5 - 1
                out.append(extractor(x).cpu().numpy())
        return np.concatenate(out)

    features(gen[:eb])  # warm-up batch
    t0 = time.perf_counter()
    fg, fr = features(gen), features(real)
    t1 = time.perf_counter()
    mu1, s1 = np.mean(fg, axis=0), np.cov(fg, rowvar=False)
    mu2, s2 = np.mean(fr, axis=0), np.cov(fr, rowvar=False)
    fid, retry = calculate_frechet_distance(mu1, s1, mu2, s2)
    t2 = time.perf_counter()
    print(json.dumps({"extractor": "domain", "n": n, "dim": int(fg.shape[1]), "eval_batch": eb,
                      "features_s": round(t1 - t0, 3), "fid_s": round(t2 - t1, 3), "total_s": round(t2 - t0, 3),
                      "fid": round(fid, 4), "sqrtm_retry": retry,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
