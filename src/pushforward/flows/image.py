r"""Image flow presets (multi-scale RealNVP, Glow), their per-scale base, and latent-space tools.

Both presets map images in :math:`[0, 1]^{C \times H \times W}` (dequantized pixels, see
:mod:`pushforward.data.images`) to a flat latent ``(D,)`` laid out by :class:`~pushforward.transforms.
MultiScale` (finest factored-out scale first, coarsest last), with a learnable per-scale diagonal Gaussian
base :class:`ScaleNormal`. With ``logit=0.0`` (the default) the first layer is RealNVP's logit
preprocessing :math:`y = \operatorname{logit}(x)`, a bijection of the open cube :math:`(0, 1)^D` onto
:math:`\mathbb{R}^D` whose log-determinant is part of ``log_prob``: ``flow.log_prob(x)`` is a density on
:math:`(0, 1)^D` that integrates to 1, and every sample lies in :math:`(0, 1)^D`. RealNVP's boundary margin
:math:`\operatorname{logit}(\alpha + (1 - 2\alpha) x)`, :math:`\alpha > 0`, maps the cube onto a *bounded*
box, so the latent mass outside it would be lost (mass 0.997 in 1-D for :math:`\alpha = 0.05`) and samples
would leave the cube: the presets refuse it (dequantize into the open interval instead, as
:func:`~pushforward.data.images.uniform_dequantize` does).

Tools: :func:`sample` (with temperature), :func:`interpolate` (RealNVP, Sec. 5),
:func:`conceptual_compression` (keep the coarse latents, resample the fine ones).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..checks import check_sample_shape
from ..distributions.base import Distribution, StandardNormal
from ..nets.conv import ConvResNet
from ..transforms.base import Compose, Transform
from ..transforms.conv import EmergingConv, FourierConv
from ..transforms.coupling import AffineCoupling
from ..transforms.elementwise import ActNorm, Logit
from ..transforms.image import InvConv1x1, MultiScale, Squeeze, channel_mask, checkerboard_mask, image_shape
from ..transforms.reversible import ReversibleCompose
from .core import Flow
from .preset import Preset, check_count, check_flag, check_image_shape, check_number, check_sizes

__all__ = [
    "Glow",
    "RealNVPImage",
    "ScaleNormal",
    "conceptual_compression",
    "decode",
    "encode",
    "interpolate",
    "interpolation_weights",
    "multiscale_of",
    "sample",
]


# ------------------------------------------------------------------------------------------- base
class ScaleNormal(Distribution):
    r"""A per-scale learnable diagonal Gaussian on the flat multi-scale latent.

    The latent is the concatenation of chunks :math:`z_k` of shapes :math:`(c_k, h_k, w_k)`; each chunk has
    its own per-channel mean and log-scale:

    .. math:: \log p(z) = \sum_k \sum_{c, i, j} \log \mathcal N\big(z_{k, c, i, j};\ \mu_{k, c},\
        e^{2 s_{k, c}}\big),

    a product of normals, hence a proper density. Initialised to the standard normal. ``rsample`` takes a
    ``temperature`` :math:`T` (samples :math:`\mu + T e^{s} \varepsilon`, as in Glow's reduced-temperature
    sampling).

    Reference: Dinh et al., "Density estimation using Real NVP", 2017; Kingma & Dhariwal, "Glow", 2018.

    Example:
        >>> base = ScaleNormal([(2, 4, 4), (8, 2, 2)])
        >>> base.log_prob(base.sample((3,))).shape
        torch.Size([3])
    """

    def __init__(self, chunk_shapes: Sequence[Sequence[int]]) -> None:
        shapes = [image_shape(s, "chunk shape") for s in chunk_shapes]
        if not shapes:
            raise ValueError("ScaleNormal needs at least one chunk shape")
        super().__init__(sum(math.prod(s) for s in shapes))
        self.chunk_shapes = shapes
        self.chunk_sizes = [math.prod(s) for s in shapes]
        self.loc = nn.ParameterList(nn.Parameter(torch.zeros(s[0], 1, 1)) for s in shapes)
        self.log_scale = nn.ParameterList(nn.Parameter(torch.zeros(s[0], 1, 1)) for s in shapes)

    def _chunks(self, z: Tensor) -> list[Tensor]:
        batch = z.shape[:-1]
        return [p.reshape(*batch, *s) for p, s in zip(z.split(self.chunk_sizes, -1), self.chunk_shapes)]

    def log_prob(self, z: Tensor) -> Tensor:
        total = z.new_zeros(z.shape[:-1])
        for zk, mu, ls in zip(self._chunks(z), self.loc, self.log_scale):
            u = (zk - mu) * torch.exp(-ls)
            total = total + (-0.5 * u * u - ls - 0.5 * math.log(2 * math.pi)).sum((-3, -2, -1))
        return total

    def rsample(self, sample_shape: int | Sequence[int] = (), temperature: float = 1.0) -> Tensor:
        shape = check_sample_shape(sample_shape)
        parts = []
        for s, mu, ls in zip(self.chunk_shapes, self.loc, self.log_scale):
            eps = torch.randn(*shape, *s, dtype=mu.dtype, device=mu.device)
            parts.append((mu + temperature * ls.exp() * eps).reshape(*shape, -1))
        return torch.cat(parts, -1)


# ---------------------------------------------------------------------------------------- presets
def _conditioner(channels: int, hidden: Sequence[int], context: int) -> ConvResNet:
    hidden = tuple(int(h) for h in hidden)
    if not hidden or any(h <= 0 for h in hidden) or len(set(hidden)) != 1:
        raise ValueError(f"hidden must be a non-empty tuple of one repeated positive width, got {hidden}")
    return ConvResNet(channels, 2 * channels, hidden[0], blocks=len(hidden) - 1, context=context)


def _coupling(mask: Tensor, hidden: Sequence[int], context: int, clamp: float | None) -> AffineCoupling:
    return AffineCoupling(mask, _conditioner(mask.shape[0], hidden, context), clamp=clamp, context=context)


def _stack(parts: list[Transform], reversible: bool) -> Transform:
    return ReversibleCompose(parts) if reversible else Compose(parts)


def _check_logit(logit: float | None) -> None:
    if logit is not None and logit != 0.0:
        raise ValueError(
            f"logit={logit!r}: a margin alpha > 0 maps [0, 1] onto a bounded interval, so the density would not "
            "integrate to 1 and samples would leave [0, 1]; use logit=0.0 (a proper logit on (0, 1)) or None"
        )


def _finish(
    levels: list[Transform], shape: tuple[int, int, int], logit: float | None
) -> tuple[Transform, ScaleNormal]:
    """The transform (logit, then the multi-scale levels) and its per-scale base."""
    ms = MultiScale(levels)
    parts: list[Transform] = [Logit(shape, alpha=logit)] if logit is not None else []
    return Compose([*parts, ms]), ScaleNormal(ms.chunk_shapes)


def _check_image_options(
    owner: str,
    shape: Sequence[int],
    context: int,
    hidden: Sequence[int],
    clamp: float | None,
    reversible: bool,
) -> tuple[tuple[int, int, int], int, tuple[int, ...]]:
    shape = check_image_shape(owner, shape)
    context = check_count(owner, "context", context, low=0)
    hidden = check_sizes(owner, "hidden", hidden)
    check_number(owner, "clamp", clamp, low=0.0, open_low=True, none=True)
    check_flag(owner, "reversible", reversible)
    return shape, context, hidden


class RealNVPImage(Preset):
    r"""RealNVP's multi-scale architecture for images.

    Each scale but the last: ``layers`` affine couplings with alternating checkerboard masks, a
    :class:`~pushforward.transforms.Squeeze`, ``layers`` couplings with alternating channel masks, then half
    of the channels are factored out. The last scale has ``layers + 1`` checkerboard couplings. An
    :class:`~pushforward.transforms.ActNorm` follows every coupling (in place of the paper's batch norm, so
    the model is the same map in training and evaluation). Coupling conditioners are
    :class:`~pushforward.nets.ConvResNet` s of width ``hidden[0]`` with ``len(hidden) - 1`` residual blocks,
    taking a one-hot class (``context`` features) when class-conditional.

    .. math:: \log p(x) = \log p_Z(f(x)) + \log|\det \partial f/\partial x|, \qquad
        f = \mathrm{MultiScale} \circ \operatorname{logit} .

    Args:
        shape: ``(C, H, W)``; ``H`` and ``W`` divisible by ``2 ** (scales - 1)``.
        context: One-hot class count for class-conditional models (0 = unconditional).
        scales, layers, hidden, clamp: Architecture.
        logit: ``0.0``: the logit preprocessing on :math:`(0, 1)^D` (None: none, the density is then on
            :math:`\mathbb{R}^D`). A margin :math:`\alpha > 0` is refused (``ValueError``): see the module
            documentation.
        reversible: Recompute activations in backward (:class:`~pushforward.transforms.reversible.
            ReversibleCompose`) instead of storing them.

    Reference: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017.

    Example:
        >>> flow = RealNVPImage((1, 8, 8), scales=2, layers=2, hidden=(16, 16))
        >>> flow.log_prob(torch.rand(3, 1, 8, 8)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        shape: Sequence[int],
        *,
        context: int = 0,
        scales: int = 2,
        layers: int = 3,
        hidden: Sequence[int] = (64, 64, 64),
        clamp: float | None = 3.0,
        logit: float | None = 0.0,
        reversible: bool = False,
    ) -> None:
        owner = type(self).__name__
        (c, h, w), context, hidden = _check_image_options(owner, shape, context, hidden, clamp, reversible)
        scales = check_count(owner, "scales", scales, high=30)
        layers = check_count(owner, "layers", layers)
        _check_logit(logit)
        if h % 2 ** (scales - 1) or w % 2 ** (scales - 1):
            raise ValueError(f"a {h}x{w} image cannot be squeezed {scales - 1} times")
        levels: list[Transform] = []
        cur = (c, h, w)
        for s in range(scales):
            parts: list[Transform] = []
            n_checker = layers + 1 if s == scales - 1 else layers
            for i in range(n_checker):
                parts += [_coupling(checkerboard_mask(cur, i % 2), hidden, context, clamp), ActNorm(cur)]
            if s < scales - 1:
                sq = Squeeze(cur)
                parts.append(sq)
                cur = sq.latent_shape  # type: ignore[assignment]
                for i in range(layers):
                    parts += [_coupling(channel_mask(cur, i % 2 == 0), hidden, context, clamp), ActNorm(cur)]
            levels.append(_stack(parts, reversible))
            if s < scales - 1:
                cur = (cur[0] - cur[0] // 2, cur[1], cur[2])
        super().__init__(*_finish(levels, (c, h, w), logit))


class Glow(Preset):
    r"""Glow: ``levels`` scales of squeeze → ``steps`` × (ActNorm → invertible 1x1 conv → affine coupling),
    factoring out half of the channels after every level but the last.

    .. math:: \text{step}: \ x \mapsto \mathrm{coupling}(W \cdot \mathrm{actnorm}(x)), \qquad
        \log|\det| = H W \textstyle\sum_c (-s_c) + H W \log|\det W| + \sum s(x_b).

    ``conv`` chooses the channel mixing: ``"1x1"`` (:class:`~pushforward.transforms.InvConv1x1`),
    ``"fourier"`` (periodic 3x3, :class:`~pushforward.transforms.FourierConv`) or ``"emerging"``
    (:class:`~pushforward.transforms.EmergingConv` followed by a 1x1 conv). Couplings pass the first half of
    the channels; conditioners are :class:`~pushforward.nets.ConvResNet` (width ``hidden[0]``,
    ``len(hidden) - 1`` residual blocks), with a one-hot class as ``context`` for class-conditional models.

    Reference: Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018.

    Example:
        >>> flow = Glow((1, 8, 8), levels=2, steps=2, hidden=(16,))
        >>> flow.sample((2,)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        shape: Sequence[int],
        *,
        context: int = 0,
        levels: int = 2,
        steps: int = 8,
        hidden: Sequence[int] = (128, 128),
        conv: str = "1x1",
        clamp: float | None = 3.0,
        logit: float | None = 0.0,
        reversible: bool = False,
    ) -> None:
        owner = type(self).__name__
        (c, h, w), context, hidden = _check_image_options(owner, shape, context, hidden, clamp, reversible)
        levels = check_count(owner, "levels", levels, high=30)
        steps = check_count(owner, "steps", steps)
        _check_logit(logit)
        if h % 2**levels or w % 2**levels:
            raise ValueError(f"a {h}x{w} image cannot be squeezed {levels} times")
        if conv not in ("1x1", "fourier", "emerging"):
            raise ValueError(f"conv must be '1x1', 'fourier' or 'emerging', got {conv!r}")
        out: list[Transform] = []
        cur = (c, h, w)
        for lv in range(levels):
            sq = Squeeze(cur)
            cur = sq.latent_shape  # type: ignore[assignment]
            parts: list[Transform] = []
            for _ in range(steps):
                parts.append(ActNorm(cur))
                if conv == "fourier":
                    parts.append(FourierConv(cur, 3 if min(cur[1:]) >= 3 else 1))
                elif conv == "emerging":
                    parts += [EmergingConv(cur), InvConv1x1(cur)]
                else:
                    parts.append(InvConv1x1(cur))
                parts.append(_coupling(channel_mask(cur), hidden, context, clamp))
            out.append(Compose([sq, _stack(parts, reversible)]))
            if lv < levels - 1:
                cur = (cur[0] - cur[0] // 2, cur[1], cur[2])
        super().__init__(*_finish(out, (c, h, w), logit))


# ------------------------------------------------------------------------------------ latent tools
def multiscale_of(flow: Flow) -> MultiScale | None:
    """The :class:`~pushforward.transforms.MultiScale` producing the flow's latent, if any."""
    t = flow.transform
    if isinstance(t, Compose):
        t = t.transforms[-1]
    return t if isinstance(t, MultiScale) else None


def _ctx(flow: Flow, context: Tensor | None, n: int) -> Tensor | None:
    if not flow.context_features:
        if context is not None:
            raise ValueError("this flow is unconditional but a context was given")
        return None
    if context is None:
        raise ValueError(f"this flow is conditional: pass a context of {flow.context_features} features")
    if context.dim() == 1:
        context = context.expand(n, -1)
    if context.shape != (n, flow.context_features):
        raise ValueError(
            f"context must have shape ({n}, {flow.context_features}), got {tuple(context.shape)}"
        )
    return context


def encode(flow: Flow, x: Tensor, context: Tensor | None = None) -> Tensor:
    """The latent ``f(x)`` of images ``x`` of shape ``(N, C, H, W)``."""
    return flow.transform(x, _ctx(flow, context, x.shape[0]))[0]


def decode(flow: Flow, z: Tensor, context: Tensor | None = None) -> Tensor:
    """The images ``f⁻¹(z)`` of latents ``z`` of shape ``(N, *latent_shape)``."""
    return flow.transform.inverse(z, _ctx(flow, context, z.shape[0]))[0]


def _base_sample(base: Distribution, n: int, temperature: float) -> Tensor:
    if temperature < 0:
        raise ValueError(f"temperature must be non-negative, got {temperature}")
    if isinstance(base, ScaleNormal):
        return base.rsample((n,), temperature=temperature)
    if isinstance(base, StandardNormal):
        return temperature * base.rsample((n,))
    raise TypeError(
        f"temperature sampling needs a ScaleNormal or StandardNormal base, got {type(base).__name__}"
    )


@torch.no_grad()
def sample(flow: Flow, n: int, *, temperature: float = 1.0, context: Tensor | None = None) -> Tensor:
    r"""``n`` samples :math:`x = f^{-1}(z)` with :math:`z` drawn from the base at ``temperature`` :math:`T`
    (the base's standard deviations multiplied by :math:`T`; :math:`T < 1` trades diversity for quality).

    ``context``: ``(n, K)`` or one ``(K,)`` row for all samples (e.g. a one-hot class).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    z = _base_sample(flow.base, n, temperature)
    return decode(flow, z, context)


def interpolation_weights(steps: int) -> Tensor:
    r"""The ``(steps, steps, 4)`` weights of the RealNVP interpolation formula on a grid of angles
    :math:`\phi, \phi' \in [0, \pi/2]`:

    .. math:: z = \cos\phi (\cos\phi'\, z_1 + \sin\phi'\, z_2) + \sin\phi (\cos\phi'\, z_3 + \sin\phi'\, z_4).
    """
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    a = torch.linspace(0, math.pi / 2, steps)
    phi, phi2 = a.view(-1, 1), a.view(1, -1)
    return torch.stack(
        [phi.cos() * phi2.cos(), phi.cos() * phi2.sin(), phi.sin() * phi2.cos(), phi.sin() * phi2.sin()], -1
    )


@torch.no_grad()
def interpolate(flow: Flow, x: Tensor, steps: int = 8, context: Tensor | None = None) -> Tensor:
    r"""Decode the RealNVP interpolation between the latents of 2 or 4 images (RealNVP, Sec. 5).

    With 4 images returns the ``(steps, steps, C, H, W)`` grid over :math:`(\phi, \phi')`; with 2 images the
    ``(steps, C, H, W)`` strip :math:`z = \cos\phi'\, z_1 + \sin\phi'\, z_2` (the :math:`\phi = 0` row),
    which keeps a Gaussian latent's norm on the same shell. ``context``: one ``(K,)`` row used throughout.
    """
    if x.shape[0] not in (2, 4):
        raise ValueError(f"interpolate takes 2 or 4 images, got {x.shape[0]}")
    if context is not None and context.dim() != 1:
        raise ValueError("interpolate takes a single context row of shape (K,)")
    z = encode(flow, x, context.expand(x.shape[0], -1) if context is not None else None)
    wts = interpolation_weights(steps).to(z)
    if x.shape[0] == 2:
        wts = wts[0, :, :2]
    zi = torch.einsum("...k,kd->...d", wts, z.reshape(z.shape[0], -1))
    flat = zi.reshape(-1, *z.shape[1:])
    out = decode(flow, flat, context.expand(flat.shape[0], -1) if context is not None else None)
    return out.reshape(*wts.shape[:-1], *x.shape[1:])


@torch.no_grad()
def conceptual_compression(
    flow: Flow,
    x: Tensor,
    keep: int = 1,
    n: int = 6,
    *,
    temperature: float = 1.0,
    context: Tensor | None = None,
) -> Tensor:
    r"""Keep the ``keep`` coarsest latent scales of one image and resample the finer ones ``n`` times
    (RealNVP Sec. 5): what the coarse scales "remember" of the image.

    Returns ``(n, C, H, W)``. Needs a :class:`~pushforward.transforms.MultiScale` latent.
    """
    ms = multiscale_of(flow)
    if ms is None:
        raise TypeError("conceptual compression needs a multi-scale flow (RealNVPImage or Glow)")
    if x.shape[0] != 1:
        raise ValueError("pass a single image of shape (1, C, H, W)")
    if not 1 <= keep <= len(ms.chunk_sizes):
        raise ValueError(f"keep must lie in [1, {len(ms.chunk_sizes)}], got {keep}")
    ctx = context.view(1, -1) if context is not None else None
    z = encode(flow, x, ctx)
    fresh = _base_sample(flow.base, n, temperature)
    start = sum(ms.chunk_sizes[: len(ms.chunk_sizes) - keep])
    fresh[:, start:] = z[:, start:]
    return decode(flow, fresh, ctx.expand(n, -1) if ctx is not None else None)
