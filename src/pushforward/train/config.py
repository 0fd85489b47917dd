"""The one set of training settings: every training entry point (Python and the command line) takes these.

A new training option is added here, once: the training engine reads it, and the command line generates its
``--option`` flags from these fields (their ``metadata["help"]``).

Example:
    >>> cfg = TrainConfig(steps=100, lr=1e-3)
    >>> cfg.validate().steps
    100
    >>> TrainConfig(clip_grad=-1.0).validate()
    Traceback (most recent call last):
    ...
    ValueError: clip_grad must be a positive number or None, got -1.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

__all__ = ["TrainConfig"]

SCHEDULES = ("cosine", "constant")


def _opt(default: object, help: str) -> object:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Training settings shared by every loss (maximum likelihood, flow matching, VI, posterior estimation,
    bits/dim). :meth:`validate` refuses settings that cannot work, before any step is taken.

    The defaults (Adam at a peak rate of ``2e-3``, cosine annealing to 0, clipping at 5, batches of 256) beat
    a plain Adam loop at ``1e-3`` with a constant rate at equal step counts on a conditional and two
    unconditional toys (``benchmarks/engine_defaults.py``): annealing halves the mean rate, so the peak is
    doubled. Entry points with their own tuned settings (NPE/FMPE, ``fit_vi``, ``fit_images``,
    ``fit_flow_matching``, the estimator) pass them explicitly."""

    steps: int | None = _opt(None, "optimisation steps (give steps or epochs; default 1000 steps)")
    epochs: int | None = _opt(None, "passes over the training data")
    batch_size: int = _opt(256, "rows per step")
    lr: float = _opt(2e-3, "peak learning rate of Adam")
    weight_decay: float = _opt(0.0, "Adam weight decay")
    clip_grad: float | None = _opt(5.0, "largest gradient norm (None: no clipping)")
    schedule: str = _opt("cosine", "learning-rate schedule: 'cosine' (anneal to 0) or 'constant'")
    warmup: int = _opt(0, "steps of linear learning-rate warm-up")
    patience: int | None = _opt(None, "stop after this many evaluations without validation improvement")
    eval_every: int | None = _opt(None, "steps between evaluations (default: one epoch, at most 50 in all)")
    ema: float | None = _opt(None, "decay of an exponential moving average of the weights (e.g. 0.999)")
    seed: int | None = _opt(None, "seed of the data order and of the loss's random draws")
    max_seconds: float | None = _opt(None, "stop after this much wall time")
    max_skipped_fraction: float = _opt(0.5, "fraction of non-finite steps after which the run has diverged")
    compile: bool | str = _opt(
        "auto",
        "torch.compile the loss: 'auto' (only where a measured break-even says the run is long enough), "
        "true or false",
    )

    def validate(self) -> TrainConfig:
        """Check every setting's type and range; returns ``self``. Raises ``TypeError``/``ValueError``."""
        for name in ("steps", "epochs", "batch_size", "warmup", "patience", "eval_every", "seed"):
            value = getattr(self, name)
            optional = name not in ("batch_size", "warmup")
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {value!r}")
            low = 0 if name in ("warmup", "seed") else 1
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give steps or epochs, not both")
        for name, positive, optional in (
            ("lr", True, False),
            ("weight_decay", False, False),
            ("clip_grad", True, True),
            ("max_seconds", True, True),
        ):
            value = getattr(self, name)
            if value is None and optional:
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (value <= 0 if positive else value < 0):
                kind = "a positive number" if positive else "a number >= 0"
                raise ValueError(f"{name} must be {kind}{' or None' if optional else ''}, got {value!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.ema is not None and not (
            isinstance(self.ema, float) and not isinstance(self.ema, bool) and 0.0 < self.ema < 1.0
        ):
            raise ValueError(f"ema must be a decay in (0, 1) or None, got {self.ema!r}")
        fraction = self.max_skipped_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
            raise ValueError(f"max_skipped_fraction must be in [0, 1], got {fraction!r}")
        if not (isinstance(self.compile, bool) or (isinstance(self.compile, str) and self.compile == "auto")):
            raise ValueError(f"compile must be 'auto', True or False, got {self.compile!r}")
        return self

    def replace(self, **changes: object) -> TrainConfig:
        """A copy with ``changes`` applied (unknown names are a ``TypeError``)."""
        return dataclasses.replace(self, **changes)
