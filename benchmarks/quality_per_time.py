"""Quality per time (issue 9): test NLL after a fixed wall-clock training budget, ours vs zuko vs nflows.

Every model trains with Adam (lr 1e-3) on minibatches until ``--budget`` seconds have passed (evaluation
excluded), then reports the mean test negative log-likelihood (nats; lower is better) and the number of
steps it managed. Same architectures as ``benchmarks/speed.py`` (MAF: affine MADE layers, NSF: autoregressive
RQ-spline layers, reversed order between layers), sized per dataset below.

Datasets: ``8gaussians`` and ``checkerboard`` (2-D toys, 50k train / 10k test samples) and the MNIST test
images (``../shared/data/mnist``, 9k train / 1k test, dequantized, logit space as in
``benchmarks/mnist_nll.py``; NLL in nats per image in logit space).

Usage::

    .venv/bin/python benchmarks/quality_per_time.py                       # 60 s per model, all datasets
    .venv/bin/python benchmarks/quality_per_time.py --budget 15 --datasets 8gaussians checkerboard
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from pushforward.checks import set_validation
from pushforward.data import toy
from pushforward.flows import MAF, NSF

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def builders(D: int, T: int, hidden: int, bins: int) -> dict[str, Callable[[], tuple[nn.Module, Callable]]]:
    H = (hidden, hidden)

    def ours_maf():
        f = MAF(D, layers=T, hidden=H, mixing="reverse")
        return f, f.log_prob

    def ours_nsf():
        f = NSF(D, layers=T, hidden=H, bins=bins, mixing="reverse", bound=5.0)
        return f, f.log_prob

    def zuko_maf():
        import zuko

        f = zuko.flows.MAF(D, transforms=T, hidden_features=H)
        return f, lambda x: f().log_prob(x)

    def zuko_nsf():
        import zuko

        f = zuko.flows.NSF(D, transforms=T, hidden_features=H, bins=bins)
        return f, lambda x: f().log_prob(x)

    def _nflows(make):
        from nflows.distributions import StandardNormal
        from nflows.flows import Flow
        from nflows.transforms import CompositeTransform, ReversePermutation

        ts: list = []
        for i in range(T):
            if i:
                ts.append(ReversePermutation(D))
            ts.append(make())
        f = Flow(CompositeTransform(ts), StandardNormal([D]))
        return f, f.log_prob

    def nflows_maf():
        from nflows.transforms import MaskedAffineAutoregressiveTransform

        return _nflows(
            lambda: MaskedAffineAutoregressiveTransform(D, hidden, num_blocks=1, use_residual_blocks=False)
        )

    def nflows_nsf():
        from nflows.transforms.autoregressive import MaskedPiecewiseRationalQuadraticAutoregressiveTransform

        return _nflows(
            lambda: MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                D,
                hidden,
                num_bins=bins,
                tails="linear",
                tail_bound=5.0,
                num_blocks=1,
                use_residual_blocks=False,
            )
        )

    return {
        "ours MAF": ours_maf,
        "zuko MAF": zuko_maf,
        "nflows MAF": nflows_maf,
        "ours NSF": ours_nsf,
        "zuko NSF": zuko_nsf,
        "nflows NSF": nflows_nsf,
    }


def load(name: str, args: argparse.Namespace) -> tuple[Tensor, Tensor]:
    if name == "mnist":
        from mnist_nll import load_pixels, to_logit

        g = torch.Generator().manual_seed(0)
        train_px, test_px = load_pixels(args.mnist)
        return to_logit(train_px, g)[0].float(), to_logit(test_px, g)[0].float()
    return toy(name, 50_000, seed=0).float(), toy(name, 10_000, seed=2).float()


def run(model: nn.Module, log_prob: Callable, train: Tensor, test: Tensor, budget: float, batch: int):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget:
        idx = torch.randint(0, train.shape[0], (batch,), generator=g)
        opt.zero_grad(set_to_none=True)
        loss = -log_prob(train[idx]).mean()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        steps += 1
    with torch.no_grad():
        nll = -torch.cat([log_prob(c) for c in test.split(1000)]).mean().item()
    return nll, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["8gaussians", "checkerboard", "mnist"])
    ap.add_argument("--models", nargs="+", default=None, help="e.g. 'ours MAF' 'zuko NSF'")
    ap.add_argument("--budget", type=float, default=60.0, help="training seconds per model")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--mnist", default="../shared/data/mnist")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    set_validation(False)
    load_avg = os.getloadavg()
    print(
        f"budget {args.budget:.0f} s per model, {torch.get_num_threads()} threads, load average "
        f"{load_avg[0]:.1f} {load_avg[1]:.1f} {load_avg[2]:.1f}"
    )
    print(f"{'dataset':<14}{'model':<12}{'test NLL':>10}{'steps':>8}  architecture")
    for name in args.datasets:
        train, test = load(name, args)
        D = train.shape[1]
        # toys: 5 x (128, 128), 8 bins, batch 512; MNIST: 5 x (512, 512) (NSF: 5 x (256, 256)), batch 100
        for label, make in builders(D, 5, 128 if D == 2 else 512, 8).items():
            if args.models and label not in args.models:
                continue
            if D > 2 and "NSF" in label:
                make = builders(D, 5, 256, 8)[label]
            torch.manual_seed(0)
            model, log_prob = make()
            nll, steps = run(model, log_prob, train, test, args.budget, 512 if D == 2 else 100)
            arch = "5 x (128,128)" if D == 2 else ("5 x (256,256)" if "NSF" in label else "5 x (512,512)")
            print(f"{name:<14}{label:<12}{nll:>10.3f}{steps:>8}  {arch}", flush=True)


if __name__ == "__main__":
    main()
