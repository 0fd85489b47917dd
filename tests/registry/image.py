"""Registry cases: image transforms (squeeze, 1x1/Fourier/masked convs, conv couplings, multi-scale)."""

from __future__ import annotations

import torch

from pushforward.flows.image import Glow, RealNVPImage
from pushforward.nets import ConvResNet
from pushforward.transforms import (
    ActNorm,
    AffineCoupling,
    Compose,
    EmergingConv,
    FourierConv,
    InvConv1x1,
    MaskedConv,
    MultiScale,
    Squeeze,
    channel_mask,
    checkerboard_mask,
)
from pushforward.transforms.reversible import ReversibleCompose

from . import Case, normal_sampler, uniform_sampler, warmed


def _conv_coupling(mask, context: int = 0) -> AffineCoupling:
    c = mask.shape[0]
    return AffineCoupling(mask, ConvResNet(c, 2 * c, 4, 1, context=context), context=context)


def _multiscale() -> MultiScale:
    return MultiScale(
        [
            Compose([Squeeze((1, 4, 4)), _conv_coupling(channel_mask((4, 2, 2)))]),
            Compose([Squeeze((2, 2, 2)), InvConv1x1((8, 1, 1))]),
        ]
    )


def _reversible() -> ReversibleCompose:
    shape = (2, 2, 2)
    return ReversibleCompose(
        [
            warmed(ActNorm(shape), *shape),
            InvConv1x1(shape),
            _conv_coupling(channel_mask(shape), context=2),
            _conv_coupling(checkerboard_mask(shape, 1), context=2),
        ]
    )


def _warm_unit(t, *shape: int):
    """Data-dependent (ActNorm) initialisation on pixels in the unit box, then eval mode."""
    g = torch.Generator().manual_seed(5)
    ctx = torch.randn(64, t.context_features, generator=g) if t.context_features else None
    with torch.no_grad():
        t.train()
        t(0.05 + 0.9 * torch.rand(64, *shape, generator=g), ctx)
    return t.eval()


CASES = [
    Case("squeeze", lambda: Squeeze((1, 4, 4)), sampler=normal_sampler(1, 4, 4), perturb=0.0),
    Case("squeeze_channels", lambda: Squeeze((2, 4, 2)), sampler=normal_sampler(2, 4, 2), perturb=0.0),
    Case("inv_conv_1x1", lambda: InvConv1x1((3, 2, 2)), sampler=normal_sampler(3, 2, 2)),
    Case("fourier_conv", lambda: FourierConv((2, 4, 4)), sampler=normal_sampler(2, 4, 4), perturb=0.3),
    Case("fourier_conv_1ch", lambda: FourierConv((1, 5, 3)), sampler=normal_sampler(1, 5, 3), perturb=0.3),
    Case("masked_conv", lambda: MaskedConv((2, 3, 3)), sampler=normal_sampler(2, 3, 3), perturb=0.3),
    Case(
        "masked_conv_reverse",
        lambda: MaskedConv((2, 3, 4), reverse=True),
        sampler=normal_sampler(2, 3, 4),
        perturb=0.3,
    ),
    Case("emerging_conv", lambda: EmergingConv((2, 3, 3)), sampler=normal_sampler(2, 3, 3), perturb=0.3),
    Case(
        "conv_coupling_checkerboard",
        lambda: _conv_coupling(checkerboard_mask((1, 2, 4), 0)),
        sampler=normal_sampler(1, 2, 4),
    ),
    Case(
        "conv_coupling_channel_context",
        lambda: _conv_coupling(channel_mask((2, 2, 2), first=False), context=3),
        sampler=normal_sampler(2, 2, 2),
        context=3,
    ),
    Case("multiscale", _multiscale, sampler=normal_sampler(1, 4, 4)),
    Case("reversible_compose", _reversible, sampler=normal_sampler(2, 2, 2), context=2),
    Case(
        "glow_preset",
        lambda: _warm_unit(Glow((1, 4, 4), levels=2, steps=1, hidden=(8,), context=2).transform, 1, 4, 4),
        sampler=uniform_sampler(0.05, 0.95, 1, 4, 4),
        context=2,
        atol=1e-5,
    ),
    Case(
        "realnvp_image_preset",
        lambda: _warm_unit(RealNVPImage((1, 4, 4), scales=2, layers=1, hidden=(8,)).transform, 1, 4, 4),
        sampler=uniform_sampler(0.05, 0.95, 1, 4, 4),
        atol=1e-5,
    ),
]
