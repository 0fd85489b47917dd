"""Multi-layer perceptron conditioners."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..registry import Registered
from . import fast_linear

__all__ = ["MLP", "activation", "make_activation"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


def make_activation(name: str | Callable[[], nn.Module]) -> nn.Module:
    """An activation module from its name (``relu``, ``elu``, ``gelu``, ``silu``, ``tanh``, ``leaky_relu``,
    ``softplus``) or a factory."""
    if callable(name) and not isinstance(name, str):
        return name()
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}") from None


activation = make_activation
"""Alias of :func:`make_activation` (the name the package has always exported)."""


class MLP(Registered, nn.Module):
    r"""A fully connected network ``(x, context) -> params``, the default coupling conditioner.

    The context, when given, is concatenated to the input. With ``zero_init=True`` (the default) the
    last layer starts at zero, so a flow built from such conditioners starts at the identity map.

    Example:
        >>> net = MLP(3, 8, hidden=(64, 64), context=2)
        >>> net(torch.randn(5, 3), torch.randn(5, 2)).shape
        torch.Size([5, 8])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        *,
        context: int = 0,
        activation: str | Callable[[], nn.Module] = "relu",
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.context = context
        sizes = [in_features + context, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(make_activation(activation))
        self.net = nn.Sequential(*layers)
        if zero_init:
            last = self.net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context:
            if context is None:
                raise ValueError(f"this network expects a context of {self.context} features, got None")
            x = torch.cat([x, context], dim=-1)
        for layer in self.net:
            if type(layer) is nn.Linear and not (layer._forward_hooks or layer._forward_pre_hooks):
                x = fast_linear.linear(x, layer.weight, layer.bias)  # F.linear unless oneDNN is chosen
            else:
                x = layer(x)
        return x
