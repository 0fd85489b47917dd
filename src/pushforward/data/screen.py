r"""Screening a table before fitting a flow: degenerate columns, duplicated rows, extreme outliers, wide data.

Maximum likelihood quietly goes wrong on such data: a constant column or a table of identical rows has no
density (the likelihood grows without bound as the flow collapses onto it), a few values 20 orders of
magnitude off dominate the standardisation and the fit, and a table with more columns than rows builds a
flow too large to train. :func:`screen` finds these before any training and says what it found.

Outliers use the robust (modified) z-score of Iglewicz & Hoaglin, "How to Detect and Handle Outliers",
ASQC Quality Press, 1993:

.. math:: z_{ij} = \frac{x_{ij} - \operatorname{med}_j}{1.4826\, \operatorname{MAD}_j},
    \qquad \operatorname{MAD}_j = \operatorname{med}_i |x_{ij} - \operatorname{med}_j|,

falling back to :math:`1.2533 \cdot \operatorname{mean}_i |x_{ij} - \operatorname{med}_j|` when the MAD is 0
(both scale factors make the score a standard normal's for Gaussian data). A value is an *extreme* outlier
when :math:`|z| >` ``outlier_z`` (default :math:`10^5`: beyond what even a Cauchy sample of a few
thousand rows produces, while values off by many orders of magnitude stand out).

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(500, 3))
    >>> x[:, 2] = 1.0
    >>> x[7, 0] = 1e20
    >>> report = screen(x)
    >>> report.constant_columns, report.outlier_rows
    ([2], [7])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Screening", "estimate_cost", "robust_z", "screen", "screen_for_fit"]


def robust_z(x: np.ndarray) -> np.ndarray:
    """Column-wise robust z-scores (median / MAD, mean-absolute-deviation fallback); 0 for constant columns.

    Example:
        >>> z = robust_z(np.array([[1.0], [2.0], [3.0], [1000.0]])).ravel()
        >>> bool(abs(z[1]) < 1 and z[3] > 600)
        True
    """
    a = np.asarray(x, dtype=np.float64)
    med = np.median(a, axis=0)
    dev = np.abs(a - med)
    mad = 1.4826 * np.median(dev, axis=0)
    mean_ad = 1.2533 * dev.mean(axis=0)
    scale = np.where(mad > 0, mad, mean_ad)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = (a - med) / np.where(scale > 0, scale, 1.0)
    return np.where(scale > 0, z, 0.0)


@dataclass
class Screening:
    """What :func:`screen` found. ``problems`` lists the findings that should stop a fit by default."""

    rows: int
    columns: int
    constant_columns: list[int] = field(default_factory=list)
    duplicate_rows: int = 0
    outlier_rows: list[int] = field(default_factory=list)
    outlier_columns: list[int] = field(default_factory=list)
    max_abs_z: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def screen(
    x: np.ndarray, *, columns: list[str] | None = None, outlier_z: float = 1e5, max_rows_listed: int = 5
) -> Screening:
    """Screen the rows of ``x`` (shape ``(N, D)``, finite) for constant columns, identical rows and extreme
    outliers; returns a :class:`Screening` whose ``problems`` name columns (by ``columns`` when given) and
    rows (0-based).
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"screen needs a non-empty 2-D table, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("screen needs finite values; the table has NaN or infinite entries")
    if not outlier_z > 0:
        raise ValueError(f"outlier_z must be positive, got {outlier_z}")
    n, d = a.shape
    name = (lambda j: repr(columns[j])) if columns and len(columns) == d else (lambda j: f"#{j + 1}")
    rep = Screening(rows=n, columns=d)
    spread = a.max(axis=0) - a.min(axis=0)
    rep.constant_columns = [int(j) for j in np.flatnonzero(spread == 0)]
    unique = np.unique(a, axis=0).shape[0]
    rep.duplicate_rows = n - unique
    if n > 1 and unique == 1:
        rep.problems.append(f"all {n} rows are identical: a density cannot be fitted to a single point")
    elif rep.constant_columns:
        listed = ", ".join(name(j) for j in rep.constant_columns[:max_rows_listed])
        more = (
            ""
            if len(rep.constant_columns) <= max_rows_listed
            else f" and {len(rep.constant_columns) - max_rows_listed} more"
        )
        rep.problems.append(
            f"{len(rep.constant_columns)} constant column(s) ({listed}{more}): a density is degenerate there"
        )
    if rep.duplicate_rows and unique > 1:
        rep.notes.append(f"{rep.duplicate_rows} of {n} rows repeat an earlier row")
    z = np.abs(robust_z(a))
    rep.max_abs_z = float(z.max())
    bad = z > outlier_z
    if bad.any():
        rep.outlier_rows = [int(i) for i in np.flatnonzero(bad.any(axis=1))]
        rep.outlier_columns = [int(j) for j in np.flatnonzero(bad.any(axis=0))]
        rows = ", ".join(map(str, rep.outlier_rows[:max_rows_listed]))
        more = "" if len(rep.outlier_rows) <= max_rows_listed else ", ..."
        rep.problems.append(
            f"{len(rep.outlier_rows)} row(s) ({rows}{more}) hold extreme outliers (robust z-score up to "
            f"{rep.max_abs_z:.3g}, limit {outlier_z:g}) in column(s) "
            + ", ".join(name(j) for j in rep.outlier_columns[:max_rows_listed])
        )
    return rep


def estimate_cost(build, features: int, rows: int, batch_size: int = 256, steps: int = 1000) -> dict:
    """Parameters, training memory (bytes) and a rough time of a preset at ``features`` columns, without
    building it there: ``build(d)`` makes the flow for ``d`` features, and the parameter count measured at
    ``d = 4, 8, 16`` is extrapolated as a quadratic in ``d`` (networks are at most quadratic in the width).

    Memory counts the weights, their gradients and Adam's two moments (4 copies) plus one batch of
    activations per parameter column (an upper-bound style estimate); time assumes 6 flops per parameter
    per row per step at 1e10 flop/s.

    Example:
        >>> from pushforward.io import build_flow
        >>> est = estimate_cost(lambda d: build_flow("planar", d), features=1000, rows=500)
        >>> 15000 < est["parameters"] < 17000  # planar: 8 layers of 2 D + 1 weights
        True
    """
    ds = np.array([4.0, 8.0, 16.0])
    counts = []
    for d in ds:
        flow = build(int(d))
        counts.append(sum(p.numel() for p in flow.parameters()) + sum(b.numel() for b in flow.buffers()))
    coef = np.polyfit(ds, np.array(counts, dtype=np.float64), 2)
    params = max(float(np.polyval(coef, features)), float(counts[-1]))
    bytes_per = 4.0
    memory = params * bytes_per * 4 + bytes_per * min(batch_size, rows) * math.sqrt(params) * 8
    seconds = 6.0 * params * min(batch_size, rows) * steps / 1e10
    return {"parameters": params, "memory_bytes": memory, "seconds": seconds}


def screen_for_fit(
    x: np.ndarray,
    *,
    columns: list[str] | None = None,
    allow_degenerate: bool = False,
    outliers: str = "refuse",
    outlier_z: float = 1e5,
) -> tuple[np.ndarray | None, list[str]]:
    """The checks a fit runs before training (the command line's ``fit`` and :class:`~pushforward.FlowDensity`):
    constant columns, identical rows and no more rows than columns are refused unless ``allow_degenerate``;
    rows with extreme outliers are refused (``outliers="refuse"``), dropped (``"drop"``) or kept (``"keep"``).

    Returns ``(keep, warnings)``: the boolean mask of the rows to fit (``None``: all) and the findings that
    did not stop the fit. Raises ``ValueError`` naming every problem and the override.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(50, 2))
        >>> x[:, 1] = 3.0
        >>> screen_for_fit(x, allow_degenerate=True)[1]
        ['1 constant column(s) (#2): a density is degenerate there']
    """
    if outliers not in ("refuse", "drop", "keep"):
        raise ValueError(f"outliers must be 'refuse', 'drop' or 'keep', got {outliers!r}")
    rep = screen(x, columns=columns, outlier_z=outlier_z)
    degenerate = [p for p in rep.problems if "outlier" not in p]
    if rep.rows <= rep.columns:
        degenerate.append(
            f"{rep.rows} rows x {rep.columns} columns: the rows span at most {rep.rows - 1} dimensions, "
            "so the likelihood of a density on all columns has no maximum"
        )
    if degenerate and not allow_degenerate:
        raise ValueError("; ".join(degenerate) + " (allow_degenerate=True fits anyway)")
    found = list(degenerate)
    keep = None
    if rep.outlier_rows:
        problem = next(p for p in rep.problems if "outlier" in p)
        if outliers == "refuse":
            raise ValueError(f"{problem} (outliers='drop' or 'keep' fits anyway)")
        if outliers == "drop":
            keep = np.ones(rep.rows, dtype=bool)
            keep[rep.outlier_rows] = False
            found.append(f"dropped {len(rep.outlier_rows)} rows with extreme outliers")
        else:
            found.append(f"{problem}; kept")
    return keep, found
