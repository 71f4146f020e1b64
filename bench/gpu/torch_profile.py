#!/usr/bin/python3
"""Where PyTorch's classifier training step spends GPU time (bench/gpu's peer, the same model
and step as bench/nn/peer.py), to set beside mammopatch's MP_NN_PROFILE table.

  torch_profile.py [fp32|tf32|bf16] [BATCH] [STEPS]     (defaults fp32 128 10)

Runs 5 warm-up steps (cudnn.benchmark picks its algorithms there), then STEPS steps under
torch.profiler (CUDA activity only) and prints, per step: every GPU kernel (and memcpy/memset)
with its calls and milliseconds, largest first, and the same summed by kind: convolution
forward / backward data / backward filter, batch norm, element-wise (ReLU, bias, casts),
pooling, GEMM, optimiser, other.  Kernel names are cuDNN's and PyTorch's own; the kinds are
read off the names, so "other" is listed in full.
"""
import os
import re
import sys

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nn"))
from peer import Run, classifier  # noqa: E402

KINDS = [
    ("conv forward", r"fprop|implicit_convolve|conv2d_grouped_direct|fwd|winograd.*fwd|precomputed_convolve"),
    ("conv backward data", r"dgrad|bwd_data|convolve_dgrad|backward_data"),
    ("conv backward filter", r"wgrad|bwd_filter|backward_filter|convolve_wgrad|scudnn.*128x.*_nn"),
    ("batch norm", r"batch_norm|bn_fw|bn_bw|batchnorm|welford"),
    ("pooling", r"max_pool|pooling"),
    ("gemm", r"gemm|sgemm|cutlass|ampere_s|sm90_xmma_gemm|cublas"),
    ("optimiser", r"adam|multi_tensor|foreach"),
    ("element-wise", r"elementwise|vectorized|relu|threshold|fill|copy|cast|reduce|add|mul|nchw|nhwc|transpose|memset|memcpy"),
]


def kind_of(name):
    low = name.lower()
    for k, pat in KINDS:
        if re.search(pat, low):
            return k
    return "other"


def main():
    prec = sys.argv[1] if len(sys.argv) > 1 else "fp32"
    b = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    run = Run("cuda", prec)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = prec == "tf32"
    x = run.put(torch.rand(b, 1, 128, 128) * 2 - 1)
    m = run.put(classifier()).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-5, betas=(0.5, 0.999))
    t = run.put((torch.arange(b) % 2).float())

    def one():
        opt.zero_grad()
        with run.amp():
            loss = F.binary_cross_entropy_with_logits(m(x).reshape(-1), t)
        loss.backward()
        opt.step()

    for _ in range(5):
        one()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            one()
        torch.cuda.synchronize()
    rows = {}
    for ev in prof.events():
        if ev.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = getattr(ev, "device_time", None)
        if us is None:
            us = ev.cuda_time
        r = rows.setdefault(ev.name, [0, 0.0])
        r[0] += 1
        r[1] += us
    total = sum(v[1] for v in rows.values()) / 1e3 / steps
    print(f"PyTorch {torch.__version__} classifier {prec} batch {b}: GPU busy {total:.3f} ms per step "
          f"({steps} steps profiled after 5 warm-up)")
    kinds = {}
    for name, (calls, us) in rows.items():
        k = kind_of(name)
        kinds[k] = kinds.get(k, 0.0) + us
    print("  by kind, ms per step:")
    for k, us in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"    {k:22s} {us / 1e3 / steps:8.3f}")
    print("  kernels, largest first (calls per step, ms per step, kind):")
    for name, (calls, us) in sorted(rows.items(), key=lambda kv: -kv[1][1])[:45]:
        print(f"    {calls / steps:5.1f} {us / 1e3 / steps:8.3f}  {kind_of(name):20s} {name[:110]}")


if __name__ == "__main__":
    main()
