r"""Simple spherical flows: an invertible affine map of :math:`\mathbb{R}^n` followed by radial projection.

All three act on :math:`\mathbb{S}^{n-1}` (unit vectors of shape ``(batch, n)``), have closed-form inverses
and closed-form differential volume ratios (Wikipedia, "Flow-based generative model",
section "Simple spherical flows"):

.. math::
    f(x) = \frac{Mx + c}{\|Mx + c\|}, \qquad
    R_f(x) = \frac{|\det M|\,(1 + x^\top M^{-1} c)}{\|Mx + c\|^{n}}, \qquad \|M^{-1}c\| < 1,

with the normalised translation (:math:`M = I`) and normalised linear (:math:`c = 0`) flows as special
cases. The ``ladj`` is :math:`\log R_f`; see :mod:`pushforward.manifolds` for the contract on manifolds.

References: Boulerice & Ducharme, "Decentred directional data", 1994 (the translation ratio); Tyler,
"Statistical analysis for the angular central Gaussian distribution on the sphere", 1987 (the linear one);
Wikipedia, "Flow-based generative model", section "Flows on manifolds".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .linear import LUMatrix
from .manifold import ManifoldTransform, Sphere

__all__ = [
    "NormalizedAffine",
    "NormalizedLinear",
    "NormalizedTranslation",
    "normalized_affine",
    "normalized_affine_inverse",
]


# ---------------------------------------------------------------------------------- pure formulas
def _solve(matrix: Tensor | None, v: Tensor) -> Tensor:
    """``M⁻¹ v`` on the last axis of ``v`` (``v`` itself when ``M`` is the identity)."""
    if matrix is None:
        return v
    if v.dim() == 1:
        return torch.linalg.solve(matrix, v.unsqueeze(-1)).squeeze(-1)
    return torch.linalg.solve(matrix, v.T).T


def _logabsdet(matrix: Tensor | None, like: Tensor) -> Tensor:
    return like.new_zeros(()) if matrix is None else torch.linalg.slogdet(matrix)[1]


def normalized_affine(
    x: Tensor, matrix: Tensor | None = None, shift: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""The normalised affine flow and its log volume ratio:

    .. math:: y = \frac{Mx + c}{\|Mx + c\|}, \qquad
        \log R(x) = \log|\det M| + \log(1 + x^\top M^{-1} c) - n \log\|Mx + c\|.

    ``matrix=None`` means :math:`M = I` (normalised translation), ``shift=None`` means :math:`c = 0`
    (normalised linear: :math:`\log R = \log|\det M| - n\log\|Mx\|`). Requires :math:`\|M^{-1}c\| < 1`.

    Args:
        x: Unit vectors, shape ``(batch, n)``.
        matrix: Invertible :math:`M`, ``(n, n)``, or ``None``.
        shift: :math:`c`, ``(n,)``, or ``None``.
    """
    n = x.shape[-1]
    h = x if matrix is None else x @ matrix.T
    if shift is not None:
        h = h + shift
    norm = torch.linalg.vector_norm(h, dim=-1)
    ladj = _logabsdet(matrix, x) - n * norm.log()
    if shift is not None:
        ladj = ladj + torch.log1p(x @ _solve(matrix, shift))
    return h / norm.unsqueeze(-1), ladj


def normalized_affine_inverse(
    y: Tensor, matrix: Tensor | None = None, shift: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Inverse of :func:`normalized_affine` and its log volume ratio:

    .. math:: x = M^{-1}(\ell y - c), \qquad
        \ell = \frac{y^\top W c + \sqrt{(y^\top W c)^2 + y^\top W y\,(1 - c^\top W c)}}{y^\top W y},
        \quad W = (M M^\top)^{-1},

    computed with :math:`u = M^{-1} y` and :math:`d = M^{-1} c` (so :math:`y^\top W y = \|u\|^2`,
    :math:`y^\top W c = u^\top d`, :math:`c^\top W c = \|d\|^2`, :math:`x = \ell u - d`). Since
    :math:`Mx + c = \ell y`, the ladj of the inverse is
    :math:`-\log|\det M| - \log(1 + x^\top d) + n \log \ell`. For :math:`M = I` this is the normalised
    translation inverse :math:`\ell = y^\top c + \sqrt{(y^\top c)^2 + 1 - c^\top c}`; for :math:`c = 0`, the
    normalised linear flow with :math:`M^{-1}`.
    """
    n = y.shape[-1]
    u = _solve(matrix, y)
    if shift is None:
        ell = 1.0 / torch.linalg.vector_norm(u, dim=-1)
        x = u * ell.unsqueeze(-1)
        return x, n * ell.log() - _logabsdet(matrix, y)
    d = _solve(matrix, shift)
    uu = (u * u).sum(-1)
    ud = u @ d
    ell = (ud + torch.sqrt(ud * ud + uu * (1.0 - d @ d))) / uu
    x = ell.unsqueeze(-1) * u - d
    return x, n * ell.log() - _logabsdet(matrix, y) - torch.log1p(x @ d)


def _inside_unit_ball(raw: Tensor) -> Tensor:
    r"""Smooth map :math:`v \mapsto v / (1 + \|v\|)` of :math:`\mathbb{R}^n` onto the open unit ball."""
    return raw / (1.0 + torch.linalg.vector_norm(raw))


# ---------------------------------------------------------------------------------- transforms
class NormalizedTranslation(ManifoldTransform):
    r"""Normalised translation flow on :math:`\mathbb{S}^{n-1}`:

    .. math:: f(x) = \frac{x + c}{\|x + c\|}, \qquad R_f(x) = \frac{1 + x^\top c}{\|x + c\|^{n}},
        \qquad \|c\| < 1,

    with inverse :math:`x = \ell y - c`, :math:`\ell = y^\top c + \sqrt{(y^\top c)^2 + 1 - \|c\|^2}`.
    It moves mass towards :math:`-c` in the data (pushes :math:`c`-ward in the latent). The constraint is
    built in: :math:`c = v / (1 + \|v\|)` with a free parameter :math:`v` (zero: the identity).

    Reference: Boulerice & Ducharme, "Decentred directional data", 1994.

    Example:
        >>> t = NormalizedTranslation(3)
        >>> x = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
        >>> y, ladj = t(x)
    """

    def __init__(self, n: int) -> None:
        super().__init__(Sphere(n))
        self.raw_shift = nn.Parameter(torch.zeros(n))

    @property
    def shift(self) -> Tensor:
        """The translation :math:`c` (norm < 1)."""
        return _inside_unit_ball(self.raw_shift)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.manifold.check(x, "NormalizedTranslation input")
        return normalized_affine(x, None, self.shift)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.manifold.check(z, "NormalizedTranslation.inverse input")
        return normalized_affine_inverse(z, None, self.shift)


class NormalizedLinear(ManifoldTransform):
    r"""Normalised linear flow on :math:`\mathbb{S}^{n-1}`:

    .. math:: f(x) = \frac{Mx}{\|Mx\|}, \quad f^{-1}(y) = \frac{M^{-1}y}{\|M^{-1}y\|}, \quad
        R_f(x) = \frac{|\det M|}{\|Mx\|^{n}}.

    Pushing the uniform distribution through :math:`f^{-1}` gives the angular central Gaussian. :math:`M` is
    an LU-parameterised invertible matrix (:class:`~pushforward.transforms.linear.LUMatrix`), so it is
    invertible throughout training; the map is invariant to the scale of :math:`M`.

    Reference: Tyler, "Statistical analysis for the angular central Gaussian distribution on the sphere",
    1987.

    Example:
        >>> t = NormalizedLinear(3, init="orthogonal", seed=0)
        >>> y, ladj = t(torch.nn.functional.normalize(torch.randn(5, 3), dim=-1))
    """

    def __init__(self, n: int, *, init: str = "identity", seed: int | None = None) -> None:
        super().__init__(Sphere(n))
        self.lu = LUMatrix(n, init=init, seed=seed)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.manifold.check(x, "NormalizedLinear input")
        return normalized_affine(x, self.lu.matrix(), None)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.manifold.check(z, "NormalizedLinear.inverse input")
        return normalized_affine_inverse(z, self.lu.matrix(), None)


class NormalizedAffine(ManifoldTransform):
    r"""Normalised affine flow on :math:`\mathbb{S}^{n-1}`:

    .. math:: f(x) = \frac{Mx + c}{\|Mx + c\|}, \qquad
        R_f(x) = \frac{|\det M|\,(1 + x^\top M^{-1}c)}{\|Mx + c\|^{n}}, \qquad \|M^{-1}c\| < 1,

    with the closed-form inverse of :func:`normalized_affine_inverse`. The constraint is built into the
    parameterisation :math:`c = M d`, :math:`d = v / (1 + \|v\|)`; :math:`M` is LU-parameterised
    (:class:`~pushforward.transforms.linear.LUMatrix`). Chains of these layers give flexible (multimodal)
    densities on the sphere.

    Reference: Wikipedia, "Flow-based generative model", "Normalized affine flow" (after Boulerice &
    Ducharme, 1994, and Tyler, 1987).

    Example:
        >>> t = NormalizedAffine(3)
        >>> y, ladj = t(torch.nn.functional.normalize(torch.randn(5, 3), dim=-1))
    """

    def __init__(self, n: int, *, init: str = "identity", seed: int | None = None) -> None:
        super().__init__(Sphere(n))
        self.lu = LUMatrix(n, init=init, seed=seed)
        self.raw_shift = nn.Parameter(torch.zeros(n))

    def matrix_and_shift(self) -> tuple[Tensor, Tensor]:
        """The matrix :math:`M` and the shift :math:`c = M d`."""
        matrix = self.lu.matrix()
        return matrix, matrix @ _inside_unit_ball(self.raw_shift)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.manifold.check(x, "NormalizedAffine input")
        return normalized_affine(x, *self.matrix_and_shift())

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.manifold.check(z, "NormalizedAffine.inverse input")
        return normalized_affine_inverse(z, *self.matrix_and_shift())
