#!/usr/bin/python3
"""PyTorch parity of the SPEC GAN (DCGAN f = 64, z = 64, spectral-norm critic): loud, per tensor.

Usage: torch_gan_parity.py OUT.h5 BACKEND   (OUT.h5 written by `nn_parity_tool BACKEND OUT.h5 gan`)

Builds the same networks in torch (torch.nn.utils.spectral_norm on every critic conv,
weights and the power-iteration vector u loaded from the C side's checkpoint OUT.d0.h5,
the generator from OUT.g0.h5) and replays the C side's sequence:
  1. xf1 = G(z1) in training mode (batch statistics; running statistics updated)
  2. critic step, wgan-gp: C([xr1; xf1.detach()]) in ONE call (as mammopatch does; one
     power iteration), E C(xf) - E C(xr), plus lambda E(||grad_x C(xhat)|| - 1)^2 with
     create_graph=True (a second power iteration), backward -> critic gradients
  3. generator step, rahinge: xf2 = G(z2), C([xr2; xf2]) (third power iteration), the
     generator loss, backward -> generator gradients
in float64 (the oracle) and in float32, and compares the C side with float64: xf1 (max abs error), the wgan term and the penalty (relative), every
critic and generator gradient tensor (normalised MSE), the critic's u after the three
power iterations and the generator's batch-norm running statistics (OUT.d1/g1.h5).
Prints ok/FAIL per check and `N passed, M failed` last; exit status 1 on any failure.
"""
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn

torch.set_num_threads(2)
N, F, Z = 4, 64, 64
SN = nn.utils.spectral_norm


def critic():
    layers, c = [], 1
    for m in (1, 2, 4, 8, 8):
        layers += [SN(nn.Conv2d(c, F * m, 4, 2, 1, bias=False)), nn.LeakyReLU(0.2)]
        c = F * m
    layers.append(SN(nn.Conv2d(c, 1, 4, 1, 0, bias=False)))
    return nn.Sequential(*layers)


def generator():
    layers = [nn.ConvTranspose2d(Z, 8 * F, 4, 1, 0, bias=False), nn.BatchNorm2d(8 * F), nn.ReLU()]
    c = 8 * F
    for m in (8, 4, 2, 1):
        layers += [nn.ConvTranspose2d(c, F * m, 4, 2, 1, bias=False), nn.BatchNorm2d(F * m), nn.ReLU()]
        c = F * m
    layers += [nn.ConvTranspose2d(c, 1, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def load(model, path, sn):
    """Copy the C checkpoint's tensors ('03_conv/weight', '00_conv/sn_u', '01_bn/gamma', ...)."""
    ck = h5py.File(path, "r")
    with torch.no_grad():
        for i, m in enumerate(model):
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                kind = "conv" if isinstance(m, nn.Conv2d) else "convt"
                w = torch.tensor(ck[f"{i:02d}_{kind}/weight"][:])
                if sn:
                    m.weight_orig.copy_(w.reshape(m.weight_orig.shape))
                    m.weight_u.copy_(torch.tensor(ck[f"{i:02d}_conv/sn_u"][:]))
                else:
                    m.weight.copy_(w.reshape(m.weight.shape))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.tensor(ck[f"{i:02d}_bn/gamma"][:]))
                m.bias.copy_(torch.tensor(ck[f"{i:02d}_bn/beta"][:]))
    return ck


def replay(out, f, dtype):
    """The C side's sequence in torch at `dtype`; returns every compared quantity."""
    torch.set_default_dtype(dtype)
    D, G = critic().train(), generator().train()
    load(D, out + ".d0.h5", True)
    load(G, out + ".g0.h5", False)
    t = lambda name, shape: torch.tensor(f[name][:]).to(dtype).reshape(shape)
    z1, z2 = t("z1", (N, Z, 1, 1)), t("z2", (N, Z, 1, 1))
    xr1, xr2, xhat = (t(k, (N, 1, 128, 128)) for k in ("xr1", "xr2", "xhat"))
    r = {}
    # 1. the generator's forward
    xf1 = G(z1).detach()
    r["xf1"] = xf1.numpy().reshape(-1)
    # 2. the critic step, wgan-gp with the penalty (double backward)
    c = D(torch.cat([xr1, xf1])).reshape(-1)
    wgan = c[N:].mean() - c[:N].mean()
    xh = xhat.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(xh).sum(), xh, create_graph=True)
    pen = 10.0 * ((g.reshape(N, -1).norm(dim=1) - 1) ** 2).mean()
    (wgan + pen).backward()
    r["wgan"], r["pen"], r["cmax"] = wgan.item(), pen.item(), float(c.abs().max())
    r["d_grads"] = [(n, p.grad.numpy().reshape(-1).copy()) for n, p in D.named_parameters()]
    # 3. the generator step, rahinge, through the critic
    xf2 = G(z2)
    c = D(torch.cat([xr2, xf2])).reshape(-1)
    cr, cf = c[:N], c[N:]
    lg = 0.5 * (torch.relu(1 - (cf - cr.mean())).mean() + torch.relu(1 + (cr - cf.mean())).mean())
    lg.backward()
    r["lg"] = lg.item()
    r["g_grads"] = [(n, p.grad.numpy().reshape(-1).copy()) for n, p in G.named_parameters()]
    r["u"] = {i: m.weight_u.numpy().copy() for i, m in enumerate(D) if isinstance(m, nn.Conv2d)}
    r["bn"] = {i: (m.running_mean.numpy().copy(), m.running_var.numpy().copy())
               for i, m in enumerate(G) if isinstance(m, nn.BatchNorm2d)}
    torch.set_default_dtype(torch.float32)
    return r


def nmse(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(((ours - theirs) ** 2).sum() / max((theirs ** 2).sum(), 1e-300))


def worst_nmse(flat, tensors):
    off, worst = 0, 0.0
    for _, t in tensors:
        worst = max(worst, nmse(flat[off:off + t.size], t))
        off += t.size
    return worst, off


def main():
    out, backend = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "cpu"
    f = h5py.File(out, "r")
    # The oracle is torch in float64.  This critic is ill-conditioned at initialisation
    # (outputs ~1e-2 out of activations ~1), so float32 itself, torch's or ours, lands
    # ~3e-6 (nmse) from the float64 gradients: `ref` (double accumulation) must match
    # float64 to 1e-10, a float32 backend to 1e-5; torch float32's own distance is printed.
    tol = {"ref": 1e-10}.get(backend, 1e-5)
    truth, t32 = replay(out, f, torch.float64), replay(out, f, torch.float32)
    passes = fails = 0

    def check(ok, msg):
        nonlocal passes, fails
        passes, fails = passes + bool(ok), fails + (not ok)
        print(("ok   " if ok else "FAIL ") + msg)

    err = float(np.abs(f["xf1"][:] - truth["xf1"]).max())
    check(err < 1e-5, f"generator output G(z1): max abs error {err:.2e} (tanh range 1)")
    ow, op, ol = float(f["d_wgan"][0]), float(f["d_penalty"][0]), float(f["g_rahinge"][0])
    check(abs(truth["wgan"] - ow) < 1e-4 * truth["cmax"],
          f"E C(xf) - E C(xr) {truth['wgan']:.6e}: C {ow:.6e} (outputs up to {truth['cmax']:.2e})")
    check(abs(truth["pen"] - op) < 1e-5 * truth["pen"], f"gradient penalty {truth['pen']:.6f}: C {op:.6f}")
    check(abs(truth["lg"] - ol) < 1e-5 * truth["lg"], f"generator rahinge loss {truth['lg']:.6f}: C {ol:.6f}")
    for key, what in (("d_grads", "critic gradients (wgan-gp + penalty through create_graph, spectral norm)"),
                      ("g_grads", "generator gradients (rahinge, through the critic)")):
        flat = f[key][:]
        w, count = worst_nmse(flat, truth[key])
        ref32, _ = worst_nmse(np.concatenate([t for _, t in t32[key]]), truth[key])
        check(count == flat.size, f"{what}: {count} parameters in torch, {flat.size} in C")
        check(w < tol, f"{what}, {len(truth[key])} tensors: worst nmse vs torch float64 {w:.2e} "
              f"(tolerance {tol:g}; torch float32 itself: {ref32:.2e})")
    d1, g1 = h5py.File(out + ".d1.h5", "r"), h5py.File(out + ".g1.h5", "r")
    worst = max(float(np.abs(d1[f"{i:02d}_conv/sn_u"][:] - u).max()) for i, u in truth["u"].items())
    check(worst < 1e-5, f"critic u after three power iterations: max abs error {worst:.2e}")
    worst = 0.0
    for i, (m, v) in truth["bn"].items():
        for ours, theirs in ((g1[f"{i:02d}_bn/running_mean"][:], m), (g1[f"{i:02d}_bn/running_var"][:], v)):
            worst = max(worst, float(np.abs(ours - theirs).max() / (np.abs(theirs).max() + 1e-12)))
    check(worst < 1e-5, f"generator batch-norm running statistics after two forwards: max relative error {worst:.2e}")
    return passes, fails


if __name__ == "__main__":
    p, fl = main()
    print(f"{p} passed, {fl} failed")
    sys.exit(0 if fl == 0 and p > 0 else 1)
