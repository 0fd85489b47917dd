r"""The deep sigmoidal transformer of neural autoregressive flows (NAF).

One sigmoidal layer with :math:`M` units maps

.. math:: y = \sigma^{-1}\Big(\sum_{j=1}^M w_j\, \sigma(a_j x + b_j)\Big), \qquad a_j > 0,\ w_j > 0,\
    \sum_j w_j = 1,

a strictly increasing bijection of :math:`\mathbb{R}` (it lies between :math:`\min_j (a_j x + b_j)` and
:math:`\max_j (a_j x + b_j)`, so it is onto). Its log-derivative, in log space for stability
(with :math:`u = \sum_j w_j \sigma(h_j)`, :math:`1 - u = \sum_j w_j \sigma(-h_j)`):

.. math:: \log \frac{dy}{dx} = \operatorname{logsumexp}_j\big(\log w_j + \log a_j + \log\sigma(h_j) +
    \log\sigma(-h_j)\big) - \log u - \log(1 - u).

The *deep* sigmoidal transformer stacks ``depth`` such layers. The inverse has no closed form: each layer is
inverted with safeguarded Newton–Raphson (:func:`pushforward.inversion.newton`) inside the guaranteed
bracket :math:`[\min_j (y - b_j)/a_j, \max_j (y - b_j)/a_j]`, and the implicit-function gradient is attached
so samples stay differentiable.

Reference: Huang, Krueger, Lacoste & Courville, "Neural Autoregressive Flows", ICML 2018 (DSF, eq. 8).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..inversion import ConvergenceError, implicit_gradient, newton
from .base import Transformer

__all__ = ["DeepSigmoidTransformer", "sigmoid_layer", "sigmoid_layer_inverse", "sigmoid_layer_params"]

_A_SHIFT = math.log(math.expm1(1.0))  # softplus(_A_SHIFT) = 1


def sigmoid_layer_params(raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Split raw parameters ``(..., 3M)`` into ``(log a, b, log w)`` with :math:`a =
    \mathrm{softplus}(\cdot + c)`
    (so raw 0 gives :math:`a = 1`) and :math:`w = \mathrm{softmax}`; all-zero raw parameters give the
    identity."""
    if raw.shape[-1] % 3:
        raise ValueError(f"sigmoidal layer parameters must be a multiple of 3, got {raw.shape[-1]}")
    ra, b, rw = raw.chunk(3, dim=-1)
    log_a = torch.log(F.softplus(ra + _A_SHIFT) + 1e-6)
    return log_a, b, torch.log_softmax(rw, dim=-1)


def sigmoid_layer(x: Tensor, log_a: Tensor, b: Tensor, log_w: Tensor) -> tuple[Tensor, Tensor]:
    r"""One sigmoidal layer: ``(y, log dy/dx)`` with ``x`` of shape ``S`` and parameters ``(*S, M)``."""
    h = log_a.exp() * x.unsqueeze(-1) + b
    ls_pos, ls_neg = F.logsigmoid(h), F.logsigmoid(-h)
    log_u = torch.logsumexp(log_w + ls_pos, -1)
    log_1mu = torch.logsumexp(log_w + ls_neg, -1)
    y = log_u - log_1mu
    logd = torch.logsumexp(log_w + log_a + ls_pos + ls_neg, -1) - log_u - log_1mu
    return y, logd


def sigmoid_layer_inverse(
    y: Tensor, log_a: Tensor, b: Tensor, log_w: Tensor, *, atol: float = 1e-12, max_iter: int = 200
) -> Tensor:
    r"""Solve ``sigmoid_layer(x) = y`` for ``x`` (Newton with bisection fallback, guaranteed bracket).

    A small residual in ``y`` is not a small error in ``x`` where the layer saturates (slope
    :math:`y'(x) \ll 1`): the error is about :math:`\delta y / y'(x)`. So the answer is checked in
    ``x``-space: elements whose error bound :math:`\max(|r|, \epsilon\max(1,|y|)) / y'(x)` exceeds
    :math:`\sqrt\epsilon \max(1, |x|)` (``ε`` the dtype's) are refined by bisection down to a few ulps of
    ``x``; if even the dtype's resolution of ``y`` leaves ``x`` undetermined to that tolerance (the layer
    is flat at rounding level: many ``x`` give the same ``y``), :class:`~pushforward.inversion.ConvergenceError`
    is raised rather than an arbitrary point of the flat set returned.

    Returns ``x`` with the implicit-function gradient attached.
    """
    with torch.no_grad():
        roots = (y.unsqueeze(-1) - b) / log_a.exp()
        low, high = roots.amin(-1) - 1e-6, roots.amax(-1) + 1e-6

        def value(t: Tensor) -> Tensor:
            return sigmoid_layer(t, log_a.detach(), b.detach(), log_w.detach())[0]

        def slope(t: Tensor) -> Tensor:
            return sigmoid_layer(t, log_a.detach(), b.detach(), log_w.detach())[1].exp()

        # the residual cannot go below the dtype's resolution of y: never ask for less. The tolerance is
        # per element: one huge row must not loosen the others (a batch-wide scale did, in float32)
        tol = (torch.finfo(y.dtype).eps ** 0.75 * (1.0 + y.detach().abs())).clamp_min(atol)
        x = newton(
            value, y.detach(), 0.5 * (low + high), df=slope, low=low, high=high, atol=tol, max_iter=max_iter
        )
        x = _checked_in_x(value, slope, y.detach(), x, low, high, max_iter)
    if not (torch.is_grad_enabled() and (y.requires_grad or log_a.requires_grad or b.requires_grad)):
        return x
    return implicit_gradient(lambda t: sigmoid_layer(t, log_a, b, log_w)[0], y, x)


def _checked_in_x(
    value: Callable[[Tensor], Tensor],
    slope: Callable[[Tensor], Tensor],
    y: Tensor,
    x: Tensor,
    low: Tensor,
    high: Tensor,
    max_iter: int,
) -> Tensor:
    """Refine by bisection the elements of a root ``x`` of ``value(x) = y`` whose error in ``x`` may exceed
    ``sqrt(eps) max(1, |x|)``, and raise :class:`ConvergenceError` where the dtype cannot determine it."""
    eps = torch.finfo(y.dtype).eps
    xtol = eps**0.5 * x.abs().clamp_min(1.0)
    d = slope(x)
    resolution = eps * y.abs().clamp_min(1.0)
    undetermined = resolution > xtol * d
    if bool(undetermined.any()):
        i = undetermined.nonzero()[0]
        raise ConvergenceError(
            f"the deep-sigmoid inverse is ill-conditioned: {int(undetermined.sum())} element(s) sit where the layer "
            f"is saturated (dy/dx = {float(d[tuple(i)]):.3g} at x = {float(x[tuple(i)]):.4g}), so x is determined "
            f"only to ±{float(resolution[tuple(i)] / d[tuple(i)]):.3g} in {y.dtype}; no wrong answer is returned"
        )
    loose = torch.maximum((value(x) - y).abs(), resolution) > xtol * d
    if not bool(loose.any()):
        return x
    lo, hi = low.clone(), high.clone()
    fine = 4 * eps * x.abs().clamp_min(1.0)
    for _ in range(max_iter):  # bisection on the guaranteed bracket, down to a few ulps of x
        mid = 0.5 * (lo + hi)
        open_ = loose & (hi - lo > fine) & (mid > lo) & (mid < hi)
        if not bool(open_.any()):
            return torch.where(loose, mid, x)
        right = value(mid) < y
        lo, hi = torch.where(open_ & right, mid, lo), torch.where(open_ & ~right, mid, hi)
    raise ConvergenceError(
        f"deep-sigmoid inverse: bisection did not reach the x tolerance in {max_iter} iterations "
        f"(widest bracket {float((hi - lo)[loose].max()):.3g})"
    )


class DeepSigmoidTransformer(Transformer):
    r"""The deep sigmoidal flow (DSF) transformer of NAF: ``depth`` stacked sigmoidal layers of ``units``.

    .. math:: \tau = \tau_{L} \circ \dots \circ \tau_1, \qquad
        \tau_\ell(x) = \sigma^{-1}\Big(\sum_j w_{\ell j}\, \sigma(a_{\ell j} x + b_{\ell j})\Big),

    with :math:`a > 0` (softplus) and :math:`w` on the simplex (softmax), all predicted by the conditioner:
    ``params_per_feature = 3 · units · depth``. All-zero parameters give the identity. The inverse is
    numerical
    (layer by layer, Newton–Raphson with a bisection fallback), so ``analytic_inverse = False``.

    Args:
        units: Sigmoid units :math:`M` per layer.
        depth: Number of stacked sigmoidal layers.
        atol: Tolerance of the numerical inverse (on the residual).
        max_iter: Iteration cap of the numerical inverse (``ConvergenceError`` beyond it).

    Reference: Huang, Krueger, Lacoste & Courville, "Neural Autoregressive Flows", ICML 2018.

    Example:
        >>> tau = DeepSigmoidTransformer(units=8, depth=2)
        >>> params = torch.randn(5, 3, tau.params_per_feature)
        >>> y, log_d = tau(torch.randn(5, 3), params)
        >>> x, _ = tau.inverse(y, params)
    """

    analytic_inverse = False

    def __init__(self, units: int = 16, depth: int = 1, *, atol: float = 1e-12, max_iter: int = 200) -> None:
        super().__init__()
        for name, v in (("units", units), ("depth", depth), ("max_iter", max_iter)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
            if v < 1:
                raise ValueError(f"{name} must be at least 1, got {v}")
        if not atol > 0:
            raise ValueError(f"atol must be positive, got {atol}")
        self.units = units
        self.depth = depth
        self.atol = atol
        self.max_iter = max_iter
        self.params_per_feature = 3 * units * depth

    def _layers(self, params: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        if params.shape[-1] != self.params_per_feature:
            raise ValueError(
                f"DeepSigmoidTransformer(units={self.units}, depth={self.depth}) needs "
                f"{self.params_per_feature} parameters per feature, got {params.shape[-1]}"
            )
        return [sigmoid_layer_params(p) for p in params.chunk(self.depth, dim=-1)]

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        logd = torch.zeros_like(x)
        for layer in self._layers(params):
            x, ld = sigmoid_layer(x, *layer)
            logd = logd + ld
        return x, logd

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        logd = torch.zeros_like(y)
        for layer in reversed(self._layers(params)):
            y = sigmoid_layer_inverse(y, *layer, atol=self.atol, max_iter=self.max_iter)
            logd = logd - sigmoid_layer(y, *layer)[1]
        return y, logd

    def extra_repr(self) -> str:
        return f"units={self.units}, depth={self.depth}"
