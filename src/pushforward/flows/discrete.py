r"""Discrete flows: the integer discrete flow (IDF) for images and integer tables, and categorical flows.

:class:`IntegerDiscreteFlow` is a multi-scale flow on integers (Hoogeboom et al. 2019). Level :math:`k`
(a squeeze where the size allows, then integer couplings) splits its output into a kept part
:math:`h_k` and a factored-out part :math:`z_k`; the prior of :math:`z_k` is a discretized logistic
mixture whose parameters a network predicts from :math:`h_k`, and the last level's output has a learned
unconditional mixture:

.. math:: \log P(x) = \log P(z_K) + \sum_{k<K} \log P(z_k \mid h_k), \qquad
    (h_k, z_k) = g_k(h_{k-1}),\ h_0 = x.

Every :math:`g_k` is a bijection of integer arrays, so this is an exact pmf on :math:`\mathbb Z^D` and
``-log_prob(x) / ln 2`` is the code length (bits) an entropy coder reaches (:mod:`pushforward.codec`).

:func:`DiscreteFlow` stacks :class:`~pushforward.transforms.ModularCoupling` layers over a
:class:`~pushforward.distributions.Categorical` base (Tran et al. 2019).

References: Hoogeboom, Peters, van den Berg & Welling, "Integer Discrete Flows and Lossless Compression",
NeurIPS 2019; Tran, Vafa, Agrawal, Dinh & Poole, "Discrete Flows: Invertible Generative Models of
Discrete Data", NeurIPS 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..checks import check_input
from ..distributions.base import Distribution
from ..distributions.discretized import (
    AutoregressiveLogisticMixture,
    Categorical,
    DiscretizedLogisticMixture,
    discretized_logistic_mixture_log_pmf,
    sample_discretized_logistic_mixture,
)
from ..nets.conv import ConvResNet
from ..transforms.base import Compose, Transform, as_shape
from ..transforms.coupling import alternating_mask
from ..transforms.discrete import IntegerCoupling, ModularCoupling, check_integers
from ..transforms.image import MultiScale, Squeeze, channel_mask, checkerboard_mask
from .core import Flow
from .preset import Preset, check_count, check_number, check_sizes

__all__ = [
    "IDF",
    "AutoregressiveIDF",
    "CategoricalFlow",
    "DiscreteFlow",
    "FactorOutPrior",
    "IntegerDiscreteFlow",
]


class FactorOutPrior(Distribution):
    r"""The prior of a multi-scale integer flow: a discretized logistic mixture per factored-out chunk,
    its parameters predicted from the kept part by a :class:`~pushforward.nets.ConvResNet`, and a learned
    unconditional mixture on the last chunk. Its event is the flat latent ``(D,)``; since the chunk
    priors need the kept parts, use it through :class:`IntegerDiscreteFlow`.

    Args:
        chunk_shapes: Shapes of the factored-out chunks, finest first, the last one unconditional.
        kept_shapes: Shapes of the kept parts :math:`h_k`, one per conditional chunk.
        components: Mixture components :math:`M`.
        hidden: Hidden widths of the chunk networks (one repeated width; blocks = len - 1).
        context: Context features of the chunk networks.
        scale: Scale of the values (256 for 8-bit data): inputs are divided by it, locations multiplied.

    Example:
        >>> prior = FactorOutPrior([(2, 4, 4), (2, 4, 4)], [(2, 4, 4)], components=2, hidden=(8,))
        >>> logits, loc, log_scale = prior.chunk_parameters(0, torch.zeros(3, 2, 4, 4))
        >>> loc.shape
        torch.Size([3, 2, 4, 4, 2])
    """

    def __init__(
        self,
        chunk_shapes: Sequence[Sequence[int]],
        kept_shapes: Sequence[Sequence[int]],
        *,
        components: int = 4,
        hidden: Sequence[int] = (64, 64),
        context: int = 0,
        scale: float = 256.0,
    ) -> None:
        chunks = [as_shape(s) for s in chunk_shapes]
        kept = [as_shape(s) for s in kept_shapes]
        if not chunks or len(kept) != len(chunks) - 1:
            raise ValueError(f"need one kept shape per chunk but the last, got {len(kept)} for {len(chunks)}")
        super().__init__(sum(math.prod(s) for s in chunks))
        self.chunk_shapes, self.kept_shapes = chunks, kept
        self.components, self.scale, self.context = int(components), float(scale), int(context)
        hidden = tuple(int(h) for h in hidden)
        self.nets = nn.ModuleList(
            ConvResNet(h[0], 3 * self.components * c[0], hidden[0], blocks=len(hidden) - 1, context=context)
            for c, h in zip(chunks[:-1], kept)
        )
        self.top = DiscretizedLogisticMixture(
            chunks[-1],
            self.components,
            loc=0.5 * scale,
            scale=scale / 16,
            spread=scale / (2 * self.components),
        )
        offsets = (torch.arange(self.components) + 0.5) / self.components - 0.25
        self.register_buffer("offsets", offsets)

    def chunk_parameters(self, k: int, kept: Tensor | None, context: Tensor | None = None):
        """``(logits, loc, log_scale)`` of chunk ``k``, each ``(B, *chunk_shape, M)`` (the last chunk ignores
        ``kept`` and broadcasts its learned parameters to ``(1, ...)``)."""
        if k == len(self.chunk_shapes) - 1:
            return self.top.logits[None], self.top.loc[None], self.top.log_scale[None]
        if kept is None:
            raise ValueError(f"chunk {k} is predicted from its kept part; pass it")
        M, c = self.components, self.chunk_shapes[k][0]
        net = self.nets[k]
        out = net(kept / self.scale, context) if self.context else net(kept / self.scale)
        out = out.reshape(kept.shape[0], 3, M, c, *out.shape[2:]).permute(1, 0, 3, 4, 5, 2)
        loc = self.scale * (out[1] + self.offsets.to(out.dtype))
        log_scale = out[2] + math.log(self.scale / 16)
        return out[0], loc, log_scale

    def log_prob_chunks(
        self, chunks: Sequence[Tensor], kept: Sequence[Tensor], context: Tensor | None = None
    ):
        """:math:`\\sum_k \\log P(z_k \\mid h_k)`, shape ``(B,)``, from the chunk and kept-part images."""
        total = chunks[0].new_zeros(chunks[0].shape[0])
        for k, z in enumerate(chunks):
            params = self.chunk_parameters(k, kept[k] if k < len(kept) else None, context)
            lp = discretized_logistic_mixture_log_pmf(z, *params)
            total = total + lp.reshape(z.shape[0], -1).sum(-1)
        return total

    def log_prob(self, z: Tensor) -> Tensor:
        raise ValueError("FactorOutPrior needs the kept parts: call IntegerDiscreteFlow.log_prob instead")

    def sample_chunk(self, k: int, kept: Tensor | None, n: int, context: Tensor | None = None) -> Tensor:
        """Integer draws of chunk ``k`` given its kept part (``n`` draws of the unconditional last chunk)."""
        logits, loc, log_scale = self.chunk_parameters(k, kept, context)
        if k == len(self.chunk_shapes) - 1:
            return sample_discretized_logistic_mixture((n,), logits[0], loc[0], log_scale[0])
        return sample_discretized_logistic_mixture((), logits, loc, log_scale)

    def encode_symbols(
        self, coder, k: int, z: Tensor, kept: Tensor | None, context: Tensor | None = None
    ) -> None:
        """Codec protocol (:mod:`pushforward.codec`): push chunk ``k`` (every element under its mixture)."""
        coder.push_logistic_mixture(z, *self.chunk_parameters(k, kept, context))

    def decode_symbols(self, coder, k: int, kept: Tensor | None, context: Tensor | None = None) -> Tensor:
        """Codec protocol: pop chunk ``k`` pushed by :meth:`encode_symbols`, shaped ``(1, *chunk_shape)``."""
        z = coder.pop_logistic_mixture(*self.chunk_parameters(k, kept, context))
        return torch.from_numpy(z).reshape(1, *self.chunk_shapes[k])


class IntegerDiscreteFlow(Flow):
    r"""An integer discrete flow: ``log_prob(x)`` is the exact log-pmf (nats) of integer data ``x`` (held in
    a floating tensor), so :func:`pushforward.fit` trains it by maximum likelihood and bits/dim is
    ``-log_prob / (D ln 2)``. Build one with :class:`IDF`.

    Args:
        transform: A :class:`~pushforward.transforms.MultiScale` of integer levels, or any integer
            transform (a single chunk: the whole latent under the unconditional prior).
        base: The :class:`FactorOutPrior` matching the transform's chunks.

    Reference: Hoogeboom, Peters, van den Berg & Welling, "Integer Discrete Flows and Lossless
    Compression", NeurIPS 2019.

    Example:
        >>> flow = IDF((1, 4, 4), levels=2, layers=1, hidden=(8,), components=2)
        >>> x = torch.randint(0, 256, (3, 1, 4, 4)).float()
        >>> flow.log_prob(x).shape
        torch.Size([3])
    """

    def __init__(self, transform: Transform, base: FactorOutPrior) -> None:
        super().__init__(transform, base)
        self.levels = list(transform.levels) if isinstance(transform, MultiScale) else [transform]
        self.factor_out = list(transform.factor_out) if isinstance(transform, MultiScale) else []
        shapes = (
            [tuple(s) for s in transform.chunk_shapes]
            if isinstance(transform, MultiScale)
            else [transform.latent_shape]
        )
        if shapes != base.chunk_shapes:
            raise ValueError(f"the prior's chunks {base.chunk_shapes} do not match the transform's {shapes}")

    def latents(self, x: Tensor, context: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """The chunks :math:`z_k` (finest first) and kept parts :math:`h_k` of a ``(B, *event_shape)`` batch."""
        chunks, kept = [], []
        h = x
        for k, level in enumerate(self.levels):
            h = level(h, context)[0]
            if k < len(self.levels) - 1:
                keep = h.shape[1] - self.factor_out[k]
                chunks.append(h[:, keep:])
                h = h[:, :keep]
                kept.append(h)
        chunks.append(h)
        return chunks, kept

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = check_input(x, self.event_shape, dtype=self.dtype)
        check_integers(x)
        batch_shape = tuple(x.shape[: x.dim() - len(self.event_shape)])
        ctx = self._context(context, batch_shape)
        chunks, kept = self.latents(x.reshape(-1, *self.event_shape), ctx)
        return self.base.log_prob_chunks(chunks, kept, ctx).reshape(batch_shape)

    def _draw(self, sample_shape, context, with_log_prob):
        ctx, out_shape, count = self._sample_plan(sample_shape, context)
        with torch.no_grad():
            top = len(self.levels) - 1
            h = self.base.sample_chunk(top, None, count)
            for k in range(top, -1, -1):
                if k < top:
                    h = torch.cat([h, self.base.sample_chunk(k, h, count, ctx)], 1)
                h = self.levels[k].inverse(h, ctx)[0]
        x = h.reshape(*out_shape, *self.event_shape)
        if not with_log_prob:
            return x
        return x, self.log_prob(h, ctx).reshape(out_shape)


def _level(
    shape: tuple[int, ...], layers: int, hidden: Sequence[int], context: int, squeeze: bool, scale: float
):
    parts: list[Transform] = []
    if squeeze:
        parts.append(Squeeze(shape))
        shape = parts[0].latent_shape
    for i in range(layers):
        if shape[0] >= 2:
            mask = channel_mask(shape, first=i % 2 == 0)
        else:
            mask = checkerboard_mask(shape, i % 2)
        parts.append(IntegerCoupling(mask, context=context, hidden=hidden, scale=scale))
    return Compose(parts), shape


class IDF(Preset, IntegerDiscreteFlow):
    r"""Integer discrete flow preset for integer images ``(C, H, W)`` (8-bit pixels) or integer vectors.

    Images: ``levels`` levels; each squeezes when height and width are even (else keeps the resolution),
    applies ``layers`` integer couplings with alternating channel masks (checkerboard masks on one
    channel) and factors out half its channels, whose prior is predicted from the other half. Vectors: one
    level of ``layers`` couplings with alternating masks and an unconditional mixture prior.

    Args:
        shape: Image shape ``(C, H, W)`` or number of features.
        context: Context features (passed to every conditioner and chunk network).
        levels: Multi-scale levels (images).
        layers: Integer couplings per level.
        hidden: Conditioner widths (images: one repeated width, blocks = len - 1).
        components: Logistic mixture components of the priors.
        scale: The data's number of levels (default 256 for images, 16 for vectors): conditioner
            inputs are divided by it and translations and prior locations multiplied by it.

    Example:
        >>> flow = IDF(3, layers=2, hidden=(8,))
        >>> flow.sample((2,)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        shape: int | Sequence[int],
        *,
        context: int = 0,
        levels: int = 3,
        layers: int = 4,
        hidden: Sequence[int] = (64, 64),
        components: int = 4,
        scale: float | None = None,
    ) -> None:
        owner = type(self).__name__
        shape = as_shape(shape)
        context = check_count(owner, "context", context, low=0)
        levels = check_count(owner, "levels", levels)
        layers = check_count(owner, "layers", layers)
        hidden = check_sizes(owner, "hidden", hidden)
        components = check_count(owner, "components", components)
        if scale is not None:
            scale = check_number(owner, "scale", scale, low=0.0, open_low=True)
        if len(shape) == 1:
            if shape[0] < 2:
                raise ValueError("an integer flow on vectors needs at least 2 features")
            parts = [
                IntegerCoupling(
                    alternating_mask(shape[0], i % 2), context=context, hidden=hidden, scale=scale or 16.0
                )
                for i in range(layers)
            ]
            t = Compose(parts)
            prior = FactorOutPrior(
                [shape], [], components=components, hidden=hidden, context=context, scale=scale or 16.0
            )
            IntegerDiscreteFlow.__init__(self, t, prior)
            return
        if len(shape) != 3:
            raise ValueError(f"IDF takes an image shape (C, H, W) or a number of features, got {shape}")
        if levels < 1 or layers < 1:
            raise ValueError("levels and layers must be at least 1")
        scale = scale or 256.0
        built, kept, s = [], [], shape
        for k in range(levels):
            squeeze = s[1] % 2 == 0 and s[2] % 2 == 0
            level, out = _level(s, layers, hidden, context, squeeze, scale)
            built.append(level)
            if k < levels - 1:
                if out[0] < 2:
                    raise ValueError(f"level {k} has one channel left: use fewer levels for shape {shape}")
                s = (out[0] - out[0] // 2, *out[1:])
                kept.append(s)
        ms = MultiScale(built)
        prior = FactorOutPrior(
            ms.chunk_shapes, kept, components=components, hidden=hidden, context=context, scale=scale
        )
        IntegerDiscreteFlow.__init__(self, ms, prior)


class CategoricalFlow(Flow):
    r"""A categorical discrete flow: :class:`~pushforward.transforms.ModularCoupling` layers over a
    :class:`~pushforward.distributions.Categorical` base; ``log_prob(x)`` is the exact log-pmf (nats) of
    ``x`` in :math:`\{0, \dots, K-1\}^D`. For training, ``log_prob`` runs the layers on one-hot vectors
    (:meth:`~pushforward.transforms.ModularCoupling.forward_onehot`) so the straight-through gradient weighs
    every candidate location and scale (Tran et al. 2019, Sec. 2.3); the value equals
    ``base.log_prob(transform(x))``. Build one with :class:`DiscreteFlow`.

    Args:
        transform: A :class:`~pushforward.transforms.Compose` of ``ModularCoupling`` layers (or one layer).
        base: The :class:`~pushforward.distributions.Categorical` base with the same number of categories.

    Reference: Tran, Vafa, Agrawal, Dinh & Poole, "Discrete Flows: Invertible Generative Models of Discrete
    Data", NeurIPS 2019.

    Example:
        >>> flow = DiscreteFlow(2, categories=3, layers=2, hidden=(8,))
        >>> flow.log_prob(torch.tensor([[0.0, 2.0]])).shape
        torch.Size([1])
    """

    def __init__(self, transform: Transform, base: Categorical) -> None:
        super().__init__(transform, base)
        layers = list(transform.transforms) if isinstance(transform, Compose) else [transform]
        if not all(isinstance(t, ModularCoupling) for t in layers):
            raise TypeError("CategoricalFlow takes ModularCoupling layers")
        if not isinstance(base, Categorical) or any(t.categories != base.categories for t in layers):
            raise ValueError("the base must be a Categorical with the layers' number of categories")
        self.layers = layers

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = check_input(x, self.event_shape, dtype=self.dtype)
        K = self.base.categories
        check_integers(x, "x", 0, K - 1)
        batch_shape = tuple(x.shape[:-1])
        ctx = self._context(context, batch_shape)
        h = torch.nn.functional.one_hot(x.reshape(-1, self.features).long(), K).to(x.dtype)
        for layer in self.layers:
            h = layer.forward_onehot(h, ctx)
        table = torch.log_softmax(self.base.logits, -1)
        return (h * table).sum((-2, -1)).reshape(batch_shape)


class DiscreteFlow(Preset, CategoricalFlow):
    r"""Categorical discrete flow preset: ``layers`` :class:`~pushforward.transforms.ModularCoupling` layers
    with alternating masks over a learned :class:`~pushforward.distributions.Categorical` base on
    :math:`\{0, \dots, K-1\}^D`. ``log_prob`` is the exact log-pmf (nats).

    Reference: Tran, Vafa, Agrawal, Dinh & Poole, "Discrete Flows: Invertible Generative Models of Discrete
    Data", NeurIPS 2019.

    Example:
        >>> flow = DiscreteFlow(3, categories=4, layers=2, hidden=(16,))
        >>> grid = torch.cartesian_prod(*[torch.arange(4.0)] * 3)
        >>> round(float(flow.log_prob(grid).exp().sum()), 5)
        1.0
    """

    def __init__(
        self,
        features: int,
        *,
        categories: int,
        context: int = 0,
        layers: int = 4,
        hidden: Sequence[int] = (64, 64),
    ) -> None:
        owner = type(self).__name__
        features = check_count(owner, "features", features, low=2)
        categories = check_count(owner, "categories", categories, low=2)
        context = check_count(owner, "context", context, low=0)
        layers = check_count(owner, "layers", layers)
        hidden = check_sizes(owner, "hidden", hidden)
        parts = [
            ModularCoupling(alternating_mask(features, i % 2), categories, context=context, hidden=hidden)
            for i in range(layers)
        ]
        CategoricalFlow.__init__(self, Compose(parts), Categorical(features, categories))


class _IntegerIdentity(Transform):
    """The identity on integer images (the zero-layer transform of :class:`AutoregressiveIDF`)."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__(shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z, z.new_zeros(z.shape[0])


class AutoregressiveIDF(Preset, Flow):
    r"""An integer discrete flow with an autoregressive prior, for integer images ``(C, H, W)``: ``layers``
    integer couplings (zero: the prior models the pixels directly) and an
    :class:`~pushforward.distributions.AutoregressiveLogisticMixture` on the latent, each value's mixture
    predicted from the already-coded values of a causal window:

    .. math:: \log P(x) = \log P_{\text{AR}}\big(f(x)\big),

    exact on :math:`\mathbb Z^{C \times H \times W}` (integer couplings have unit Jacobian), so
    ``-log_prob / ln 2`` is the code length that :mod:`pushforward.codec` reaches.

    Args:
        shape: Image shape ``(C, H, W)``.
        layers: Integer couplings in front of the prior (checkerboard masks on one channel, else channel
            masks).
        hidden: Widths of the couplings' conditioners.
        prior_hidden: Widths of the prior's network (see ``AutoregressiveLogisticMixture``).
        window: Causal window radius of the prior.
        components: Logistic mixture components per value.
        scale: The data's number of levels (256 for 8-bit images).

    References: Hoogeboom, Peters, van den Berg & Welling, "Integer Discrete Flows and Lossless
    Compression", NeurIPS 2019; Salimans, Karpathy, Chen & Kingma, "PixelCNN++", ICLR 2017.

    Example:
        >>> flow = AutoregressiveIDF((1, 4, 4), layers=1, hidden=(8,), prior_hidden=(8,), window=1)
        >>> x = flow.sample((2,))
        >>> flow.log_prob(x).shape
        torch.Size([2])
    """

    def __init__(
        self,
        shape: Sequence[int],
        *,
        layers: int = 0,
        hidden: Sequence[int] = (64, 64),
        prior_hidden: Sequence[int] = (64, 64),
        window: int = 3,
        components: int = 5,
        scale: float = 256.0,
    ) -> None:
        owner = type(self).__name__
        shape = as_shape(shape)
        if len(shape) != 3:
            raise ValueError(f"{owner} takes an image shape (C, H, W), got {shape}")
        layers = check_count(owner, "layers", layers, low=0)
        hidden = check_sizes(owner, "hidden", hidden)
        prior_hidden = check_sizes(owner, "prior_hidden", prior_hidden)
        window = check_count(owner, "window", window)
        components = check_count(owner, "components", components)
        scale = check_number(owner, "scale", scale, low=0.0, open_low=True)
        parts: list[Transform] = []
        for i in range(layers):
            mask = channel_mask(shape, first=i % 2 == 0) if shape[0] >= 2 else checkerboard_mask(shape, i % 2)
            parts.append(IntegerCoupling(mask, hidden=hidden, scale=scale))
        transform = Compose(parts) if parts else _IntegerIdentity(shape)
        base = AutoregressiveLogisticMixture(
            shape, components=components, hidden=prior_hidden, window=window, scale=scale
        )
        Flow.__init__(self, transform, base)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = check_input(x, self.event_shape, dtype=self.dtype)
        check_integers(x)
        self._context(context, None)
        batch_shape = tuple(x.shape[: x.dim() - len(self.event_shape)])
        z = self.transform(x.reshape(-1, *self.event_shape))[0]
        return self.base.log_prob(z).reshape(batch_shape)
