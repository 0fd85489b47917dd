r"""Preprocessing as bijections: fixed (fitted, not trained) maps that sit at the data end of a flow's chain.

Standardisation and whitening are part of the model, not glue code around it: a flow whose chain starts
with them reports :math:`\log p(x)` in the user's units, with their log-determinants counted, and the
fitted statistics travel in the flow's ``state_dict`` (buffers, never trained by the optimizer).

.. math:: \text{Standardize:}\ y = (x - \mu) / \sigma, \quad \log|\det J| = -\textstyle\sum_i \log \sigma_i;
    \qquad \text{Whiten:}\ y = W (x - \mu), \quad \log|\det J| = \textstyle\sum_i \log W_{ii}

with :math:`W` lower triangular with a positive diagonal (the inverse Cholesky factor of a covariance).

Example:
    >>> x = torch.randn(100, 3) * 5 + 2
    >>> s = Standardize.fit(x)
    >>> y, ladj = s(x)
    >>> bool(y.mean(0).abs().max() < 1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Transform, as_shape

__all__ = ["Standardize", "Whiten"]


def _floating(a: Tensor | Sequence[float], name: str) -> Tensor:
    t = torch.as_tensor(a)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite")
    return t


class Standardize(Transform):
    r"""Fixed elementwise standardisation :math:`y = (x - \mu)/\sigma`, :math:`\log|\det J| = -\sum_i\log\sigma_i`.

    ``loc`` and ``scale`` are buffers: fitted once (:meth:`fit`), saved with the flow, never trained.

    Args:
        shape: Event shape.
        loc, scale: Initial statistics (default 0 and 1), broadcastable to ``shape``; ``scale > 0``.

    Example:
        >>> s = Standardize(2, loc=[1.0, 2.0], scale=[2.0, 4.0])
        >>> s(torch.tensor([[3.0, 6.0]]))[0].tolist()
        [[1.0, 1.0]]
    """

    def __init__(
        self,
        shape: int | Sequence[int],
        loc: Tensor | Sequence[float] | float = 0.0,
        scale: Tensor | Sequence[float] | float = 1.0,
    ) -> None:
        super().__init__(shape)
        loc_t = _floating(loc, "loc").expand(self.event_shape).clone()
        scale_t = _floating(scale, "scale").expand(self.event_shape).clone()
        if not bool((scale_t > 0).all()):
            raise ValueError("scale must be positive")
        self.register_buffer("loc", loc_t)
        self.register_buffer("scale", scale_t)

    @classmethod
    def fit(cls, x: Tensor, *, min_scale: float = 1e-8) -> Standardize:
        """Standardisation fitted to the rows of ``x`` (``(n, *event_shape)``): mean and standard deviation
        per element, a scale below ``min_scale`` (a constant column) replaced by 1."""
        x = _floating(x, "x")
        if x.dim() < 2 or x.shape[0] < 1:
            raise ValueError(f"x must have shape (n, *event_shape) with n >= 1, got {tuple(x.shape)}")
        loc = x.mean(0)
        scale = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(loc)
        scale = torch.where(scale > min_scale, scale, torch.ones_like(scale))
        return cls(tuple(x.shape[1:]), loc, scale).to(x.dtype)

    @torch.no_grad()
    def set(self, loc: Tensor, scale: Tensor) -> None:
        """Replace the statistics in place (same shape; ``scale > 0``)."""
        loc, scale = _floating(loc, "loc"), _floating(scale, "scale")
        if not bool((scale > 0).all()):
            raise ValueError("scale must be positive")
        self.loc.copy_(loc.expand(self.event_shape))
        self.scale.copy_(scale.expand(self.event_shape))

    def _ladj(self, x: Tensor) -> Tensor:
        return -self.scale.log().sum().expand(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return (x - self.loc) / self.scale, self._ladj(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z * self.scale + self.loc, -self._ladj(z)


class Whiten(Transform):
    r"""Fixed affine whitening :math:`y = W(x - \mu)` with :math:`W` lower triangular, positive diagonal:
    :math:`\log|\det J| = \sum_i \log W_{ii}`.

    :meth:`fit` sets :math:`\mu` to the mean and :math:`W = L^{-1}` where :math:`LL^\top` is the covariance
    shrunk towards its diagonal (Ledoit & Wolf, "A well-conditioned estimator for large-dimensional
    covariance matrices", 2004, with a fixed shrinkage), so the output is decorrelated with unit variance.

    Args:
        features: Number of features ``D``.
        loc: Initial :math:`\mu` (default 0).
        matrix: Initial :math:`W` (default identity), ``(D, D)``, lower triangular, positive diagonal.

    Example:
        >>> x = torch.randn(500, 2) @ torch.tensor([[2.0, 0.0], [1.5, 0.5]])
        >>> w = Whiten.fit(x, shrinkage=0.0)
        >>> y, _ = w(x)
        >>> bool((torch.cov(y.T) - torch.eye(2)).abs().max() < 0.05)
        True
    """

    def __init__(
        self,
        features: int,
        loc: Tensor | Sequence[float] | float = 0.0,
        matrix: Tensor | Sequence[Sequence[float]] | None = None,
    ) -> None:
        (d,) = as_shape(features)
        super().__init__(d)
        loc_t = _floating(loc, "loc").expand(d).clone()
        w = torch.eye(d, dtype=loc_t.dtype) if matrix is None else _floating(matrix, "matrix").clone()
        self._check_matrix(w, d)
        self.register_buffer("loc", loc_t)
        self.register_buffer("matrix", w.to(loc_t.dtype))

    @staticmethod
    def _check_matrix(w: Tensor, d: int) -> None:
        if w.shape != (d, d):
            raise ValueError(f"matrix must have shape ({d}, {d}), got {tuple(w.shape)}")
        if bool((w.triu(1) != 0).any()):
            raise ValueError("matrix must be lower triangular")
        if not bool((w.diagonal() > 0).all()):
            raise ValueError("matrix must have a positive diagonal")

    @classmethod
    def fit(cls, x: Tensor, *, shrinkage: float = 0.05) -> Whiten:
        """Whitening fitted to the rows of ``x`` ``(n, D)``; ``shrinkage`` in ``[0, 1]`` pulls the correlations
        towards 0 so that the Cholesky factor exists for collinear or short data."""
        x = _floating(x, "x")
        if x.dim() != 2 or x.shape[0] < 2:
            raise ValueError(f"x must have shape (n, D) with n >= 2, got {tuple(x.shape)}")
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
        xd = x.double()
        loc = xd.mean(0)
        cov = torch.cov(xd.T, correction=0).reshape(x.shape[1], x.shape[1])
        var = cov.diagonal().clamp_min(1e-12)
        cov = (1.0 - shrinkage) * cov + shrinkage * torch.diag(var)
        cov = cov + 1e-10 * var.max() * torch.eye(x.shape[1], dtype=xd.dtype)
        chol = torch.linalg.cholesky(cov)
        w = torch.linalg.solve_triangular(chol, torch.eye(x.shape[1], dtype=xd.dtype), upper=False)
        return cls(x.shape[1], loc, w.tril()).to(x.dtype)

    def _ladj(self, x: Tensor) -> Tensor:
        return self.matrix.diagonal().log().sum().expand(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return (x - self.loc) @ self.matrix.T, self._ladj(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = torch.linalg.solve_triangular(self.matrix, z.T, upper=False).T + self.loc
        return x, -self._ladj(z)
