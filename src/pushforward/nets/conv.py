"""Convolutional conditioners for image couplings."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..registry import Registered
from .mlp import activation as make_activation

__all__ = ["ConvResNet"]


class ConvResNet(Registered, nn.Module):
    r"""A convolutional residual network ``(x, context) -> params`` for image coupling layers.

    .. math:: h_0 = \mathrm{conv}_{k}([x, c_{\text{img}}]) + W_c\, c_{\text{vec}}, \qquad
        h_{b} = h_{b-1} + \mathrm{conv}_k(\sigma(\mathrm{conv}_k(\sigma(h_{b-1})))), \qquad
        y = \mathrm{conv}_k(\sigma(h_B)),

    with ``same`` padding so the spatial size is kept. A vector context (e.g. a one-hot class) enters as a
    learned per-channel bias of the first feature map; an image context (``context_channels > 0``, e.g. the
    image a variational dequantizer conditions on) is concatenated to the input channels. With
    ``zero_init=True`` the output convolution starts at zero, so couplings start at the identity.

    Used as :class:`~pushforward.transforms.Coupling`'s conditioner it receives ``x * mask`` of shape
    ``(B, C, H, W)`` and returns ``(B, P * C, H, W)``.

    Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016; the RealNVP and Glow
    conditioners (Dinh et al. 2017; Kingma & Dhariwal 2018).

    Example:
        >>> net = ConvResNet(2, 4, hidden=16, blocks=1, context=10)
        >>> net(torch.randn(3, 2, 8, 8), torch.zeros(3, 10)).shape
        torch.Size([3, 4, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 64,
        blocks: int = 2,
        *,
        context: int = 0,
        context_channels: int = 0,
        kernel_size: int = 3,
        activation: str | Callable[[], nn.Module] = "relu",
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("hidden", hidden)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if blocks < 0 or context < 0 or context_channels < 0:
            raise ValueError("blocks, context and context_channels must be non-negative")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        pad = kernel_size // 2
        self.context = int(context)
        self.context_channels = int(context_channels)
        self.inp = nn.Conv2d(in_channels + context_channels, hidden, kernel_size, padding=pad)
        self.cond = nn.Linear(context, hidden) if context else None
        self.blocks = nn.ModuleList(
            nn.Sequential(
                make_activation(activation),
                nn.Conv2d(hidden, hidden, kernel_size, padding=pad),
                make_activation(activation),
                nn.Conv2d(hidden, hidden, kernel_size, padding=pad),
            )
            for _ in range(blocks)
        )
        self.act = make_activation(activation)
        self.out = nn.Conv2d(hidden, out_channels, kernel_size, padding=pad)
        if zero_init:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"ConvResNet expects (B, C, H, W) inputs, got shape {tuple(x.shape)}")
        vec = None
        if self.context_channels:
            if context is None or context.dim() != 4:
                raise ValueError(f"this network expects an image context of {self.context_channels} channels")
            x = torch.cat([x, context], 1)
        elif self.context:
            if context is None:
                raise ValueError(f"this network expects a context of {self.context} features, got None")
            vec = context
        h = self.inp(x)
        if vec is not None and self.cond is not None:
            h = h + self.cond(vec)[:, :, None, None]
        for block in self.blocks:
            h = h + block(h)
        return self.out(self.act(h))
