"""Neural posterior estimation on the two-moons simulator, start to finish (issue 16).

The simulator (Greenberg, Nonnenmacher & Macke, ICML 2019): θ ~ U(-1, 1)², a ~ U(-π/2, π/2),
r ~ N(0.1, 0.01²), and

    x = (r cos a + 0.25 - |θ₁ + θ₂| / √2,  r sin a + (θ₂ - θ₁) / √2).

Its posterior for an observation near the origin is crescent-shaped and bimodal. The workflow:

1. simulate ``(θ, x)`` pairs from the prior;
2. ``pushforward.sbi.NPE`` trains a conditional neural spline flow and an affine MAF, keeps the one with
   the lower validation loss (bounded prior handled by a bijection, z-scoring, validation early stopping)
   and returns a ``Posterior``;
3. sample the posterior at an observation, find its MAP, and plot;
4. check calibration on fresh simulations: SBC ranks and expected coverage;
5. save the posterior in the one model file format (``pushforward sample examples/figures/npe_two_moons.safetensors
   -n 100 --context OBS.csv`` then draws from it on the command line).

Run: ``nice .venv/bin/python examples/npe_two_moons.py`` (a few minutes on one core; ``--simulations 2000``
for a quick look). Writes ``examples/figures/npe_two_moons.png`` and ``npe_two_moons_calibration.png``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch.distributions import Independent, Uniform

from pushforward.sbi import NPE, expected_coverage, plot_calibration, sbc_ranks


def two_moons(theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One simulation per row of ``theta (n, 2)``."""
    n = theta.shape[0]
    a = math.pi * (torch.rand(n, generator=generator) - 0.5)
    r = 0.1 + 0.01 * torch.randn(n, generator=generator)
    p = torch.stack([r * torch.cos(a) + 0.25, r * torch.sin(a)], 1)
    shift = torch.stack([-(theta[:, 0] + theta[:, 1]).abs(), theta[:, 1] - theta[:, 0]], 1) / math.sqrt(2)
    return p + shift


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--simulations", type=int, default=10_000)
    ap.add_argument("--calibration", type=int, default=200, help="fresh simulations for SBC / coverage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="examples/figures")
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(args.seed)
    prior = Independent(Uniform(-torch.ones(2), torch.ones(2)), 1)

    theta = -1 + 2 * torch.rand(args.simulations, 2, generator=g)
    x = two_moons(theta, g)
    start = time.perf_counter()
    posterior = NPE(prior, seed=args.seed).fit(theta, x)
    h = posterior.history
    scores = ", ".join(f"{k} {v:.3f}" for k, v in posterior.flow_scores.items())
    print(
        f"NPE: kept the {posterior.flow_kind.upper()} (validation NLL {scores}); {len(h.val_loss)} epochs, "
        f"{time.perf_counter() - start:.0f} s"
    )

    x_o = torch.zeros(2)
    samples = posterior.sample((10_000,), x_o)
    theta_map = posterior.map(x_o)
    print(f"MAP at x_o = (0, 0): {theta_map.tolist()}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.hist2d(samples[:, 0].numpy(), samples[:, 1].numpy(), bins=120, range=[[-1, 1], [-1, 1]], cmap="Blues")
    ax.plot(*theta_map.tolist(), "r*", ms=12, label="MAP")
    ax.set_xlabel("θ₁")
    ax.set_ylabel("θ₂")
    ax.set_title(f"NPE posterior, two moons, x_o = (0, 0)\n{args.simulations} simulations")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "npe_two_moons.png", dpi=120)

    theta_c = -1 + 2 * torch.rand(args.calibration, 2, generator=g)
    x_c = two_moons(theta_c, g)
    sbc = sbc_ranks(posterior, theta_c, x_c, num_posterior_samples=100)
    cov = expected_coverage(posterior, theta_c, x_c, num_posterior_samples=100)
    print("SBC uniformity p-values per dimension:", [f"{p:.3g}" for p in sbc.p_values.tolist()])
    print(
        "expected coverage at 50 % / 90 %:", f"{float(cov.coverage[10]):.2f} / {float(cov.coverage[18]):.2f}"
    )
    plot_calibration(sbc, cov, path=out / "npe_two_moons_calibration.png")
    print(f"figures written to {out}/npe_two_moons.png and npe_two_moons_calibration.png")

    from pushforward.io import load, save

    save(posterior, out / "npe_two_moons.safetensors")  # flow, support map, z-scoring: no prior, no pickle
    again = load(out / "npe_two_moons.safetensors")
    same = bool((again.log_prob(samples[:100], x_o) == posterior.log_prob(samples[:100], x_o)).all())
    print(f"posterior saved to {out}/npe_two_moons.safetensors (reloaded: identical log_prob: {same})")


if __name__ == "__main__":
    main()
