r"""Distributions on integers: the discretized logistic (mixture) and the categorical, as flow bases.

A *discretized* logistic puts on each integer :math:`k` the mass of the logistic density on
:math:`[k - \tfrac12, k + \tfrac12]`:

.. math:: P(k \mid \mu, s) = \sigma\!\left(\frac{k + \frac12 - \mu}{s}\right)
    - \sigma\!\left(\frac{k - \frac12 - \mu}{s}\right), \qquad \sum_{k \in \mathbb Z} P(k) = 1,

and a mixture weights :math:`M` of them with :math:`\operatorname{softmax}(\pi)`. The pmf is a smooth
function of :math:`k` read as a real number, so a straight-through rounded latent (see
:mod:`pushforward.transforms.discrete`) receives a gradient.

Reference: Salimans, Karpathy, Chen & Kingma, "PixelCNN++", ICLR 2017 (discretized logistic mixture);
Hoogeboom, Peters, van den Berg & Welling, "Integer Discrete Flows and Lossless Compression", NeurIPS 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Distribution, _sample_shape

__all__ = [
    "Categorical",
    "DiscretizedLogisticMixture",
    "discretized_logistic_cdf",
    "discretized_logistic_log_pmf",
    "discretized_logistic_mixture_log_pmf",
]


def discretized_logistic_log_pmf(z: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
    r""":math:`\log P(z \mid \mu, s)` of the discretized logistic, elementwise (broadcasting).

    Computed as :math:`\log\big(\sigma(b) - \sigma(a)\big)` with :math:`a = (z - \frac12 - \mu)/s`,
    :math:`b = a + 1/s`, in the stable form :math:`\log\sigma(b) + \log(1 - e^{a - b}) + \log\sigma(-a)`
    (using :math:`\sigma(b) - \sigma(a) = \sigma(b)\,\sigma(-a)\,(1 - e^{a-b})`), accurate in both tails.

    Example:
        >>> k = torch.arange(-60.0, 61.0)
        >>> p = discretized_logistic_log_pmf(k, torch.tensor(0.3), torch.tensor(0.5)).exp().sum()
        >>> bool(abs(p - 1) < 1e-6)
        True
    """
    inv_s = torch.exp(-log_scale)
    a = (z - 0.5 - loc) * inv_s
    return F.logsigmoid(a + inv_s) + F.logsigmoid(-a) + torch.log(-torch.expm1(-inv_s))


def discretized_logistic_mixture_log_pmf(z: Tensor, logits: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
    r""":math:`\log \sum_m \operatorname{softmax}(\pi)_m P(z \mid \mu_m, s_m)`; parameters carry the
    :math:`M` components in their last dimension, ``z`` has the batch shape (one fewer dimension).

    Example:
        >>> z = torch.zeros(4)
        >>> discretized_logistic_mixture_log_pmf(z, torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, 3)).shape
        torch.Size([4])
    """
    comp = discretized_logistic_log_pmf(z.unsqueeze(-1), loc, log_scale)
    return torch.logsumexp(comp + F.log_softmax(logits, -1), -1)


def discretized_logistic_cdf(k: Tensor, logits: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
    r""":math:`P(Z \le k - \frac12) = \sum_m w_m \sigma((k - \frac12 - \mu_m)/s_m)`: the mixture's mass below
    integer ``k``, i.e. the cumulative table an entropy coder needs (``k`` broadcasts against the
    parameters without their component dimension).

    Example:
        >>> c = discretized_logistic_cdf(torch.tensor(0.0), torch.zeros(1), torch.zeros(1), torch.zeros(1))
        >>> round(float(c), 4)  # sigmoid(-1/2)
        0.3775
    """
    w = torch.softmax(logits, -1)
    return (w * torch.sigmoid((k.unsqueeze(-1) - 0.5 - loc) * torch.exp(-log_scale))).sum(-1)


class DiscretizedLogisticMixture(Distribution):
    r"""A learnable discretized logistic mixture per element, independent across the event:
    :math:`\log P(z) = \sum_i \log \sum_m w_{im} P(z_i \mid \mu_{im}, s_{im})` on :math:`\mathbb Z^D`.

    Args:
        event_shape: Shape of one event.
        components: Mixture components :math:`M` per element.
        loc: Initial location (components spread by ``spread`` around it).
        scale: Initial scale of every component.
        spread: Initial distance between neighbouring component locations.

    Reference: Salimans et al., "PixelCNN++", ICLR 2017; Hoogeboom et al., "Integer Discrete Flows and
    Lossless Compression", NeurIPS 2019.

    Example:
        >>> base = DiscretizedLogisticMixture(3, components=2)
        >>> z = base.sample((5,))
        >>> bool((z == z.round()).all()), base.log_prob(z).shape
        (True, torch.Size([5]))
    """

    def __init__(
        self,
        event_shape: int | Sequence[int],
        components: int = 1,
        *,
        loc: float = 0.0,
        scale: float = 1.0,
        spread: float = 1.0,
    ) -> None:
        super().__init__(event_shape)
        if not isinstance(components, int) or components < 1:
            raise ValueError(f"components must be a positive int, got {components!r}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        shape = (*self.event_shape, components)
        offsets = spread * (torch.arange(components, dtype=torch.float32) - (components - 1) / 2)
        self.logits = nn.Parameter(torch.zeros(shape))
        self.loc = nn.Parameter((loc + offsets).expand(shape).clone())
        self.log_scale = nn.Parameter(torch.full(shape, math.log(scale)))

    def log_prob(self, z: Tensor) -> Tensor:
        return self._sum_event(discretized_logistic_mixture_log_pmf(z, self.logits, self.loc, self.log_scale))

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        return sample_discretized_logistic_mixture(
            _sample_shape(sample_shape), self.logits, self.loc, self.log_scale
        )


def sample_discretized_logistic_mixture(
    sample_shape: tuple[int, ...], logits: Tensor, loc: Tensor, log_scale: Tensor
) -> Tensor:
    """Integer draws of shape ``(*sample_shape, *logits.shape[:-1])`` (no gradient: the draw is discrete)."""
    with torch.no_grad():
        shape = (*sample_shape, *logits.shape)
        g = -torch.log(-torch.log(torch.rand(shape, dtype=loc.dtype, device=loc.device).clamp_min(1e-12)))
        m = (logits.expand(shape) + g).argmax(-1, keepdim=True)
        mu = loc.expand(shape).gather(-1, m).squeeze(-1)
        s = log_scale.expand(shape).gather(-1, m).squeeze(-1).exp()
        u = torch.rand(mu.shape, dtype=mu.dtype, device=mu.device).clamp(1e-7, 1 - 1e-7)
        return torch.round(mu + s * (torch.log(u) - torch.log1p(-u)))


class Categorical(Distribution):
    r"""Independent learnable categoricals on :math:`\{0, \dots, K-1\}^D`:
    :math:`\log P(z) = \sum_i \log \operatorname{softmax}(\ell_i)_{z_i}`.

    ``log_prob`` takes integer values stored in a floating tensor. So that a straight-through latent of a
    discrete flow gets a gradient, the table is read with circular linear interpolation: the value at an
    integer is exact, the derivative in :math:`z_i` is :math:`\log P(z_i + 1) - \log P(z_i)` (mod :math:`K`).

    Reference: Tran, Vafa, Agrawal, Dinh & Poole, "Discrete Flows: Invertible Generative Models of Discrete
    Data", NeurIPS 2019.

    Example:
        >>> base = Categorical(2, categories=3)
        >>> z = torch.tensor([[0.0, 2.0]])
        >>> base.log_prob(z)
        tensor([-2.1972], grad_fn=<SumBackward1>)
    """

    def __init__(self, features: int, categories: int) -> None:
        super().__init__(features)
        if not isinstance(categories, int) or categories < 2:
            raise ValueError(f"categories must be an int >= 2, got {categories!r}")
        self.categories = categories
        self.logits = nn.Parameter(torch.zeros(*self.event_shape, categories))

    def log_prob(self, z: Tensor) -> Tensor:
        table = F.log_softmax(self.logits, -1)
        k = z.detach().round()
        if not bool(((k >= 0) & (k < self.categories) & (k == z.detach())).all()):
            raise ValueError(f"Categorical.log_prob takes integers in [0, {self.categories - 1}]")
        idx = k.long()
        here = table.expand(*z.shape, self.categories).gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        nxt = table.expand(*z.shape, self.categories).gather(-1, ((idx + 1) % self.categories).unsqueeze(-1))
        return self._sum_event(here + (z - k) * (nxt.squeeze(-1) - here))

    def encode_symbols(
        self, coder, k: int, z: Tensor, kept: Tensor | None, context: Tensor | None = None
    ) -> None:
        """Codec protocol (:mod:`pushforward.codec`): push the values ``z`` with their tables."""
        coder.push_categorical(z, torch.softmax(self.logits, -1).reshape(-1, self.categories).numpy())

    def decode_symbols(self, coder, k: int, kept: Tensor | None, context: Tensor | None = None) -> Tensor:
        """Codec protocol: pop the values pushed by :meth:`encode_symbols`, shaped ``(1, *event_shape)``."""
        probs = torch.softmax(self.logits, -1).reshape(-1, self.categories).numpy()
        return torch.from_numpy(coder.pop_categorical(probs)).reshape(1, *self.event_shape)

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        shape = _sample_shape(sample_shape)
        with torch.no_grad():
            probs = torch.softmax(self.logits, -1).reshape(-1, self.categories)
            n = math.prod(shape)
            draws = torch.multinomial(probs, n, replacement=True).T  # (n, D)
            return draws.reshape(*shape, *self.event_shape).to(self.logits.dtype)
