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

Optional trailing flags (bench/gpu/run.sh):
  --device cpu|cuda          default cpu (the behaviour above, unchanged)
  --precision fp32|tf32|bf16 cuda only, default fp32:
      fp32  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
      tf32  both True (TF32 tensor cores for convolutions and matrix products)
      bf16  torch.autocast('cuda', dtype=torch.bfloat16) around forward and loss, fp32 master
            weights and optimiser, the model and batch in channels-last (as SPEC §12's bf16
            anchor); no gradient scaler (bf16 has fp32's range).  For wgan-gp the penalty's
            torch.autograd.grad runs outside autocast, as the PyTorch AMP notes write it.
  On cuda: torch.backends.cudnn.benchmark = True, torch.cuda.synchronize() before every
  timer read, and the JSON also holds device, precision and gpu_mb (peak
  torch.cuda.max_memory_allocated, MiB).
"""
import contextlib
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


class Run:
    """Where and how the steps run: cpu (plain fp32, host timers) or cuda (a precision,
    timers read after torch.cuda.synchronize())."""

    def __init__(self, device="cpu", precision="fp32"):
        self.dev = torch.device(device)
        self.cuda = device == "cuda"
        self.precision = precision
        self.bf16 = precision == "bf16"

    def clock(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def amp(self):
        """The autocast region around forward and loss (bf16 only)."""
        return torch.autocast(self.dev.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def put(self, t):
        """A model or a batch on the device (channels-last under bf16)."""
        if not self.cuda:
            return t
        t = t.to(self.dev)
        four_d = isinstance(t, nn.Module) or t.dim() == 4
        return t.to(memory_format=torch.channels_last) if self.bf16 and four_d else t


CPU = Run()


def gan_iteration(kind, D, G, od, og, x, z, run=CPU):
    """One iteration as the reference code writes it; returns (D step, G step) seconds."""
    b = x.shape[0]
    t0 = run.clock()
    od.zero_grad()
    with run.amp():
        fake = G(torch.randn(b, z, 1, 1, device=run.dev))
        cr, cf = D(x).reshape(-1), D(fake.detach()).reshape(-1)
        loss = gan_losses(kind, cr, cf, False)
    if kind == "wgan-gp":
        eps = torch.rand(b, 1, 1, 1, device=run.dev)
        xh = (eps * x + (1 - eps) * fake.detach()).requires_grad_(True)
        with run.amp():
            dh = D(xh).sum()
        (g,) = torch.autograd.grad(dh, xh, create_graph=True)
        with run.amp():
            loss = loss + 10.0 * ((g.reshape(b, -1).norm(dim=1) - 1) ** 2).mean()
    loss.backward()
    od.step()
    t1 = run.clock()
    og.zero_grad()
    for p in D.parameters():  # the reference code freezes D for the G step
        p.requires_grad_(False)
    with run.amp():
        fake = G(torch.randn(b, z, 1, 1, device=run.dev))
        cr, cf = D(x).reshape(-1), D(fake).reshape(-1)
        loss = gan_losses(kind, cr, cf, True)
    loss.backward()
    og.step()
    for p in D.parameters():
        p.requires_grad_(True)
    return t1 - t0, run.clock() - t1


def options(a):
    """Splits the trailing --device/--precision flags off the positional arguments."""
    pos, opt = [], {"device": "cpu", "precision": "fp32"}
    i = 0
    while i < len(a):
        if a[i].startswith("--"):
            key, _, val = a[i][2:].partition("=")
            if not val:
                if i + 1 >= len(a):
                    raise SystemExit(f"{a[i]} needs a value")
                i, val = i + 1, a[i + 1]
            if key not in opt:
                raise SystemExit(f"unknown option --{key} (--device cpu|cuda, --precision fp32|tf32|bf16)")
            opt[key] = val
        else:
            pos.append(a[i])
        i += 1
    if opt["device"] not in ("cpu", "cuda"):
        raise SystemExit(f"unknown device {opt['device']} (cpu, cuda)")
    if opt["precision"] not in ("fp32", "tf32", "bf16"):
        raise SystemExit(f"unknown precision {opt['precision']} (fp32, tf32, bf16)")
    if opt["device"] == "cpu" and opt["precision"] != "fp32":
        raise SystemExit("--precision tf32|bf16 needs --device cuda")
    if opt["device"] == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device cuda: torch {torch.__version__} sees no CUDA device")
    return pos, Run(opt["device"], opt["precision"])


def main():
    a, run = options(sys.argv[1:])
    if not a:
        raise SystemExit("usage: peer.py classifier|gan|gansteps ... [--device cpu|cuda] [--precision fp32|tf32|bf16]")
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
    if run.cuda:
        torch.backends.cudnn.benchmark = True
        tf32 = run.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    x = run.put(torch.rand(b, 1, 128, 128) * 2 - 1)
    ts, td, tg = [], [], []
    if mode == "classifier":
        m = run.put(classifier()).train()
        opt = torch.optim.Adam(m.parameters(), lr=1e-5, betas=(0.5, 0.999))
        t = run.put((torch.arange(b) % 2).float())
        for _ in range(reps + 2):
            t0 = run.clock()
            opt.zero_grad()
            with run.amp():
                loss = F.binary_cross_entropy_with_logits(m(x).reshape(-1), t)
            loss.backward()
            opt.step()
            ts.append(run.clock() - t0)
    else:
        if kind not in ("wgan-gp", "rsgan", "rasgan", "ralsgan", "rahinge"):
            raise SystemExit(f"unknown loss {kind}")
        D, G = dcgan(f, f, sn)  # z = f (SPEC §7; 64 for `gan`)
        D, G = run.put(D), run.put(G)
        D.train(), G.train()
        lr_d, lr_g, betas = (4e-4, 1e-4, (0.0, 0.9)) if sn else (2e-4, 2e-4, (0.5, 0.999))
        od = torch.optim.Adam(D.parameters(), lr=lr_d, betas=betas)
        og = torch.optim.Adam(G.parameters(), lr=lr_g, betas=betas)
        for _ in range(reps + 2):
            d, g = gan_iteration(kind, D, G, od, og, x, f, run)
            td.append(d), tg.append(g), ts.append(d + g)

    def med(v):
        v = sorted(v[2:])  # the first two are warm-up
        return v[len(v) // 2]
    out = {"patches_per_second": b / med(ts)}
    if mode == "gansteps":
        out = {"loss": kind, "sn": int(sn), "f": f, "batch": b, "d_ms": round(1e3 * med(td), 1),
               "g_ms": round(1e3 * med(tg), 1), **out}
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if run.cuda:
        out.update(device="cuda", precision=run.precision, gpu_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
