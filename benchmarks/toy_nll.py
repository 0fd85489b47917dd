"""Test NLL of autoregressive / spline flows on the 2-D toy densities, against their known entropy.

Acceptance (issue 3): a 5-layer NSF within 0.05 nats of the entropy of ``8gaussians`` and within 0.1 of
``checkerboard``'s. Usage::

    nice .venv/bin/python benchmarks/toy_nll.py --preset nsf --datasets 8gaussians checkerboard
    nice .venv/bin/python benchmarks/toy_nll.py --preset maf --layers 5 --steps 3000

Prints one line per dataset: test NLL (nats), entropy, gap, seconds; ``--json`` writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pushforward import fit
from pushforward.data import ENTROPY, toy
from pushforward.flows import PRESETS
from pushforward.train.fit import evaluate_nll


def run(name: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    train = toy(name, args.train, seed=args.seed)
    val = toy(name, args.val, seed=args.seed + 1)
    test = toy(name, args.test, seed=args.seed + 2)
    options: dict = {}
    if args.preset == "nsf":
        options = {"bins": args.bins, "bound": args.bound, "variant": args.variant}
    flow = PRESETS[args.preset](2, layers=args.layers, hidden=tuple(args.hidden), **options)
    start = time.perf_counter()
    fit(
        flow,
        train,
        val,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        progress=False,
        seed=args.seed,
    )
    seconds = time.perf_counter() - start
    nll = evaluate_nll(flow, test)
    entropy = ENTROPY.get(name, float("nan"))
    return {
        "dataset": name,
        "preset": args.preset,
        "test_nll": nll,
        "entropy": entropy,
        "gap": nll - entropy,
        "seconds": seconds,
        "steps": args.steps,
        "layers": args.layers,
        "hidden": args.hidden,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="nsf", choices=sorted(PRESETS))
    p.add_argument("--datasets", nargs="+", default=["8gaussians", "checkerboard"])
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    p.add_argument("--bins", type=int, default=8)
    p.add_argument("--bound", type=float, default=5.0)
    p.add_argument("--variant", default="autoregressive", choices=["autoregressive", "coupling"])
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train", type=int, default=100_000)
    p.add_argument("--val", type=int, default=10_000)
    p.add_argument("--test", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for name in args.datasets:
        r = run(name, args)
        results.append(r)
        print(
            f"{r['preset']:>5} {name:>13}: test NLL {r['test_nll']:.4f} nats, entropy {r['entropy']:.4f}, "
            f"gap {r['gap']:+.4f} ({r['seconds']:.0f} s, {args.steps} steps)",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
