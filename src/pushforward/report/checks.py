"""The checks behind a report: which rows score ``-inf`` and why, which columns the model's density leaves,
and the one-dimensional statistics the report draws (Gaussian kernel density, Kolmogorov–Smirnov distance).
numpy only: the command line's ``score`` uses them on the base install.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["column_bounds", "gaussian_kde", "ks_distance", "nonfinite_rows", "score_rows", "support_flags"]


def gaussian_kde(sample: np.ndarray, grid: np.ndarray, max_points: int = 4000) -> np.ndarray:
    r"""Gaussian kernel density estimate of a 1-D ``sample`` on ``grid`` with Scott's bandwidth
    :math:`h = \hat\sigma\, n^{-1/5}`:
    :math:`\hat p(t) = \frac{1}{n h} \sum_i \varphi\!\left(\frac{t - x_i}{h}\right)` (Scott,
    "Multivariate Density Estimation", 1992). At most ``max_points`` evenly spaced order statistics are used.

    Example:
        >>> grid = np.linspace(-8, 8, 2001)
        >>> p = gaussian_kde(np.random.default_rng(0).normal(size=2000), grid)
        >>> round(float(p.sum() * (grid[1] - grid[0])), 3)
        1.0
    """
    x = np.sort(np.asarray(sample, dtype=np.float64).ravel())
    if x.size > max_points:
        x = x[np.linspace(0, x.size - 1, max_points).round().astype(int)]
    sd = x.std(ddof=1) if x.size > 1 else 0.0
    h = (sd if sd > 0 else 1.0) * x.size ** (-1 / 5)
    out = np.zeros(grid.shape)
    for start in range(0, x.size, 512):  # bounded memory: grid x 512 at a time
        z = (grid[:, None] - x[None, start : start + 512]) / h
        out += np.exp(-0.5 * z * z).sum(1)
    return out / (x.size * h * math.sqrt(2 * math.pi))


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    r"""Two-sample Kolmogorov–Smirnov distance :math:`\sup_t |F_a(t) - F_b(t)|` of the empirical CDFs
    (Smirnov, "Table for estimating the goodness of fit of empirical distributions", 1948).

    Example:
        >>> ks_distance(np.array([0.0, 1.0]), np.array([2.0, 3.0]))
        1.0
    """
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    t = np.concatenate([a, b])
    fa = np.searchsorted(a, t, side="right") / a.size
    fb = np.searchsorted(b, t, side="right") / b.size
    return float(np.abs(fa - fb).max())


def column_bounds(x: np.ndarray, support: list | None) -> list[tuple[float, float, str]]:
    """For each column, the interval its values must lie in: the declared support of the model, else the
    range every data value respects — ``[0, 1]`` (shares), ``[0, inf)`` (non-negative amounts) — else the
    real line. Returns ``(low, high, description)`` per column.

    Example:
        >>> column_bounds(np.array([[0.2, 3.0, -1.0], [0.5, 0.0, 2.0]]), None)[:2]
        [(0.0, 1.0, 'every data value in [0, 1]'), (0.0, inf, 'every data value >= 0')]
    """
    out = []
    for j in range(x.shape[1]):
        sup = support[j] if support else None
        kind = getattr(sup, "kind", "real")
        if kind == "positive":
            out.append((float(sup.low), math.inf, f"declared {sup.describe()}"))
        elif kind == "interval":
            out.append((float(sup.low), float(sup.high), f"declared {sup.describe()}"))
        elif x[:, j].min() >= 0 and x[:, j].max() <= 1:
            out.append((0.0, 1.0, "every data value in [0, 1]"))
        elif x[:, j].min() >= 0:
            out.append((0.0, math.inf, "every data value >= 0"))
        else:
            out.append((-math.inf, math.inf, "real"))
    return out


def support_flags(
    s: np.ndarray, bounds: list[tuple[float, float, str]], tolerance: float = 0.01
) -> list[str]:
    """Per column, a warning when the model's samples leave the column's bounds (any sample outside a
    declared support; more than ``tolerance`` of them outside the range of the data), else ``""``."""
    flags = []
    for j, (low, high, why) in enumerate(bounds):
        outside = float(np.mean((s[:, j] < low) | (s[:, j] > high)))
        limit = 0.0 if why.startswith("declared") else tolerance
        flags.append(f"{100 * outside:.3g}% of model samples outside ({why})" if outside > limit else "")
    return flags


def score_rows(model, x: np.ndarray, context: np.ndarray | None = None) -> tuple[np.ndarray, list]:
    """``(model.log_prob(x, context=context), other warnings)``: the warnings about rows that score ``-inf``
    (out of the support, or non-finite) are dropped, since :func:`nonfinite_rows` names those rows; every
    other warning is returned (``warnings.WarningMessage`` objects) for the caller to show."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = model.log_prob(x, context=context)
    explained = (RuntimeWarning,)
    others = [
        w
        for w in caught
        if not (issubclass(w.category, explained) or w.category.__name__ == "OutOfSupportWarning")
    ]
    return np.asarray(scores, dtype=np.float64), others


def nonfinite_rows(model, x: np.ndarray, scores: np.ndarray) -> list[dict]:
    """The rows of ``x`` whose log-likelihood is not finite, each with the columns that lie outside the
    model's support: ``{"row": i, "score": s, "columns": [{"column", "value", "support"}, ...]}`` (an empty
    column list: every value is inside the support, the row is just far from the data). The violations come
    from ``model.support_violations(x)`` where the model has that method, else from ``model.support``.

    Example:
        >>> class Model:  # anything with ``support`` and ``columns``
        ...     support, columns = None, ["a"]
        >>> nonfinite_rows(Model(), np.array([[1.0], [2.0]]), np.array([0.5, -np.inf]))
        [{'row': 1, 'score': -inf, 'columns': []}]
    """
    bad = np.flatnonzero(~np.isfinite(np.asarray(scores)))
    if bad.size == 0:
        return []
    if hasattr(model, "support_violations"):
        violations = model.support_violations(x)
    else:
        violations = _violations(x, getattr(model, "support", None), getattr(model, "columns", None))
    by_row: dict[int, list[dict]] = {}
    for v in violations:
        by_row.setdefault(int(v["row"]), []).append({k: v[k] for k in ("column", "value", "support")})
    return [{"row": int(i), "score": float(scores[i]), "columns": by_row.get(int(i), [])} for i in bad]


def _violations(x: np.ndarray, support: list | None, columns: list[str] | None) -> list[dict]:
    """``{"row", "column", "value", "support"}`` for each value outside its column's support."""
    if not support:
        return []
    from ..data.support import to_unconstrained

    names = list(columns or [f"x{j}" for j in range(x.shape[1])])
    out = []
    for j, sup in enumerate(support):
        with np.errstate(all="ignore"):
            _, ladj = to_unconstrained(x[:, [j]], [sup])
        for i in np.flatnonzero(~np.isfinite(ladj)):
            out.append(
                {"row": int(i), "column": names[j], "value": float(x[i, j]), "support": sup.describe()}
            )
    return out
