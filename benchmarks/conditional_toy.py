"""Conditional-flow toy (issue 16): held-out log-likelihood of a conditional NSF, pushforward vs zuko.

The data: ``sklearn.datasets.make_moons`` (noise 0.05) rotated by the angle ``π·c₀`` and shifted by ``c₁``
(both coordinates), with ``c ~ U(-1, 1)²``; 8,000 training and 1,000 held-out pairs. Every model is an NSF of
5 autoregressive spline layers with hidden widths (64, 64), trained for 3,000 steps.

Variants (``--variants``):

* ``pf_fit``: ``pushforward.flows.NSF(2, context=2, layers=5, hidden=(64, 64))`` trained by ``pushforward.fit``
  with its default settings (the issue's measurement).
* ``pf_adam``: the same flow with a plain Adam loop (lr 1e-3, batch 256, no clipping, no schedule).
* ``zuko_adam``: ``zuko.flows.NSF(2, 2, transforms=5, hidden_features=(64, 64))`` with the plain Adam loop.
* ``zuko_fit``: zuko's NSF trained with pushforward's ``fit`` defaults (cosine schedule, clipping) through a
  small adapter, to separate the model from the training loop.

Run: ``python benchmarks/conditional_toy.py --seeds 0 1 --out benchmarks/results/issue16/conditional_toy.json``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch


def conditional_moons(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, c)``: moons (noise 0.05) rotated by ``π c₀`` and shifted by ``c₁``, ``c ~ U(-1, 1)²``."""
    from sklearn.datasets import make_moons

    rng = np.random.default_rng(seed)
    x, _ = make_moons(n, noise=0.05, random_state=int(rng.integers(2**31 - 1)))
    c = rng.uniform(-1.0, 1.0, (n, 2))
    angle = math.pi * c[:, 0]
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = np.stack([cos * x[:, 0] - sin * x[:, 1], sin * x[:, 0] + cos * x[:, 1]], 1)
    x = rotated + c[:, 1:2]
    return torch.tensor(x, dtype=torch.float32), torch.tensor(c, dtype=torch.float32)


def plain_adam(log_prob, params, x, c, steps: int, batch: int = 256, lr: float = 1e-3, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        loss = -log_prob(x[idx], c[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _literal(v: str):
    try:
        return float(v) if "." in v else int(v)
    except ValueError:
        return None if v == "None" else v


def run(variant: str, seed: int, steps: int) -> dict:
    import pushforward
    from pushforward.flows import NSF

    x, c = conditional_moons(8000, seed=1000 + seed)
    xt, ct = conditional_moons(1000, seed=2000 + seed)
    torch.manual_seed(seed)
    start = time.perf_counter()
    if variant.startswith("pf"):
        # options after a colon go to NSF, e.g. "pf_fit:mixing=reverse,bound=5"
        name, _, opts = variant.partition(":")
        kwargs = {k: _literal(v) for k, v in (o.split("=") for o in opts.split(",") if o)}
        flow = NSF(2, context=2, layers=5, hidden=(64, 64), **kwargs)
        if name == "pf_fit":
            pushforward.fit(flow, (x, c), steps=steps, progress=False, seed=seed)
        else:
            flow.train()
            plain_adam(flow.log_prob, list(flow.parameters()), x, c, steps, seed=seed)
        flow.eval()
        with torch.no_grad():
            ll = float(flow.log_prob(xt, ct).mean())
    else:
        import zuko

        flow = zuko.flows.NSF(2, 2, transforms=5, hidden_features=(64, 64))

        def lp(a, b):
            return flow(b).log_prob(a)

        if variant == "zuko_adam":
            plain_adam(lp, list(flow.parameters()), x, c, steps, seed=seed)
        else:
            opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
            g = torch.Generator().manual_seed(seed)
            for _ in range(steps):
                idx = torch.randint(0, x.shape[0], (256,), generator=g)
                loss = -lp(x[idx], c[idx]).mean()
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
                opt.step()
                sched.step()
        with torch.no_grad():
            ll = float(lp(xt, ct).mean())
    return {
        "variant": variant,
        "seed": seed,
        "steps": steps,
        "heldout_ll": ll,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["pf_fit", "pf_adam", "zuko_adam", "zuko_fit"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from pushforward.checks import set_validation

    set_validation(False)
    rows = []
    for seed in args.seeds:
        for v in args.variants:
            r = run(v, seed, args.steps)
            rows.append(r)
            print(json.dumps(r), flush=True)
    summary = {}
    for v in args.variants:
        lls = [r["heldout_ll"] for r in rows if r["variant"] == v]
        summary[v] = {"mean_heldout_ll": float(np.mean(lls)), "runs": len(lls)}
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "summary": summary, "load": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()
