"""The training engine's defaults against a plain Adam loop, at equal step counts (issue 26, item 2).

Tasks (held-out log-likelihood in nats per row, higher is better):

* ``cond_moons``: the conditional toy of ``benchmarks/conditional_toy.py`` (moons rotated by ``π c₀`` and
  shifted by ``c₁``, ``c ~ U(-1, 1)²``), a conditional NSF (5 autoregressive spline layers, hidden (64, 64));
* ``checkerboard`` and ``8gaussians``: 2-D density sets of :func:`pushforward.data.toy`, an unconditional NSF
  of the same size (spline bound 5).

8,000 training rows, 5,000 held-out rows per task and seed (data seeded by the seed).

Variants (``--variants``):

* ``plain``: the six-line loop: Adam(lr 1e-3), batch 256 drawn with replacement, no clipping, no schedule;
* ``engine``: ``pushforward.fit(flow, x, steps=N, seed=s)`` with :class:`~pushforward.train.TrainConfig`'s
  defaults (whatever they are when the script runs; the output records them under ``"defaults"``);
* ``KEY=VALUE,...``: ``fit`` with those settings on top of the defaults (e.g. ``schedule=constant`` or
  ``lr=3e-3,clip_grad=None``), to compare candidate defaults;
* ``plain_cosine``: the plain loop with the rate annealed from 1e-3 to 0 by a cosine (the engine's schedule,
  nothing else of the engine), to isolate the schedule.

The same flow initialisation (seeded by the seed) is used by every variant.

Run: ``nice python benchmarks/engine_defaults.py --steps 3000 --seeds 0 1 2 \
--out benchmarks/results/engine_defaults/results.json``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))

from conditional_toy import conditional_moons

from pushforward import fit
from pushforward.data import toy
from pushforward.flows import NSF
from pushforward.train.config import TrainConfig
from pushforward.train.fit import evaluate_nll

TASKS = ("cond_moons", "checkerboard", "8gaussians")


def task_data(task: str, seed: int, n_train: int = 8000, n_test: int = 5000):
    """``(train, test)``: tensors, or ``(x, c)`` tuples for the conditional task."""
    if task == "cond_moons":
        x, c = conditional_moons(n_train + n_test, seed)
        return (x[:n_train], c[:n_train]), (x[n_train:], c[n_train:])
    return toy(task, n_train, seed=seed), toy(task, n_test, seed=seed + 1000)


def make_flow(task: str, seed: int):
    torch.manual_seed(seed)
    if task == "cond_moons":
        return NSF(2, context=2, layers=5, hidden=(64, 64))
    return NSF(2, layers=5, hidden=(64, 64), bound=5.0)


def plain_loop(flow, train, steps: int, seed: int, cosine: bool = False) -> None:
    x, c = train if isinstance(train, tuple) else (train, None)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    for t in range(steps):
        if cosine:
            opt.param_groups[0]["lr"] = 1e-3 * 0.5 * (1.0 + math.cos(math.pi * t / steps))
        idx = torch.randint(0, x.shape[0], (256,), generator=g)
        loss = -flow.log_prob(x[idx], c[idx] if c is not None else None).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def parse_variant(v: str) -> dict:
    if v == "engine":
        return {}
    out = {}
    for item in v.split(","):
        key, value = item.split("=")
        out[key] = None if value == "None" else (value if value.isalpha() else float(value))
        if key in ("warmup", "batch_size") and out[key] is not None:
            out[key] = int(out[key])
    return out


def run(task: str, variant: str, seed: int, steps: int) -> dict:
    train, test = task_data(task, seed)
    flow = make_flow(task, seed)
    start = time.perf_counter()
    if variant in ("plain", "plain_cosine"):
        plain_loop(flow, train, steps, seed, cosine=variant == "plain_cosine")
    else:
        fit(flow, train, steps=steps, seed=seed, progress=False, **parse_variant(variant))
    seconds = time.perf_counter() - start
    flow.eval()
    return {
        "task": task,
        "variant": variant,
        "seed": seed,
        "steps": steps,
        "seconds": seconds,
        "test_loglik": -evaluate_nll(flow, test),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--variants", nargs="+", default=["plain", "engine"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--out", default="benchmarks/results/engine_defaults/results.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    if os.path.exists(a.out):
        with open(a.out) as f:
            rows = json.load(f)["runs"]
    done = {(r["task"], r["variant"], r["seed"], r["steps"]) for r in rows}
    for task in a.tasks:
        for seed in a.seeds:
            for variant in a.variants:
                if (task, variant, seed, a.steps) in done:
                    continue
                r = run(task, variant, seed, a.steps)
                rows.append(r)
                print(json.dumps(r), flush=True)
                os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
                with open(a.out, "w") as f:
                    defaults = dataclasses.asdict(TrainConfig())
                    json.dump({"torch": torch.__version__, "defaults": defaults, "runs": rows}, f, indent=1)


if __name__ == "__main__":
    main()
