"""Acceptance run: fit ResidualFlow / FFJORD on a 2-D toy density and compare the test NLL with its entropy.

Usage (one model and dataset per call; CPU, single thread by default):

    nice .venv/bin/python benchmarks/toy_residual_ffjord.py --model residual --data 8gaussians --steps 3000
    nice .venv/bin/python benchmarks/toy_residual_ffjord.py --model ffjord --data checkerboard --steps 2000

Prints (and with ``--out`` writes as JSON) the test NLL in nats, the entropy of the density
(``pushforward.data.ENTROPY``), their gap, the training time and seconds per step. The test NLL is evaluated
with exact log-determinants: ``eval_ladj_mode="exact"`` for the residual flow, exact trace and tight ODE
tolerances for FFJORD.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pushforward import fit
from pushforward.data import ENTROPY, toy
from pushforward.flows import FFJORD, ResidualFlow
from pushforward.train.checkpoint import load_checkpoint
from pushforward.train.fit import evaluate_nll
from pushforward.transforms import ContinuousFlow


def build(args: argparse.Namespace):
    hidden = tuple(args.hidden)
    if args.model == "residual":
        return ResidualFlow(
            2,
            layers=args.layers,
            hidden=hidden,
            ladj_mode=args.ladj_mode,
            eval_ladj_mode="exact",
            coeff=args.coeff,
        )
    return FFJORD(
        2,
        layers=args.layers,
        hidden=hidden,
        trace=args.trace,
        rtol=args.tol,
        atol=args.tol,
        activation="softplus",
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["residual", "ffjord"], required=True)
    p.add_argument("--data", default="8gaussians")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--hidden", type=int, nargs="+", default=None)
    p.add_argument("--ladj-mode", default="roulette", help="residual: training log-det estimator")
    p.add_argument("--trace", default="exact", help="ffjord: training trace estimator")
    p.add_argument("--tol", type=float, default=1e-5, help="ffjord: training rtol = atol")
    p.add_argument("--n-train", type=int, default=50_000)
    p.add_argument("--n-test", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--coeff", type=float, default=0.98, help="residual: spectral-norm bound per layer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=0, help="print the mean train NLL every N steps")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (resumed from when it exists)")
    p.add_argument("--init", default=None, help="warm start: the weights of another run's checkpoint file")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.layers is None:
        args.layers = 10 if args.model == "residual" else 1
    if args.hidden is None:
        args.hidden = [128, 128, 128] if args.model == "residual" else [64, 64, 64]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train = toy(args.data, args.n_train, seed=args.seed)
    test = toy(args.data, args.n_test, seed=args.seed + 10_000)
    flow = build(args)
    if args.init:
        flow.load_state_dict(load_checkpoint(args.init)["model"])
    start = time.perf_counter()
    cpu_start = time.process_time()
    window: list[float] = []

    def log(step: int, loss: float) -> None:
        window.append(loss)
        if args.log_every and len(window) == args.log_every:
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            mean = sum(window) / len(window)
            print(f"step {step + 1}: train NLL {mean:.4f} ({elapsed:.0f} s, {cpu:.0f} CPU s)", flush=True)
            window.clear()

    history = fit(
        flow,
        train,
        steps=args.steps,
        batch_size=args.batch,
        lr=args.lr,
        progress=False,
        seed=args.seed,
        callback=log,
        checkpoint=args.checkpoint,
        checkpoint_every=500 if args.checkpoint else None,
        resume=args.checkpoint is not None,
    )
    train_seconds = time.perf_counter() - start
    train_cpu_seconds = time.process_time() - cpu_start
    for m in flow.modules():  # exact, tight evaluation
        if isinstance(m, ContinuousFlow):
            m.trace, m.rtol, m.atol = "exact", 1e-7, 1e-7
    start = time.perf_counter()
    nll = evaluate_nll(flow, test, batch_size=2000)
    eval_seconds = time.perf_counter() - start
    entropy = ENTROPY.get(args.data)
    result = {
        "model": args.model,
        "data": args.data,
        "steps": args.steps,
        "batch": args.batch,
        "layers": args.layers,
        "hidden": args.hidden,
        "train_estimator": args.ladj_mode if args.model == "residual" else args.trace,
        "test_nll": nll,
        "entropy": entropy,
        "gap": None if entropy is None else nll - entropy,
        "final_train_nll": history.train_loss[-1] if history.train_loss else None,
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "seconds_per_step": train_seconds / args.steps,
        "eval_seconds": eval_seconds,
        "threads": args.threads,
        "lr": args.lr,
        "coeff": args.coeff if args.model == "residual" else None,
        "init": args.init,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
