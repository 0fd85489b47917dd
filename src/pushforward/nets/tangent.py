r"""Forward-mode Jacobians of MLPs, for exact log-determinants and traces in low dimension.

For :math:`h_\ell = \phi(W_\ell [h_{\ell-1}; e] + b_\ell)` (``e`` an extra input that does not depend on
:math:`x`, such as the time or a context), the Jacobian columns :math:`T_\ell = \partial h_\ell/\partial x`
propagate alongside the activations:

.. math:: T_\ell = \phi'(a_\ell) \odot \big(T_{\ell-1} W_{\ell,x}^\top\big), \qquad T_0 = I,

where :math:`W_{\ell,x}` is the block of :math:`W_\ell` acting on :math:`h_{\ell-1}`. With ``D`` input
features this costs about ``D`` extra forward passes and gives the full per-sample Jacobian with a
first-order autograd graph, so training through it avoids the double backward of ``D`` vector–Jacobian
products with ``create_graph=True``.

Tangents are stored as ``(D, batch, width)``: slice ``j`` is :math:`\partial h/\partial x_j`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "activation_derivative",
    "has_derivative",
    "identity_tangent",
    "linear_tangent",
    "tangent_jacobian",
]


def _softplus(m: nn.Softplus, x: Tensor) -> Tensor:
    bx = m.beta * x
    return torch.where(bx > m.threshold, torch.ones_like(x), torch.sigmoid(bx))


def _silu(m: nn.SiLU, x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


#: Derivative rules ``(module, x) -> φ'(x)`` of torch's activation modules.
_RULES: tuple[tuple[type[nn.Module], Callable[[Any, Tensor], Tensor]], ...] = (
    (nn.Softplus, _softplus),
    (nn.Tanh, lambda m, x: 1 - torch.tanh(x) ** 2),
    (nn.ELU, lambda m, x: torch.where(x > 0, torch.ones_like(x), m.alpha * torch.exp(torch.clamp(x, max=0)))),
    (nn.SiLU, _silu),
    (nn.ReLU, lambda m, x: (x > 0).to(x.dtype)),
    (nn.LeakyReLU, lambda m, x: torch.where(x > 0, torch.ones_like(x), torch.full_like(x, m.negative_slope))),
    (nn.Identity, lambda m, x: torch.ones_like(x)),
)


def _rule(module: nn.Module) -> Callable[[Tensor], Tensor] | None:
    derivative = getattr(module, "derivative", None)
    if callable(derivative):
        return derivative
    for cls, rule in _RULES:
        if isinstance(module, cls):
            return partial(rule, module)
    return None


def has_derivative(module: nn.Module) -> bool:
    """Whether :func:`activation_derivative` knows ``module`` (no tensor work: cheap to ask every call)."""
    return _rule(module) is not None


def activation_derivative(module: nn.Module, x: Tensor) -> Tensor | None:
    r"""Elementwise derivative :math:`\phi'(x)` of an activation module, or ``None`` when it is unknown.

    Known: ``Softplus``, ``Tanh``, ``ELU``, ``SiLU``, ``ReLU``, ``LeakyReLU``, ``Identity``, and any module
    with a ``derivative(x)`` method (e.g. :class:`~pushforward.nets.lipschitz.LipSwish`)."""
    rule = _rule(module)
    return None if rule is None else rule(x)


def identity_tangent(x: Tensor) -> Tensor:
    """The tangents ``(D, batch, D)`` of ``x`` with respect to itself (identity columns)."""
    d = x.shape[-1]
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    return eye[:, None, :].expand(d, x.shape[0], d)


def linear_tangent(tangent: Tensor, weight: Tensor) -> Tensor:
    r"""Push tangents ``(D, batch, n)`` through a linear map whose first ``n`` input columns act on them
    (the remaining columns act on inputs that do not depend on :math:`x`)."""
    return F.linear(tangent, weight[:, : tangent.shape[-1]])


def tangent_jacobian(tangent: Tensor) -> Tensor:
    """Per-sample Jacobians ``(batch, out, D)`` from tangents ``(D, batch, out)``."""
    return tangent.permute(1, 2, 0)
