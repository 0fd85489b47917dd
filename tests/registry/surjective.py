"""Registry cases: surjective layers (SurVAE flows). Their own contract is ``tests/test_contract_surjections.py``."""

from __future__ import annotations

import torch

from pushforward.transforms import (
    AbsoluteValue,
    Augment,
    Compose,
    LULinear,
    MaxPool,
    Slice,
    Sort,
    VariationalDequantization,
)

from . import Case, normal_sampler

_NOT_BIJECTIVE = {
    "roundtrip": "a surjection has a right inverse only (checked in test_contract_surjections)",
    "jacobian": "the contribution is a likelihood term, not a log-determinant",
}
_STOCHASTIC = {
    **_NOT_BIJECTIVE,
    "batch_consistency": "forward draws noise (seeded checks in test_contract_surjections)",
    "state_dict": "forward draws noise (seeded state_dict check in test_contract_surjections)",
}
_CONTEXT_IN_CONTRIBUTION = {**_NOT_BIJECTIVE, "context": "the context enters the contribution, not z"}


def _integers(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(-3, 4, (n, 3), generator=g).double()


CASES = [
    Case("abs", lambda: AbsoluteValue(3), kind="exact_surjection", skip=_NOT_BIJECTIVE),
    Case(
        "abs_positive",
        lambda: AbsoluteValue(3, unconstrained=False),
        kind="exact_surjection",
        skip=_NOT_BIJECTIVE,
    ),
    Case(
        "abs_then_linear",
        lambda: Compose([AbsoluteValue(3), LULinear(3)]),
        kind="exact_surjection",
        skip=_NOT_BIJECTIVE,
    ),
    Case(
        "sort_scalars",
        lambda: Sort(5),
        sampler=normal_sampler(5),
        kind="exact_surjection",
        skip={**_NOT_BIJECTIVE, "gradients": "no parameters"},
    ),
    Case(
        "sort_points",
        lambda: Sort((4, 2), key=1, flatten=True),
        sampler=normal_sampler(4, 2),
        kind="exact_surjection",
        skip={**_NOT_BIJECTIVE, "gradients": "no parameters"},
    ),
    Case("slice", lambda: Slice(4, keep=2, hidden=(8,)), kind="exact_surjection", skip=_NOT_BIJECTIVE),
    Case(
        "slice_context",
        lambda: Slice(4, keep=1, hidden=(8,), context=2),
        context=2,
        kind="exact_surjection",
        skip=_CONTEXT_IN_CONTRIBUTION,
    ),
    Case(
        "maxpool",
        lambda: MaxPool((2, 4, 4), kernel=2),
        sampler=normal_sampler(2, 4, 4),
        kind="exact_surjection",
        skip=_NOT_BIJECTIVE,
    ),
    Case("augment", lambda: Augment(3, extra=2, hidden=(8,)), kind="stochastic_surjection", skip=_STOCHASTIC),
    Case(
        "augment_context",
        lambda: Augment(3, extra=1, hidden=(8,), context=2),
        context=2,
        kind="stochastic_surjection",
        skip=_STOCHASTIC,
    ),
    Case(
        "variational_dequantization",
        lambda: VariationalDequantization(3, hidden=(8,)),
        sampler=_integers,
        kind="stochastic_surjection",
        skip=_STOCHASTIC,
    ),
]
