r"""Embedding networks: summarise an observation ``x`` into the context vector of a conditional flow.

* :class:`MLPEmbedding`: flattens ``x`` and applies an MLP (the default for vectors).
* :class:`CNNEmbedding`: convolution + pooling blocks, then an MLP, for image-like ``x`` ``(C, H, W)``.
* :class:`DeepSetEmbedding`: a permutation-invariant net for a set of ``n`` iid observations ``(n, k)``,

  .. math:: e(\{x_1, \dots, x_n\}) = \rho\Big(\frac1n \sum_{i=1}^n \phi(x_i)\Big),

  invariant to the order of the set and defined for any set size.

Every embedding has ``in_shape`` (one observation) and ``out_features`` (the context size), is trained
jointly with the flow, and maps ``(batch, *in_shape)`` to ``(batch, out_features)``.

Reference: Zaheer, Kottur, Ravanbakhsh, Póczos, Salakhutdinov & Smola, "Deep Sets", NeurIPS 2017;
Radev, Mertens, Voss, Ardizzone & Köthe, "BayesFlow: Learning Complex Stochastic Models With Invertible
Neural Networks", IEEE TNNLS 2020 (learned summary networks for amortised inference).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..registry import Registered
from .mlp import MLP
from .mlp import activation as make_activation

__all__ = ["CNNEmbedding", "DeepSetEmbedding", "MLPEmbedding"]


def _check_shape(x: Tensor, in_shape: tuple[int, ...], name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} expects a tensor, got {type(x).__name__}")
    k = len(in_shape)
    if x.dim() != k + 1 or tuple(x.shape[1:]) != in_shape:
        raise ValueError(
            f"{name} expects input of shape (batch, {', '.join(map(str, in_shape))}), got {tuple(x.shape)}"
        )


def _positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class MLPEmbedding(Registered, nn.Module):
    r"""Flatten ``x`` and apply an MLP: :math:`e(x) = \mathrm{MLP}(\operatorname{vec} x)`.

    Args:
        in_shape: Shape of one observation (an int for vectors).
        out_features: Size of the embedding.
        hidden: Hidden widths. activation: Hidden activation.

    Example:
        >>> e = MLPEmbedding(10, 4)
        >>> e(torch.randn(3, 10)).shape
        torch.Size([3, 4])
    """

    def __init__(
        self,
        in_shape: int | Sequence[int],
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        *,
        activation: str | Callable[[], nn.Module] = "relu",
    ) -> None:
        super().__init__()
        self.in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(int(s) for s in in_shape)
        self.out_features = _positive("out_features", out_features)
        self.net = MLP(math.prod(self.in_shape), out_features, hidden, activation=activation, zero_init=False)

    def forward(self, x: Tensor) -> Tensor:
        _check_shape(x, self.in_shape, "MLPEmbedding")
        return self.net(x.reshape(x.shape[0], -1))


class CNNEmbedding(Registered, nn.Module):
    r"""A small CNN for image-like observations ``(C, H, W)`` (or ``(H, W)``, one channel).

    Each block is ``conv 3×3 → activation → 2×2 max-pool``; the flattened features go through an MLP with
    hidden widths ``hidden`` to ``out_features``.

    Args:
        in_shape: ``(C, H, W)`` or ``(H, W)``.
        out_features: Size of the embedding.
        channels: Output channels of the conv blocks (one block each; a block is skipped for pooling once
            the map is 1 pixel wide).
        hidden: Hidden widths of the final MLP.

    Reference: LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document Recognition",
    Proc. IEEE 1998.

    Example:
        >>> e = CNNEmbedding((1, 16, 16), 8)
        >>> e(torch.randn(2, 1, 16, 16)).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        out_features: int,
        channels: Sequence[int] = (16, 32),
        hidden: Sequence[int] = (64,),
        *,
        activation: str | Callable[[], nn.Module] = "relu",
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        if len(self.in_shape) not in (2, 3) or min(self.in_shape) < 1:
            raise ValueError(f"CNNEmbedding needs in_shape (C, H, W) or (H, W), got {self.in_shape}")
        self.out_features = _positive("out_features", out_features)
        c, h, w = self.in_shape if len(self.in_shape) == 3 else (1, *self.in_shape)
        layers: list[nn.Module] = []
        for width in channels:
            layers += [nn.Conv2d(c, int(width), 3, padding=1), make_activation(activation)]
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = int(width)
        self.conv = nn.Sequential(*layers)
        self.head = MLP(c * h * w, out_features, hidden, activation=activation, zero_init=False)

    def forward(self, x: Tensor) -> Tensor:
        _check_shape(x, self.in_shape, "CNNEmbedding")
        if len(self.in_shape) == 2:
            x = x.unsqueeze(1)
        return self.head(self.conv(x).flatten(1))


class DeepSetEmbedding(Registered, nn.Module):
    r"""Permutation-invariant embedding of a set of ``n`` iid observations of ``element_features`` each.

    .. math:: e(X) = \rho\Big(\frac1n \sum_{i=1}^n \phi(x_i)\Big),

    with MLPs :math:`\phi` (``element_features → latent``) and :math:`\rho` (``latent → out_features``).
    Mean pooling makes the output independent of the order of the set and defined for any ``n``: ``in_shape``
    is ``(n, element_features)`` for the posterior's bookkeeping, but any set size is accepted.

    Reference: Zaheer et al., "Deep Sets", NeurIPS 2017.

    Example:
        >>> e = DeepSetEmbedding(2, 8, set_size=10)
        >>> x = torch.randn(3, 10, 2)
        >>> torch.allclose(e(x), e(x[:, torch.randperm(10)]), atol=1e-6)
        True
    """

    def __init__(
        self,
        element_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        latent: int = 64,
        *,
        set_size: int | None = None,
        activation: str | Callable[[], nn.Module] = "relu",
    ) -> None:
        super().__init__()
        self.element_features = _positive("element_features", element_features)
        self.out_features = _positive("out_features", out_features)
        self.in_shape = (set_size if set_size is not None else -1, element_features)
        self.phi = MLP(
            element_features, _positive("latent", latent), hidden, activation=activation, zero_init=False
        )
        self.act = make_activation(activation)
        self.rho = MLP(latent, out_features, hidden, activation=activation, zero_init=False)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"DeepSetEmbedding expects a tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.element_features or x.shape[1] < 1:
            raise ValueError(
                f"DeepSetEmbedding expects input of shape (batch, set_size ≥ 1, {self.element_features}), "
                f"got {tuple(x.shape)}"
            )
        b, n, k = x.shape
        pooled = torch.mean(self.phi(x.reshape(b * n, k)).reshape(b, n, -1), dim=1)
        return self.rho(self.act(pooled))
