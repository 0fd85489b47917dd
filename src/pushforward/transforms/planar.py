r"""Planar and radial flows (Rezende & Mohamed, 2015), written in the *sampling* direction.

Both families are defined by a cheap map :math:`g` from a base sample to a data point,

.. math::
    \text{planar:}\quad g(z) = z + \hat u\, h(w^\top z + b), \qquad
    \text{radial:}\quad g(z) = z + \beta\, \frac{z - z_0}{\alpha + \lVert z - z_0 \rVert},

whose log-determinant is closed form. In pushforward's contract (``forward`` maps data → latent) these
classes implement :math:`g` as :meth:`~Planar.inverse` (**cheap**: one pass, closed-form ladj) and
:math:`g^{-1}` as :meth:`~Planar.forward` (**the expensive or numerical direction**: planar solves a scalar
monotone equation along :math:`w`; radial solves a quadratic in closed form). Consequently, a
``Flow(Compose([Planar(d), ...]))`` samples and scores its own samples cheaply —
:meth:`pushforward.Flow.sample_and_log_prob` and :func:`pushforward.fit_vi` only use ``inverse`` — while
:meth:`pushforward.Flow.log_prob` on external data uses the inverse maps.

Reference: Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015 (appendix A.1 and
A.2 for the invertibility reparameterisations); initialisations as in Bittner, "Normalizing flows
in tf_utils", 2019.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..inversion import implicit_gradient, newton
from .base import Transform
from .elementwise import log_tanh_derivative

__all__ = [
    "Planar",
    "Radial",
    "constrain_planar_u",
    "planar_log_det",
    "planar_map",
    "radial_inverse_radius",
    "radial_log_det",
    "radial_map",
    "solve_tolerance",
]

#: ``m(0) = 0`` for the shifted softplus below, so ``u = 0`` gives the identity map.
_SOFTPLUS_SHIFT = math.log(math.e - 1.0)
#: Margin δ of the planar constraint: w·û ≥ −1 + δ.
_PLANAR_MARGIN = 1e-4


# ---------------------------------------------------------------------------------- pure formulas
def constrain_planar_u(u: Tensor, w: Tensor) -> Tensor:
    r"""The planar reparameterisation :math:`\hat u = u + (m(w^\top u) - w^\top u)\, w / \lVert w\rVert^2`.

    With :math:`m(a) = -1 + \delta + (1 - \delta)\operatorname{softplus}(a + \log(e - 1))`,
    :math:`\delta = 10^{-4}`, we get :math:`w^\top\hat u = m(w^\top u) \ge -1 + \delta > -1`, the condition
    under which :math:`z \mapsto z + \hat u \tanh(w^\top z + b)` is invertible (Rezende & Mohamed 2015,
    appendix
    A.1). The paper uses :math:`m(a) = -1 + \operatorname{softplus}(a)`; our shift by :math:`\log(e-1)` makes
    :math:`m(0) = 0`, so the initialisation ``u = 0`` is exactly the identity map (as Bittner intends)
    instead of a contraction along :math:`w`, and the margin :math:`\delta` keeps the bound strict when the
    softplus underflows in floating point.
    """
    wu = (w * u).sum()
    m = -1.0 + _PLANAR_MARGIN + (1.0 - _PLANAR_MARGIN) * F.softplus(wu + _SOFTPLUS_SHIFT)
    return u + (m - wu) * w / (w * w).sum().clamp_min(torch.finfo(w.dtype).tiny)


def planar_map(z: Tensor, u_hat: Tensor, w: Tensor, b: Tensor) -> Tensor:
    r"""The planar map :math:`g(z) = z + \hat u \tanh(w^\top z + b)` on a batch ``(n, D)``."""
    return z + u_hat * torch.tanh(z @ w + b).unsqueeze(-1)


def planar_log_det(a: Tensor, wu: Tensor, b: Tensor) -> Tensor:
    r""":math:`\log|\det \partial g/\partial z| = \log(1 + w^\top\hat u\, h'(a + b))` at :math:`a = w^\top z`.

    By the matrix determinant lemma,
    :math:`\det(I + \hat u\, h'(a+b)\, w^\top) = 1 + h'(a+b)\, w^\top \hat u`,
    positive when :math:`w^\top\hat u > -1` because :math:`0 < \tanh' \le 1`.
    """
    return torch.log1p(wu * torch.exp(log_tanh_derivative(a + b)))


def radial_map(z: Tensor, z0: Tensor, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    r"""The radial map :math:`g(z) = z + \beta (z - z_0)/(\alpha + r)`, :math:`r = \lVert z - z_0\rVert`.

    Returns ``(g(z), r)``.
    """
    d = z - z0
    r = d.norm(dim=-1)
    return z + (beta / (alpha + r)).unsqueeze(-1) * d, r


def radial_log_det(r: Tensor, alpha: Tensor, beta: Tensor, features: int) -> Tensor:
    r"""Radial log-determinant at radius :math:`r = \lVert z - z_0 \rVert` (of the *input* of :math:`g`):

    .. math:: \log|\det \partial g/\partial z| = (D - 1)\log(1 + \beta h) + \log(1 + \beta h + \beta h' r)
        = (D-1)\log\left(1 + \frac{\beta}{\alpha + r}\right)
        + \log\left(1 + \frac{\alpha\beta}{(\alpha+r)^2}\right),

    with :math:`h = 1/(\alpha + r)`, :math:`h' = -h^2`. Both terms are finite when :math:`\beta > -\alpha`.
    """
    s = alpha + r
    return (features - 1) * torch.log1p(beta / s) + torch.log1p(alpha * beta / (s * s))


def radial_inverse_radius(s: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    r"""Solve :math:`s = r (1 + \beta/(\alpha + r))` for :math:`r \ge 0` (radial inverse, in closed form).

    Multiplying out gives :math:`r^2 + (\alpha + \beta - s) r - \alpha s = 0`, whose non-negative root is
    :math:`r = (-p + \sqrt{p^2 + 4\alpha s})/2` with :math:`p = \alpha + \beta - s`; for :math:`p > 0` the
    equivalent form :math:`2\alpha s / (p + \sqrt{p^2 + 4\alpha s})` avoids cancellation.
    """
    p = alpha + beta - s
    root = torch.sqrt(p * p + 4.0 * alpha * s)
    positive = p > 0
    safe_den = torch.where(positive, p + root, torch.ones_like(root))
    return torch.where(positive, 2.0 * alpha * s / safe_den, 0.5 * (root - p))


def solve_tolerance(y: Tensor, scale: Tensor | float = 0.0) -> float:
    """Absolute tolerance of the scalar solves (run in float64 whatever the model dtype): 64 float64 ulps
    of the largest magnitude involved, so the result is accurate to float32 and float64 precision alike."""
    mag = max(1.0, float(y.detach().abs().max()) + float(torch.as_tensor(scale).detach().abs().max()))
    return 64.0 * torch.finfo(torch.float64).eps * mag


def _glorot_(t: Tensor, fan_in: int, fan_out: int) -> Tensor:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return t.uniform_(-limit, limit)


def _check_features(features: int, name: str) -> int:
    if isinstance(features, bool) or not isinstance(features, int):
        raise TypeError(f"{name} needs an integer number of features, got {type(features).__name__}")
    if features < 1:
        raise ValueError(f"{name} needs at least one feature, got {features}")
    return features


# ---------------------------------------------------------------------------------- transforms
class Planar(Transform):
    r"""Planar flow layer, cheap in the sampling direction.

    .. math:: g(z) = z + \hat u \tanh(w^\top z + b), \qquad
        \log\left|\det \frac{\partial g}{\partial z}\right| = \log\left(1 + w^\top \hat u\,
        \tanh'(w^\top z + b)\right),

    with :math:`\hat u` = :func:`constrain_planar_u` ``(u, w)`` so that :math:`w^\top \hat u > -1` and
    :math:`g` is a bijection of :math:`\mathbb{R}^D`.

    Directions: :meth:`inverse` is :math:`g` (closed form, one pass). :meth:`forward` is :math:`g^{-1}`:
    writing :math:`a = w^\top z`, :math:`w^\top x = a + (w^\top\hat u)\tanh(a + b)` is a scalar increasing
    equation in :math:`a`, whose root lies in
    :math:`[w^\top x - |w^\top \hat u|,\ w^\top x + |w^\top\hat u|]`;
    it is solved by safeguarded Newton (:func:`pushforward.inversion.newton`), then
    :math:`z = x - \hat u \tanh(a + b)`. Gradients through ``forward`` are exact to first order
    (implicit function theorem, :func:`pushforward.inversion.implicit_gradient`).

    Initialisation (Bittner, 2019): ``u = 0``, ``b = 0``, ``w`` Glorot uniform; ``u = 0`` is the identity.

    Reference: Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.

    Example:
        >>> layer = Planar(2)
        >>> x, ladj = layer.inverse(torch.randn(5, 2))  # sampling direction: cheap
        >>> z, minus_ladj = layer(x)  # density direction: solves a scalar equation
    """

    analytic_inverse = True  # the sampling map is closed form; ``forward`` is the numerical direction

    def __init__(self, features: int) -> None:
        super().__init__(_check_features(features, "Planar"))
        self.u = nn.Parameter(torch.zeros(features))
        self.w = nn.Parameter(_glorot_(torch.empty(features), features, 1))
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> Tensor:
        r"""The constrained :math:`\hat u` actually used by the map."""
        return constrain_planar_u(self.u, self.w)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Sampling direction ``x = g(z)`` (cheap); returns ``(x, log|det ∂x/∂z|)``."""
        u_hat = self.u_hat()
        x = planar_map(z, u_hat, self.w, self.b)
        return x, planar_log_det(z @ self.w, (self.w * u_hat).sum(), self.b)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Density direction ``z = g⁻¹(x)`` (numerical along ``w``); returns ``(z, log|det ∂z/∂x|)``."""
        u_hat = self.u_hat()
        wu = (self.w * u_hat).sum()
        y = x @ self.w

        def along_w(a: Tensor) -> Tensor:
            return a + wu * torch.tanh(a + self.b)

        with torch.no_grad():  # the scalar solve runs in float64; gradients come from implicit_gradient
            y0, c, b0 = y.detach().double(), wu.detach().double(), self.b.detach().double()

            def along_w64(a: Tensor) -> Tensor:
                return a + c * torch.tanh(a + b0)

            def slope64(a: Tensor) -> Tensor:
                return 1.0 + c * torch.exp(log_tanh_derivative(a + b0))

            width = c.abs() + 1e-3
            a = newton(
                along_w64, y0, y0, df=slope64, low=y0 - width, high=y0 + width, atol=solve_tolerance(y0, c)
            )
        a = implicit_gradient(along_w, y, a.to(y.dtype))
        z = x - u_hat * torch.tanh(a + self.b).unsqueeze(-1)
        return z, -planar_log_det(a, wu, self.b)


class Radial(Transform):
    r"""Radial flow layer, cheap in the sampling direction; both directions are closed form.

    .. math:: g(z) = z + \beta\, \frac{z - z_0}{\alpha + r}, \quad r = \lVert z - z_0 \rVert, \qquad
        \log\left|\det\frac{\partial g}{\partial z}\right|
        = (D - 1)\log\left(1 + \frac{\beta}{\alpha + r}\right)
        + \log\left(1 + \frac{\alpha\beta}{(\alpha + r)^2}\right).

    Reparameterisation (Rezende & Mohamed 2015, appendix A.2): :math:`\alpha = e^{\log\alpha} > 0` and
    :math:`\beta = -\alpha + \operatorname{softplus}(\tilde\beta) > -\alpha`, which makes :math:`g`
    invertible.

    Directions: :meth:`inverse` is :math:`g`. :meth:`forward` is :math:`g^{-1}` in closed form: with
    :math:`s = \lVert x - z_0\rVert`, the radius :math:`r` solves a quadratic
    (:func:`radial_inverse_radius`) and :math:`z = z_0 + (x - z_0)/(1 + \beta/(\alpha + r))`.

    Initialisation (Bittner, 2019): :math:`\log\alpha`, :math:`\tilde\beta` and :math:`z_0` Glorot uniform.

    Reference: Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.

    Example:
        >>> layer = Radial(2)
        >>> x, ladj = layer.inverse(torch.randn(5, 2))
        >>> z, _ = layer(x)  # closed-form inverse of the radial map
    """

    def __init__(self, features: int) -> None:
        super().__init__(_check_features(features, "Radial"))
        self.z0 = nn.Parameter(_glorot_(torch.empty(features), features, 1))
        self.log_alpha = nn.Parameter(_glorot_(torch.empty(()), 1, 1))
        self.beta_raw = nn.Parameter(_glorot_(torch.empty(()), 1, 1))

    def alpha_beta(self) -> tuple[Tensor, Tensor]:
        r"""The constrained :math:`(\alpha, \beta)` with :math:`\alpha > 0`, :math:`\beta > -\alpha`."""
        alpha = self.log_alpha.exp()
        return alpha, -alpha + F.softplus(self.beta_raw)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Sampling direction ``x = g(z)``; returns ``(x, log|det ∂x/∂z|)``."""
        alpha, beta = self.alpha_beta()
        x, r = radial_map(z, self.z0, alpha, beta)
        return x, radial_log_det(r, alpha, beta, self.features)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Density direction ``z = g⁻¹(x)`` (closed form); returns ``(z, log|det ∂z/∂x|)``."""
        alpha, beta = self.alpha_beta()
        d = x - self.z0
        r = radial_inverse_radius(d.norm(dim=-1), alpha, beta)
        z = self.z0 + d / (1.0 + beta / (alpha + r)).unsqueeze(-1)
        return z, -radial_log_det(r, alpha, beta, self.features)
