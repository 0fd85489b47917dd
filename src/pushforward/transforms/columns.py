r"""Per-column measures of tables as bijections: each column's support mapped to the real line, and
compositions (parts of a constant total) mapped to log-ratio coordinates.

A flow models a density on :math:`\mathbb{R}^D`; a column that is positive, bounded, or one part of a
composition is first mapped to the real line, and the data-space density follows from the change of
variables, the log-determinants of these maps counted like any other layer's.

.. math::
    \text{lower bound } a:\ y = \log(x - a),\quad \log|y'| = -y; \qquad
    \text{interval } (a, b):\ y = \operatorname{logit}\frac{x - a}{b - a},\quad
    \log|y'| = -\log(b - a) - \log u - \log(1 - u),\ u = \frac{x - a}{b - a}.

A composition of :math:`n` parts :math:`x_1, \dots, x_n > 0` with :math:`\sum_i x_i = C` is a point of a
scaled simplex; its first :math:`n-1` parts are the coordinates (the last is :math:`C - \sum_{i<n} x_i`)
and the isometric log-ratio (Egozcue, Pawlowsky-Glahn, Mateu-Figueras & Barceló-Vidal, "Isometric
logratio transformations for compositional data analysis", Mathematical Geology, 2003) maps them to
:math:`\mathbb{R}^{n-1}`:

.. math:: y = A\,\bigl(\log x_i - \log x_n\bigr)_{i<n}, \quad A = V_{1:n-1}^\top, \qquad
    \log|\det J| = \log C - \sum_{i=1}^{n} \log x_i + \log|\det A|,

with :math:`V` the orthonormal basis of :math:`\mathbf{1}^\perp` of :func:`~pushforward.transforms.simplex.
sum_one_basis` (the additive log-ratio's Jacobian is :math:`\det = C / \prod_{i=1}^n x_i`).

Example:
    >>> t = ColumnMaps(3, kinds=["real", "lower", "interval"], low=[0.0, 0.0, 0.0], high=[0.0, 0.0, 1.0])
    >>> y, ladj = t(torch.tensor([[-1.0, 2.0, 0.25]]))
    >>> [round(v, 4) for v in y[0].tolist()]
    [-1.0, 0.6931, -1.0986]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Transform
from .simplex import sum_one_basis

__all__ = ["ColumnMaps", "LogRatio", "column_maps", "column_maps_inverse", "log_ratio", "log_ratio_inverse"]

#: Map kinds of :class:`ColumnMaps`.
MAP_KINDS = ("real", "lower", "interval")


# ---------------------------------------------------------------------------------- pure formulas
def column_maps(
    x: Tensor, lower: Tensor, interval: Tensor, low: Tensor, high: Tensor
) -> tuple[Tensor, Tensor]:
    r"""Elementwise maps to the real line (``lower``/``interval`` boolean column masks; other columns pass
    through): returns ``(y, log|det J|)`` with the formulas of the module documentation."""
    # log u and log(1 - u) from the distances to the bounds (exact near either bound, where 1 - u would round
    # to 0 and a value one ulp inside the interval would map to infinity)
    width = torch.where(interval, high - low, torch.ones_like(high))
    log_w = width.log()
    log_a = torch.where(lower | interval, (x - low).clamp_min(0).log(), torch.zeros_like(x))
    log_b = torch.where(interval, (high - x).clamp_min(0).log(), torch.zeros_like(x))
    log_u = torch.where(interval, log_a - log_w, log_a)
    log_1mu = torch.where(interval, log_b - log_w, torch.zeros_like(x))
    y = torch.where(lower, log_u, torch.where(interval, log_u - log_1mu, x))
    ladj = torch.where(lower, -log_u, torch.where(interval, -log_w - log_u - log_1mu, torch.zeros_like(x)))
    return y, ladj.sum(-1)


def column_maps_inverse(
    y: Tensor, lower: Tensor, interval: Tensor, low: Tensor, high: Tensor
) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`column_maps` and its own log-determinant."""
    width = torch.where(interval, high - low, torch.ones_like(high))
    x = torch.where(lower, low + y.exp(), torch.where(interval, low + width * torch.sigmoid(y), y))
    ladj_i = torch.where(
        lower, y, torch.where(interval, width.log() + F.logsigmoid(y) + F.logsigmoid(-y), torch.zeros_like(y))
    )
    return x, ladj_i.sum(-1)


def log_ratio(parts: Tensor, total: float, rotation: Tensor) -> tuple[Tensor, Tensor]:
    r"""Isometric log-ratio of the first :math:`n-1` parts ``(batch, n-1)`` of a composition with total
    ``total``; ``rotation`` is :math:`A` ``(n-1, n-1)``. Returns ``(y, log|det J|)``."""
    last = total - parts.sum(-1, keepdim=True)
    log_parts = parts.log()
    log_last = last.log()
    alr = log_parts - log_last
    ladj = math.log(total) - log_parts.sum(-1) - log_last.squeeze(-1) + torch.linalg.slogdet(rotation)[1]
    return alr @ rotation.T, ladj


def log_ratio_inverse(y: Tensor, total: float, rotation: Tensor) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`log_ratio` (parts ``total * softmax([alr, 0])``) and its own log-determinant."""
    alr = torch.linalg.solve(rotation, y.T).T
    log_p = F.log_softmax(torch.cat([alr, torch.zeros_like(alr[..., :1])], -1), -1)
    log_x = log_p + math.log(total)
    ladj = -(math.log(total) - log_x.sum(-1) + torch.linalg.slogdet(rotation)[1])
    return log_x[..., :-1].exp(), ladj


# ---------------------------------------------------------------------------------- transforms
def _check_domain(x: Tensor, ok: Tensor, what: str) -> None:
    if not bool(ok.all()):
        rows, cols = torch.nonzero(~ok, as_tuple=True)
        raise ValueError(
            f"{what}: {int(rows.numel())} value(s) outside the domain, first at row {int(rows[0])}, "
            f"column {int(cols[0])} (value {float(x[rows[0], cols[0]]):g})"
        )


class ColumnMaps(Transform):
    r"""Per-column bijections to the real line: ``real`` (identity), ``lower`` (:math:`y = \log(x - a)`,
    domain :math:`x > a`) or ``interval`` (:math:`y = \operatorname{logit}((x - a)/(b - a))`, domain
    :math:`a < x < b`), with the log-determinants of the module documentation. Inputs outside a column's
    domain raise ``ValueError`` (naming row and column) instead of giving NaN.

    Args:
        features: Number of columns ``D``.
        kinds: One of :data:`MAP_KINDS` per column (JSON strings).
        low, high: The bounds :math:`a, b` per column (buffers; unused entries are ignored, keep them 0).

    Example:
        >>> t = ColumnMaps(2, kinds=["lower", "interval"], low=[1.0, 0.0], high=[0.0, 100.0])
        >>> x = torch.tensor([[3.0, 50.0]])
        >>> y, ladj = t(x)
        >>> bool(torch.allclose(t.inverse(y)[0], x))
        True
    """

    def __init__(
        self,
        features: int,
        *,
        kinds: Sequence[str],
        low: Tensor | Sequence[float] | None = None,
        high: Tensor | Sequence[float] | None = None,
    ) -> None:
        super().__init__(int(features))
        kinds = [str(k) for k in kinds]
        if len(kinds) != self.features or any(k not in MAP_KINDS for k in kinds):
            raise ValueError(f"kinds must be {self.features} of {', '.join(MAP_KINDS)}, got {kinds}")
        lo = torch.zeros(self.features) if low is None else torch.as_tensor(low).reshape(-1)
        hi = torch.zeros(self.features) if high is None else torch.as_tensor(high).reshape(-1)
        lo = lo.to(torch.get_default_dtype()) if not lo.is_floating_point() else lo
        hi = hi.to(lo.dtype)
        if lo.shape != (self.features,) or hi.shape != (self.features,):
            raise ValueError(f"low and high must have {self.features} entries")
        if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):
            raise ValueError("low and high must be finite")
        iv = torch.tensor([k == "interval" for k in kinds])
        if bool((iv & ~(hi > lo)).any()):
            raise ValueError("an interval column needs low < high")
        self.kinds = kinds
        self.register_buffer("low", lo.clone())
        self.register_buffer("high", hi.clone())
        self.register_buffer("lower_mask", torch.tensor([k == "lower" for k in kinds]), persistent=False)
        self.register_buffer("interval_mask", iv, persistent=False)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        above = (x > self.low) | ~(self.lower_mask | self.interval_mask)
        below = (x < self.high) | ~self.interval_mask
        _check_domain(x, above & below, "ColumnMaps")
        return column_maps(x, self.lower_mask, self.interval_mask, self.low, self.high)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return column_maps_inverse(z, self.lower_mask, self.interval_mask, self.low, self.high)

    def extra_repr(self) -> str:
        return f"kinds={self.kinds}"


class LogRatio(Transform):
    r"""Compositions to log-ratio coordinates (module documentation): each group lists the columns of the
    first :math:`n-1` parts of a composition whose parts sum to ``total``; other columns pass through.

    Args:
        features: Number of columns ``D``.
        groups: Column indices of each composition's first :math:`n-1` parts (disjoint).
        totals: The constant sum :math:`C > 0` of each composition.

    Example:
        >>> t = LogRatio(3, groups=[[0, 1]], totals=[1.0])
        >>> x = torch.tensor([[0.2, 0.3, 7.0]])
        >>> y, ladj = t(x)
        >>> bool(torch.allclose(t.inverse(y)[0], x))
        True
    """

    def __init__(self, features: int, *, groups: Sequence[Sequence[int]], totals: Sequence[float]) -> None:
        super().__init__(int(features))
        groups = [[int(j) for j in g] for g in groups]
        totals = [float(c) for c in totals]
        flat = [j for g in groups for j in g]
        if len(groups) != len(totals) or not groups:
            raise ValueError("LogRatio needs one total per group and at least one group")
        if (
            len(set(flat)) != len(flat)
            or any(not 0 <= j < self.features for j in flat)
            or min(map(len, groups)) < 1
        ):
            raise ValueError(f"groups must be disjoint, non-empty lists of column indices < {self.features}")
        if not all(math.isfinite(c) and c > 0 for c in totals):
            raise ValueError(f"totals must be positive and finite, got {totals}")
        self.groups, self.totals = groups, totals
        for i, g in enumerate(groups):
            n = len(g) + 1
            self.register_buffer(
                f"rotation_{i}", sum_one_basis(n, torch.float64)[: n - 1].T.contiguous().float()
            )

    def _rotations(self) -> list[Tensor]:
        return [getattr(self, f"rotation_{i}") for i in range(len(self.groups))]

    def _apply_groups(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        out = x.clone()
        ladj = x.new_zeros(x.shape[0])
        for g, c, a in zip(self.groups, self.totals, self._rotations(), strict=True):
            part = x[:, g]
            if not inverse:
                ok = (part > 0) & (part.sum(-1, keepdim=True) < c)
                _check_domain(part, ok, f"LogRatio (parts of a composition of total {c:g})")
            y, l = (log_ratio_inverse if inverse else log_ratio)(part, c, a.to(x.dtype))
            out[:, g] = y
            ladj = ladj + l
        return out, ladj

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._apply_groups(x, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._apply_groups(z, inverse=True)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, totals={self.totals}"
