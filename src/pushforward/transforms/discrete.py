r"""Discrete bijections: integer additive coupling and modular (categorical) location-scale coupling.

Both act on integers stored in a floating tensor and are exact: the round trip is bit-exact, and a
bijection of a countable set has no volume change, so ``ladj`` is identically 0 and
:math:`\log P_X(x) = \log P_Z(f(x))` with a *pmf* :math:`P_Z` (see
:mod:`pushforward.distributions.discretized`). The conditioner outputs are rounded with the
straight-through estimator :func:`round_ste`: the forward value is the rounded integer, the gradient
is that of the identity, so the networks train by backpropagation.

Integer coupling (Hoogeboom et al. 2019), with mask :math:`b` (1 = passed through):

.. math:: z_b = x_b, \qquad z_{\bar b} = x_{\bar b} + \lfloor t(x_b) \rceil, \qquad
    x_{\bar b} = z_{\bar b} - \lfloor t(z_b) \rceil.

Modular location-scale coupling on :math:`\{0, \dots, K-1\}` (Tran et al. 2019):

.. math:: z_{\bar b} = (s \cdot x_{\bar b} + \mu) \bmod K, \qquad x_{\bar b} = s^{-1}(z_{\bar b} - \mu) \bmod K,

with :math:`\mu \in \{0..K-1\}` and :math:`s` a unit modulo :math:`K` (coprime with :math:`K`), each the
straight-through argmax of conditioner logits.

References: Hoogeboom, Peters, van den Berg & Welling, "Integer Discrete Flows and Lossless Compression",
NeurIPS 2019; Tran, Vafa, Agrawal, Dinh & Poole, "Discrete Flows: Invertible Generative Models of
Discrete Data", NeurIPS 2019; Bengio, Léonard & Courville, "Estimating or Propagating Gradients Through
Stochastic Neurons", 2013 (straight-through estimator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nets.conv import ConvResNet
from ..nets.mlp import MLP
from .base import Transform, zero_like_batch

__all__ = ["IntegerCoupling", "ModularCoupling", "check_integers", "round_ste"]


def round_ste(x: Tensor) -> Tensor:
    """Round to the nearest integer with the straight-through gradient (value exact, gradient 1).

    Example:
        >>> x = torch.tensor([0.4, 1.6], requires_grad=True)
        >>> y = round_ste(x); y.sum().backward()
        >>> y.tolist(), x.grad.tolist()
        ([0.0, 2.0], [1.0, 1.0])
    """
    return torch.round(x).detach() + (x - x.detach())


_MANTISSA = {torch.float64: 53, torch.float32: 24, torch.bfloat16: 8, torch.float16: 11}


def check_integers(x: Tensor, name: str = "x", low: int | None = None, high: int | None = None) -> None:
    """``ValueError`` unless ``x`` holds finite integers in ``[low, high]`` (each bound optional) that its
    floating dtype represents exactly (:math:`|x| < 2^{24}` in float32, :math:`2^{53}` in float64)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating tensor holding integers, got {getattr(x, 'dtype', type(x))}"
        )
    v = x.detach()
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} contains NaN or inf; discrete flows take integers")
    if not bool((v == v.round()).all()):
        raise ValueError(f"{name} contains non-integer values; discrete flows take integers")
    bits = _MANTISSA.get(x.dtype, 10)
    if v.numel() and float(v.abs().max()) >= 2.0**bits:
        raise ValueError(f"{name} has values of magnitude >= 2^{bits}: integers are not exact in {x.dtype}")
    if low is not None and v.numel() and float(v.min()) < low:
        raise ValueError(f"{name} has values below {low} (out of range [{low}, {high}])")
    if high is not None and v.numel() and float(v.max()) > high:
        raise ValueError(f"{name} has values above {high} (out of range [{low}, {high}])")


def _mask(mask: Tensor) -> Tensor:
    mask = torch.as_tensor(mask).bool()
    if mask.all() or not mask.any():
        raise ValueError("the coupling mask must pass some and transform some elements")
    return mask


# ---------------------------------------------------------------------------------- integer coupling
class IntegerCoupling(Transform):
    r"""Integer additive coupling: :math:`z_{\bar b} = x_{\bar b} + \lfloor t(x_b; c) \rceil`, a bijection of
    :math:`\mathbb Z^D` with ``ladj = 0``.

    The conditioner sees ``x * mask / scale`` (and the context) and its output is multiplied by ``scale``
    before rounding, so networks work on values of order one for 8-bit data. Default conditioner: an
    :class:`~pushforward.nets.MLP` for vectors, a :class:`~pushforward.nets.ConvResNet` for images
    (``(C, H, W)`` masks), zero-initialised so the layer starts at the identity.

    Args:
        mask: Boolean mask of the event shape (True = passed through, conditions the rest).
        conditioner: Network ``(x, context) -> translation`` of the event shape.
        context: Context features.
        hidden: Hidden widths of the default conditioner.
        scale: Input/output scale of the conditioner.

    Reference: Hoogeboom, Peters, van den Berg & Welling, "Integer Discrete Flows and Lossless
    Compression", NeurIPS 2019 (Sec. 3).

    Example:
        >>> from pushforward.transforms import half_mask
        >>> t = IntegerCoupling(half_mask(4), scale=8.0)
        >>> x = torch.randint(0, 256, (3, 4)).float()
        >>> z, ladj = t(x)
        >>> bool((t.inverse(z)[0] == x).all()), ladj.tolist()
        (True, [0.0, 0.0, 0.0])
    """

    def __init__(
        self,
        mask: Tensor,
        conditioner: nn.Module | None = None,
        *,
        context: int = 0,
        hidden: Sequence[int] = (64, 64),
        scale: float = 256.0,
    ) -> None:
        mask = _mask(mask)
        super().__init__(tuple(mask.shape), context)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.register_buffer("mask", mask)
        self.scale = float(scale)
        if conditioner is None:
            hidden = tuple(int(h) for h in hidden)
            if mask.dim() == 1:
                conditioner = MLP(mask.numel(), mask.numel(), hidden, context=context)
            elif mask.dim() == 3:
                c = mask.shape[0]
                conditioner = ConvResNet(c, c, hidden[0], blocks=len(hidden) - 1, context=context)
            else:
                raise ValueError(
                    f"the default conditioner takes (D,) or (C, H, W) masks, got {tuple(mask.shape)}"
                )
        self.conditioner = conditioner

    def _translation(self, x_pass: Tensor, context: Tensor | None) -> Tensor:
        inp = x_pass * self.mask / self.scale
        out = self.conditioner(inp, context) if self.context_features else self.conditioner(inp)
        if out.shape != x_pass.shape:
            raise ValueError(
                f"the conditioner returned shape {tuple(out.shape)}; expected {tuple(x_pass.shape)}"
            )
        return round_ste(self.scale * out) * ~self.mask

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_integers(x)
        return x + self._translation(x, context), zero_like_batch(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_integers(z, "z")
        return z - self._translation(z, context), zero_like_batch(z)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"


# ---------------------------------------------------------------------------------- modular coupling
def units_modulo(categories: int) -> list[int]:
    """The multiplicative units modulo ``categories``: ``1 <= u < K`` with ``gcd(u, K) = 1``."""
    return [u for u in range(1, categories) if math.gcd(u, categories) == 1] or [1]


def _st_argmax(logits: Tensor, values: Tensor) -> Tensor:
    """``values[argmax(logits)]`` in value; the gradient of ``softmax(logits) @ values``."""
    soft = torch.softmax(logits, -1) @ values
    hard = values[logits.argmax(-1)]
    return hard + (soft - soft.detach())


def _st_onehot(logits: Tensor) -> Tensor:
    """The one-hot argmax of ``logits`` in value, with the gradient of ``softmax(logits)``."""
    soft = torch.softmax(logits, -1)
    hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())


class ModularCoupling(Transform):
    r"""Modular location-scale coupling on :math:`\{0, \dots, K-1\}^D`:
    :math:`z_{\bar b} = (s(x_b)\, x_{\bar b} + \mu(x_b)) \bmod K`, ``ladj = 0``.

    The conditioner maps the one-hot encoding of the passed elements (``D K`` inputs, the transformed
    ones zeroed) to ``D (K + U)`` logits: :math:`K` for the location and :math:`U` for the scale, one of the
    units modulo :math:`K`. Both are straight-through argmaxes (value: the argmax; gradient: that of the
    softmax-weighted mean). The default MLP conditioner is zero-initialised: location 0, scale 1.

    Args:
        mask: Boolean ``(D,)`` mask (True = passed through).
        categories: Number of categories :math:`K`.
        conditioner: Network ``(onehot, context) -> logits`` with ``D K`` inputs and ``D (K + U)`` outputs.
        context: Context features.
        hidden: Hidden widths of the default conditioner.

    Reference: Tran, Vafa, Agrawal, Dinh & Poole, "Discrete Flows: Invertible Generative Models of Discrete
    Data", NeurIPS 2019 (Sec. 2.1, 2.2).

    Example:
        >>> from pushforward.transforms import half_mask
        >>> t = ModularCoupling(half_mask(4), categories=5)
        >>> x = torch.randint(0, 5, (3, 4)).float()
        >>> bool((t.inverse(t(x)[0])[0] == x).all())
        True
    """

    def __init__(
        self,
        mask: Tensor,
        categories: int,
        conditioner: nn.Module | None = None,
        *,
        context: int = 0,
        hidden: Sequence[int] = (64, 64),
    ) -> None:
        mask = _mask(mask)
        if mask.dim() != 1:
            raise ValueError(f"ModularCoupling takes a (D,) mask, got shape {tuple(mask.shape)}")
        if not isinstance(categories, int) or categories < 2:
            raise ValueError(f"categories must be an int >= 2, got {categories!r}")
        super().__init__(mask.numel(), context)
        self.categories = categories
        units = units_modulo(categories)
        inverses = [pow(u, -1, categories) if categories > 1 and u > 0 else 1 for u in units]
        self.register_buffer("mask", mask)
        self.register_buffer("units", torch.tensor(units, dtype=torch.float32))
        self.register_buffer("unit_inverses", torch.tensor(inverses, dtype=torch.float32))
        d = mask.numel()
        if conditioner is None:
            conditioner = MLP(d * categories, d * (categories + len(units)), tuple(hidden), context=context)
        self.conditioner = conditioner

    def _logits(self, onehot: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """Location and scale logits ``(B, D, K)``, ``(B, D, U)`` from the one-hot input ``(B, D, K)``."""
        K, U, d = self.categories, self.units.numel(), self.features
        inp = (onehot * self.mask.unsqueeze(-1)).reshape(-1, d * K)
        out = self.conditioner(inp, context) if self.context_features else self.conditioner(inp)
        if out.shape != (onehot.shape[0], d * (K + U)):
            raise ValueError(
                f"the conditioner returned shape {tuple(out.shape)}; expected ({onehot.shape[0]}, {d * (K + U)})"
            )
        out = out.reshape(-1, d, K + U)
        return out[..., :K], out[..., K:]

    def _params(self, x_pass: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        onehot = F.one_hot(x_pass.detach().long(), self.categories).to(x_pass.dtype)
        loc_logits, scale_logits = self._logits(onehot, context)
        loc = _st_argmax(loc_logits, torch.arange(self.categories, dtype=x_pass.dtype, device=x_pass.device))
        scale = _st_argmax(scale_logits, self.units.to(x_pass.dtype))
        inv_scale = self.unit_inverses.to(x_pass.dtype)[scale_logits.argmax(-1)]
        return loc, scale, inv_scale

    def forward_onehot(self, onehot: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The forward map on one-hot vectors ``(B, D, K)``, with Tran et al.'s straight-through gradients:
        the location and scale are one-hot vectors (value: the argmax; gradient: the softmax's), and the
        output is the exact permutation they select,

        .. math:: y_k = \sum_{i} s_i \sum_{m} \mu_m\, x_{u_i^{-1}(k - m) \bmod K},

        so the gradient of a loss on ``y`` weighs every candidate location and scale. Equals the one-hot
        encoding of :meth:`forward` in value."""
        K = self.categories
        loc_logits, scale_logits = self._logits(onehot, context)
        loc = _st_onehot(loc_logits)
        scale = _st_onehot(scale_logits)
        k = torch.arange(K, device=onehot.device)
        # scaled[..., i, k] = onehot[..., u_i^{-1} k mod K]
        src = (self.unit_inverses.long().unsqueeze(-1) * k) % K  # (U, K)
        scaled = onehot[..., src]  # (B, D, U, K)
        scaled = (scale.unsqueeze(-1) * scaled).sum(-2)  # (B, D, K)
        # shifted[..., m, k] = scaled[..., (k - m) mod K]
        shifted = scaled[..., (k.unsqueeze(-1) - k) % K].transpose(-1, -2)  # (B, D, K_m, K)
        y = (loc.unsqueeze(-1) * shifted).sum(-2)
        return torch.where(self.mask.unsqueeze(-1), onehot, y)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_integers(x, "x", 0, self.categories - 1)
        loc, scale, _ = self._params(x, context)
        z = torch.remainder(scale * x + loc, self.categories)
        return torch.where(self.mask, x, z), zero_like_batch(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_integers(z, "z", 0, self.categories - 1)
        loc, _, inv_scale = self._params(z, context)
        x = torch.remainder(inv_scale * (z - loc), self.categories)
        return torch.where(self.mask, z, x), zero_like_batch(z)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, categories={self.categories}"
