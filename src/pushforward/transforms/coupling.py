r"""Coupling layers (NICE, RealNVP, spline couplings) and their binary masks.

A coupling layer splits the features with a binary mask :math:`b` (1 = passed through, 0 = transformed):

.. math:: z_{b} = x_{b}, \qquad z_{\bar b} = \tau\big(x_{\bar b};\ \theta(x_{b}, c)\big),

where :math:`\tau` is any elementwise :class:`~pushforward.transformers.Transformer` and :math:`\theta` a
conditioner network. The Jacobian is block-triangular, so
:math:`\log|\det J| = \sum_{i \in \bar b} \log \tau'(x_i)`, and the inverse is one pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..nets.mlp import MLP
from ..transformers.affine import AdditiveTransformer, AffineTransformer
from ..transformers.base import Transformer
from .base import Transform, sum_except_batch

__all__ = [
    "AdditiveCoupling",
    "AffineCoupling",
    "Coupling",
    "alternating_mask",
    "half_mask",
    "mask_schedule",
    "random_mask",
    "schedule_mask",
]


# -------------------------------------------------------------------------------------------- masks
def half_mask(features: int, first: bool = True) -> Tensor:
    """Pass the first ``⌊D/2⌋`` features (or, with ``first=False``, the last ``⌈D/2⌉``)."""
    mask = torch.arange(features) < features // 2
    return mask if first else ~mask


def alternating_mask(features: int, parity: int = 0) -> Tensor:
    """Pass features with index ``i % 2 == parity`` (the 1-D checkerboard)."""
    return torch.arange(features) % 2 == parity


def random_mask(features: int, seed: int = 0) -> Tensor:
    """Pass a random half of the features (drawn from ``seed``)."""
    perm = torch.randperm(features, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(features, dtype=torch.bool)
    mask[perm[: features // 2]] = True
    return mask


def schedule_mask(features: int, frequency: int, first: bool = True) -> Tensor:
    """The mask whose bit flips every ``frequency`` features, starting with ``first`` (Bittner, 2019)."""
    mask = (torch.arange(features) // frequency) % 2 == 0
    return mask if first else ~mask


def mask_schedule(features: int, count: int) -> list[Tensor]:
    """Bittner's (2019) mask sequence for ``count`` coupling layers.

    Flip frequencies ``1, D/2, 2, D/4, 4, D/8, …`` (each mask followed by its complement); frequencies
    that would give a constant mask (``f ≥ D``) are skipped, and the sequence cycles when exhausted.
    """
    if features < 2:
        raise ValueError("a coupling mask needs at least 2 features")
    freqs: list[int] = []
    small, large = 1, features // 2
    while small < features or large >= 1:
        freqs += [f for f in (small, large) if 1 <= f < features]
        small, large = small * 2, large // 2
    masks: list[Tensor] = []
    i = 0
    while len(masks) < count:
        f = freqs[i % len(freqs)]
        masks.append(schedule_mask(features, f, True))
        if len(masks) < count:
            masks.append(schedule_mask(features, f, False))
        i += 1
    return masks


# ----------------------------------------------------------------------------------------- coupling
class Coupling(Transform):
    r"""A coupling layer with any elementwise transformer and any conditioner.

    Args:
        mask: Boolean tensor of the event shape; ``True`` marks the features passed through unchanged
            (and fed to the conditioner), ``False`` those transformed.
        transformer: The elementwise bijection (affine, additive, spline, …).
        conditioner: A module ``(x_passed, context) -> params``. For vector events it receives the passed
            features ``(B, n_passed)`` and returns ``(B, n_transformed * P)``; for image events it receives
            ``x * mask`` of shape ``(B, C, H, W)`` and returns ``(B, P * C, H, W)`` (P groups of C channels).
            Default: an :class:`~pushforward.nets.MLP` with ``hidden`` units and zero-initialised output.
        context: Number of context features.
        hidden, activation: Options of the default MLP conditioner.

    Reference: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017.

    Example:
        >>> layer = Coupling(half_mask(4), AffineTransformer(), hidden=(32, 32))
        >>> z, ladj = layer(torch.randn(8, 4))
    """

    def __init__(
        self,
        mask: Tensor,
        transformer: Transformer,
        conditioner: nn.Module | None = None,
        *,
        context: int = 0,
        hidden: Sequence[int] = (64, 64),
        activation: str | Callable[[], nn.Module] = "relu",
    ) -> None:
        mask = torch.as_tensor(mask, dtype=torch.bool)
        super().__init__(tuple(mask.shape), context)
        if mask.all() or not mask.any():
            raise ValueError("a coupling mask must pass some features and transform others")
        self.transformer = transformer
        self.analytic_inverse = transformer.analytic_inverse
        self.register_buffer("mask", mask)
        self.vector = mask.dim() == 1
        P = transformer.params_per_feature
        if self.vector:
            idx_pass = torch.nonzero(mask).flatten()
            idx_tr = torch.nonzero(~mask).flatten()
            self.register_buffer("idx_pass", idx_pass)
            self.register_buffer("idx_tr", idx_tr)
            self.register_buffer("unperm", torch.argsort(torch.cat([idx_pass, idx_tr])))
            if conditioner is None:
                conditioner = MLP(
                    len(idx_pass), len(idx_tr) * P, hidden, context=context, activation=activation
                )
        elif conditioner is None:
            raise ValueError("image-shaped couplings need an explicit (convolutional) conditioner")
        self.conditioner = conditioner

    def _params(self, x_pass: Tensor, context: Tensor | None, batch: int) -> Tensor:
        raw = self.conditioner(x_pass, context)
        P = self.transformer.params_per_feature
        if self.vector:
            return raw.view(batch, -1, P)
        return raw.reshape(batch, P, *self.event_shape).movedim(1, -1)

    def _couple(self, x: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        fn = self.transformer.inverse if inverse else self.transformer.forward
        B = x.shape[0]
        if self.vector:
            x_pass = x.index_select(1, self.idx_pass)
            x_tr = x.index_select(1, self.idx_tr)
            y_tr, logd = fn(x_tr, self._params(x_pass, context, B))
            return torch.cat([x_pass, y_tr], 1).index_select(1, self.unperm), logd.sum(1)
        m = self.mask.to(x.dtype)
        y, logd = fn(x, self._params(x * m, context, B))
        return m * x + (1 - m) * y, sum_except_batch(logd * (1 - m))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(x, context, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(z, context, inverse=True)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, passed={int(self.mask.sum())}/{math.prod(self.event_shape)}"


class AdditiveCoupling(Coupling):
    r"""NICE's additive coupling :math:`z_{\bar b} = x_{\bar b} + t(x_b)`; volume preserving.

    Reference: Dinh, Krueger & Bengio, "NICE: Non-linear Independent Components Estimation", 2015.

    Example:
        >>> z, ladj = AdditiveCoupling(alternating_mask(4))(torch.randn(8, 4))  # ladj == 0
    """

    def __init__(self, mask: Tensor, conditioner: nn.Module | None = None, **kwargs) -> None:
        super().__init__(mask, AdditiveTransformer(), conditioner, **kwargs)


class AffineCoupling(Coupling):
    r"""RealNVP's affine coupling :math:`z_{\bar b} = x_{\bar b} \odot e^{s(x_b)} + t(x_b)`, with the
    log-scale soft-clamped to ``(-clamp, clamp)`` for stability; :math:`\log|\det J| = \sum s`.

    Reference: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017.

    Example:
        >>> z, ladj = AffineCoupling(half_mask(4), clamp=3.0)(torch.randn(8, 4))
    """

    def __init__(
        self, mask: Tensor, conditioner: nn.Module | None = None, *, clamp: float | None = 3.0, **kwargs
    ) -> None:
        super().__init__(mask, AffineTransformer(clamp=clamp), conditioner, **kwargs)
