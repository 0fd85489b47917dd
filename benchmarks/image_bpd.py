"""Bits/dim on MNIST (9k/1k split of the 10k test files) after a fixed CPU-time budget per model.

Trains, in one run and on the same data with the same optimiser settings and the same budget of *process CPU
time* (so that other load on the machine does not count):

* pushforward ``Glow`` (levels=2, steps=K, ConvResNet width W),
* pushforward ``RealNVPImage`` (scales=2, layers=2, width W),
* normflows' Glow (``MultiscaleFlow`` of ``GlowBlock`` s; L=2, K, width W),

all with uniform dequantization, and reports held-out bits/dim with the 256-level discretisation term:
``bpd = -(log p((x+u)/256) - D log 256) / (D log 2)`` (pushforward's models include the logit ladj).
Saves samples (T=0.7) and an interpolation strip of the pushforward Glow as PNGs.

    nice .venv/bin/python benchmarks/image_bpd.py --budget 300 --out benchmarks/results/image_bpd
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from pushforward.analysis.images import save_image_grid
from pushforward.data.images import load_mnist, uniform_dequantize
from pushforward.flows.dequantization import DequantizedFlow
from pushforward.flows.image import Glow, RealNVPImage, interpolate, sample

LEVELS = 256


def normflows_glow(levels: int, steps: int, hidden: int):
    import normflows as nf

    shape = (1, 28, 28)
    q0, merges, flows = [], [], []
    for i in range(levels):
        blocks = [
            nf.flows.GlowBlock(shape[0] * 2 ** (levels + 1 - i), hidden, split_mode="channel", scale=True)
            for _ in range(steps)
        ]
        flows.append([*blocks, nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            lat = (shape[0] * 2 ** (levels - i), shape[1] // 2 ** (levels - i), shape[2] // 2 ** (levels - i))
        else:
            lat = (shape[0] * 2 ** (levels + 1), shape[1] // 2**levels, shape[2] // 2**levels)
        q0.append(nf.distributions.DiagGaussian(lat))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


class NormflowsAdapter(torch.nn.Module):
    """bits/dim of a normflows model on dequantized pixels (its density lives on [0, 1)^D directly)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def bits_per_dim(self, x: torch.Tensor, context=None) -> torch.Tensor:
        y = uniform_dequantize(x, LEVELS)
        D = math.prod(x.shape[1:])
        return -(self.model.log_prob(y, None) - D * math.log(LEVELS)) / (D * math.log(2))


def train(model, x: torch.Tensor, budget: float, batch: int, lr: float, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    steps, skipped, losses = 0, 0, []
    while time.process_time() - start_cpu < budget:
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (steps + 1) / 50)
        loss = model.bits_per_dim(x[idx]).mean()
        opt.zero_grad(set_to_none=True)
        steps += 1
        if not torch.isfinite(loss):
            skipped += 1
            continue
        loss.backward()
        if not torch.isfinite(torch.nn.utils.clip_grad_norm_(params, 50.0)):
            skipped += 1
            continue
        opt.step()
        losses.append(float(loss.detach()))
    return {
        "steps": steps,
        "skipped": skipped,
        "cpu_s": time.process_time() - start_cpu,
        "wall_s": time.perf_counter() - start_wall,
        "train_bpd_last50": sum(losses[-50:]) / max(len(losses[-50:]), 1),
    }


@torch.no_grad()
def evaluate(model, x: torch.Tensor, batch: int = 250) -> float:
    model.eval()
    torch.manual_seed(1234)
    total = 0.0
    for i in range(0, x.shape[0], batch):
        total += float(model.bits_per_dim(x[i : i + batch]).sum())
    return total / x.shape[0]


def run_parallel(args: argparse.Namespace) -> None:
    """Run each model in its own subprocess (CPU budgets are per process) and merge the results."""
    import subprocess
    import sys

    out = Path(args.out)
    procs = {}
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--models", name, "--out", str(out / name)]
        for key in ("budget", "steps", "hidden", "batch", "lr", "threads", "data"):
            cmd += [f"--{key}", str(getattr(args, key))]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    results = {"config": {**vars(args), "parallel": True}, "models": {}}
    for name, p in procs.items():
        p.communicate()
        results["models"][name] = json.loads((out / name / "results.json").read_text())["models"][name]
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: round(v["val_bpd"], 4) for k, v in results["models"].items()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=300.0, help="CPU seconds of training per model")
    ap.add_argument("--steps", type=int, default=4, help="flow steps per level (K)")
    ap.add_argument("--hidden", type=int, default=64, help="conditioner width")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="glow,realnvp_image,normflows_glow")
    ap.add_argument("--data", default="../shared/data/mnist")
    ap.add_argument("--out", default="benchmarks/results/image_bpd")
    ap.add_argument(
        "--parallel", action="store_true", help="train the models at once, one subprocess each (same budgets)"
    )
    args = ap.parse_args()
    if args.parallel:
        run_parallel(args)
        return
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x_train, _ = load_mnist(args.data, "train")
    x_val, _ = load_mnist(args.data, "val")
    results = {"config": vars(args), "models": {}}
    for name in args.models.split(","):
        torch.manual_seed(0)
        if name == "glow":
            model = DequantizedFlow(Glow((1, 28, 28), levels=2, steps=args.steps, hidden=(args.hidden,)))
        elif name == "realnvp_image":
            model = DequantizedFlow(RealNVPImage((1, 28, 28), scales=2, layers=2, hidden=(args.hidden,)))
        elif name == "normflows_glow":
            model = NormflowsAdapter(normflows_glow(2, args.steps, args.hidden))
        else:
            raise ValueError(f"unknown model {name}")
        n_params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            init_bpd = float(model.bits_per_dim(x_train[:64]).mean())  # also runs data-dependent init
        stats = train(model, x_train, args.budget, args.batch, args.lr, seed=0)
        stats.update(params=n_params, init_bpd=init_bpd, val_bpd=evaluate(model, x_val))
        results["models"][name] = stats
        print(name, json.dumps(stats), flush=True)
        if name == "glow":
            flow = model.flow.eval()
            torch.manual_seed(0)
            save_image_grid(sample(flow, 64, temperature=0.7).clamp(0, 1), out / "glow_samples_T0.7.png", 8)
            strip = interpolate(flow, (x_val[:2] + 0.5) / LEVELS, steps=10)
            save_image_grid(strip.clamp(0, 1), out / "glow_interpolation_strip.png", 10)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: round(v["val_bpd"], 4) for k, v in results["models"].items()}))


if __name__ == "__main__":
    main()
