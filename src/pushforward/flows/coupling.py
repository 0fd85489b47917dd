"""Coupling-flow presets: NICE and RealNVP."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from ..distributions.base import Distribution
from ..transformers.affine import AffineTransformer
from ..transformers.base import TransformerSpec, transformer_factory
from ..transforms.base import Compose, Transform
from ..transforms.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    Coupling,
    alternating_mask,
    half_mask,
    mask_schedule,
    random_mask,
)
from ..transforms.elementwise import Affine, BatchNorm
from .preset import Preset, check_activation, check_count, check_flag, check_number, check_sizes

__all__ = ["NICE", "RealNVP", "coupling_masks"]


def coupling_masks(features: int, layers: int, mask: str | Sequence[Tensor] = "schedule") -> list[Tensor]:
    """The masks of a ``layers``-deep coupling stack.

    ``mask`` is ``"schedule"`` (Bittner's 2019 sequence, see :func:`~pushforward.transforms.mask_schedule`),
    ``"alternating"`` (odd/even features, alternating), ``"half"`` (first/second half, alternating),
    ``"random"`` (a fresh random half per layer) or an explicit list of boolean masks.
    """
    if not isinstance(mask, str):
        if not isinstance(mask, Sequence) or not all(isinstance(m, Tensor) for m in mask):
            raise TypeError(f"mask must be a name or a list of boolean tensors, got {mask!r}")
        masks = [m.bool() for m in mask]
        if len(masks) != layers:
            raise ValueError(f"got {len(masks)} masks for {layers} layers")
        if any(tuple(m.shape) != (features,) for m in masks):
            raise ValueError(f"each mask must have shape ({features},)")
        return masks
    if mask == "schedule":
        return mask_schedule(features, layers)
    if mask == "alternating":
        return [alternating_mask(features, i % 2) for i in range(layers)]
    if mask == "half":
        return [half_mask(features, i % 2 == 0) for i in range(layers)]
    if mask == "random":
        return [random_mask(features, seed=i) for i in range(layers)]
    raise ValueError(f"mask must be 'schedule', 'alternating', 'half', 'random' or a list, got {mask!r}")


def _check_common(
    owner: str, features: int, layers: int, context: int, hidden: Sequence[int], activation: object
) -> tuple[int, int, int, tuple[int, ...]]:
    features = check_count(owner, "features", features)
    layers = check_count(owner, "layers", layers)
    context = check_count(owner, "context", context, low=0)
    hidden = check_sizes(owner, "hidden", hidden, empty=True)
    check_activation(owner, activation)
    return features, layers, context, hidden


class NICE(Preset):
    r"""NICE: ``layers`` additive couplings followed by a diagonal rescaling layer.

    .. math:: z = e^{s} \odot (g_L \circ \dots \circ g_1)(x), \qquad \log p(x) = \log p_Z(z) + \sum_i s_i,

    each :math:`g_\ell` an additive coupling with alternating odd/even partitions (the paper's MNIST
    model has 4 couplings of 5x1000 ReLU units and a logistic prior; pass ``base`` to change the prior).

    Reference: Dinh, Krueger & Bengio, "NICE: Non-linear Independent Components Estimation", ICLR 2015.

    Example:
        >>> import torch
        >>> flow = NICE(4, hidden=(64, 64))
        >>> flow.log_prob(torch.randn(3, 4)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 4,
        hidden: Sequence[int] = (256, 256, 256),
        mask: str | Sequence[Tensor] = "alternating",
        activation: str | Callable[[], nn.Module] = "relu",
        base: Distribution | None = None,
    ) -> None:
        owner = type(self).__name__
        features, layers, context, hidden = _check_common(
            owner, features, layers, context, hidden, activation
        )
        parts: list[Transform] = [
            AdditiveCoupling(m, context=context, hidden=hidden, activation=activation)
            for m in coupling_masks(features, layers, mask)
        ]
        parts.append(Affine(features, shift=False))
        super().__init__(Compose(parts), base)


class RealNVP(Preset):
    r"""RealNVP on vectors: ``layers`` affine couplings with the chosen mask sequence.

    .. math:: z_{\bar b} = x_{\bar b} \odot \exp(s(x_b)) + t(x_b), \qquad
        \log|\det J| = \sum_j s(x_b)_j \ \text{per layer}.

    The default mask sequence is Bittner's (2019) schedule (flip frequencies 1, D/2, 2, D/4, …, each followed by
    its complement). Optional flow batch normalisation between couplings. ``transformer`` replaces the
    affine law of every coupling (a :class:`~pushforward.transformers.Transformer`, copied per layer, or a
    factory): with a spline this is the coupling neural spline flow.

    Reference: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017.

    Example:
        >>> flow = RealNVP(2, layers=4, hidden=(32, 32))
        >>> x, log_p = flow.sample_and_log_prob((5,))
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 8,
        hidden: Sequence[int] = (256, 256),
        mask: str | Sequence[Tensor] = "schedule",
        clamp: float | None = 3.0,
        batchnorm: bool = False,
        activation: str | Callable[[], nn.Module] = "relu",
        base: Distribution | None = None,
        transformer: TransformerSpec | None = None,
    ) -> None:
        owner = type(self).__name__
        features, layers, context, hidden = _check_common(
            owner, features, layers, context, hidden, activation
        )
        clamp = check_number(owner, "clamp", clamp, low=0.0, open_low=True, none=True)
        check_flag(owner, "batchnorm", batchnorm)
        make = transformer_factory(transformer, lambda: AffineTransformer(clamp=clamp))  # checks the spec
        parts: list[Transform] = []
        for i, m in enumerate(coupling_masks(features, layers, mask)):
            if batchnorm and i > 0:
                parts.append(BatchNorm(features))
            if transformer is None:
                parts.append(
                    AffineCoupling(m, clamp=clamp, context=context, hidden=hidden, activation=activation)
                )
            else:
                parts.append(Coupling(m, make(), context=context, hidden=hidden, activation=activation))
        super().__init__(Compose(parts), base)
