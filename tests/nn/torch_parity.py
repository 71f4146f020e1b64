#!/usr/bin/python3
"""PyTorch parity of the SPEC classifier (VGG16/4-BN): loud, per-tensor.

Usage: torch_parity.py OUT.h5   (written by nn_parity_tool)

Loads the C side's initial parameters into an equivalent torch.nn.Sequential (same
layers, same order, PyTorch layouts), runs the same batch in training mode (batch-norm
batch statistics, dropout 0), BCE-with-logits, backward, three Adam steps (lr 1e-5,
betas (0.5, 0.999)), and compares: logits and loss (relative 1e-4), every parameter
tensor's gradient (normalised MSE < 1e-8), the loss before each Adam step (relative
1e-4), and the total Adam update after three steps: over the whole parameter vector
(normalised MSE < 1e-4) and per tensor (< 1e-3: Adam steps ~lr * sign(gradient), so a
64-element batch-norm gamma with a few near-zero gradients is noisier than its gradient).  Conv biases followed by batch norm have a true
gradient of exactly 0 (batch norm removes the mean): their gradients are compared against
an absolute floor, and their Adam updates (noise divided by noise) are not compared.
Prints `ok ...`/`FAIL ...` per check and `N passed, M failed` last.
"""
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn

torch.set_num_threads(2)


def cbr(i, o):
    return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]


def classifier():
    layers = cbr(1, 16) + cbr(16, 16) + [nn.MaxPool2d(2)]
    c = 16
    for w, r in [(32, 2), (64, 3), (128, 3), (128, 3)]:
        for _ in range(r):
            layers += cbr(c, w)
            c = w
        layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(2048, 512), nn.ReLU(), nn.Dropout(0.0), nn.Linear(512, 512), nn.ReLU(),
               nn.Dropout(0.0), nn.Linear(512, 1)]
    return nn.Sequential(*layers)


def main():
    f = h5py.File(sys.argv[1], "r")
    m = classifier().train()
    params = list(m.parameters())
    p0_np = f["params0"][:]
    p0 = torch.tensor(p0_np)
    n = sum(p.numel() for p in params)
    passes = fails = 0

    def check(ok, msg):
        nonlocal passes, fails
        if ok:
            passes += 1
            print("ok   " + msg)
        else:
            fails += 1
            print("FAIL " + msg)

    check(n == p0.numel(), f"parameter count {p0.numel()} == torch {n}")
    if n != p0.numel():
        return passes, fails
    torch.nn.utils.vector_to_parameters(p0.clone(), params)  # shares storage with its argument
    x = torch.tensor(f["x"][:]).reshape(-1, 1, 128, 128)
    t = torch.tensor(f["t"][:])
    opt = torch.optim.Adam(params, lr=1e-5, betas=(0.5, 0.999), eps=1e-8)
    names = [name for name, _ in m.named_parameters()]
    zero = set()
    g0 = {}
    for step in range(3):
        opt.zero_grad()
        y = m(x).reshape(-1)
        loss = nn.functional.binary_cross_entropy_with_logits(y, t)
        loss.backward()
        lerr = abs(loss.item() - float(f["losses"][step])) / abs(loss.item())
        check(lerr < 1e-4, f"loss before Adam step {step + 1}: {loss.item():.6f}, relative error {lerr:.2e}")
        if step == 0:
            ly = f["logits"][:]
            err = np.abs(y.detach().numpy() - ly).max() / (np.abs(ly).max() + 1e-12)
            check(err < 1e-4, f"logits: max relative error {err:.2e}")
            lerr = abs(loss.item() - float(f["loss"][0])) / abs(loss.item())
            check(lerr < 1e-4, f"loss {loss.item():.6f}: relative error {lerr:.2e}")
            g = f["grads"][:]
            g0 = {name: p.grad.detach().numpy().reshape(-1).copy() for name, p in zip(names, params)}
            off = 0
            worst = 0.0
            for name, p in zip(names, params):
                k = p.numel()
                ours, theirs = g[off:off + k], p.grad.detach().numpy().reshape(-1)
                # a conv bias followed by batch norm has a true gradient of exactly 0; both
                # sides hold rounding noise (up to ~1e-6 after summing 65k terms): such a
                # tensor passes when both are below 1e-5 everywhere
                if np.abs(theirs).max() < 1e-5:
                    if np.abs(ours).max() >= 1e-5:
                        check(False, f"gradient of {name}: torch ~0, ours up to {np.abs(ours).max():.2e}")
                    zero.add(name)
                else:
                    nmse = float(((ours - theirs) ** 2).sum() / (theirs ** 2).sum())
                    worst = max(worst, nmse)
                    if nmse >= 1e-8:
                        check(False, f"gradient of {name}: nmse {nmse:.2e}")
                off += k
            check(worst < 1e-8, f"gradients of {len(params) - len(zero)} tensors: worst nmse {worst:.2e}; "
                  f"{len(zero)} conv biases before batch norm ~0 on both sides")
        opt.step()
    p3 = f["params3"][:]
    now = torch.nn.utils.parameters_to_vector(params).detach().numpy()
    off = 0
    worst, skipped, num, den = 0.0, 0, 0.0, 0.0
    for name, p in zip(names, params):
        k = p.numel()
        du_ours, du_torch = p3[off:off + k] - p0_np[off:off + k], now[off:off + k] - p0_np[off:off + k]
        if name in zero:
            off += k  # zero true gradient (see above): Adam amplifies noise to +-lr, nothing to compare
            continue
        # Adam's step is ~lr * sign(gradient) whatever its size, so an element whose gradient
        # lies within the two sides' rounding noise (|g| < 1e-3 rms of its tensor; the gradient
        # check above bounds that noise at ~1e-4 rms) may step either way: leave those out
        gt = g0[name]
        keep = np.abs(gt) >= 1e-3 * np.sqrt((gt.astype(np.float64) ** 2).mean())
        skipped += int((~keep).sum())
        # an update of ~1e-5 on a batch-norm gamma of ~1 is resolved to float32's spacing
        # there (~1e-7, 1% of the update) at every step: differences within 2 spacings of
        # the parameter are representation, not arithmetic
        ulp = np.spacing(np.abs(p3[off:off + k][keep]).astype(np.float32)).astype(np.float64)
        du_ours, du_torch = du_ours[keep].astype(np.float64), du_torch[keep].astype(np.float64)
        excess = np.maximum(np.abs(du_ours - du_torch) - 2 * ulp, 0)
        nmse = float((excess ** 2).sum() / max((du_torch ** 2).sum(), 1e-30))
        worst = max(worst, nmse)
        num += float((excess ** 2).sum())
        den += float((du_torch ** 2).sum())
        if nmse >= 1e-3:
            check(False, f"Adam update of {name}: nmse {nmse:.2e}")
        off += k
    check(num / den < 1e-4, f"three Adam steps, the whole parameter vector: update nmse {num / den:.2e}")
    check(worst < 1e-3, f"three Adam steps, all tensors: worst update nmse {worst:.2e} "
          f"beyond 2 float32 spacings ({skipped} elements with |gradient| < 1e-3 rms left out)")
    return passes, fails


if __name__ == "__main__":
    p, fl = main()
    print(f"{p} passed, {fl} failed")
    sys.exit(0 if fl == 0 and p > 0 else 1)
