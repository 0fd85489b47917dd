"""NPE on sbibm tasks: pushforward vs the sbi package, C2ST against the reference posteriors (issue 16).

Needs the ``bench`` extra plus sbibm without its (outdated) pins::

    .venv/bin/pip install -c constraints.txt -e ".[bench]"
    .venv/bin/pip install --no-deps sbibm      # then its light import needs: pandas, future, autograd

For each task and simulation budget, both methods train **once** on the same simulations (amortised
posteriors), then draw 10,000 posterior samples for each observation and score them with sbibm's C2ST
(MLP classifier with two hidden layers of 10·dim, 5-fold cross-validation, z-scored on the reference
samples; 0.5 is a perfect posterior). Train time is recorded as wall-clock and CPU seconds. Results are
appended to a JSON file after every (task, method, observation), so a run cut short keeps what it finished;
``--table`` summarises result files beside the published NPE figures.

* ``pushforward``: :func:`pushforward.sbi.NPE` with its defaults (an NSF, 5 layers of (64, 64), 8 bins, and
  an affine MAF of the same size, the one with the lower validation loss kept; z-scored θ and x, bijection
  onto the prior's support, 10 % validation, Adam 1e-3 annealed over at most 200 epochs, early stopping
  after 30 epochs without improvement).
* ``fmpe``: :func:`pushforward.sbi.FMPE` with its defaults (flow-matching posterior estimation: FFJORD
  field of (64, 64, 64), exact-trace ODE, the same z-scoring, support bijection and early stopping).
* ``sbi``: ``sbi.inference.NPE(prior)`` with its defaults (MAF, 5 transforms of 50 hidden units).

Run: ``python benchmarks/sbi.py --tasks two_moons slcp gaussian_linear --simulations 10000
--observations 1 2 3 --out benchmarks/results/issue16/sbi_10k.json``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

# this file is called sbi.py: keep its folder off the path so that ``import sbi`` finds the package
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def simulate(task, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    theta = task.get_prior()(num_samples=n)
    x = task.get_simulator()(theta)
    keep = torch.isfinite(x).all(1)
    return theta[keep], x[keep]


def train_pushforward(task, theta, x, seed: int):
    from pushforward.sbi import NPE

    post = NPE(task.get_prior_dist(), seed=seed).fit(theta, x)

    def sample(n: int, x_o: torch.Tensor) -> torch.Tensor:
        return post.sample((n,), x_o.reshape(-1))

    info = {"epochs": len(post.history.val_loss), "best_val_loss": post.history.best_val_loss}
    return sample, {**info, "flow": post.flow_kind, "flow_scores": post.flow_scores}


def train_fmpe(task, theta, x, seed: int):
    from pushforward.sbi import FMPE

    post = FMPE(task.get_prior_dist(), seed=seed).fit(theta, x)

    def sample(n: int, x_o: torch.Tensor) -> torch.Tensor:
        return post.sample((n,), x_o.reshape(-1))

    return sample, {"evaluations": len(post.history.val_loss), "best_val_fm_loss": post.history.best_val_loss}


def train_sbi(task, theta, x, seed: int):
    from sbi.inference import NPE as SbiNPE

    torch.manual_seed(seed)
    inference = SbiNPE(prior=task.get_prior_dist(), show_progress_bars=False)
    inference.append_simulations(theta, x).train()
    posterior = inference.build_posterior()

    def sample(n: int, x_o: torch.Tensor) -> torch.Tensor:
        return posterior.sample((n,), x=x_o, show_progress_bars=False)

    return sample, {"epochs": int(inference.summary["epochs_trained"][-1])}


METHODS = {"pushforward": train_pushforward, "fmpe": train_fmpe, "sbi": train_sbi}

# Mean C2ST of NPE over the 10 observations in Lueckmann et al., "Benchmarking Simulation-Based Inference"
# (AISTATS 2021), from their published results table (sbi-benchmark/results, main_paper.csv).
PUBLISHED_NPE = {
    "two_moons": {1_000: 0.725, 10_000: 0.606, 100_000: 0.542},
    "slcp": {1_000: 0.975, 10_000: 0.901, 100_000: 0.831},
    "gaussian_linear": {1_000: 0.694, 10_000: 0.552, 100_000: 0.506},
}


def table(paths: list[str]) -> str:
    """A markdown table of the mean C2ST per (task, simulations, method) over the rows of result files."""
    groups: dict[tuple, dict] = {}
    for path in paths:
        for r in json.loads(Path(path).read_text())["rows"]:
            method = f"{r['method']} ({r['flow']})" if r.get("flow") else r["method"]  # NPE's chosen flow
            g = groups.setdefault((r["task"], r["simulations"], method), {"c2st": {}, "row": r})
            g["c2st"][r["observation"]] = r["c2st"]
    lines = [
        "| task | simulations | method | mean C2ST | observations | train CPU s | published NPE |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, n, method), g in sorted(groups.items()):
        c = g["c2st"]
        cpu = g["row"].get("train_cpu_seconds")
        lines.append(
            f"| {task} | {n:,} | {method} | {sum(c.values()) / len(c):.3f} | {len(c)} | "
            f"{'-' if cpu is None else f'{cpu:.0f}'} | {PUBLISHED_NPE.get(task, {}).get(n, '-')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["two_moons", "slcp", "gaussian_linear"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--simulations", type=int, default=10_000)
    ap.add_argument("--observations", nargs="+", type=int, default=list(range(1, 11)))
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/issue16/sbi.json")
    ap.add_argument("--table", nargs="+", default=None, help="print the summary table of these result files")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    torch.set_num_threads(args.threads)
    import sbibm
    from sbibm.metrics import c2st

    from pushforward.checks import set_validation

    set_validation(False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {"rows": []}
    results["settings"] = vars(args)
    for name in args.tasks:
        task = sbibm.get_task(name)
        theta, x = simulate(task, args.simulations, args.seed)
        for method in args.methods:
            start, cpu_start = time.perf_counter(), time.process_time()
            sample, info = METHODS[method](task, theta, x, args.seed)
            train_seconds = time.perf_counter() - start
            train_cpu_seconds = time.process_time() - cpu_start
            print(f"{name} {method}: trained in {train_seconds:.0f} s {info}", flush=True)
            for j in args.observations:
                x_o = task.get_observation(num_observation=j)
                reference = task.get_reference_posterior_samples(num_observation=j)[: args.samples]
                torch.manual_seed(args.seed + j)
                s0 = time.perf_counter()
                samples = sample(args.samples, x_o)
                sample_seconds = time.perf_counter() - s0
                score = float(c2st(reference, samples)[0])
                row = {
                    "task": name,
                    "method": method,
                    "simulations": args.simulations,
                    "observation": j,
                    "c2st": score,
                    "train_seconds": train_seconds,
                    "train_cpu_seconds": train_cpu_seconds,
                    "sample_seconds": sample_seconds,
                    "load": os.getloadavg(),
                    **info,
                }
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
                out.write_text(json.dumps(results, indent=1))
    summary: dict[str, dict] = {}
    for r in results["rows"]:
        key = f"{r['task']}/{r['method']}/{r['simulations']}"
        summary.setdefault(key, {"c2st": [], "train_seconds": r["train_seconds"]})["c2st"].append(r["c2st"])
    for key, s in summary.items():
        s["mean_c2st"] = sum(s["c2st"]) / len(s["c2st"])
        print(
            f"{key}: mean C2ST {s['mean_c2st']:.3f} over {len(s['c2st'])} obs, train {s['train_seconds']:.0f} s"
        )
    results["summary"] = summary
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
