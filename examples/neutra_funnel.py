"""NeuTra on Neal's funnel (10-D): NUTS in the latent space of a flow fitted by variational inference,
against NUTS on the raw target.

1. Fit a RealNVP flow to the funnel with :func:`pushforward.fit_vi` (reverse KL, reparameterised samples).
2. Run Pyro's NUTS on the raw funnel and on the pulled-back target (:func:`pushforward.inference.mcmc.neutra`),
   with the same number of draws, warm-up and adaptation.
3. Compare the effective sample size of the funnel's log-scale variable v = x[0] per gradient evaluation,
   and plot (v, x1) scatter plots and traces of v next to exact samples.

Usage (needs the ``mcmc`` extra; a few minutes on one CPU core):

    nice python examples/neutra_funnel.py --out examples/figures/neutra_funnel.png

Gradient evaluations are counted by wrapping each chain's potential, warm-up included; the cost of fitting
the flow is not included (reported separately in seconds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from pushforward import fit_vi
from pushforward.data import neal_funnel_sample, target_log_density
from pushforward.flows import RealNVP
from pushforward.inference.mcmc import neutra, nuts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--vi-steps", type=int, default=3000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("examples/figures/neutra_funnel.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log_p = target_log_density("funnel", dim=args.dim)

    torch.manual_seed(args.seed)
    flow = RealNVP(args.dim, layers=8, hidden=(64, 64), mask="half")
    vi = fit_vi(flow, log_p, steps=args.vi_steps, samples=256, lr=1e-3, eval_samples=20_000, seed=args.seed)
    print(
        f"VI: ELBO {vi.extras['final_elbo']:.3f}, log Z {vi.extras['log_z']:.3f} "
        f"± {vi.extras['log_z_stderr']:.3f} (true 0), "
        f"ESS {100 * vi.extras['ess_fraction']:.1f}%, {vi.seconds:.0f}s",
        flush=True,
    )

    raw = nuts(log_p, torch.zeros(args.dim), num_samples=args.num_samples, warmup=args.warmup, seed=args.seed)
    nt = neutra(flow, log_p, num_samples=args.num_samples, warmup=args.warmup, seed=args.seed)
    numbers = {
        "vi": {
            "elbo": vi.extras["final_elbo"],
            "log_z": vi.extras["log_z"],
            "ess_fraction": vi.extras["ess_fraction"],
            "seconds": vi.seconds,
        }
    }
    for name, res in (("nuts", raw), ("neutra", nt)):
        ess_v = float(res.ess()[0])
        numbers[name] = {
            "ess_v": ess_v,
            "gradient_evaluations": res.gradient_evaluations,
            "sampling_gradient_evaluations": res.sampling_gradient_evaluations,
            "ess_v_per_gradient": ess_v / res.gradient_evaluations,
            "ess_v_per_sampling_gradient": ess_v / res.sampling_gradient_evaluations,
            "mean_v": float(res.samples[:, 0].mean()),
            "std_v": float(res.samples[:, 0].std()),
            "seconds": res.seconds,
        }
        print(
            f"{name:6s}: ESS(v) {ess_v:7.1f}, gradient evaluations {res.gradient_evaluations} "
            f"({res.sampling_gradient_evaluations} after warm-up), ESS(v)/grad "
            f"{numbers[name]['ess_v_per_gradient']:.2e}, v mean {numbers[name]['mean_v']:+.2f} "
            f"sd {numbers[name]['std_v']:.2f} (true 0, 3), {res.seconds:.0f}s",
            flush=True,
        )
    ratio = numbers["neutra"]["ess_v_per_gradient"] / numbers["nuts"]["ess_v_per_gradient"]
    ratio_s = (
        numbers["neutra"]["ess_v_per_sampling_gradient"] / numbers["nuts"]["ess_v_per_sampling_gradient"]
    )
    numbers["ratio_ess_v_per_gradient"] = ratio
    numbers["ratio_ess_v_per_sampling_gradient"] = ratio_s
    print(
        f"NeuTra / NUTS, ESS(v) per gradient evaluation: {ratio:.1f}x (warm-up included), "
        f"{ratio_s:.1f}x (sampling phase only)"
    )

    exact = neal_funnel_sample(args.num_samples, args.dim, generator=torch.Generator().manual_seed(1))
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for j, (title, x) in enumerate((("exact", exact), ("NUTS (raw)", raw.samples), ("NeuTra", nt.samples))):
        axes[0, j].scatter(x[:, 1], x[:, 0], s=3, alpha=0.5)
        axes[0, j].set(title=title, xlabel="x1", ylabel="v", xlim=(-30, 30), ylim=(-10, 10))
        axes[1, j].plot(x[:, 0], lw=0.6)
        axes[1, j].set(xlabel="draw", ylabel="v", ylim=(-10, 10))
    fig.suptitle(f"Neal's funnel ({args.dim}-D): ESS(v) per gradient, NeuTra / NUTS = {ratio:.1f}x")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    args.out.with_suffix(".json").write_text(json.dumps(numbers, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
