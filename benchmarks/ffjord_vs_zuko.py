"""Time per training step of pushforward's continuous flow versus zuko's CNF, same network, same tolerances.

Both flows use zuko's default CNF network — an MLP on ``[cos(πkt), sin(πkt)]_{k=1..3} ⊕ z`` with ELU and
hidden layers ``--hidden`` — with *identical weights* (copied from zuko's), the exact trace, and the same
``atol``/``rtol``, so both integrate the same ODE; only the solver and the implementation differ
(pushforward: torchdiffeq dopri5, backprop through the solver or adjoint; zuko: its own adaptive RK45
with an adaptive-checkpoint adjoint). A training step is ``-log_prob(x).mean()``, backward, Adam step; its
cost is measured in process CPU time with one thread, so other jobs on shared cores do not distort it.

    nice .venv/bin/python benchmarks/ffjord_vs_zuko.py --steps 20 --batch 256

Needs the ``bench`` extra (``zuko``).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import Tensor, nn

from pushforward.data import toy
from pushforward.flows import Flow
from pushforward.transforms import ContinuousFlow


class ZukoLikeField(nn.Module):
    """zuko's CNF field: ``mlp(cat(cos(freqs t), sin(freqs t), z))`` (weights shared with a zuko MLP)."""

    def __init__(self, mlp: nn.Module, freqs: Tensor) -> None:
        super().__init__()
        self.mlp = mlp
        self.register_buffer("freqs", freqs.clone())

    def forward(self, t: Tensor, z: Tensor, context: Tensor | None = None) -> Tensor:
        tt = (self.freqs * t).expand(z.shape[0], -1)
        return self.mlp(torch.cat([tt.cos(), tt.sin(), z], dim=-1))


def time_steps(step, steps: int, warmup: int) -> float:
    """Seconds of *process CPU time* per step (robust to other jobs sharing the cores; one thread)."""
    for _ in range(warmup):
        step()
    start = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - start) / steps


def main() -> None:
    import copy

    import zuko

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    p.add_argument("--atol", type=float, default=1e-6)
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default="8gaussians")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = toy(args.data, args.batch, seed=0)

    zflow = zuko.flows.CNF(2, hidden_features=tuple(args.hidden), atol=args.atol, rtol=args.rtol, exact=True)
    ztrans = zflow.transform
    field = ZukoLikeField(copy.deepcopy(ztrans.ode), ztrans.freqs)
    results = {}
    with torch.no_grad():  # same weights ⇒ same ODE ⇒ same density
        lp_z = zflow().log_prob(x)
        for adjoint in (False, True):
            cnf = ContinuousFlow(2, net=copy.deepcopy(field), rtol=args.rtol, atol=args.atol, adjoint=adjoint)
            lp_p = Flow(cnf).log_prob(x)
            results[f"max_abs_logprob_diff_adjoint={adjoint}"] = float((lp_p - lp_z).abs().max())

    zopt = torch.optim.Adam(zflow.parameters(), lr=1e-4)

    def zuko_step(flow=zflow, opt=zopt):
        loss = -flow().log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    results["zuko_s_per_step"] = time_steps(zuko_step, args.steps, args.warmup)
    for adjoint in (False, True):
        flow = Flow(
            ContinuousFlow(2, net=copy.deepcopy(field), rtol=args.rtol, atol=args.atol, adjoint=adjoint)
        )
        opt = torch.optim.Adam(flow.parameters(), lr=1e-4)
        nfe = []

        def step(flow=flow, opt=opt, nfe=nfe):
            loss = -flow.log_prob(x).mean()
            nfe.append(flow.transform.nfe)
            opt.zero_grad()
            loss.backward()
            opt.step()

        key = "pushforward_adjoint" if adjoint else "pushforward_backprop"
        results[f"{key}_s_per_step"] = time_steps(step, args.steps, args.warmup)
        results[f"{key}_forward_nfe"] = sum(nfe) / len(nfe)
        results[f"ratio_{key}_over_zuko"] = results[f"{key}_s_per_step"] / results["zuko_s_per_step"]
    results.update(
        batch=args.batch, hidden=args.hidden, atol=args.atol, rtol=args.rtol, threads=args.threads,
        steps=args.steps, torch=torch.__version__, zuko=zuko.__version__,
    )  # fmt: skip
    assert math.isfinite(results["zuko_s_per_step"])
    print(json.dumps(results, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
