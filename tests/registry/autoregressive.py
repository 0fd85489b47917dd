"""Registry cases: masked autoregressive layers (affine, spline, deep sigmoid), IAF, spline couplings,
BNAF."""

from __future__ import annotations

from pushforward.transformers import AffineTransformer, DeepSigmoidTransformer, RQSTransformer
from pushforward.transforms import BlockAutoregressive, Coupling, Inverse, MaskedAutoregressive, half_mask

from . import Case, normal_sampler

CASES = [
    Case("maf_affine", lambda: MaskedAutoregressive(4, AffineTransformer(), hidden=(16, 16))),
    Case(
        "maf_affine_random_order_residual",
        lambda: MaskedAutoregressive(
            5, AffineTransformer(clamp=None), hidden=(12, 12, 12), order="random", residual=True
        ),
    ),
    Case(
        "maf_affine_context",
        lambda: MaskedAutoregressive(3, AffineTransformer(), hidden=(16,), context=2, order="reversed"),
        context=2,
    ),
    Case(
        "iaf_affine",
        lambda: Inverse(MaskedAutoregressive(4, AffineTransformer(), hidden=(16, 16), context=2)),
        context=2,
    ),
    Case(
        "maf_spline",
        lambda: MaskedAutoregressive(3, RQSTransformer(bins=5, bound=2.0), hidden=(16, 16)),
        sampler=normal_sampler(3, scale=2.0),  # some inputs land in the linear tails
        perturb=0.3,
    ),
    Case(
        "iaf_spline_context",
        lambda: Inverse(MaskedAutoregressive(3, RQSTransformer(bins=4, bound=2.5), hidden=(16,), context=2)),
        context=2,
        sampler=normal_sampler(3, scale=2.0),
        perturb=0.3,
    ),
    Case(
        "spline_coupling",
        lambda: Coupling(half_mask(4), RQSTransformer(bins=6, bound=2.0), hidden=(16,)),
        sampler=normal_sampler(4, scale=2.0),
        perturb=0.3,
    ),
    Case(
        "maf_deep_sigmoid",
        lambda: MaskedAutoregressive(3, DeepSigmoidTransformer(units=4, depth=2), hidden=(16,)),
        perturb=0.3,
    ),
    Case(
        "maf_deep_sigmoid_context",
        lambda: MaskedAutoregressive(2, DeepSigmoidTransformer(units=3), hidden=(8,), context=2),
        context=2,
        perturb=0.3,
    ),
    Case("bnaf", lambda: BlockAutoregressive(3, hidden=(4, 4))),
    Case("bnaf_context", lambda: BlockAutoregressive(2, hidden=(3,), context=2), context=2),
    Case(
        "bnaf_no_residual",
        lambda: BlockAutoregressive(2, hidden=(4,), residual=None),
        perturb=0.05,
        skip={
            "roundtrip": "a BNAF without residual is bounded (not onto); its inverse is tested on its range"
        },
    ),
]
