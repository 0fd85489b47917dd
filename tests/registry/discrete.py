"""Registry cases: discrete bijections (integer and modular couplings, the IDF's multi-scale transform).

They carry ``kind="discrete"``: ``tests/discrete/test_discrete_contract.py`` checks them on integers.
"""

from __future__ import annotations

from pushforward.flows.discrete import IDF
from pushforward.transforms import IntegerCoupling, ModularCoupling, alternating_mask, channel_mask, half_mask

from . import Case, integer_sampler

CASES = [
    Case(
        "integer_coupling_vector",
        lambda: IntegerCoupling(half_mask(5), hidden=(16,), scale=16.0),
        sampler=integer_sampler(-40, 300, 5),
        kind="discrete",
    ),
    Case(
        "integer_coupling_context",
        lambda: IntegerCoupling(alternating_mask(4), context=3, hidden=(16,), scale=16.0),
        sampler=integer_sampler(0, 255, 4),
        context=3,
        kind="discrete",
    ),
    Case(
        "integer_coupling_image",
        lambda: IntegerCoupling(channel_mask((2, 4, 4)), hidden=(8, 8)),
        sampler=integer_sampler(0, 255, 2, 4, 4),
        kind="discrete",
    ),
    Case(
        "idf_multiscale",
        lambda: IDF((1, 4, 4), levels=2, layers=2, hidden=(8,), components=2).transform,
        sampler=integer_sampler(0, 255, 1, 4, 4),
        kind="discrete",
    ),
    Case(
        "modular_coupling",
        lambda: ModularCoupling(half_mask(4), 5, hidden=(16,)),
        sampler=integer_sampler(0, 4, 4),
        perturb=1.0,
        kind="discrete",
        support=(0, 4),
    ),
    Case(
        "modular_coupling_context",
        lambda: ModularCoupling(alternating_mask(3), 6, context=2, hidden=(16,)),
        sampler=integer_sampler(0, 5, 3),
        context=2,
        perturb=1.0,
        kind="discrete",
        support=(0, 5),
    ),
]
