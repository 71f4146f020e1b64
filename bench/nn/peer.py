#!/usr/bin/python3
"""PyTorch peer of bench/nn (Debian's python3-torch, the thesis's stack): the same training
steps as mp_bench_nn, the same thread count, in the style of the reference implementations.

  peer.py classifier BATCH THREADS [REPS]
  peer.py gan LOSS SN BATCH THREADS [REPS]
      SPEC §7 GAN, f = 64, z = 64; as the relativistic-GAN reference code: D(real) and
      D(fake.detach()) as two calls, autograd.grad(create_graph=True) for wgan-gp's
      penalty, a fresh z and real batch for the generator step, Adam per SN/TTUR.
  peer.py gansteps LOSS SN F BATCH THREADS [REPS]
      the same iteration for f = F filters (z = F, SPEC §7), SN through
      torch.nn.utils.spectral_norm, with the D step (zero_grad, G(z), D(x), D(fake.detach()),
      loss [+ penalty], backward, Adam on D) and the G step (D frozen, zero_grad, G(z'),
      D(x), D(fake), loss, backward, Adam on G) timed apart: d_ms and g_ms.
Prints one JSON line: patches_per_second (median after two warm-up steps) and rss_mb
(gansteps: also d_ms and g_ms, the medians of each step).
"""
import json
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def classifier():
    def cbr(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]
    L, c = cbr(1, 16) + cbr(16, 16) + [nn.MaxPool2d(2)], 16
    for w, r in [(32, 2), (64, 3), (128, 3), (128, 3)]:
        for _ in range(r):
            L += cbr(c, w)
            c = w
        L.append(nn.MaxPool2d(2))
    return nn.Sequential(*L, nn.Flatten(), nn.Linear(2048, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 512),
                         nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 1))


def dcgan(f, z, sn):
    wrap = nn.utils.spectral_norm if sn else (lambda m: m)
    layers, c = [], 1
    for m in (1, 2, 4, 8, 8):
        layers += [wrap(nn.Conv2d(c, f * m, 4, 2, 1, bias=False)), nn.LeakyReLU(0.2)]
        c = f * m
    D = nn.Sequential(*layers, wrap(nn.Conv2d(c, 1, 4, 1, 0, bias=False)))
    layers, c = [nn.ConvTranspose2d(z, 8 * f, 4, 1, 0, bias=False), nn.BatchNorm2d(8 * f), nn.ReLU()], 8 * f
    for m in (8, 4, 2, 1):
        layers += [nn.ConvTranspose2d(c, f * m, 4, 2, 1, bias=False), nn.BatchNorm2d(f * m), nn.ReLU()]
        c = f * m
    G = nn.Sequential(*layers, nn.ConvTranspose2d(c, 1, 4, 2, 1, bias=False), nn.Tanh())
    return D, G


def gan_losses(kind, cr, cf, generator):
    if generator:
        cr, cf = cf, cr  # the G forms swap the roles of real and fake
    if kind == "wgan-gp":
        return -cr.mean() if generator else cf.mean() - cr.mean()
    if kind == "rsgan":
        return F.softplus(-(cr - cf)).mean()
    if kind == "rasgan":
        return 0.5 * (F.softplus(-(cr - cf.mean())).mean() + F.softplus(cf - cr.mean()).mean())
    if kind == "ralsgan":
        return 0.5 * (((cr - cf.mean() - 1) ** 2).mean() + ((cf - cr.mean() + 1) ** 2).mean())
    if kind == "rahinge":
        return 0.5 * (F.relu(1 - (cr - cf.mean())).mean() + F.relu(1 + (cf - cr.mean())).mean())
    raise SystemExit(f"unknown loss {kind}")


def gan_iteration(kind, D, G, od, og, x, z):
    """One iteration as the reference code writes it; returns (D step, G step) seconds."""
    b = x.shape[0]
    t0 = time.perf_counter()
    od.zero_grad()
    fake = G(torch.randn(b, z, 1, 1))
    cr, cf = D(x).reshape(-1), D(fake.detach()).reshape(-1)
    loss = gan_losses(kind, cr, cf, False)
    if kind == "wgan-gp":
        eps = torch.rand(b, 1, 1, 1)
        xh = (eps * x + (1 - eps) * fake.detach()).requires_grad_(True)
        (g,) = torch.autograd.grad(D(xh).sum(), xh, create_graph=True)
        loss = loss + 10.0 * ((g.reshape(b, -1).norm(dim=1) - 1) ** 2).mean()
    loss.backward()
    od.step()
    t1 = time.perf_counter()
    og.zero_grad()
    for p in D.parameters():  # the reference code freezes D for the G step
        p.requires_grad_(False)
    fake = G(torch.randn(b, z, 1, 1))
    cr, cf = D(x).reshape(-1), D(fake).reshape(-1)
    gan_losses(kind, cr, cf, True).backward()
    og.step()
    for p in D.parameters():
        p.requires_grad_(True)
    return t1 - t0, time.perf_counter() - t1


def main():
    a = sys.argv[1:]
    mode = a[0]
    f = 64
    if mode == "classifier":
        b, th, reps = int(a[1]), int(a[2]), int(a[3]) if len(a) > 3 else 6
    elif mode == "gan":
        kind, sn, b, th, reps = a[1], a[2] == "1", int(a[3]), int(a[4]), int(a[5]) if len(a) > 5 else 3
    elif mode == "gansteps":
        kind, sn, f, b, th = a[1], a[2] == "1", int(a[3]), int(a[4]), int(a[5])
        reps = int(a[6]) if len(a) > 6 else 3
    else:
        raise SystemExit(f"unknown mode {mode} (classifier, gan, gansteps)")
    torch.set_num_threads(th)
    torch.manual_seed(0)
    x = torch.rand(b, 1, 128, 128) * 2 - 1
    ts, td, tg = [], [], []
    if mode == "classifier":
        m = classifier().train()
        opt = torch.optim.Adam(m.parameters(), lr=1e-5, betas=(0.5, 0.999))
        t = (torch.arange(b) % 2).float()
        for _ in range(reps + 2):
            t0 = time.perf_counter()
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(m(x).reshape(-1), t).backward()
            opt.step()
            ts.append(time.perf_counter() - t0)
    else:
        if kind not in ("wgan-gp", "rsgan", "rasgan", "ralsgan", "rahinge"):
            raise SystemExit(f"unknown loss {kind}")
        D, G = dcgan(f, f, sn)  # z = f (SPEC §7; 64 for `gan`)
        D.train(), G.train()
        lr_d, lr_g, betas = (4e-4, 1e-4, (0.0, 0.9)) if sn else (2e-4, 2e-4, (0.5, 0.999))
        od = torch.optim.Adam(D.parameters(), lr=lr_d, betas=betas)
        og = torch.optim.Adam(G.parameters(), lr=lr_g, betas=betas)
        for _ in range(reps + 2):
            d, g = gan_iteration(kind, D, G, od, og, x, f)
            td.append(d), tg.append(g), ts.append(d + g)

    def med(v):
        v = sorted(v[2:])  # the first two are warm-up
        return v[len(v) // 2]
    out = {"patches_per_second": b / med(ts)}
    if mode == "gansteps":
        out = {"loss": kind, "sn": int(sn), "f": f, "batch": b, "d_ms": round(1e3 * med(td), 1),
               "g_ms": round(1e3 * med(tg), 1), **out}
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
