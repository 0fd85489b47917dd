r"""Per-column support of tabular data: detection, bijections to the real line, dequantisation.

A flow models densities on :math:`\mathbb{R}^D`. A column that can only be positive, that lives in an
interval, or that takes a few discrete values, is mapped to the real line by a bijection :math:`g_j` before
the flow sees it, and the density on the data space follows from the change of variables:

.. math:: \log p_X(x) = \log p_Y(g(x)) + \sum_j \log |g_j'(x_j)|.

==============  ==========================================  ============================================
kind            bijection :math:`g_j`                        :math:`\log|g_j'(x)|`
==============  ==========================================  ============================================
``real``        :math:`x`                                    :math:`0`
``positive``    :math:`\log(x - a)` (``low`` :math:`a`)      :math:`-\log(x - a)`
``interval``    :math:`\operatorname{logit}((x-a)/(b-a))`   :math:`-\log(b-a) - \log\sigma'(g(x))`
==============  ==========================================  ============================================

so samples :math:`g^{-1}(y)` always lie in the support. A **discrete** column (``levels`` given: binary,
categorical or integer codes) is *dequantised* (Theis, van den Oord & Bethge, "A note on the evaluation of
generative models", ICLR 2016; Uria, Murray & Larochelle, "RNADE", NeurIPS 2013): during training each value
:math:`v` is replaced by :math:`v + u`, :math:`u \sim U(-h/2, h/2)` with :math:`h` the smallest gap between
levels, so the model learns the continuous density of the dequantised variable on the interval
:math:`[\min v - h/2, \max v + h/2]` (an ``interval`` bijection keeps it there). The reported density of a
discrete value is that of the dequantised variable at the level itself; :math:`p(v)\,h` approximates the
probability mass of the level (exactly so when the density is flat over the bin). Samples are rounded to the
nearest level.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.stack([rng.gamma(2.0, size=50), rng.integers(0, 2, size=50)], axis=1).astype(float)
    >>> sup = detect_support(x)
    >>> [s.kind for s in sup], sup[1].levels
    (['positive', 'interval'], [0.0, 1.0])
    >>> y, ladj = to_unconstrained(x, sup)
    >>> bool(np.allclose(from_unconstrained(y, sup), x))
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..transforms.elementwise import log_sigmoid_derivative

__all__ = [
    "ColumnSupport",
    "dequantize",
    "describe_support",
    "detect_support",
    "from_unconstrained",
    "parse_support",
    "support_from_config",
    "to_unconstrained",
]

#: Columns with at most this many distinct values are detected as discrete.
MAX_LEVELS = 20
KINDS = ("real", "positive", "interval")


@dataclass
class ColumnSupport:
    """The support of one column: ``kind`` (``real``, ``positive``, ``interval``), the bounds ``low``/``high``
    and, for a discrete column, its ``levels`` (sorted) and bin width ``step``."""

    kind: str = "real"
    low: float | None = None
    high: float | None = None
    levels: list[float] | None = None
    step: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown support kind {self.kind!r}; valid kinds: {', '.join(KINDS)}, discrete")
        if self.kind in ("positive", "interval") and self.low is None:
            self.low = 0.0
        if self.kind == "interval":
            if self.high is None:
                self.high = 1.0
            if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
                raise ValueError(f"interval support needs finite low < high, got [{self.low}, {self.high}]")
        if self.levels is not None:
            self.levels = sorted(float(v) for v in self.levels)
            if self.step is None:
                gaps = np.diff(self.levels)
                self.step = float(gaps.min()) if gaps.size else 1.0
            if not self.step > 0:
                raise ValueError(f"a discrete column needs a positive bin width, got {self.step}")

    @property
    def discrete(self) -> bool:
        """Whether the column takes only the values in ``levels``."""
        return self.levels is not None

    def as_dict(self) -> dict:
        """A JSON-serialisable dictionary (see :func:`support_from_config`)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def describe(self) -> str:
        """A short human-readable description, e.g. ``binary {0, 1}`` or ``positive (> 0)``."""
        if self.discrete:
            lv = self.levels
            shown = ", ".join(f"{v:g}" for v in lv[:6]) + (", ..." if len(lv) > 6 else "")
            name = "binary" if len(lv) == 2 else f"discrete, {len(lv)} levels"
            return f"{name} {{{shown}}} (dequantised, bin width {self.step:g})"
        if self.kind == "positive":
            return f"positive (> {self.low:g})"
        if self.kind == "interval":
            return f"interval ({self.low:g}, {self.high:g})"
        return "real"


def _levels(col: np.ndarray) -> list[float] | None:
    values = np.unique(col)
    return [float(v) for v in values] if 2 <= values.size <= MAX_LEVELS else None


def detect_support(x: np.ndarray) -> list[ColumnSupport]:
    """Guess each column's support from the data: ``discrete`` (2 to ``MAX_LEVELS`` distinct values, the
    dequantised variable bounded to its range), ``positive`` (every value ``> 0``) or ``real``."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"data must be 2-D (rows, columns), got shape {a.shape}")
    out = []
    for col in a.T:
        levels = _levels(col) if a.shape[0] > 2 * MAX_LEVELS else None
        if levels is not None:
            out.append(_discrete(levels))
        elif col.min() > 0:
            out.append(ColumnSupport("positive", low=0.0))
        else:
            out.append(ColumnSupport("real"))
    return out


def _discrete(levels: Sequence[float], step: float | None = None) -> ColumnSupport:
    s = ColumnSupport("real", levels=list(levels), step=step)
    return ColumnSupport(
        "interval", low=s.levels[0] - s.step / 2, high=s.levels[-1] + s.step / 2, levels=s.levels, step=s.step
    )


def parse_support(spec: str | dict | None, columns: Sequence[str], x: np.ndarray) -> list[ColumnSupport]:
    """Detected supports with overrides: ``spec`` maps a column (name or 0-based index) to ``real``,
    ``positive``, ``positive:LOW``, ``interval:LOW:HIGH``, ``discrete`` (levels from the data) or ``auto``.

    As a string: ``"age=positive,sex=discrete,score=interval:0:10"``; ``"none"`` makes every column real.
    """
    a = np.asarray(x, dtype=np.float64)
    names = list(columns)
    if spec is None or spec == "auto":
        return detect_support(a)
    if spec == "none":
        return [ColumnSupport("real") for _ in names]
    if isinstance(spec, str):
        items = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if "=" not in part:
                raise ValueError(f"support entry {part!r} must look like COLUMN=KIND")
            k, v = part.split("=", 1)
            items[k.strip()] = v.strip()
        spec = items
    if not isinstance(spec, dict):
        raise TypeError(f"support must be 'auto', 'none', a string or a dict, got {type(spec).__name__}")
    out = detect_support(a)
    for key, value in spec.items():
        j = _column_index(key, names)
        out[j] = _parse_kind(str(value), a[:, j], names[j])
    return out


def _column_index(key: object, names: list[str]) -> int:
    if isinstance(key, (int, np.integer)) and 0 <= key < len(names):
        return int(key)
    if str(key) in names:
        return names.index(str(key))
    if str(key).isdigit() and int(str(key)) < len(names):
        return int(str(key))
    raise ValueError(f"support names an unknown column {key!r}; columns: {', '.join(names)}")


def _parse_kind(text: str, col: np.ndarray, name: str) -> ColumnSupport:
    parts = text.split(":")
    kind = parts[0].lower()
    try:
        nums = [float(p) for p in parts[1:]]
    except ValueError:
        raise ValueError(f"column {name}: bad support {text!r} (bounds must be numbers)") from None
    if kind == "auto":
        return detect_support(col[:, None])[0]
    if kind == "real":
        return ColumnSupport("real")
    if kind == "positive":
        s = ColumnSupport("positive", low=nums[0] if nums else 0.0)
    elif kind == "interval":
        if len(nums) != 2:
            raise ValueError(f"column {name}: interval support needs interval:LOW:HIGH, got {text!r}")
        s = ColumnSupport("interval", low=nums[0], high=nums[1])
    elif kind in ("discrete", "binary", "integer", "categorical"):
        levels = np.unique(col)
        if kind == "integer" and levels.size:
            levels = np.arange(levels.min(), levels.max() + 1)
        if levels.size < 2:
            raise ValueError(f"column {name}: a discrete column needs at least 2 distinct values")
        return _discrete(levels.tolist())
    else:
        raise ValueError(
            f"column {name}: unknown support {text!r}; valid: auto, real, positive[:LOW], interval:LOW:HIGH, "
            "discrete, integer"
        )
    lo, hi = s.low, s.high if s.kind == "interval" else math.inf
    if not ((col > lo).all() and (col < hi).all()):
        raise ValueError(f"column {name}: some values lie outside the support {s.describe()}")
    return s


def support_from_config(items: Sequence[dict] | None) -> list[ColumnSupport] | None:
    """Supports from their :meth:`ColumnSupport.as_dict` forms (``None`` stays ``None``)."""
    if items is None:
        return None
    return [ColumnSupport(**dict(d)) for d in items]


def describe_support(supports: Sequence[ColumnSupport], columns: Sequence[str]) -> list[str]:
    """One line per non-real column: ``name: description``."""
    return [f"{n}: {s.describe()}" for n, s in zip(columns, supports, strict=True) if s.kind != "real"]


def dequantize(x: np.ndarray, supports: Sequence[ColumnSupport], rng: np.random.Generator) -> np.ndarray:
    """``x`` plus uniform noise of one bin width on each discrete column (other columns unchanged)."""
    a = np.array(x, dtype=np.float64, copy=True)
    for j, s in enumerate(supports):
        if s.discrete:
            a[:, j] += (rng.random(a.shape[0]) - 0.5) * s.step
    return a


def to_unconstrained(x: np.ndarray, supports: Sequence[ColumnSupport]) -> tuple[np.ndarray, np.ndarray]:
    """``(g(x), sum_j log|g_j'(x_j)|)`` per row; rows outside the support get ``-inf`` log-det (and NaN)."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    y = t.clone()
    ladj = torch.zeros(t.shape[0], dtype=torch.float64)
    for j, s in enumerate(supports):
        c = t[:, j]
        if s.kind == "positive":
            y[:, j] = torch.log(c - s.low)
            ladj -= y[:, j]
        elif s.kind == "interval":
            width = s.high - s.low
            y[:, j] = torch.logit((c - s.low) / width)
            ladj -= math.log(width) + log_sigmoid_derivative(y[:, j])
    outside = ~torch.isfinite(y).all(1) | ~torch.isfinite(ladj)
    ladj[outside] = -math.inf
    return y.numpy(), ladj.numpy()


def from_unconstrained(y: np.ndarray, supports: Sequence[ColumnSupport]) -> np.ndarray:
    """The inverse of :func:`to_unconstrained`; discrete columns are rounded to their nearest level."""
    t = torch.as_tensor(np.asarray(y, dtype=np.float64))
    x = t.clone()
    for j, s in enumerate(supports):
        if s.kind == "positive":
            x[:, j] = s.low + torch.exp(t[:, j])
        elif s.kind == "interval":
            x[:, j] = s.low + (s.high - s.low) * torch.sigmoid(t[:, j])
    out = x.numpy()
    for j, s in enumerate(supports):
        if s.discrete:
            lv = np.asarray(s.levels)
            out[:, j] = lv[np.abs(out[:, j, None] - lv[None, :]).argmin(1)]
    return out
