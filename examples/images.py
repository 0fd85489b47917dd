"""Class-conditional Glow on scikit-learn's 8x8 digits, with variational dequantization, and its figures.

Trains for a CPU-time budget, reports held-out bits/dim (17 pixel levels), and saves PNGs:

* ``class_conditional_samples.png`` — one row per digit class, samples at temperature 0.7;
* ``interpolation_strip.png`` — the RealNVP interpolation formula (Dinh et al., 2017) between two held-out
digits of the same class
  (``z = cos φ' z1 + sin φ' z2``), and ``interpolation_grid.png`` over (φ, φ') for four digits;
* ``conceptual_compression.png`` — each row: a held-out digit, then samples that keep its coarse-scale
  latent and resample the fine-scale one (Dinh et al., 2017, Sec. 5).

    nice .venv/bin/python examples/images.py --budget 120 --out examples/output/images
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pushforward.analysis.images import save_image_grid
from pushforward.data.images import load_digits_images, one_hot
from pushforward.flows.dequantization import DequantizedFlow, VariationalDequantizer
from pushforward.flows.image import Glow, conceptual_compression, interpolate, sample
from pushforward.train.images import fit_images

LEVELS = 17


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=120.0, help="wall-clock seconds of training")
    ap.add_argument("--out", default="examples/output/images")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    x, y = load_digits_images()
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    x_tr, y_tr, x_te, y_te = x[:1500], y[:1500], x[1500:], y[1500:]
    c_tr, c_te = one_hot(y_tr, 10), one_hot(y_te, 10)

    torch.manual_seed(0)
    flow = Glow((1, 8, 8), context=10, levels=2, steps=4, hidden=(64,))
    model = DequantizedFlow(flow, LEVELS, VariationalDequantizer((1, 8, 8), LEVELS, layers=4, hidden=32))
    with torch.no_grad():
        model.train()
        model.bits_per_dim(x_tr[:256], c_tr[:256])  # ActNorm initialisation on a large batch
    t0 = time.perf_counter()
    hist = fit_images(model, x_tr, c_tr, max_seconds=args.budget, batch_size=64, lr=2e-3)
    print(f"trained {hist.steps[-1]} steps in {time.perf_counter() - t0:.0f}s")
    print(f"held-out bits/dim (variational bound, 4 draws): {model.evaluate(x_te, c_te, samples=4):.3f}")

    flow.eval()
    torch.manual_seed(1)
    rows = [sample(flow, 8, temperature=0.7, context=torch.eye(10)[k]) for k in range(10)]
    grid = torch.stack(rows).clamp(0, 1)
    save_image_grid(grid, out / "class_conditional_samples.png")

    to_unit = lambda t: (t + 0.5) / LEVELS  # noqa: E731 - pixel centres in [0, 1]
    k = int(y_te[0])
    same = torch.nonzero(y_te == k).flatten()[:2]
    strip = interpolate(flow, to_unit(x_te[same]), steps=10, context=torch.eye(10)[k])
    save_image_grid(strip.clamp(0, 1), out / "interpolation_strip.png", 10)
    four = torch.nonzero(y_te == k).flatten()[:4]
    if len(four) == 4:
        grid4 = interpolate(flow, to_unit(x_te[four]), steps=6, context=torch.eye(10)[k])
        save_image_grid(grid4.clamp(0, 1), out / "interpolation_grid.png")

    comp_rows = []
    for i in range(5):
        xi, ci = to_unit(x_te[i : i + 1]), c_te[i]
        kept = conceptual_compression(flow, xi, keep=1, n=7, temperature=0.7, context=ci)
        comp_rows.append(torch.cat([xi, kept.clamp(0, 1)]))
    save_image_grid(torch.stack(comp_rows), out / "conceptual_compression.png")
    print(f"figures in {out}")


if __name__ == "__main__":
    main()
