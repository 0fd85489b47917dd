r"""The preprocessing of a table, fitted on its training rows: which columns the flow models, the column
maps of their supports, and the whitening rule (:func:`whitening_matrix`, :func:`gaussian_dependence`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..transforms import ColumnMaps, LogRatio, Transform

__all__ = [
    "WHITEN_THRESHOLD",
    "cell_log_prob",
    "check_whitening",
    "context_vector",
    "gaussian_dependence",
    "kept_columns",
    "support_maps",
    "whitening_matrix",
]


def kept_columns(n: int, groups: list) -> list[int]:
    """Indices of the modelled columns: all but the last part of each composition."""
    dropped = {cols[-1] for cols, _ in groups}
    return [j for j in range(n) if j not in dropped]


def support_maps(support: list, kept: list[int], groups: list) -> list[Transform]:
    """The column maps (and log-ratios of compositions) of the modelled columns, in ``float64``."""
    d = len(kept)
    doms = [support[j].domain() for j in kept]
    lo = torch.tensor([v for _, v, _ in doms], dtype=torch.float64)
    hi = torch.tensor([v for _, _, v in doms], dtype=torch.float64)
    layers: list[Transform] = [ColumnMaps(d, kinds=[k for k, _, _ in doms], low=lo, high=hi)]
    if groups:
        where = {j: i for i, j in enumerate(kept)}
        parts = [[where[j] for j in cols[:-1]] for cols, _ in groups]
        layers.append(LogRatio(d, groups=parts, totals=[t for _, t in groups]).double())
    return layers


def context_vector(v: Any, n: int, fill: float) -> Tensor:
    t = (
        torch.full((n,), fill, dtype=torch.float64)
        if v is None
        else torch.as_tensor(np.asarray(v, dtype=np.float64))
    )
    if t.shape != (n,) or not bool(torch.isfinite(t).all()):
        raise ValueError(f"expected {n} finite numbers, got shape {tuple(t.shape)}")
    return t


#: Whiten (``whiten="auto"``) above this Gaussian total correlation per column (nats). Chosen between the
#: tables of ``benchmarks/tabular_defaults.py``: wine (0.30; whitening lost 0.6 nats per row there) and
#: diabetes (0.38) and breast_cancer (1.29), where it won 0.6 to 1.3.
WHITEN_THRESHOLD = 0.35


def gaussian_dependence(u: np.ndarray) -> float:
    r"""Total correlation per column of the Gaussian fit to rows ``u`` ``(N, D)``:
    :math:`-\frac{1}{2D}\log\det C` with :math:`C` the sample correlation (shrunk as in
    :func:`whitening_matrix`); 0 for independent columns, large when columns are nearly collinear.

    Example:
        >>> u = np.random.default_rng(0).normal(size=(2000, 2))
        >>> round(gaussian_dependence(u), 2), gaussian_dependence(np.c_[u[:, 0], u[:, 0] + 0.1 * u[:, 1]]) > 1
        (0.0, True)
    """
    u = np.asarray(u, dtype=np.float64)
    n, d = u.shape
    lam = float(np.clip((d / n) ** 2, 1e-3, 0.5))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.nan_to_num(np.corrcoef(u.T).reshape(d, d))  # a constant column: no correlation
    np.fill_diagonal(r, 1.0)
    c = (1 - lam) * r + lam * np.eye(d)
    return float(-0.5 * np.linalg.slogdet(c)[1] / d)


def whitening_matrix(u: np.ndarray, shrinkage: float | None = None) -> np.ndarray:
    r"""The inverse Cholesky factor :math:`W = L^{-1}` of the shrunk correlation matrix of standardised rows.

    With :math:`\hat C` the sample correlation of the ``(N, D)`` rows ``u``, the shrunk estimate is
    :math:`C = (1 - \lambda)\hat C + \lambda I` with :math:`\lambda = \mathrm{clip}((D / N)^2, 10^{-3}, 0.5)`
    unless ``shrinkage`` is given: barely shrunk for tall tables (strong linear relations between columns
    are what whitening is for), and well conditioned for collinear or constant columns and for fewer rows
    than columns (a shrinkage target as in Ledoit and Wolf, "A well-conditioned estimator for
    large-dimensional covariance matrices", 2004). :math:`W C W^\top = I`; the rows :math:`W u` are
    decorrelated.

    Example:
        >>> import numpy as np
        >>> u = np.random.default_rng(0).normal(size=(1000, 2)) @ np.array([[1.0, 0.9], [0.0, 0.4]])
        >>> u = (u - u.mean(0)) / u.std(0)
        >>> w = whitening_matrix(u, shrinkage=0.0)
        >>> bool(np.allclose(np.cov((u @ w.T).T, bias=True), np.eye(2)))
        True
    """
    u = np.asarray(u, dtype=np.float64)
    n, d = u.shape
    lam = float(np.clip((d / n) ** 2, 1e-3, 0.5)) if shrinkage is None else float(shrinkage)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    c = np.cov(u.T, bias=True).reshape(d, d)
    s = np.sqrt(np.clip(np.diag(c), 1e-300, None))
    c = c / s[:, None] / s[None, :]
    c = (1.0 - lam) * c + lam * np.eye(d)
    try:
        low = np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        return np.eye(d)
    from scipy.linalg import solve_triangular

    return solve_triangular(low, np.eye(d), lower=True)


def check_whitening(w: Any, d: int) -> Tensor:
    """``w`` as a ``(d, d)`` lower-triangular ``float64`` tensor with a finite, positive diagonal, or
    ``ValueError``."""
    a = np.asarray(w, dtype=np.float64)
    if a.shape != (d, d):
        raise ValueError(f"the whitening matrix must be ({d}, {d}), got shape {a.shape}")
    if not np.isfinite(a).all() or not (np.diag(a) > 0).all() or np.triu(a, 1).any():
        raise ValueError("the whitening matrix must be finite and lower-triangular with a positive diagonal")
    return torch.from_numpy(a)


def cell_log_prob(
    v: np.ndarray,
    supports: list,
    log_density: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    points: int = 16,
) -> np.ndarray:
    r"""Log-likelihood of rows on their columns' measure from the log-density of the dequantised variable.

    A row whose values are all continuous scores ``log_density`` there; a row with point masses (its
    values' cells :math:`C_j`, from :meth:`~pushforward.data.support.ColumnSupport.cells`) scores the
    log-probability of the box of cells, by quasi-Monte Carlo over ``points`` scrambled Sobol points
    :math:`v_k` (fixed seed, so scores are deterministic):

    .. math:: \log P \approx \log \frac{\prod_j |C_j|}{K} \sum_{k=1}^{K} p(v_k).

    Args:
        v: Rows ``(N, D)`` inside the support (``float64``).
        supports: A :class:`~pushforward.data.support.ColumnSupport` or ``None`` (continuous) per column.
        log_density: ``(points (M, D), row index (M,)) -> (M,)`` log-density of the dequantised variable
            (the row index lets a conditional model pick each point's context).
        points: :math:`K`.

    Example:
        >>> from pushforward.data.support import ColumnSupport
        >>> flat = lambda p, i: np.zeros(len(p))  # density 1 on the whole plane
        >>> sup = [ColumnSupport("count", low=0.0), None]
        >>> bool(np.allclose(cell_log_prob(np.array([[3.0, 0.5]]), sup, flat), 0.0))  # a cell of width 1
        True
    """
    n, d = v.shape
    lo, hi = np.full_like(v, np.nan), np.full_like(v, np.nan)
    for i, s in enumerate(supports):
        if s is not None and s.has_atoms:
            lo[:, i], hi[:, i] = s.cells(v[:, i])
    cell = np.isfinite(lo)
    rows = cell.any(1)
    log_width = np.where(cell, np.log(np.where(cell, hi - lo, 1.0)), 0.0).sum(1)
    out = log_density(v, np.arange(n))
    if rows.any():
        u = torch.quasirandom.SobolEngine(d, scramble=True, seed=0).draw(points).double().numpy()
        u = np.clip(u, 1e-6, 1 - 1e-6)
        idx = np.flatnonzero(rows)
        pts = np.where(cell[idx][None], lo[idx][None] + u[:, None, :] * (hi - lo)[idx][None], v[idx][None])
        lp = log_density(pts.reshape(points * idx.size, d), np.tile(idx, points)).reshape(points, idx.size)
        out[idx] = torch.logsumexp(torch.from_numpy(lp), 0).numpy() - math.log(points)
    return out + log_width
