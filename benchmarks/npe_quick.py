"""A quick NPE check that needs no sbibm: two moons (the sbibm simulator, written out), one flow, a fixed
number of epochs; prints held-out negative log-likelihood (nats per simulation), train CPU seconds and the
time to draw and score posterior samples, as JSON. Run it with two checkouts on ``PYTHONPATH`` to compare
them on the same machine (issue 26: the Posterior as a Flow must not regress).

Two moons (Greenberg et al. 2019, as in sbibm): θ ~ U(-1, 1)², a ~ U(-π/2, π/2), r ~ N(0.1, 0.01²),
x = (r cos a + 0.25, r sin a) + (-|θ₁ + θ₂| / √2, (-θ₁ + θ₂) / √2).

Run: ``PYTHONPATH=src python benchmarks/npe_quick.py --simulations 3000 --epochs 20 --seeds 0 1``
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch


def two_moons(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    theta = torch.rand(n, 2, generator=generator) * 2 - 1
    a = (torch.rand(n, generator=generator) - 0.5) * math.pi
    r = 0.1 + 0.01 * torch.randn(n, generator=generator)
    p = torch.stack([r * torch.cos(a) + 0.25, r * torch.sin(a)], 1)
    shift = torch.stack([-(theta[:, 0] + theta[:, 1]).abs(), -theta[:, 0] + theta[:, 1]], 1) / math.sqrt(2)
    return theta, p + shift


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--simulations", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--flow", default="nsf", choices=["nsf", "maf"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pushforward.distributions import BoxUniform
    from pushforward.sbi import NPE

    prior = BoxUniform(-torch.ones(2), torch.ones(2))
    for seed in args.seeds:
        g = torch.Generator().manual_seed(seed)
        theta, x = two_moons(args.simulations, g)
        held_theta, held_x = two_moons(2000, g)
        cpu = time.process_time()
        post = NPE(prior, flow=args.flow, epochs=args.epochs, patience=args.epochs, seed=seed).fit(theta, x)
        train_cpu = time.process_time() - cpu
        with torch.no_grad():
            nll = float(-post.log_prob(held_theta, held_x).mean())
            cpu = time.process_time()
            draws = post.sample((10_000,), torch.zeros(2))
            post.log_prob(draws, torch.zeros(2))
            sample_cpu = time.process_time() - cpu
        row = {"seed": seed, "held_out_nll": round(nll, 4), "train_cpu_s": round(train_cpu, 1)}
        print(json.dumps({**row, "sample_and_score_10k_cpu_s": round(sample_cpu, 2)}), flush=True)


if __name__ == "__main__":
    main()
