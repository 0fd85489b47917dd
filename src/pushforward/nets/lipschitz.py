r"""Lipschitz-constrained networks for residual flows: spectral normalisation, LipSwish, a Lipschitz MLP.

A residual map :math:`x \mapsto x + g(x)` is invertible when :math:`\operatorname{Lip}(g) < 1`. For an MLP
:math:`g = W_L \circ \phi \circ \dots \circ \phi \circ W_1` with 1-Lipschitz activations,
:math:`\operatorname{Lip}(g) \le \prod_\ell \|W_\ell\|_2`, so rescaling every weight to spectral norm at
most :math:`c < 1` gives :math:`\operatorname{Lip}(g) \le c^L < 1`.

References: Miyato, Kataoka, Koyama & Yoshida, "Spectral Normalization for Generative Adversarial
Networks", ICLR 2018; Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen, "Invertible Residual Networks",
ICML 2019; Chen, Behrmann, Duvenaud & Jacobsen, "Residual Flows for Invertible Generative Modeling",
NeurIPS 2019.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import Registered
from .tangent import activation_derivative, has_derivative, identity_tangent, linear_tangent, tangent_jacobian

__all__ = ["LipSwish", "LipschitzMLP", "SpectralLinear", "power_iteration"]


def power_iteration(weight: Tensor, u: Tensor, v: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    r"""``iterations`` steps of the power method for the top singular vectors of ``weight`` (``(m, n)``).

    .. math:: v \leftarrow \frac{W^\top u}{\|W^\top u\|}, \qquad u \leftarrow \frac{W v}{\|W v\|},

    starting from ``(u, v)``; returns the new unit vectors (no gradient). :math:`\sigma \approx u^\top W v`
    then estimates the spectral norm from below, and converges to it.
    """
    with torch.no_grad():
        for _ in range(iterations):
            v = F.normalize(weight.t() @ u, dim=0, eps=1e-12)
            u = F.normalize(weight @ v, dim=0, eps=1e-12)
    return u, v


class SpectralLinear(nn.Module):
    r"""A linear layer whose weight is rescaled to spectral norm at most ``coeff``:

    .. math:: \tilde W = \frac{W}{\max(1, \hat\sigma / c)}, \qquad \hat\sigma = u^\top W v,

    with :math:`(u, v)` the power-iteration estimates of the top singular vectors, stored as buffers.
    In training mode every call with autograd enabled refines them with ``iterations`` power steps (Miyato
    et al. 2018); in training mode under ``torch.no_grad()`` (e.g. inside a fixed-point solve, where the map
    must stay fixed) the stored vectors are used as they are. The gradient flows through ``σ̂`` with
    ``(u, v)`` held fixed, as in the reference. A power-iteration estimate is a *lower* bound of the
    spectral norm, and a stale one (weights edited, loaded or perturbed since the last refinement) can be
    far below it, which would break the bound; so in **eval mode** :math:`\hat\sigma` is replaced by the
    exact spectral norm :math:`\|W\|_2` (an SVD, cached until the weight changes): whatever the weights,
    :math:`\|\tilde W\|_2 \le c` holds exactly in evaluation, deterministically, and a loaded
    ``state_dict`` reproduces outputs exactly. After training the two agree (the vectors have converged).

    Reference: Miyato et al., "Spectral Normalization for Generative Adversarial Networks", ICLR 2018.

    Example:
        >>> layer = SpectralLinear(3, 16, coeff=0.9)
        >>> layer(torch.randn(5, 3)).shape
        torch.Size([5, 16])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        coeff: float = 0.97,
        iterations: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 < coeff:
            raise ValueError(f"coeff must be positive, got {coeff}")
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.coeff = float(coeff)
        self.iterations = int(iterations)
        lin = nn.Linear(in_features, out_features, bias=bias)
        self.weight = nn.Parameter(lin.weight.detach().clone())
        self.bias = nn.Parameter(lin.bias.detach().clone()) if bias else None
        g = torch.Generator().manual_seed(0)
        self.register_buffer("u", F.normalize(torch.randn(out_features, generator=g), dim=0))
        self.register_buffer("v", F.normalize(torch.randn(in_features, generator=g), dim=0))
        self._norm_cache: tuple[Tensor, Tensor] | None = None
        self.refresh()

    @torch.no_grad()
    def refresh(self, iterations: int = 200) -> None:
        """Run ``iterations`` power steps on the current weight (call after editing the weight by hand)."""
        u, v = power_iteration(self.weight, self.u.to(self.weight), self.v.to(self.weight), iterations)
        self.u.copy_(u)
        self.v.copy_(v)

    def sigma(self) -> Tensor:
        """The spectral-norm estimate :math:`u^\\top W v` (differentiable in ``W``)."""
        return torch.dot(self.u, self.weight @ self.v)

    def spectral_norm(self) -> Tensor:
        """The exact spectral norm :math:`\\|W\\|_2` (differentiable when autograd is on; otherwise cached
        until the weight changes)."""
        w = self.weight
        if torch.is_grad_enabled() and w.requires_grad:
            return torch.linalg.matrix_norm(w, ord=2)
        cache = self._norm_cache
        if (
            cache is not None
            and cache[0].shape == w.shape
            and cache[0].dtype == w.dtype
            and cache[0].device == w.device
            and torch.equal(cache[0], w)
        ):
            return cache[1]
        with torch.no_grad():
            norm = torch.linalg.matrix_norm(w, ord=2)
            self._norm_cache = (w.detach().clone(), norm)
        return norm

    def normalized_weight(self) -> Tensor:
        r"""The rescaled weight :math:`\tilde W`: in training mode from the power-iteration estimate (refining
        ``(u, v)`` first when autograd is on), in eval mode from the exact spectral norm."""
        if not self.training:
            sigma = self.spectral_norm()
        else:
            if self.iterations > 0 and torch.is_grad_enabled():
                u, v = power_iteration(self.weight, self.u, self.v, self.iterations)
                with torch.no_grad():
                    self.u.copy_(u)
                    self.v.copy_(v)
            sigma = self.sigma()
        return self.weight / torch.clamp(sigma / self.coeff, min=1.0)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, coeff={self.coeff}, iterations={self.iterations}"


def lipswish(x: Tensor, beta: Tensor | float = 1.0) -> Tensor:
    r""":math:`\operatorname{LipSwish}(x) = x\,\sigma(\beta x) / 1.1`, 1-Lipschitz for every
    :math:`\beta > 0`."""
    return x * torch.sigmoid(beta * x) / 1.1


class LipSwish(Registered, nn.Module):
    r"""The LipSwish activation :math:`\phi(x) = x\,\sigma(\beta x)/1.1` with learnable
    :math:`\beta = \operatorname{softplus}(b) > 0`.

    :math:`\sup_x |\frac{d}{dx} x\sigma(\beta x)| \le 1.0998` for every :math:`\beta`, so dividing by 1.1
    makes it 1-Lipschitz; unlike ReLU it is smooth with non-vanishing second derivative, which keeps
    the log-determinant gradient of residual flows informative.

    Reference: Chen, Behrmann, Duvenaud & Jacobsen, "Residual Flows for Invertible Generative Modeling",
    NeurIPS 2019 (Sec. 4).

    Example:
        >>> LipSwish()(torch.linspace(-3, 3, 5)).shape
        torch.Size([5])
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        # softplus^{-1}(beta)
        self.raw_beta = nn.Parameter(torch.tensor(float(beta)).expm1().log())

    @property
    def beta(self) -> Tensor:
        return F.softplus(self.raw_beta)

    def forward(self, x: Tensor) -> Tensor:
        return lipswish(x, self.beta)

    def derivative(self, x: Tensor) -> Tensor:
        r""":math:`\phi'(x) = \big(s + \beta x\, s (1 - s)\big) / 1.1`, :math:`s = \sigma(\beta x)`."""
        beta = self.beta
        s = torch.sigmoid(beta * x)
        return (s + beta * x * s * (1 - s)) / 1.1


_LIP_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "lipswish": LipSwish,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}


class LipschitzMLP(Registered, nn.Module):
    r"""An MLP :math:`g(x, c)` with :math:`\operatorname{Lip}_x(g) \le c^{L} < 1`: spectrally normalised
    linear layers (:class:`SpectralLinear`, coefficient ``coeff``) and 1-Lipschitz activations.

    The context, when given, is concatenated to the input of the first layer; the Lipschitz bound in
    :math:`x` holds for every fixed context because :math:`\|W [x; c] - W [x'; c]\| \le \|W\|_2 \|x - x'\|`.

    Args:
        features: Input and output size.
        hidden: Hidden layer sizes.
        context: Context features.
        coeff: Spectral-norm bound of every layer (``0 < coeff < 1`` for an invertible residual block).
        iterations: Power-iteration steps per training call.
        activation: ``"lipswish"`` (default), ``"elu"``, ``"tanh"``, ``"relu"`` or a factory of a
            1-Lipschitz module.

    Example:
        >>> g = LipschitzMLP(2, hidden=(32, 32), coeff=0.9)
        >>> g(torch.randn(4, 2)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (64, 64),
        *,
        context: int = 0,
        coeff: float = 0.97,
        iterations: int = 1,
        activation: str | Callable[[], nn.Module] = "lipswish",
    ) -> None:
        super().__init__()
        if features <= 0:
            raise ValueError(f"features must be positive, got {features}")
        if isinstance(activation, str) and activation not in _LIP_ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_LIP_ACTIVATIONS)}")
        make = _LIP_ACTIVATIONS[activation] if isinstance(activation, str) else activation
        self.features, self.context = int(features), int(context)
        sizes = [features + context, *hidden, features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(SpectralLinear(a, b, coeff=coeff, iterations=iterations))
            if i < len(sizes) - 2:
                layers.append(make())
        self.net = nn.Sequential(*layers)

    def lipschitz_bound(self) -> float:
        """Upper bound of :math:`\\operatorname{Lip}_x(g)`: the product of the layers' normalised spectral
        norms."""
        bound = 1.0
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, SpectralLinear):
                    bound *= float(torch.linalg.matrix_norm(m.normalized_weight(), ord=2))
        return bound

    def _input(self, x: Tensor, context: Tensor | None) -> Tensor:
        """The first layer's input: ``x``, with the context concatenated when the network has one."""
        if not self.context:
            return x
        if context is None:
            raise ValueError(f"this network expects a context of {self.context} features, got None")
        if context.shape[0] != x.shape[0]:
            raise ValueError(f"context has batch size {context.shape[0]} but the input has {x.shape[0]}")
        return torch.cat([x, context], dim=-1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(self._input(x, context))

    def forward_and_jacobian(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor] | None:
        """``(g(x, c), ∂g/∂x)`` with the Jacobian ``(batch, D, D)`` propagated in forward mode
        (:mod:`pushforward.nets.tangent`), or ``None`` when an activation has no known derivative.

        Each layer's weight is normalised once per call, so in training mode the power iteration advances
        exactly as in :meth:`forward`."""
        if not all(isinstance(m, SpectralLinear) or has_derivative(m) for m in self.net):
            return None
        tangent, h = identity_tangent(x), self._input(x, context)
        for m in self.net:
            if isinstance(m, SpectralLinear):
                weight = m.normalized_weight()
                h = F.linear(h, weight, m.bias)
                tangent = linear_tangent(tangent, weight)
            else:
                tangent = activation_derivative(m, h) * tangent  # type: ignore[operator]
                h = m(h)
        return h, tangent_jacobian(tangent)
