r"""Dequantized image models: a flow on :math:`[0, 1)^D` as a model of discrete pixels, with uniform or
variational (Flow++) dequantization, evaluated by the bound and bits per dimension of
:mod:`pushforward.data.images`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..data.images import bits_per_dim, check_levels, discrete_log_likelihood_bound, uniform_dequantize
from ..nets.conv import ConvResNet
from ..registry import Registered
from ..transforms.base import Compose, Transform
from ..transforms.coupling import AffineCoupling
from ..transforms.elementwise import into_open_unit_interval, log_normal_pdf, log_sigmoid_derivative
from ..transforms.image import channel_mask, checkerboard_mask, image_shape
from .core import Flow

__all__ = ["DequantizedFlow", "VariationalDequantizer"]


class VariationalDequantizer(Registered, nn.Module):
    r"""Flow++'s variational dequantization: a conditional flow :math:`q(u \mid x)` on :math:`(0, 1)^D`.

    .. math:: \varepsilon \sim \mathcal N(0, I), \quad h = g^{-1}(\varepsilon; x), \quad u = \sigma(h), \qquad
        \log q(u \mid x) = \log \mathcal N(\varepsilon) - \log\Big|\det\frac{\partial h}{\partial
        \varepsilon}\Big| - \sum_i \log \sigma'(h_i),

    where :math:`g` is a stack of affine couplings (alternating checkerboard and, with 2+ channels, channel
    masks) whose :class:`~pushforward.nets.ConvResNet` conditioners read the image :math:`x/L - 1/2` as extra
    input channels. Trained jointly with the model on the bound of :func:`discrete_log_likelihood_bound`.

    Reference: Ho, Chen, Srinivas, Duan & Abbeel, "Flow++: Improving Flow-Based Generative Models with
    Variational Dequantization and Architecture Design", ICML 2019.

    Example:
        >>> deq = VariationalDequantizer((1, 8, 8), levels=17, layers=2, hidden=16)
        >>> u, log_q = deq(torch.randint(0, 17, (4, 1, 8, 8)).float())
    """

    def __init__(
        self, shape: Sequence[int], levels: int = 256, *, layers: int = 4, hidden: int = 32, blocks: int = 1
    ) -> None:
        super().__init__()
        c, h, w = image_shape(shape)
        if layers < 1:
            raise ValueError(f"layers must be positive, got {layers}")
        self.shape = (c, h, w)
        self.levels = int(levels)
        parts: list[Transform] = []
        for i in range(layers):
            if c >= 2 and i % 2 == 1:
                mask = channel_mask((c, h, w), (i // 2) % 2 == 0)
            else:
                mask = checkerboard_mask((c, h, w), (i // 2 if c >= 2 else i) % 2)
            net = ConvResNet(c, 2 * c, hidden, blocks, context_channels=c)
            parts.append(AffineCoupling(mask, net, clamp=3.0))
        self.flow = Compose(parts)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Draw ``u ~ q(·|x)`` (reparameterised) and return ``(u, log q(u|x))``."""
        ctx = x / self.levels - 0.5
        eps = torch.randn_like(x)
        hh, ladj_inv = self.flow.inverse(eps, ctx)
        u = torch.sigmoid(hh)
        log_q = (log_normal_pdf(eps) - log_sigmoid_derivative(hh)).flatten(1).sum(1) - ladj_inv
        return u, log_q


class DequantizedFlow(Registered, nn.Module):
    r"""A flow on :math:`[0, 1)^D` viewed as a model of discrete pixels, with uniform or variational
    dequantization; :meth:`log_likelihood_bound` is the bound of the module docstring and
    :meth:`bits_per_dim` the standard bits/dim.

    Reference: Theis, van den Oord & Bethge, "A note on the evaluation of generative models", ICLR 2016
    (dequantization bound); Dinh et al., "Density estimation using Real NVP", 2017 (bits/dim, logit).

    Example:
        >>> from pushforward.flows import Glow
        >>> model = DequantizedFlow(Glow((1, 8, 8), levels=1, steps=2, hidden=(16,)), levels=17)
        >>> model.bits_per_dim(torch.randint(0, 17, (4, 1, 8, 8)).float()).shape
        torch.Size([4])
    """

    def __init__(
        self, flow: Flow, levels: int = 256, dequantizer: VariationalDequantizer | None = None
    ) -> None:
        super().__init__()
        if not isinstance(flow, Flow):
            raise TypeError(f"flow must be a Flow, got {type(flow).__name__}")
        if dequantizer is not None and dequantizer.levels != levels:
            raise ValueError("the dequantizer and the model use different numbers of levels")
        self.flow = flow
        self.levels = int(levels)
        self.dequantizer = dequantizer
        self.event_shape: tuple[int, ...] = tuple(flow.event_shape)
        self.context_features: int = flow.context_features

    @property
    def features(self) -> int:
        """Number of pixels (scalar dimensions) of one image."""
        return math.prod(self.event_shape)

    def log_likelihood_bound(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """One-sample estimate of the lower bound on ``log P(x)`` (nats) per image."""
        check_levels(x, self.levels)
        if self.dequantizer is None:
            y, log_q = uniform_dequantize(x, self.levels), None
        else:
            u, log_q = self.dequantizer(x)
            y = into_open_unit_interval((x + u) / self.levels)
        dims = math.prod(x.shape[1:])
        return discrete_log_likelihood_bound(self.flow.log_prob(y, context), dims, self.levels, log_q)

    def bits_per_dim(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Bits per dimension (from the bound) per image."""
        return bits_per_dim(self.log_likelihood_bound(x, context), math.prod(x.shape[1:]))

    @torch.no_grad()
    def evaluate(
        self, x: Tensor, context: Tensor | None = None, batch_size: int = 500, samples: int = 1
    ) -> float:
        """Mean bits/dim over a data set (eval mode; ``samples`` dequantization draws averaged)."""
        was = self.training
        self.eval()
        try:
            tot = 0.0
            for _ in range(samples):
                for i in range(0, x.shape[0], batch_size):
                    c = context[i : i + batch_size] if context is not None else None
                    tot += float(self.bits_per_dim(x[i : i + batch_size], c).sum())
        finally:
            self.train(was)
        return tot / (samples * x.shape[0])
