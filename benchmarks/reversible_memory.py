"""Peak memory of one training step of a 32-step Glow on 28x28, with and without reversible backprop.

Two measurements per mode (``standard`` autograd vs ``reversible``, i.e. :class:`ReversibleCompose`):

* ``saved_MB``: bytes of tensors autograd saves for backward during the forward pass (exact, via
  ``torch.autograd.graph.saved_tensors_hooks``),
* ``peak_rss_growth_MB``: growth of the process's peak resident set size over one forward+backward, each
  mode in a fresh subprocess after a 1-image warm-up step (``resource.getrusage``).

Also checks that the two modes give the same gradients (max abs difference, float32).

    nice .venv/bin/python benchmarks/reversible_memory.py --batch 32 --steps 32 --hidden 64 \
        --out benchmarks/results/reversible_memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def build(reversible: bool, steps: int, hidden: int):
    from pushforward.flows.image import Glow

    torch.manual_seed(0)
    flow = Glow((1, 28, 28), levels=2, steps=steps // 2, hidden=(hidden,), reversible=reversible)
    return flow


def one_mode(mode: str, batch: int, steps: int, hidden: int) -> dict:
    from pushforward.transforms.reversible import saved_tensor_bytes

    torch.set_num_threads(1)
    flow = build(mode == "reversible", steps, hidden)
    g = torch.Generator().manual_seed(1)
    x = (torch.randint(0, 256, (batch, 1, 28, 28), generator=g).float() + 0.5) / 256
    flow.train()
    with torch.no_grad():
        flow.log_prob(x)  # ActNorm initialisation
    # warm-up step on one image: loads kernels/allocator pools, so the measured peak is the batch's own
    (-flow.log_prob(x[:1]).mean()).backward()
    flow.zero_grad(set_to_none=True)
    _, saved = saved_tensor_bytes(lambda: flow.log_prob(x).mean())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    loss = -flow.log_prob(x).mean()
    loss.backward()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    grads = torch.cat([p.grad.flatten() for p in flow.parameters() if p.grad is not None])
    return {
        "mode": mode,
        "saved_MB": saved / 2**20,
        "peak_rss_growth_MB": (peak - before) / 1024,
        "step_seconds": seconds,
        "loss": float(loss),
        "grads": grads.tolist(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=32, help="total Glow steps (split over 2 levels)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(one_mode(args.mode, args.batch, args.steps, args.hidden)))
        return
    res = {}
    for mode in ("standard", "reversible"):
        cmd = [
            sys.executable,
            __file__,
            "--mode",
            mode,
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
        ]
        cmd += ["--hidden", str(args.hidden)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res[mode] = json.loads(out.strip().splitlines()[-1])
    gs, gr = torch.tensor(res["standard"].pop("grads")), torch.tensor(res["reversible"].pop("grads"))
    summary = {
        "config": {"batch": args.batch, "steps": args.steps, "hidden": args.hidden, "image": [1, 28, 28]},
        **res,
        "grad_max_abs_diff": float((gs - gr).abs().max()),
        "grad_max_abs": float(gs.abs().max()),
        "saved_reduction": res["standard"]["saved_MB"] / max(res["reversible"]["saved_MB"], 1e-9),
        "peak_rss_reduction": res["standard"]["peak_rss_growth_MB"]
        / max(res["reversible"]["peak_rss_growth_MB"], 1e-9),
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
