#!/usr/bin/env python3
"""The five GAN losses of SPEC §7 (mp_ref_gan_loss) against PyTorch autograd on fixed
critic outputs: values and the gradients with respect to C(xr) and C(xf), with the batch
means E C(xr), E C(xf) inside the relativistic losses NOT detached (so the gradient flows
through them, as in the reference implementation).  wgan-gp here is its loss part (the
penalty is tested in the nn suite).  Usage: check_losses.py LOSS_TOOL"""
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F


def losses(cr, cf):
    """(D, G) per loss, the table of SPEC §7 written out in torch."""
    m_r, m_f = cr.mean(), cf.mean()
    sp = F.softplus
    return {
        "wgan-gp": (cf.mean() - cr.mean(), -cf.mean()),
        "rsgan": (sp(-(cr - cf)).mean(), sp(-(cf - cr)).mean()),
        "rasgan": (0.5 * (sp(-(cr - m_f)).mean() + sp(cf - m_r).mean()),
                   0.5 * (sp(-(cf - m_r)).mean() + sp(cr - m_f).mean())),
        "ralsgan": (0.5 * (((cr - m_f - 1) ** 2).mean() + ((cf - m_r + 1) ** 2).mean()),
                    0.5 * (((cf - m_r - 1) ** 2).mean() + ((cr - m_f + 1) ** 2).mean())),
        "rahinge": (0.5 * (F.relu(1 - (cr - m_f)).mean() + F.relu(1 + (cf - m_r)).mean()),
                    0.5 * (F.relu(1 - (cf - m_r)).mean() + F.relu(1 + (cr - m_f)).mean())),
    }


def main():
    tool = sys.argv[1]
    rng = np.random.default_rng(7)
    fails = checked = 0
    for n, scale in ((16, 1.0), (64, 3.0), (5, 0.2)):
        cr = (rng.normal(size=n) * scale + 0.3).astype(np.float32)
        cf = (rng.normal(size=n) * scale - 0.2).astype(np.float32)
        text = f"{n}\n" + " ".join(repr(float(v)) for v in cr) + "\n" + " ".join(repr(float(v)) for v in cf) + "\n"
        out = subprocess.run([tool], input=text, capture_output=True, text=True, check=True).stdout
        got = {}
        for line in out.splitlines():
            f = line.split()
            got[(f[0], f[1])] = (float(f[2]), np.array(f[3:3 + n], float), np.array(f[3 + n:3 + 2 * n], float))
        for name in ("wgan-gp", "rsgan", "rasgan", "ralsgan", "rahinge"):
            for side in (0, 1):
                tr = torch.tensor(cr, dtype=torch.float64, requires_grad=True)
                tf = torch.tensor(cf, dtype=torch.float64, requires_grad=True)
                L = losses(tr, tf)[name][side]
                L.backward()
                gr = tr.grad.numpy() if tr.grad is not None else np.zeros(n)  # a side the loss ignores
                gf = tf.grad.numpy() if tf.grad is not None else np.zeros(n)
                v, dr, df = got[(name, "DG"[side])]
                ev = abs(v - L.item()) / max(1, abs(L.item()))
                eg = max(np.abs(dr - gr).max(), np.abs(df - gf).max())
                gscale = max(np.abs(gr).max(), np.abs(gf).max(), 1e-12)
                ok = ev < 1e-6 and eg / gscale < 1e-5
                checked += 1
                if not ok:
                    fails += 1
                    print(f"FAIL {name} {'DG'[side]} n={n}: value {v} vs {L.item()} (rel {ev:.1e}); "
                          f"gradient max error {eg:.2e} (scale {gscale:.2e})")
    print(f"{checked - fails}/{checked} loss values and gradients match PyTorch (float64, means not detached)")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
