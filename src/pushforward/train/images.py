"""Training image models: a time- or step-budgeted loop for dequantized flows, minimising bits/dim."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from ..data.images import check_levels
from ..flows.dequantization import DequantizedFlow
from .step import skip_nonfinite_step

__all__ = ["fit_images"]


def fit_images(
    model: DequantizedFlow,
    x: Tensor,
    context: Tensor | None = None,
    *,
    max_seconds: float | None = None,
    steps: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    warmup: int = 50,
    clip_grad: float = 50.0,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> dict:
    """Train ``model`` (flow and dequantizer jointly) on integer pixels ``x`` by minimising bits/dim.

    Stops after ``steps`` steps or ``max_seconds`` of wall time, whichever comes first (one required).
    Adam with a linear warm-up; batches with a non-finite loss or gradient are skipped. Returns a dict with
    ``steps``, ``seconds``, ``skipped`` and the ``losses`` (train bpd per step).
    """
    if steps is None and max_seconds is None:
        raise ValueError("give steps or max_seconds")
    check_levels(x, model.levels)
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    start = time.perf_counter()
    losses: list[float] = []
    skipped, step = 0, 0
    while True:
        if steps is not None and step >= steps:
            break
        if max_seconds is not None and time.perf_counter() - start >= max_seconds:
            break
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        c = context[idx] if context is not None else None
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(warmup, 1))
        loss = model.bits_per_dim(x[idx], c).mean()
        step += 1
        if not skip_nonfinite_step(loss, params, opt, clip_grad):
            skipped += 1
            continue
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(step, losses[-1])
    model.eval()
    return {"steps": step, "seconds": time.perf_counter() - start, "skipped": skipped, "losses": losses}
