r"""Affine and additive transformers and their pure formulas.

.. math:: y = x \odot e^{s} + t, \qquad \log \frac{\partial y}{\partial x} = s,

the affine coupling of RealNVP (Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP",
2017) and, with :math:`s = 0`, the additive coupling of NICE (Dinh, Krueger & Bengio, "NICE: Non-linear
Independent Components Estimation", 2015).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Transformer

__all__ = [
    "AdditiveTransformer",
    "AffineTransformer",
    "additive",
    "additive_inverse",
    "affine",
    "affine_inverse",
    "soft_clamp",
]


def soft_clamp(x: Tensor, bound: float) -> Tensor:
    r"""Smoothly squash ``x`` into ``(-bound, bound)``: :math:`b \tanh(x / b)`; identity near 0."""
    if bound is None or bound == float("inf"):
        return x
    return bound * torch.tanh(x / bound)


def affine(x: Tensor, shift: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
    """``y = x·exp(log_scale) + shift`` and its elementwise log-derivative ``log_scale``."""
    return torch.addcmul(shift, x, log_scale.exp()), log_scale


def affine_inverse(y: Tensor, shift: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
    """``x = (y − shift)·exp(−log_scale)`` and its elementwise log-derivative ``−log_scale``."""
    return (y - shift) * torch.exp(-log_scale), -log_scale


def additive(x: Tensor, shift: Tensor) -> Tensor:
    """``y = x + shift`` (log-derivative 0)."""
    return x + shift


def additive_inverse(y: Tensor, shift: Tensor) -> Tensor:
    """``x = y − shift`` (log-derivative 0)."""
    return y - shift


class AffineTransformer(Transformer):
    r"""Elementwise affine map :math:`y = x e^{s} + t` with a soft-clamped log-scale.

    The raw parameters are ``(t, s̃)``; the log-scale is :math:`s = b \tanh(\tilde s / b)` with
    ``b = clamp`` (RealNVP-style stabilisation, so one bad batch cannot blow the scale up), or
    :math:`s = \tilde s` when ``clamp=None``.

    Reference: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017.

    Example:
        >>> tau = AffineTransformer(clamp=3.0)
        >>> y, log_d = tau(torch.randn(4, 2), torch.zeros(4, 2, 2))
    """

    params_per_feature = 2

    def __init__(self, clamp: float | None = 3.0) -> None:
        super().__init__()
        self.clamp = clamp

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = params.unbind(-1)
        return shift, soft_clamp(raw, self.clamp) if self.clamp is not None else raw

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return affine(x, *self._split(params))

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return affine_inverse(y, *self._split(params))

    def extra_repr(self) -> str:
        return f"clamp={self.clamp}"


class AdditiveTransformer(Transformer):
    r"""Elementwise translation :math:`y = x + t` (volume preserving), the NICE coupling law.

    Reference: Dinh, Krueger & Bengio, "NICE: Non-linear Independent Components Estimation", 2015.
    """

    params_per_feature = 1

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return additive(x, params[..., 0]), torch.zeros_like(x)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return additive_inverse(y, params[..., 0]), torch.zeros_like(y)
