"""Registry cases: elementwise, linear and coupling transforms, and the Compose/Inverse combinators."""

from __future__ import annotations

import torch

from pushforward.transformers import AffineTransformer
from pushforward.transforms import (
    ActNorm,
    AdditiveCoupling,
    Affine,
    AffineCoupling,
    BatchNorm,
    Compose,
    Coupling,
    Inverse,
    Logit,
    LULinear,
    NormalCDF,
    Permutation,
    Scale,
    Shift,
    Sigmoid,
    Standardize,
    Tanh,
    Whiten,
    alternating_mask,
    half_mask,
    mask_schedule,
    random_mask,
)

from . import Case, normal_sampler, uniform_sampler, warmed

CASES = [
    Case("standardize", lambda: Standardize(3, loc=[0.5, -1.0, 2.0], scale=[0.5, 2.0, 3.0]), perturb=0.0),
    Case(
        "whiten",
        lambda: Whiten.fit(
            torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
            @ torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.3, -0.2, 1.5]])
        ),
        perturb=0.0,
    ),
    Case("shift", lambda: Shift(3)),
    Case("scale", lambda: Scale(3)),
    Case("affine", lambda: Affine(3)),
    Case("affine_noshift", lambda: Affine(3, shift=False)),
    Case("actnorm", lambda: warmed(ActNorm(3), 3)),
    Case("actnorm_image", lambda: warmed(ActNorm((2, 3, 3)), 2, 3, 3), sampler=normal_sampler(2, 3, 3)),
    Case("batchnorm", lambda: warmed(BatchNorm(3), 3)),
    Case("batchnorm_image", lambda: warmed(BatchNorm((2, 2, 2)), 2, 2, 2), sampler=normal_sampler(2, 2, 2)),
    Case("sigmoid", lambda: Sigmoid(3), perturb=0.0),
    Case("logit", lambda: Logit(3), sampler=uniform_sampler(0.05, 0.95, 3), perturb=0.0),
    Case("logit_alpha", lambda: Logit(3, alpha=0.05), sampler=uniform_sampler(0.0, 1.0, 3), perturb=0.0),
    Case("tanh", lambda: Tanh(3), perturb=0.0),
    Case("normal_cdf", lambda: NormalCDF(3), perturb=0.0),
    Case("permutation_reverse", lambda: Permutation(4), perturb=0.0),
    Case("permutation_random", lambda: Permutation(5, "random", seed=3), perturb=0.0),
    Case("lu_linear", lambda: LULinear(4)),
    Case("lu_linear_identity", lambda: LULinear(4, init="identity", bias=False)),
    Case("additive_coupling", lambda: AdditiveCoupling(alternating_mask(4), hidden=(16, 16))),
    Case("affine_coupling", lambda: AffineCoupling(half_mask(5), hidden=(16, 16))),
    Case("affine_coupling_noclamp", lambda: AffineCoupling(random_mask(5, 1), hidden=(16,), clamp=None)),
    Case(
        "affine_coupling_context", lambda: AffineCoupling(half_mask(4), hidden=(16, 16), context=3), context=3
    ),
    Case("coupling_generic", lambda: Coupling(mask_schedule(6, 3)[2], AffineTransformer(), hidden=(8,))),
    Case(
        "compose",
        lambda: Compose([warmed(ActNorm(4), 4), AffineCoupling(half_mask(4), hidden=(8,)), LULinear(4)]),
    ),
    Case(
        "inverse_coupling",
        lambda: Inverse(AffineCoupling(alternating_mask(4), hidden=(8,), context=2)),
        context=2,
    ),
]
