r"""Householder reflections and Sylvester flows (van den Berg et al., 2018).

A Sylvester layer generalises the planar layer from a rank-one to a full-rank update,

.. math:: g(z) = z + Q R\, h(\tilde R Q^\top z + b),

with :math:`Q` orthogonal (a product of Householder reflections), :math:`R, \tilde R` upper triangular and
:math:`h = \tanh`. Like :mod:`pushforward.transforms.planar`, the map :math:`g` is the **cheap, sampling**
direction and is implemented as :meth:`Sylvester.inverse`; :meth:`Sylvester.forward` is :math:`g^{-1}`,
solved numerically (triangular back-substitution of scalar monotone equations, see :class:`Sylvester`).

Reference: van den Berg, Hasenclever, Tomczak & Welling, "Sylvester Normalizing Flows for Variational
Inference", UAI 2018; Householder reflections for flows: Tomczak & Welling, "Improving Variational
Auto-Encoders using Householder Flow", 2016.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..inversion import newton
from .base import Transform
from .elementwise import log_tanh_derivative
from .planar import solve_tolerance

__all__ = ["Householder", "Sylvester", "householder_matrix", "sylvester_log_det", "sylvester_map"]

#: Diagonals are ``_DIAG_BOUND · tanh(ρ)``: even when tanh saturates to ±1 in float32,
#: :math:`r_{ii}\tilde r_{ii} \ge -0.998 > -1`, so :math:`1 + h' r_{ii}\tilde r_{ii} \ge 0.002`.
_DIAG_BOUND = 1.0 - 1e-3


# ---------------------------------------------------------------------------------- pure formulas
def householder_matrix(vectors: Tensor) -> Tensor:
    r"""The orthogonal matrix :math:`Q = H_1 H_2 \cdots H_K`,
    :math:`H_k = I - 2 v_k v_k^\top / \lVert v_k\rVert^2`.

    ``vectors`` has shape ``(K, D)``; ``K = 0`` gives the identity. :math:`\det Q = (-1)^K`.
    """
    k, d = vectors.shape
    q = torch.eye(d, dtype=vectors.dtype, device=vectors.device)
    if k == 0:
        return q
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(vectors.dtype).tiny)
    for v in unit:
        q = q - 2.0 * torch.outer(q @ v, v)  # q ← q H, with H = I − 2 v vᵀ
    return q


def sylvester_map(z: Tensor, q: Tensor, r: Tensor, r_tilde: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    r"""The Sylvester map :math:`g(z) = z + Q R \tanh(\tilde R Q^\top z + b)` on a batch ``(n, D)``.

    Returns ``(g(z), pre)`` with the pre-activation :math:`\tilde R Q^\top z + b` (rows).
    """
    pre = (z @ q) @ r_tilde.T + b
    return z + torch.tanh(pre) @ r.T @ q.T, pre


def sylvester_log_det(pre: Tensor, r_diag: Tensor, r_tilde_diag: Tensor) -> Tensor:
    r"""The Sylvester log-determinant,
    :math:`\log|\det \partial g/\partial z| = \sum_i \log(1 + \tanh'(\mathrm{pre}_i)\, r_{ii}\tilde r_{ii})`.

    By Sylvester's determinant identity :math:`\det(I + Q R\, \mathrm{diag}(h') \tilde R Q^\top) =
    \det(I + \mathrm{diag}(h')\tilde R R)`, and :math:`\tilde R R` is upper triangular with diagonal
    :math:`\tilde r_{ii} r_{ii}`.
    """
    return torch.log1p(torch.exp(log_tanh_derivative(pre)) * (r_diag * r_tilde_diag)).sum(-1)


def _check_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


# ---------------------------------------------------------------------------------- transforms
class Householder(Transform):
    r"""A product of :math:`K` Householder reflections, an orthogonal (volume-preserving) linear map.

    .. math:: f(x) = Q x, \quad Q = H_1 \cdots H_K, \quad H_k = I - 2\frac{v_k v_k^\top}{\lVert v_k\rVert^2},
        \qquad \log|\det J| = 0.

    The inverse is :math:`Q^\top x` (closed form). Any orthogonal :math:`D \times D` matrix is a product of
    at most :math:`D` reflections, so ``reflections=D`` covers :math:`O(D)`.

    Reference: Tomczak & Welling, "Improving Variational Auto-Encoders using Householder Flow", 2016.

    Example:
        >>> t = Householder(3, reflections=2)
        >>> z, ladj = t(torch.randn(4, 3))  # ladj is zero
    """

    def __init__(self, features: int, reflections: int | None = None) -> None:
        features = _check_int(features, "features", 1)
        reflections = features if reflections is None else _check_int(reflections, "reflections", 0)
        super().__init__(features)
        if reflections:
            self.vectors = nn.Parameter(torch.randn(reflections, features))
        else:  # Q = I: nothing to learn
            self.register_buffer("vectors", torch.zeros(0, features))

    def matrix(self) -> Tensor:
        """The orthogonal matrix :math:`Q`."""
        return householder_matrix(self.vectors)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x @ self.matrix().T, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z @ self.matrix(), z.new_zeros(z.shape[0])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reflections={self.vectors.shape[0]}"


class Sylvester(Transform):
    r"""Householder–Sylvester flow layer, cheap in the sampling direction.

    .. math:: g(z) = z + Q R \tanh(\tilde R Q^\top z + b), \qquad
        \log\left|\det\frac{\partial g}{\partial z}\right| = \sum_{i=1}^D
        \log\left(1 + \tanh'\big((\tilde R Q^\top z + b)_i\big)\, r_{ii}\tilde r_{ii}\right),

    where :math:`Q` is a product of ``reflections`` Householder reflections (:class:`Householder`),
    :math:`R, \tilde R` are upper triangular with free off-diagonal entries and diagonals
    :math:`r_{ii} = 0.999\tanh(\rho_i)`, :math:`\tilde r_{ii} = 0.999\tanh(\tilde\rho_i)` (the paper's
    tanh, shrunk so the bound survives float32 saturation). Hence
    :math:`r_{ii}\tilde r_{ii} > -1 = -1/\sup h'`, the condition of van den Berg et al.'s theorem 2
    under which :math:`g` is invertible.

    Directions: :meth:`inverse` is :math:`g` (one pass). :meth:`forward` is :math:`g^{-1}`, computed by
    **triangular back-substitution**: with :math:`v = Q^\top z` and :math:`y = Q^\top x`, the system
    :math:`v + R\tanh(\tilde R v + b) = y` has an upper-triangular dependency structure, so for
    :math:`i = D, \dots, 1` the coordinate :math:`v_i` solves the scalar increasing equation
    :math:`v_i + r_{ii}\tanh(\tilde r_{ii} v_i + c_i) = y_i - d_i` (:math:`c_i, d_i` depend on
    :math:`v_{>i}` only), bracketed in :math:`[y_i - d_i - |r_{ii}|,\ y_i - d_i + |r_{ii}|]` and solved by
    safeguarded Newton (:func:`pushforward.inversion.newton`). A final implicit-function step
    :math:`v \leftarrow v - J^{-1}(v + R\tanh(\tilde R v + b) - y)` with the (detached, upper-triangular)
    Jacobian :math:`J = I + R\,\mathrm{diag}(h')\tilde R` attaches exact first-order gradients.

    Initialisation: :math:`R = 0` (so the layer starts as the identity), :math:`\tilde R` with unit-scale
    diagonal parameters and Glorot-uniform off-diagonal entries, :math:`b = 0`, Householder vectors standard
    normal.

    Reference: van den Berg, Hasenclever, Tomczak & Welling, "Sylvester Normalizing Flows for Variational
    Inference", UAI 2018.

    Example:
        >>> layer = Sylvester(3, reflections=2)
        >>> x, ladj = layer.inverse(torch.randn(5, 3))  # sampling direction: cheap
        >>> z, _ = layer(x)  # density direction: D scalar solves
    """

    def __init__(self, features: int, reflections: int | None = None) -> None:
        features = _check_int(features, "features", 1)
        super().__init__(features)
        self.q = Householder(features, reflections)
        limit = math.sqrt(6.0 / (2 * features))
        self.r_diag = nn.Parameter(torch.zeros(features))
        self.r_off = nn.Parameter(torch.zeros(features, features))
        self.r_tilde_diag = nn.Parameter(torch.ones(features))
        self.r_tilde_off = nn.Parameter(torch.empty(features, features).uniform_(-limit, limit))
        self.b = nn.Parameter(torch.zeros(features))
        self.register_buffer("_upper", torch.ones(features, features).triu(1), persistent=False)

    def triangular(self) -> tuple[Tensor, Tensor]:
        r"""The constrained upper-triangular matrices :math:`(R, \tilde R)`."""
        r = self.r_off * self._upper + torch.diag(_DIAG_BOUND * torch.tanh(self.r_diag))
        r_tilde = self.r_tilde_off * self._upper + torch.diag(_DIAG_BOUND * torch.tanh(self.r_tilde_diag))
        return r, r_tilde

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Sampling direction ``x = g(z)`` (cheap); returns ``(x, log|det ∂x/∂z|)``."""
        r, r_tilde = self.triangular()
        x, pre = sylvester_map(z, self.q.matrix(), r, r_tilde, self.b)
        return x, sylvester_log_det(pre, r.diagonal(), r_tilde.diagonal())

    @torch.no_grad()
    def _back_substitute(self, y: Tensor, r: Tensor, r_tilde: Tensor) -> Tensor:
        d = y.shape[1]
        v = torch.zeros_like(y)
        h = torch.zeros_like(y)  # tanh of the solved pre-activations
        for i in range(d - 1, -1, -1):
            c = v[:, i + 1 :] @ r_tilde[i, i + 1 :] + self.b[i].double()
            target = y[:, i] - h[:, i + 1 :] @ r[i, i + 1 :]
            rii, tii = r[i, i], r_tilde[i, i]

            def scalar(t: Tensor, c: Tensor = c, rii: Tensor = rii, tii: Tensor = tii) -> Tensor:
                return t + rii * torch.tanh(tii * t + c)

            def slope(t: Tensor, c: Tensor = c, rii: Tensor = rii, tii: Tensor = tii) -> Tensor:
                return 1.0 + rii * tii * torch.exp(log_tanh_derivative(tii * t + c))

            width = rii.abs() + 1e-3
            v[:, i] = newton(
                scalar,
                target,
                target,
                df=slope,
                low=target - width,
                high=target + width,
                atol=solve_tolerance(target, rii),
            )
            h[:, i] = torch.tanh(tii * v[:, i] + c)
        return v

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Density direction ``z = g⁻¹(x)`` (numerical); returns ``(z, log|det ∂z/∂x|)``."""
        r, r_tilde = self.triangular()
        q = self.q.matrix()
        y = x @ q
        v = self._back_substitute(y.detach().double(), r.detach().double(), r_tilde.detach().double()).to(
            x.dtype
        )
        # one implicit-function Newton step: exact value, exact first-order gradients
        pre = v @ r_tilde.T + self.b
        residual = v + torch.tanh(pre) @ r.T - y
        with torch.no_grad():
            jac = (
                torch.eye(self.features, dtype=x.dtype, device=x.device)
                + r * torch.exp(log_tanh_derivative(pre)).unsqueeze(-2) @ r_tilde
            )
        v = v - torch.linalg.solve_triangular(jac, residual.unsqueeze(-1), upper=True).squeeze(-1)
        pre = v @ r_tilde.T + self.b
        return v @ q.T, -sylvester_log_det(pre, r.diagonal(), r_tilde.diagonal())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reflections={self.q.vectors.shape[0]}"
