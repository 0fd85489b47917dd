r"""Elementwise bijections: shift, scale, affine, normalisations and squashing maps.

Each acts on every scalar of the event independently, so its Jacobian is diagonal and
:math:`\log|\det J| = \sum_i \log|f_i'(x_i)|`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_in_interval
from ..transformers.affine import affine, affine_inverse
from .base import Transform, sum_except_batch

__all__ = [
    "ActNorm",
    "Affine",
    "BatchNorm",
    "Logit",
    "NormalCDF",
    "Scale",
    "Shift",
    "Sigmoid",
    "Tanh",
    "into_open_unit_interval",
    "log_sigmoid_derivative",
    "log_tanh_derivative",
]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# ---------------------------------------------------------------------------------- pure formulas
def log_sigmoid_derivative(x: Tensor) -> Tensor:
    r"""Elementwise :math:`\log \sigma'(x) = \log\sigma(x) + \log\sigma(-x)`, stable for large ``|x|``."""
    return -F.softplus(-x) - F.softplus(x)


def log_tanh_derivative(x: Tensor) -> Tensor:
    r"""Elementwise :math:`\log(1-\tanh^2 x) = 2(\log 2 - x - \operatorname{softplus}(-2x))`."""
    return 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))


def log_normal_pdf(x: Tensor) -> Tensor:
    r"""Elementwise :math:`\log \varphi(x)` of the standard normal."""
    return -0.5 * x * x - _LOG_SQRT_2PI


class Shift(Transform):
    r"""Learnable translation :math:`f(x) = x + b`, with :math:`\log|\det J| = 0`.

    Example:
        >>> z, ladj = Shift(3)(torch.randn(4, 3))
    """

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__(shape)
        self.shift = nn.Parameter(torch.zeros(self.event_shape))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x + self.shift, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z - self.shift, z.new_zeros(z.shape[0])


class Scale(Transform):
    r"""Elementwise multiplication :math:`f(x) = a \odot x`, :math:`\log|\det J| = \sum_i \log|a_i|`.

    The multipliers :math:`a` are raw parameters (they may be negative), as in Bittner's
    "elementwise multiplication flow"; the map is invertible while no :math:`a_i` is zero.

    Example:
        >>> z, ladj = Scale(3)(torch.randn(4, 3))
    """

    def __init__(self, shape: int | Sequence[int], init: float = 1.0) -> None:
        super().__init__(shape)
        self.scale = nn.Parameter(torch.full(self.event_shape, float(init)))

    def _ladj(self, x: Tensor) -> Tensor:
        return self.scale.abs().log().sum().expand(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x * self.scale, self._ladj(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z / self.scale, -self._ladj(z)


class Affine(Transform):
    r"""Learnable elementwise affine map :math:`f(x) = x \odot e^{s} + b`, :math:`\log|\det J| = \sum_i s_i`.

    Positivity of the scale is built in through the log-parameterisation, so the map is always
    invertible. NICE's final "rescaling layer" is an ``Affine`` with ``shift=False``.

    Example:
        >>> z, ladj = Affine(3)(torch.randn(4, 3))
    """

    def __init__(self, shape: int | Sequence[int], *, shift: bool = True) -> None:
        super().__init__(shape)
        self.log_scale = nn.Parameter(torch.zeros(self.event_shape))
        self.shift = nn.Parameter(torch.zeros(self.event_shape)) if shift else None

    def _shift(self, like: Tensor) -> Tensor:
        return self.shift if self.shift is not None else like.new_zeros(())

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, _ = affine(x, self._shift(x), self.log_scale)
        return y, self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, _ = affine_inverse(z, self._shift(z), self.log_scale)
        return x, -self.log_scale.sum().expand(z.shape[0])


def _channel_shape(event_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Parameter shape for one value per channel (axis 0 of the event), broadcastable over the rest."""
    return (event_shape[0],) + (1,) * (len(event_shape) - 1)


class ActNorm(Transform):
    r"""Activation normalisation: a per-channel affine map with data-dependent initialisation.

    .. math:: f(x) = (x - \mu) \odot e^{-s}, \qquad \log|\det J| = -S \sum_c s_c,

    where :math:`S` is the number of positions per channel (1 for vectors, :math:`H W` for images).
    On the first forward call in training mode, :math:`\mu` and :math:`e^{s}` are set to the batch
    mean and standard deviation per channel, so the output starts with zero mean and unit variance.

    Reference: Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", 2018.

    Example:
        >>> norm = ActNorm(3)
        >>> z, ladj = norm(torch.randn(64, 3) * 5 + 2)  # initialises on this batch
    """

    def __init__(self, shape: int | Sequence[int], eps: float = 1e-6) -> None:
        super().__init__(shape)
        pshape = _channel_shape(self.event_shape)
        self.loc = nn.Parameter(torch.zeros(pshape))
        self.log_scale = nn.Parameter(torch.zeros(pshape))
        self.register_buffer("initialized", torch.tensor(False))
        self.eps = eps
        self._positions = math.prod(self.event_shape[1:])

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set location and scale from the batch ``x`` (called automatically on the first batch)."""
        dims = [0, *range(2, x.dim())]
        self.loc.copy_(x.mean(dims).reshape(self.loc.shape))
        std = x.std(dims, unbiased=False)
        std = torch.where(std > self.eps, std, torch.ones_like(std))  # constant channels keep scale 1
        self.log_scale.copy_(std.log().reshape(self.log_scale.shape))
        self.initialized.fill_(True)

    def _ladj(self, x: Tensor) -> Tensor:
        return (-self._positions * self.log_scale.sum()).expand(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        return (x - self.loc) * torch.exp(-self.log_scale), self._ladj(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z * self.log_scale.exp() + self.loc, -self._ladj(z)


class BatchNorm(Transform):
    r"""Batch normalisation as a bijection (Dinh et al. 2017; Papamakarios et al., "Masked
    Autoregressive Flow for Density Estimation", 2017).

    .. math:: f(x) = \frac{x - m}{\sqrt{v + \epsilon}} \odot e^{\gamma} + \beta, \qquad
        \log|\det J| = S \sum_c \left(\gamma_c - \tfrac12 \log(v_c + \epsilon)\right).

    In training mode :math:`m, v` are the batch mean and (biased) variance per channel and the running
    averages are updated; in eval mode the running averages are used. The ladj is exact in both modes
    for the map actually applied (in training mode, the batch statistics are treated as constants of
    the map, as in the references). ``inverse`` always uses the running averages: it is the exact
    inverse of the eval-mode forward.

    Example:
        >>> bn = BatchNorm(2)
        >>> z, ladj = bn(torch.randn(128, 2))
    """

    def __init__(self, shape: int | Sequence[int], momentum: float = 0.05, eps: float = 1e-5) -> None:
        super().__init__(shape)
        pshape = _channel_shape(self.event_shape)
        self.log_gamma = nn.Parameter(torch.zeros(pshape))
        self.beta = nn.Parameter(torch.zeros(pshape))
        self.register_buffer("running_mean", torch.zeros(pshape))
        self.register_buffer("running_var", torch.ones(pshape))
        self.momentum = momentum
        self.eps = eps
        self._positions = math.prod(self.event_shape[1:])

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.training:
            return self.running_mean, self.running_var
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dims, keepdim=True)[0]
        var = x.var(dims, unbiased=False, keepdim=True)[0]
        with torch.no_grad():
            n = x.numel() // self.event_shape[0]
            unbiased = var * (n / max(n - 1, 1))
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(unbiased.detach(), self.momentum)
        return mean, var

    def _ladj(self, var: Tensor, batch: int) -> Tensor:
        return (self._positions * (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum()).expand(batch)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, var = self._stats(x)
        z = (x - mean) * torch.rsqrt(var + self.eps) * self.log_gamma.exp() + self.beta
        return z, self._ladj(var, x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, var = self.running_mean, self.running_var
        x = (z - self.beta) * torch.exp(-self.log_gamma) * torch.sqrt(var + self.eps) + mean
        return x, -self._ladj(var, z.shape[0])


def into_open_unit_interval(x: Tensor) -> Tensor:
    r"""Round values onto the open interval :math:`(0, 1)`: clamp to
    :math:`[\text{tiny}, 1 - \epsilon/2]` of the dtype (the smallest normal number and the largest number
    below 1). Moves only values that rounding put on (or past) an endpoint, by at most one ulp near 1.

    Example:
        >>> into_open_unit_interval(torch.tensor([0.0, 0.5, 1.0])).tolist()[1]
        0.5
    """
    info = torch.finfo(x.dtype)
    return x.clamp(info.tiny, 1.0 - info.eps / 2)


class Sigmoid(Transform):
    r"""The logistic map :math:`f(x) = 1/(1+e^{-x})` from :math:`\mathbb{R}` to :math:`(0, 1)`.

    :math:`\log|\det J| = \sum_i \log\sigma(x_i) + \log\sigma(-x_i)`. Its inverse is :class:`Logit`.

    Example:
        >>> u, ladj = Sigmoid(2)(torch.randn(4, 2))
    """

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__(shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(x), sum_except_batch(log_sigmoid_derivative(x))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_in_interval(z, 0.0, 1.0, "Sigmoid.inverse input")
        x = torch.logit(z)
        return x, -sum_except_batch(log_sigmoid_derivative(x))


class Logit(Transform):
    r"""The logit map on :math:`[0, 1]` with an optional boundary margin :math:`\alpha`:

    .. math:: f(x) = \operatorname{logit}(\alpha + (1 - 2\alpha) x), \qquad
        \log|\det J| = \sum_i \log(1-2\alpha) - \log p_i - \log(1 - p_i),\ p = \alpha + (1-2\alpha)x.

    With :math:`\alpha > 0` (RealNVP uses 0.05 for images) the endpoints 0 and 1 map to finite values, but
    the image is then the bounded interval :math:`[\operatorname{logit}\alpha, \operatorname{logit}(1-\alpha)]`,
    not :math:`\mathbb{R}`: a flow on :math:`\mathbb{R}^D` behind it loses the mass outside. With
    :math:`\alpha = 0` it is a bijection of :math:`(0, 1)` onto :math:`\mathbb{R}`, and the inverse rounds
    :math:`\sigma(z)` into the open interval (in float32 :math:`\sigma(z) = 1` exactly for :math:`z > 17`),
    so its outputs stay in the support. Such a rounded sample is not :math:`f^{-1}(z)` and the inverse's
    log-determinant at :math:`z` is not its density's (about 1.4 % of float32 mass of a perturbed image
    flow lies beyond the representable logit range): :attr:`inverse_clamps` tells
    :meth:`pushforward.Flow.sample_and_log_prob` to report the density of the returned sample instead.

    Example:
        >>> y, ladj = Logit(3, alpha=0.05)(torch.rand(4, 3))
    """

    def __init__(self, shape: int | Sequence[int], alpha: float = 0.0) -> None:
        super().__init__(shape)
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"alpha must lie in [0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_in_interval(x, 0.0, 1.0, "Logit input", closed=self.alpha > 0)
        p = self.alpha + (1.0 - 2.0 * self.alpha) * x
        y = torch.logit(p)
        ladj = math.log1p(-2.0 * self.alpha) * self.features - sum_except_batch(log_sigmoid_derivative(y))
        return y, ladj

    @property
    def inverse_clamps(self) -> bool:
        """Whether :meth:`inverse` may round a sample onto the open interval (``alpha == 0``)."""
        return self.alpha == 0.0

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = (torch.sigmoid(z) - self.alpha) / (1.0 - 2.0 * self.alpha)
        if self.alpha == 0.0:
            x = into_open_unit_interval(x)
        ladj = sum_except_batch(log_sigmoid_derivative(z)) - math.log1p(-2.0 * self.alpha) * self.features
        return x, ladj

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}"


class Tanh(Transform):
    r"""The hyperbolic tangent from :math:`\mathbb{R}` to :math:`(-1, 1)`,
    :math:`\log|\det J| = \sum_i \log(1 - \tanh^2 x_i)`.

    Example:
        >>> y, ladj = Tanh(2)(torch.randn(4, 2))
    """

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__(shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return torch.tanh(x), sum_except_batch(log_tanh_derivative(x))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_in_interval(z, -1.0, 1.0, "Tanh.inverse input")
        x = torch.atanh(z)
        return x, -sum_except_batch(log_tanh_derivative(x))


class NormalCDF(Transform):
    r"""The standard-normal CDF :math:`\Phi` from :math:`\mathbb{R}` to :math:`(0,1)`: inverse transform
    sampling, :math:`\log|\det J| = \sum_i \log \varphi(x_i)`. Its inverse is the probit.

    Example:
        >>> u, ladj = NormalCDF(2)(torch.randn(4, 2))  # u is uniform if x is standard normal
    """

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__(shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return torch.special.ndtr(x), sum_except_batch(log_normal_pdf(x))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_in_interval(z, 0.0, 1.0, "NormalCDF.inverse input")
        x = torch.special.ndtri(z)
        return x, -sum_except_batch(log_normal_pdf(x))
