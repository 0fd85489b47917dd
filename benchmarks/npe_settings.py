"""Held-out log-likelihood of ``pushforward.sbi.NPE`` on an sbibm task under given training settings (issue 16).

Trains NPE on the benchmark's 10,000 simulations (seed 0, as ``benchmarks/sbi.py``) and reports the mean
negative log-likelihood of 20,000 fresh simulations (seed 12345), in the parameters' own units: the expected
KL divergence to the true posterior plus a constant, so differences between settings are differences in
posterior quality, with far less noise than C2ST on a few observations. This is how the NPE defaults were
chosen (``benchmarks/results/issue16/README.md``).

Run, e.g.::

    python benchmarks/npe_settings.py two_moons '{"lr": 1e-3, "schedule": "cosine", "max_epochs": 200}' --seed 0
    python benchmarks/npe_settings.py gaussian_linear '{"flow": "maf", "hidden": [50, 50]}'

Keys are ``NPE`` arguments; ``"flow": "maf"`` or ``"nsf"`` builds that flow (with ``hidden``, ``bins``,
``variant``, ``mixing`` passed to it) instead of the default.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

FLOW_KEYS = ("hidden", "bins", "variant", "mixing")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task")
    ap.add_argument("settings", nargs="?", default="{}", help="NPE keyword arguments as JSON")
    ap.add_argument("--seed", type=int, default=0, help="NPE seed (split, initialisation, shuffling)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import sbibm

    from pushforward.flows import MAF, NSF
    from pushforward.sbi import NPE

    task = sbibm.get_task(args.task)

    def simulate(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(seed)
        theta = task.get_prior()(num_samples=n)
        x = task.get_simulator()(theta)
        keep = torch.isfinite(x).all(1)
        return theta[keep], x[keep]

    theta, x = simulate(10_000, 0)
    test_theta, test_x = simulate(20_000, 12_345)
    settings = json.loads(args.settings)
    kwargs = dict(settings)
    kind = kwargs.pop("flow", None)
    flow_kwargs = {k: kwargs.pop(k) for k in FLOW_KEYS if k in kwargs and kind is not None}
    if "hidden" in flow_kwargs:
        flow_kwargs["hidden"] = tuple(flow_kwargs["hidden"])
    if kind is not None:
        torch.manual_seed(args.seed)
        kwargs["flow"] = {"maf": MAF, "nsf": NSF}[kind](theta.shape[1], context=x.shape[1], **flow_kwargs)
    if "max_epochs" in kwargs:  # the settings files of issue 16 predate TrainConfig's names
        kwargs["epochs"] = kwargs.pop("max_epochs")
    if "schedule" in kwargs and kwargs["schedule"] is None:
        kwargs["schedule"] = "constant"
    start = time.process_time()
    post = NPE(task.get_prior_dist(), seed=args.seed, **kwargs).fit(theta, x)
    cpu = time.process_time() - start
    with torch.no_grad():
        lp = torch.cat(
            [
                post.log_prob(test_theta[i : i + 2000], test_x[i : i + 2000])
                for i in range(0, len(test_theta), 2000)
            ]
        )
    h = post.history
    print(
        json.dumps(
            {
                "task": args.task,
                "seed": args.seed,
                "settings": settings,
                "epochs": len(h.val_loss),
                "best_epoch": h.best_step // max(1, h.steps[0]) if h.steps else None,
                "best_val_loss": h.best_val_loss,
                "heldout_nll": -float(lp.mean()),
                "flow_kind": getattr(post, "flow_kind", None),
                "flow_scores": getattr(post, "flow_scores", None),
                "train_cpu_seconds": cpu,
            }
        )
    )


if __name__ == "__main__":
    main()
