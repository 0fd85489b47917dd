r"""Base distributions for flows, as ``nn.Module`` s so they follow ``.to(device, dtype)``.

Every distribution here has an ``event_shape`` and implements ``log_prob(z)`` (summed over the event)
and ``rsample(sample_shape)``; ``sample`` and ``rsample_and_log_prob`` are derived.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import Registered
from ..transforms.base import as_shape

__all__ = ["BoxUniform", "DiagNormal", "Distribution", "MixtureOfGaussians", "StandardNormal"]

_LOG_2PI = math.log(2 * math.pi)


def _sample_shape(sample_shape: int | Sequence[int] | torch.Size) -> tuple[int, ...]:
    if isinstance(sample_shape, int):
        return (sample_shape,)
    return tuple(int(s) for s in sample_shape)


class Distribution(Registered, nn.Module):
    """Abstract base distribution with an ``event_shape``, ``log_prob`` and ``rsample``."""

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        super().__init__()
        self.event_shape: tuple[int, ...] = as_shape(event_shape)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of ``z`` of shape ``(*batch, *event_shape)``; returns shape ``batch``."""
        raise NotImplementedError

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        """A (reparameterised where possible) sample of shape ``(*sample_shape, *event_shape)``."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        """A sample without gradient."""
        return self.rsample(sample_shape)

    def rsample_and_log_prob(self, sample_shape: int | Sequence[int] = ()) -> tuple[Tensor, Tensor]:
        """A sample and its log-density."""
        z = self.rsample(sample_shape)
        return z, self.log_prob(z)

    def _sum_event(self, x: Tensor) -> Tensor:
        k = len(self.event_shape)
        return x.sum(tuple(range(-k, 0))) if k else x


class StandardNormal(Distribution):
    r"""The standard normal :math:`\mathcal{N}(0, I)` on ``event_shape``.

    .. math:: \log p(z) = -\tfrac12 \|z\|^2 - \tfrac{D}{2}\log 2\pi.

    Example:
        >>> StandardNormal(2).log_prob(torch.zeros(1, 2))
        tensor([-1.8379])
    """

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        super().__init__(event_shape)
        self.register_buffer("_zero", torch.zeros(()))

    def log_prob(self, z: Tensor) -> Tensor:
        D = math.prod(self.event_shape)
        return -0.5 * self._sum_event(z * z) - 0.5 * D * _LOG_2PI

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        shape = _sample_shape(sample_shape) + self.event_shape
        return torch.randn(shape, dtype=self._zero.dtype, device=self._zero.device)


class DiagNormal(Distribution):
    r"""A learnable diagonal Gaussian :math:`\mathcal{N}(\mu, \operatorname{diag}(\sigma^2))`, with
    :math:`\log\sigma` as the parameter.

    Example:
        >>> q = DiagNormal(3)
        >>> q.rsample((5,)).shape
        torch.Size([5, 3])
    """

    def __init__(self, event_shape: int | Sequence[int], loc: float = 0.0, scale: float = 1.0) -> None:
        super().__init__(event_shape)
        self.loc = nn.Parameter(torch.full(self.event_shape, float(loc)))
        self.log_scale = nn.Parameter(torch.full(self.event_shape, math.log(scale)))

    def log_prob(self, z: Tensor) -> Tensor:
        u = (z - self.loc) * torch.exp(-self.log_scale)
        return self._sum_event(-0.5 * u * u - self.log_scale - 0.5 * _LOG_2PI)

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        shape = _sample_shape(sample_shape) + self.event_shape
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + eps * self.log_scale.exp()


class BoxUniform(Distribution):
    r"""The uniform distribution on the box :math:`\prod_i [a_i, b_i]`.

    ``log_prob`` is :math:`-\sum_i \log(b_i - a_i)` inside the box and :math:`-\infty` outside.

    Example:
        >>> import torch
        >>> BoxUniform(torch.zeros(2), 2 * torch.ones(2)).log_prob(torch.tensor([[0.5, 1.5]]))
        tensor([-1.3863])
    """

    def __init__(
        self, low: Tensor | float, high: Tensor | float, event_shape: int | Sequence[int] | None = None
    ):
        low_t = torch.as_tensor(low, dtype=torch.get_default_dtype())
        high_t = torch.as_tensor(high, dtype=torch.get_default_dtype())
        if event_shape is not None:
            low_t = low_t.expand(as_shape(event_shape)).clone()
            high_t = high_t.expand(as_shape(event_shape)).clone()
        if low_t.shape != high_t.shape or low_t.dim() == 0:
            raise ValueError("low and high must have the same, non-scalar shape (or give event_shape)")
        if not bool((high_t > low_t).all()):
            raise ValueError("every high bound must exceed its low bound")
        super().__init__(tuple(low_t.shape))
        self.register_buffer("low", low_t)
        self.register_buffer("high", high_t)

    def log_prob(self, z: Tensor) -> Tensor:
        inside = self._sum_event(((z >= self.low) & (z <= self.high)).to(z.dtype)) == math.prod(
            self.event_shape
        )
        lp = -(self.high - self.low).log().sum()
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        shape = _sample_shape(sample_shape) + self.event_shape
        u = torch.rand(shape, dtype=self.low.dtype, device=self.low.device)
        return self.low + u * (self.high - self.low)


class MixtureOfGaussians(Distribution):
    r"""A learnable mixture of ``k`` diagonal Gaussians on vectors.

    .. math:: p(z) = \sum_{j=1}^k \pi_j\, \mathcal{N}(z; \mu_j, \operatorname{diag}\sigma_j^2),
        \qquad \pi = \operatorname{softmax}(\ell).

    ``rsample`` is reparameterised with respect to the means and scales; the component choice is discrete,
    so no gradient reaches the mixture logits through samples (``log_prob`` gradients do).

    Example:
        >>> mog = MixtureOfGaussians(2, 4)
        >>> mog.log_prob(mog.sample((3,))).shape
        torch.Size([3])
    """

    def __init__(self, features: int, components: int, *, spread: float = 1.0, seed: int = 0) -> None:
        super().__init__(features)
        g = torch.Generator().manual_seed(seed)
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(spread * torch.randn(components, features, generator=g))
        self.log_scale = nn.Parameter(torch.zeros(components, features))

    def log_prob(self, z: Tensor) -> Tensor:
        u = (z.unsqueeze(-2) - self.loc) * torch.exp(-self.log_scale)
        comp = (-0.5 * u * u - self.log_scale - 0.5 * _LOG_2PI).sum(-1)
        return torch.logsumexp(comp + F.log_softmax(self.logits, -1), -1)

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        shape = _sample_shape(sample_shape)
        n = math.prod(shape)
        idx = torch.multinomial(F.softmax(self.logits.detach(), -1), n, replacement=True)
        eps = torch.randn(n, self.event_shape[0], dtype=self.loc.dtype, device=self.loc.device)
        z = self.loc[idx] + eps * self.log_scale[idx].exp()
        return z.reshape(*shape, *self.event_shape)
