"""Flow matching vs maximum-likelihood FFJORD on a 2-D toy density (issue 16 acceptance).

Trains an FFJORD-preset continuous flow by conditional flow matching (``fit_flow_matching``) and evaluates
the held-out NLL with the exact trace and tight ODE tolerances, like ``toy_residual_ffjord.py`` does for the
maximum-likelihood FFJORD (checkerboard: test NLL 3.511 after 16,000 steps, 6,779 s on one thread,
``benchmarks/results/issue5/ffjord_checkerboard.json``; entropy log 32 = 3.466).

Usage (CPU, one thread; the CPU time of the process is the measure, wall time is recorded beside it):

    nice .venv/bin/python benchmarks/flow_matching_checkerboard.py --steps 40000 \\
        --out benchmarks/results/issue16/fm_checkerboard.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pushforward.data import ENTROPY, toy
from pushforward.flows import FFJORD
from pushforward.train import fit_flow_matching
from pushforward.train.fit import evaluate_nll
from pushforward.transforms import ContinuousFlow

#: The maximum-likelihood FFJORD reference (issue 5 acceptance run, same data seeds and test set).
REFERENCE = {"checkerboard": {"test_nll": 3.5109892822265625, "train_seconds": 6778.997178321}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="checkerboard")
    p.add_argument("--steps", type=int, default=40_000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128, 128])
    p.add_argument("--activation", default="softplus")
    p.add_argument("--sigma-min", type=float, default=1e-4)
    p.add_argument(
        "--ema", type=float, default=None, help="decay of the weights' moving average (e.g. 0.999)"
    )
    p.add_argument("--n-train", type=int, default=50_000)
    p.add_argument("--n-val", type=int, default=5_000)
    p.add_argument("--n-test", type=int, default=20_000)
    p.add_argument("--eval-tol", type=float, default=1e-7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=2000)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train = toy(args.data, args.n_train, seed=args.seed)
    test = toy(args.data, args.n_test, seed=args.seed + 10_000)
    val = toy(args.data, args.n_val, seed=args.seed + 20_000)
    flow = FFJORD(2, hidden=tuple(args.hidden), activation=args.activation, trace="exact")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    window: list[float] = []

    def log(step: int, loss: float) -> None:
        window.append(loss)
        if args.log_every and len(window) == args.log_every:
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            print(
                f"step {step}: FM loss {sum(window) / len(window):.4f} (cpu {cpu:.0f} s, wall {wall:.0f} s)",
                flush=True,
            )
            window.clear()

    history = fit_flow_matching(
        flow,
        train,
        val,
        steps=args.steps,
        batch_size=args.batch,
        lr=args.lr,
        sigma_min=args.sigma_min,
        seed=args.seed,
        callback=log,
        ema=args.ema,
    )
    train_cpu, train_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    for m in flow.modules():  # exact, tight evaluation
        if isinstance(m, ContinuousFlow):
            m.trace, m.rtol, m.atol = "exact", args.eval_tol, args.eval_tol
    cpu0, wall0 = time.process_time(), time.perf_counter()
    nll = evaluate_nll(flow, test, batch_size=2000)
    eval_cpu, eval_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    entropy = ENTROPY.get(args.data)
    ref = REFERENCE.get(args.data)
    result = {
        "model": "ffjord-flow-matching",
        "data": args.data,
        "steps": args.steps,
        "batch": args.batch,
        "hidden": args.hidden,
        "activation": args.activation,
        "lr": args.lr,
        "sigma_min": args.sigma_min,
        "ema": args.ema,
        "test_nll": nll,
        "entropy": entropy,
        "gap_to_entropy": None if entropy is None else nll - entropy,
        "best_val_fm_loss": history.best_val_loss,
        "best_step": history.best_step,
        "skipped_batches": history.skipped_batches,
        "train_cpu_seconds": train_cpu,
        "train_wall_seconds": train_wall,
        "eval_cpu_seconds": eval_cpu,
        "eval_wall_seconds": eval_wall,
        "eval_nfe": flow.transform.nfe,
        "threads": args.threads,
        "val_fm_loss": dict(zip(history.steps, history.val_loss)),
        "reference_mle_ffjord": ref,
        "nll_minus_reference": None if ref is None else nll - ref["test_nll"],
        "time_fraction_of_reference": None if ref is None else train_cpu / ref["train_seconds"],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
