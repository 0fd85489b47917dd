r"""Monotone rational-quadratic splines with linear tails (neural spline flows).

On :math:`[-B, B]` the map is a monotone rational-quadratic spline with :math:`K` bins; outside it is the
identity (linear tails with unit slope, matching the unit derivatives at the two boundary knots), so every
real input is valid and the map is a bijection of :math:`\mathbb{R}`.

Inside bin :math:`k` with knots :math:`(x_k, y_k), (x_{k+1}, y_{k+1})`, width :math:`w_k`, height
:math:`h_k`, slope :math:`s_k = h_k / w_k`, knot derivatives :math:`\delta_k, \delta_{k+1}` and
:math:`\xi = (x - x_k)/w_k \in [0, 1]`:

.. math::
    y = y_k + \frac{h_k\,[s_k \xi^2 + \delta_k \xi(1-\xi)]}{s_k + (\delta_{k+1} + \delta_k - 2
    s_k)\,\xi(1-\xi)},

    \frac{dy}{dx} = \frac{s_k^2\,[\delta_{k+1}\xi^2 + 2 s_k \xi(1-\xi) + \delta_k (1-\xi)^2]}
        {[s_k + (\delta_{k+1} + \delta_k - 2 s_k)\,\xi(1-\xi)]^2}.

The inverse solves the quadratic :math:`a\xi^2 + b\xi + c = 0` for the root in :math:`[0, 1]`, written in
the cancellation-free form :math:`\xi = 2c / (-b - \sqrt{b^2 - 4ac})`.

Reference: Durkan, Bekasov, Murray & Papamakarios, "Neural Spline Flows", NeurIPS 2019 (eqs. 4–8);
Gregory & Delbourgo, "Piecewise rational quadratic interpolation to monotonic data", 1982.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Transformer

__all__ = [
    "RQSTransformer",
    "rational_quadratic_spline",
    "rational_quadratic_spline_inverse",
    "spline_knots",
]


def spline_knots(
    raw_widths: Tensor,
    raw_heights: Tensor,
    raw_derivatives: Tensor,
    bound: float,
    *,
    min_width: float = 1e-3,
    min_height: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Turn unconstrained conditioner outputs into spline knots on :math:`[-B, B]^2`.

    Args:
        raw_widths, raw_heights: ``(..., K)``; a softmax gives the bin fractions, each at least ``min_width``
            (``min_height``) of the interval.
        raw_derivatives: ``(..., K - 1)`` interior knot derivatives; :math:`\delta = m +
            \mathrm{softplus}(r + c)`
            with :math:`c` chosen so that ``r = 0`` gives :math:`\delta = 1`. The two boundary derivatives
            are 1
            (continuity with the identity tails).
        bound: Half-width :math:`B` of the interval.

    Returns:
        ``(x_knots, y_knots, derivatives)`` of shapes ``(..., K+1)``, ``(..., K+1)``, ``(..., K+1)``.
        All-zero raw parameters give uniform bins and unit derivatives: the identity.

    Performance: the work is done *knot-major* (bins along the first, contiguous-in-memory dimension), where
    every elementwise op and the softmax/cumsum over ``K ≈ 8`` bins vectorise over the batch; on CPU this is
    3-4x faster than reducing over a short last dimension. The returned tensors are ``movedim`` views of
    knot-major storage (logically ``(..., K+1)``), which :func:`rational_quadratic_spline` moves back for
    free. Inputs that are already knot-major views (as :class:`RQSTransformer` passes them) are not copied.
    """
    K = raw_widths.shape[-1]
    if raw_heights.shape[-1] != K or raw_derivatives.shape[-1] != K - 1:
        raise ValueError(
            f"spline parameters need K widths, K heights and K-1 derivatives; got {raw_widths.shape[-1]}, "
            f"{raw_heights.shape[-1]}, {raw_derivatives.shape[-1]}"
        )
    if min_width * K >= 1 or min_height * K >= 1:
        raise ValueError(f"min_width/min_height too large for {K} bins")
    if not 0 <= min_derivative < 1:
        raise ValueError(f"min_derivative must be in [0, 1), got {min_derivative}")

    def knots(raw: Tensor, minimum: float) -> Tensor:
        # raw: (K, ...) knot-major. softmax fractions f_k = m + (1 - mK) e_k / Σe, so the interior knots
        # -B + 2B Σ_{i<j} f_i = -B + 2B m j + 2B (1 - mK) C_j / Σe with C_j = Σ_{i<j} e_i (j = 1..K-1).
        # The max shift only stabilises exp (softmax is shift invariant): no gradient flows through it.
        e = torch.exp(raw - raw.detach().amax(0))
        total = e.sum(0)
        cum = torch.cumsum(e[:-1], 0)
        j = torch.arange(1, K, dtype=raw.dtype, device=raw.device).view(-1, *(1,) * (raw.dim() - 1))
        inner = (2 * bound * minimum * j - bound) + (2 * bound * (1 - minimum * K)) * (cum / total)
        end = torch.full_like(raw[:1], bound)
        return torch.cat([-end, inner, end], 0)  # end knots pinned exactly to ±B

    w, h, d = _knot_major(raw_widths), _knot_major(raw_heights), _knot_major(raw_derivatives)
    shift = math.log(math.expm1(1.0 - min_derivative))  # softplus(shift) = 1 - min_derivative
    inner = min_derivative + F.softplus(d + shift)
    ones = torch.ones_like(w[:1])
    derivatives = torch.cat([ones, inner, ones], 0)
    return knots(w, min_width).movedim(0, -1), knots(h, min_height).movedim(0, -1), derivatives.movedim(0, -1)


def _knot_major(t: Tensor) -> Tensor:
    """``t.movedim(-1, 0)``, copied to knot-major storage only if the knot dimension is the fastest-varying
    one in memory (short inner loops vectorise badly); knot-major views pass through uncopied."""
    v = t.movedim(-1, 0)
    return v.contiguous() if t.dim() > 1 and t.shape[-1] > 1 and t.stride(-1) == 1 else v


def _bin_quantities(
    knots: Tensor, v: Tensor, x_knots: Tensor, y_knots: Tensor, derivatives: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """For ``v`` in the bins of ``knots`` (knot-major ``(K+1, ...)``; one of the other three), the bin's
    ``(x0, y0, w, h, s, d0, d1)``. ``v`` need not be clamped: outside values get the first/last bin."""
    idx = (v >= knots[1:-1]).sum(0, keepdim=True)
    pair = torch.cat([idx, idx + 1], 0)  # one gather per knot tensor fetches both ends of the bin
    x0, x1 = x_knots.gather(0, pair).unbind(0)
    y0, y1 = y_knots.gather(0, pair).unbind(0)
    d0, d1 = derivatives.gather(0, pair).unbind(0)
    w, h = x1 - x0, y1 - y0
    return x0, y0, w, h, h / w, d0, d1


def _log_derivative(xi: Tensor, s: Tensor, d0: Tensor, d1: Tensor, denom: Tensor) -> Tensor:
    # log dy/dx = log( s² [δ_{k+1} ξ² + 2 s ξ(1-ξ) + δ_k (1-ξ)²] / denom² ), one log instead of three
    one_m = 1 - xi
    num = d1 * xi * xi + 2 * s * xi * one_m + d0 * one_m * one_m
    r = s / denom
    return torch.log(num * r * r)


def rational_quadratic_spline(
    x: Tensor, x_knots: Tensor, y_knots: Tensor, derivatives: Tensor
) -> tuple[Tensor, Tensor]:
    r"""Forward RQ spline with identity tails: ``(y, log dy/dx)`` elementwise.

    ``x`` has shape ``S``; the knot tensors have shape ``(*S, K+1)`` (see :func:`spline_knots`), the interval
    being ``[x_knots[..., 0], x_knots[..., -1]]``.
    """
    xk, yk, dk = x_knots.movedim(-1, 0), y_knots.movedim(-1, 0), derivatives.movedim(-1, 0)
    low, high = xk[0], xk[-1]
    inside = (x >= low) & (x <= high)
    x0, y0, w, h, s, d0, d1 = _bin_quantities(xk, x, xk, yk, dk)
    xi = ((x - x0) / w).clamp(0, 1)
    om = xi * (1 - xi)
    denom = s + (d1 + d0 - 2 * s) * om
    y = y0 + h * (s * xi * xi + d0 * om) / denom
    logd = _log_derivative(xi, s, d0, d1, denom)
    return torch.where(inside, y, x), torch.where(inside, logd, 0.0)


def rational_quadratic_spline_inverse(
    y: Tensor, x_knots: Tensor, y_knots: Tensor, derivatives: Tensor
) -> tuple[Tensor, Tensor]:
    r"""Closed-form inverse of :func:`rational_quadratic_spline`: ``(x, log dx/dy)`` elementwise."""
    xk, yk, dk = x_knots.movedim(-1, 0), y_knots.movedim(-1, 0), derivatives.movedim(-1, 0)
    low, high = yk[0], yk[-1]
    inside = (y >= low) & (y <= high)
    x0, y0, w, h, s, d0, d1 = _bin_quantities(yk, y, xk, yk, dk)
    dy = y.clamp(low, high) - y0
    t = d1 + d0 - 2 * s
    a = h * (s - d0) + dy * t
    b = h * d0 - dy * t
    c = -s * dy
    disc = (b * b - 4 * a * c).clamp_min(0)
    xi = ((2 * c) / (-b - torch.sqrt(disc))).clamp(0, 1)
    x = x0 + xi * w
    denom = s + t * (xi * (1 - xi))
    logd = _log_derivative(xi, s, d0, d1, denom)
    return torch.where(inside, x, y), torch.where(inside, -logd, 0.0)


class RQSTransformer(Transformer):
    r"""Monotone rational-quadratic spline transformer on :math:`[-B, B]` with identity tails.

    Each feature takes :math:`3K - 1` raw parameters from the conditioner, laid out as ``K`` widths,
    ``K`` heights and ``K - 1`` interior derivatives (see :func:`spline_knots`); the two boundary
    derivatives are fixed to 1 so the spline joins the identity tails with a continuous derivative.
    All-zero parameters give the identity, so zero-initialised conditioners start at the identity map.
    The inverse is closed form (a quadratic per element). Inputs outside :math:`[-B, B]` pass through
    unchanged with log-derivative 0 — no input is rejected.

    .. math:: y = \mathrm{RQS}(x; \theta) \text{ on } [-B, B], \qquad y = x \text{ elsewhere}.

    Args:
        bins: Number of bins :math:`K \ge 1`.
        bound: Half-width :math:`B > 0` of the spline interval.
        min_width, min_height, min_derivative: Lower limits keeping the spline well conditioned.

    Reference: Durkan, Bekasov, Murray & Papamakarios, "Neural Spline Flows", NeurIPS 2019.

    Example:
        >>> tau = RQSTransformer(bins=8, bound=3.0)
        >>> params = torch.randn(5, 2, tau.params_per_feature)
        >>> y, log_d = tau(torch.randn(5, 2), params)
        >>> x, _ = tau.inverse(y, params)
    """

    def __init__(
        self,
        bins: int = 8,
        bound: float = 3.0,
        *,
        min_width: float = 1e-3,
        min_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ) -> None:
        super().__init__()
        if not isinstance(bins, int) or isinstance(bins, bool):
            raise TypeError(f"bins must be an int, got {type(bins).__name__}")
        if bins < 1:
            raise ValueError(f"bins must be at least 1, got {bins}")
        if not (bound > 0 and math.isfinite(bound)):
            raise ValueError(f"bound must be positive and finite, got {bound}")
        if min_width * bins >= 1 or min_height * bins >= 1 or min_width < 0 or min_height < 0:
            raise ValueError(
                f"min_width and min_height must be in [0, 1/bins), got {min_width}, {min_height}"
            )
        if not 0 <= min_derivative < 1:
            raise ValueError(f"min_derivative must be in [0, 1), got {min_derivative}")
        self.bins = bins
        self.bound = float(bound)
        self.min_width = min_width
        self.min_height = min_height
        self.min_derivative = min_derivative
        self.params_per_feature = 3 * bins - 1

    def knots(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The knots ``(x, y, δ)`` from raw parameters of shape ``(..., 3K - 1)``."""
        if params.shape[-1] != self.params_per_feature:
            raise ValueError(
                f"RQSTransformer(bins={self.bins}) needs {self.params_per_feature} parameters per feature, "
                f"got {params.shape[-1]}"
            )
        K = self.bins
        # one transposing copy to knot-major storage (see spline_knots); the three slices are views of it
        w, h, d = params.movedim(-1, 0).contiguous().movedim(0, -1).split([K, K, K - 1], -1)
        return spline_knots(
            w,
            h,
            d,
            self.bound,
            min_width=self.min_width,
            min_height=self.min_height,
            min_derivative=self.min_derivative,
        )

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return rational_quadratic_spline(x, *self.knots(params))

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return rational_quadratic_spline_inverse(y, *self.knots(params))

    def extra_repr(self) -> str:
        return f"bins={self.bins}, bound={self.bound}"
