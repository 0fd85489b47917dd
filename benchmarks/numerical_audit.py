"""Numerical audit of issue 30, item 5: the three silent errors, measured (float32, perturbed weights).

1. **NAF sampling**: ``NAF(2, layers=2, hidden=(16, 16), units=8)``, every weight + 0.5·randn (seeds 0-5),
   2,000 latents per seed, on the one-pass and the sequential inverse: rows whose round trip
   ``|f(f^{-1}(z)) - z|`` exceeds ``sqrt(eps)·max(1, |z|)`` and were returned without an error (silent), and
   seeds refused with ``ConvergenceError``.
2. **Clamped image samples**: ``RealNVPImage((1, 4, 4))`` + 0.2·randn, 2,000 samples: how many reported
   densities (``sample_and_log_prob``) differ from ``log_prob`` of the returned sample by more than 1 nat.
3. **Batch dependence of continuous flows**: ``FFJORD(2, hidden=(32, 32))`` + 0.3·randn in eval mode, 200
   rows: the largest change of a row's log-density between scoring it alone and inside the batch.

Run: ``PYTHONPATH=src python benchmarks/numerical_audit.py [--rows 2000] [--out FILE]`` (also runs against an
older checkout's ``src``, for the numbers before the fixes).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pushforward.flows import FFJORD, NAF, RealNVPImage
from pushforward.inversion import ConvergenceError


def round_trip_tolerance(z: torch.Tensor) -> torch.Tensor:
    """``sqrt(eps)·max(1, |z|)`` (written out so that the script also runs on versions before the check)."""
    return torch.finfo(z.dtype).eps ** 0.5 * z.abs().clamp_min(1.0)


def perturbed(flow, scale: float, seed: int):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn_like(p))
    return flow


@torch.no_grad()
def naf(rows: int) -> dict:
    out = {}
    for fast in (True, False):
        silent, refused, worst = 0, 0, 0.0
        for seed in range(6):
            flow = perturbed(NAF(2, layers=2, hidden=(16, 16), units=8), 0.5, seed)
            for m in flow.modules():
                if hasattr(m, "fast_inverse"):
                    m.fast_inverse = fast
            z = torch.randn(rows, 2)
            try:
                x, _ = flow.transform.inverse(z)
            except ConvergenceError:
                refused += 1
                continue
            err = (flow.transform(x)[0] - z).abs()
            silent += int((err > round_trip_tolerance(z)).any(1).sum())
            worst = max(worst, float(err.max()))
        out["one_pass" if fast else "sequential"] = {
            "silent_rows": silent,
            "seeds_refused": refused,
            "worst_returned_error": worst,
        }
    return out


@torch.no_grad()
def image(rows: int) -> dict:
    flow = perturbed(RealNVPImage((1, 4, 4)), 0.2, 0).eval()
    x, lp = flow.sample_and_log_prob((rows,))
    gap = (lp - flow.log_prob(x)).abs()
    return {"samples": rows, "over_1_nat": int((gap > 1).sum()), "max_gap": float(gap.max())}


@torch.no_grad()
def ffjord(rows: int) -> dict:
    flow = perturbed(FFJORD(2, hidden=(32, 32)), 0.3, 0).eval()
    x = torch.randn(rows, 2, generator=torch.Generator().manual_seed(1))
    batch = flow.log_prob(x)
    alone = torch.stack([flow.log_prob(x[i : i + 1])[0] for i in range(min(rows, 20))])
    return {"rows": rows, "max_abs_change_alone_vs_batch": float((batch[: len(alone)] - alone).abs().max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    t = time.perf_counter()
    result = {"naf": naf(a.rows), "image": image(a.rows), "ffjord": ffjord(200)}
    result["seconds"] = round(time.perf_counter() - t, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
