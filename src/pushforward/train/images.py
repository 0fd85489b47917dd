"""Training image models: dequantized flows minimising bits/dim, a thin caller of the training engine
(:func:`pushforward.train.train` with :class:`~pushforward.train.losses.BitsPerDim`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from ..data.images import check_levels
from ..flows.dequantization import DequantizedFlow
from .config import TrainConfig
from .engine import History
from .engine import train as run_training
from .losses import BitsPerDim

__all__ = ["fit_images"]

#: The image defaults that differ from :class:`TrainConfig`'s: small batches, a 50-step linear warm-up then a
#: constant rate, clipping at norm 50 (bits/dim gradients of deep image flows are large early on).
IMAGE_DEFAULTS = {
    "lr": 1e-3,
    "batch_size": 64,
    "warmup": 50,
    "clip_grad": 50.0,
    "seed": 0,
    "schedule": "constant",
}


def fit_images(
    model: DequantizedFlow,
    x: Tensor,
    context: Tensor | None = None,
    *,
    val: Tensor | tuple | None = None,
    config: TrainConfig | None = None,
    progress: bool = False,
    callback: Callable[[int, float], None] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    **settings: object,
) -> History:
    """Train ``model`` (flow and dequantizer jointly) on integer pixels ``x`` by minimising bits/dim.

    Stops after ``steps`` steps or ``max_seconds`` of wall time, whichever comes first (give at least one).
    Settings are :class:`TrainConfig` fields; the defaults are ``IMAGE_DEFAULTS`` (Adam 1e-3, batch 64, 50
    warm-up steps then a constant rate, clipping at 50), overridden by ``config`` and then by ``settings``.

    Returns:
        A :class:`~pushforward.train.History` in bits/dim.

    Example:
        >>> import torch
        >>> from pushforward.flows import Glow
        >>> m = DequantizedFlow(Glow((1, 4, 4), levels=1, steps=1, hidden=(8,)), levels=4)
        >>> h = fit_images(m, torch.randint(0, 4, (32, 1, 4, 4)).float(), steps=3, batch_size=8)
        >>> h.units, h.steps[-1]
        ('bits/dim', 3)
    """
    if not isinstance(model, DequantizedFlow):
        raise TypeError(f"fit_images trains a DequantizedFlow, got {type(model).__name__}")
    base = config or TrainConfig(**IMAGE_DEFAULTS)  # type: ignore[arg-type]
    steps, max_seconds = settings.get("steps", base.steps), settings.get("max_seconds", base.max_seconds)
    if steps is None and max_seconds is None:
        raise ValueError("give steps or max_seconds")
    if steps is None:
        settings["steps"] = 10**9  # bounded by max_seconds
    elif "warmup" not in settings and isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
        settings["warmup"] = min(base.warmup, steps - 1)
    cfg = base.replace(**settings).validate()
    check_levels(x, model.levels)
    data = (x, context) if context is not None else x
    return run_training(
        model,
        BitsPerDim(),
        data,
        val,
        cfg,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        callback=callback,
    )
