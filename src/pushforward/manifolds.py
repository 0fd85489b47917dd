r"""Flows on isometrically embedded manifolds: the unit sphere and the probability simplex.

A manifold transform maps points of an :math:`m`-dimensional manifold :math:`\mathcal{M} \subset
\mathbb{R}^n` to points of :math:`\mathcal{M}`; points are stored as their **embedded** ``n``-vectors
(unit vectors for :math:`\mathbb{S}^{n-1}`, full probability vectors :math:`p` with :math:`\sum_i p_i = 1`
for the simplex :math:`\Delta^{n-1}`). The ``ladj`` of such a transform is the log of the *differential
volume ratio*

.. math:: R_f(x) = \left|\det\left(T_y^\top F_x T_x\right)\right|, \qquad y = f(x),

where :math:`F_x` is the :math:`n \times n` Jacobian of :math:`f` and :math:`T_x` an :math:`n \times m`
matrix with orthonormal columns spanning the tangent space at :math:`x`. Densities are with respect to the
manifold's Hausdorff measure (surface area on the sphere; the :math:`(n-1)`-dimensional area of the simplex
as embedded in :math:`\mathbb{R}^n`, which is :math:`\sqrt{n}` times the Lebesgue measure of the first
:math:`n-1` coordinates), so that :math:`\log p_X(x) = \log p_Z(f(x)) + \log R_f(x)`, exactly as for
Euclidean flows. The ratio itself does not depend on that choice (the :math:`\sqrt{n}` cancels), only the
base density does.

:func:`manifold_log_volume_ratio` evaluates :math:`\log R_f` by automatic differentiation from ``f`` and a
projection :math:`\pi` onto the manifold (tangent bases are the leading left singular vectors of the
Jacobian :math:`\Pi_x` of :math:`\pi`, a rank-revealing alternative to the QR of the reference); it is slow
(:math:`O(n^3)` per point) and exists to verify the closed forms of the transforms.

Reference: Sorrenson, Draxler, Rousselot, Hummerich & Köthe, "Learning Distributions on Manifolds with
Free-form Flows", 2023 (appendix: the volume ratio for embedded manifolds), as summarised in the
Wikipedia article "Flow-based generative model" (section "Flows on manifolds").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .checks import validation_enabled
from .transforms.base import Transform

__all__ = [
    "Manifold",
    "ManifoldTransform",
    "Simplex",
    "Sphere",
    "manifold_log_volume_ratio",
    "simplex_projection",
    "sphere_area",
    "sphere_projection",
    "tangent_basis",
]


# ---------------------------------------------------------------------------------- pure functions
def sphere_projection(z: Tensor) -> Tensor:
    r"""Radial projection :math:`\pi(z) = z / \|z\|` of non-zero vectors onto the unit sphere (last axis)."""
    return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)


def simplex_projection(z: Tensor) -> Tensor:
    r"""Projection :math:`\pi(z) = z / \sum_i z_i` of the positive orthant onto the simplex (last axis)."""
    return z / z.sum(-1, keepdim=True)


def sphere_area(n: int) -> float:
    r"""Surface area of :math:`\mathbb{S}^{n-1} \subset \mathbb{R}^n`: :math:`2\pi^{n/2} / \Gamma(n/2)`."""
    return math.exp(math.log(2.0) + 0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n))


def tangent_basis(projection: Callable[[Tensor], Tensor], x: Tensor, dim: int) -> Tensor:
    r"""Orthonormal bases :math:`T_x` (shape ``(batch, n, dim)``) of the tangent spaces at the points ``x``.

    The Jacobian :math:`\Pi_x` of the idempotent projection has rank ``dim`` and its column space is the
    tangent space; its ``dim`` leading left singular vectors are an orthonormal basis of it.
    """
    out = []
    for xi in x.detach():
        P = torch.autograd.functional.jacobian(lambda u: projection(u), xi)
        U, _, _ = torch.linalg.svd(P)
        out.append(U[:, :dim])
    return torch.stack(out)


def manifold_log_volume_ratio(
    f: Callable[[Tensor], Tensor], x: Tensor, projection: Callable[[Tensor], Tensor], dim: int
) -> Tensor:
    r"""Log differential volume ratio :math:`\log|\det(T_y^\top F_x T_x)|` by automatic differentiation.

    Args:
        f: The map on batches of embedded points, ``(batch, n) -> (batch, n)``.
        x: Points on the manifold, shape ``(batch, n)`` (use float64 for verification).
        projection: An idempotent projection onto the manifold (e.g. :func:`sphere_projection`).
        dim: The manifold dimension :math:`m` (``n - 1`` for the sphere and the simplex).

    Returns:
        ``(batch,)`` log-ratios. The value is independent of how ``f`` extends off the manifold, since only
        :math:`F_x T_x` enters.

    Example:
        >>> x = sphere_projection(torch.randn(4, 3, dtype=torch.float64))
        >>> r = manifold_log_volume_ratio(lambda u: -u, x, sphere_projection, 2)  # an isometry of S²
        >>> bool(r.abs().max() < 1e-12)
        True
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (batch, n), got {tuple(x.shape)}")
    if not 0 < dim <= x.shape[1]:
        raise ValueError(f"dim must lie in [1, {x.shape[1]}], got {dim}")
    out = []
    for xi in x.detach():
        F = torch.autograd.functional.jacobian(lambda u: f(u.unsqueeze(0))[0], xi)
        y = f(xi.unsqueeze(0)).detach()
        Tx = tangent_basis(projection, xi.unsqueeze(0), dim)[0]
        Ty = tangent_basis(projection, y, dim)[0]
        out.append(torch.linalg.slogdet(Ty.T @ F @ Tx)[1])
    return torch.stack(out)


def _tolerance(dtype: torch.dtype) -> float:
    """How far from the manifold a point may be (rounding of upstream computations, e.g. float32 data)."""
    return max(1e-6, 1e3 * torch.finfo(dtype).eps)


# ---------------------------------------------------------------------------------- manifolds
class Manifold:
    r"""An :math:`m`-dimensional manifold isometrically embedded in :math:`\mathbb{R}^n`.

    Attributes:
        ambient: The embedding dimension :math:`n`.
        dim: The manifold dimension :math:`m`.
    """

    ambient: int
    dim: int

    def project(self, z: Tensor) -> Tensor:
        """Idempotent projection of ambient points onto the manifold."""
        raise NotImplementedError

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        """Raise ``ValueError`` naming ``name`` when some point of ``x`` is off the manifold."""
        raise NotImplementedError

    def log_volume_ratio(self, f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """:func:`manifold_log_volume_ratio` with this manifold's projection and dimension."""
        return manifold_log_volume_ratio(f, x, self.project, self.dim)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ambient})"


class Sphere(Manifold):
    r"""The unit sphere :math:`\mathbb{S}^{n-1} = \{x \in \mathbb{R}^n : \|x\| = 1\}`, of dimension
    :math:`n - 1`, with the radial projection :math:`z / \|z\|`.

    Example:
        >>> Sphere(3).check(torch.tensor([[0.0, 0.0, 1.0]])).shape
        torch.Size([1, 3])
    """

    def __init__(self, n: int) -> None:
        if n < 2:
            raise ValueError(f"the sphere S^(n-1) needs n >= 2, got {n}")
        self.ambient, self.dim = int(n), int(n) - 1

    def project(self, z: Tensor) -> Tensor:
        return sphere_projection(z)

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        if x.shape[-1] != self.ambient:
            raise ValueError(
                f"{name} has {x.shape[-1]} coordinates; points of S^{self.dim} have {self.ambient}"
            )
        if validation_enabled():
            err = (torch.linalg.vector_norm(x.detach(), dim=-1) - 1.0).abs()
            bad = ~(err <= _tolerance(x.dtype))
            if bool(bad.any()):
                raise ValueError(
                    f"{name} is off the unit sphere S^{self.dim}: {int(bad.sum())} points have a norm "
                    f"differing from 1 by up to {float(err.max()):.3g} (normalise with x / x.norm(dim=-1))"
                )
        return x


class Simplex(Manifold):
    r"""The open probability simplex :math:`\Delta^{n-1} = \{p \in \mathbb{R}^n : p_i > 0, \sum_i p_i = 1\}`,
    of dimension :math:`n - 1`, with the projection :math:`z / \sum_i z_i`.

    Points are the full probability vectors (shape ``(..., n)``). Its Hausdorff measure is :math:`\sqrt{n}`
    times the Lebesgue measure :math:`dp_1 \cdots dp_{n-1}` of the first :math:`n - 1` coordinates.

    Example:
        >>> Simplex(3).check(torch.tensor([[0.2, 0.3, 0.5]])).shape
        torch.Size([1, 3])
    """

    def __init__(self, n: int) -> None:
        if n < 2:
            raise ValueError(f"the simplex needs n >= 2 categories, got {n}")
        self.ambient, self.dim = int(n), int(n) - 1

    def project(self, z: Tensor) -> Tensor:
        return simplex_projection(z)

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        if x.shape[-1] != self.ambient:
            raise ValueError(
                f"{name} has {x.shape[-1]} coordinates; points of the simplex have {self.ambient}"
            )
        if validation_enabled():
            xd = x.detach()
            n_neg = int((xd <= 0).sum())
            if n_neg:
                raise ValueError(
                    f"{name} is off the open simplex: {n_neg} probabilities are <= 0 "
                    f"(min {float(xd.min()):.3g});"
                    " clamp them away from 0 and renormalise"
                )
            err = (xd.sum(-1) - 1.0).abs()
            bad = ~(err <= _tolerance(x.dtype))
            if bool(bad.any()):
                raise ValueError(
                    f"{name} is off the simplex: {int(bad.sum())} points do not sum to 1 "
                    f"(error up to {float(err.max()):.3g}); renormalise with p / p.sum(-1, keepdim=True)"
                )
        return x


class ManifoldTransform(Transform):
    r"""A bijection of a manifold onto itself, on embedded points (see the module documentation).

    ``forward(x) -> (y, log R_f(x))`` and ``inverse(y) -> (x, log R_{f^{-1}}(y))``, with
    :math:`R_f` the differential volume ratio. Subclasses set :attr:`manifold`, validate their inputs with
    ``self.manifold.check`` and implement the closed-form ratio; :meth:`autodiff_ladj` computes the same
    quantity by automatic differentiation, for verification.
    """

    manifold: Manifold

    def __init__(self, manifold: Manifold, context_features: int = 0) -> None:
        super().__init__(manifold.ambient, context_features)
        self.manifold = manifold

    def autodiff_ladj(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """:math:`\\log R_f(x)` by :func:`manifold_log_volume_ratio` (slow; for tests)."""
        return self.manifold.log_volume_ratio(lambda u: self(u, context)[0], x)

    def extra_repr(self) -> str:
        return f"manifold={self.manifold!r}"
