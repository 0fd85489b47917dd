"""Registry cases: spherical and simplex flows (checked against the autodiff volume ratio) and the
matrix transforms (checked against the full float64 Jacobian)."""

from __future__ import annotations

import torch
from torch import Tensor

from pushforward.manifolds import manifold_log_volume_ratio, simplex_projection, sphere_projection
from pushforward.transforms import (
    CalibrationTransform,
    CholeskyProduct,
    Compose,
    GeneralizedCalibration,
    Inverse,
    NormalizedAffine,
    NormalizedLinear,
    NormalizedTranslation,
    Transform,
)
from pushforward.transforms.matrix import vech

from . import Case

# The contract's gradient probe inverts ``0.9 * z``, which is off the manifold (and rejected with a
# ValueError); gradients are checked on the manifold in tests/test_manifolds.py instead.
_OFF_MANIFOLD = {"gradients": "the probe 0.9*z leaves the manifold; see tests/test_manifolds.py"}


def sphere_sampler(n: int):
    def sample(k: int, g: torch.Generator) -> Tensor:
        return sphere_projection(torch.randn(k, n, generator=g, dtype=torch.float64))

    return sample


def simplex_sampler(n: int):
    def sample(k: int, g: torch.Generator) -> Tensor:
        return torch.softmax(torch.randn(k, n, generator=g, dtype=torch.float64), -1)

    return sample


def pd_sampler(D: int):
    def sample(k: int, g: torch.Generator) -> Tensor:
        a = torch.randn(k, D, D, generator=g, dtype=torch.float64)
        return vech(a @ a.transpose(-1, -2) + 0.5 * torch.eye(D, dtype=torch.float64))

    return sample


def sphere_ratio(t: Transform, x: Tensor, context: Tensor | None) -> Tensor:
    return manifold_log_volume_ratio(lambda u: t(u)[0], x, sphere_projection, x.shape[-1] - 1)


def simplex_ratio(t: Transform, x: Tensor, context: Tensor | None) -> Tensor:
    return manifold_log_volume_ratio(lambda u: t(u)[0], x, simplex_projection, x.shape[-1] - 1)


def _sphere(name: str, factory, n: int, perturb: float = 0.3) -> Case:
    return Case(
        name,
        factory,
        sampler=sphere_sampler(n),
        reference_ladj=sphere_ratio,
        atol=1e-8,
        inverse_atol=1e-9,
        perturb=perturb,
        skip=_OFF_MANIFOLD,
    )


def _simplex(name: str, factory, n: int, perturb: float = 0.3) -> Case:
    return Case(
        name,
        factory,
        sampler=simplex_sampler(n),
        reference_ladj=simplex_ratio,
        atol=1e-8,
        inverse_atol=1e-9,
        perturb=perturb,
        skip=_OFF_MANIFOLD,
    )


CASES = [
    _sphere("normalized_translation_s1", lambda: NormalizedTranslation(2), 2),
    _sphere("normalized_translation_s2", lambda: NormalizedTranslation(3), 3, perturb=1.0),
    _sphere("normalized_linear_s2", lambda: NormalizedLinear(3), 3),
    _sphere("normalized_linear_orth_s4", lambda: NormalizedLinear(5, init="orthogonal", seed=1), 5),
    _sphere("normalized_affine_s1", lambda: NormalizedAffine(2), 2),
    _sphere("normalized_affine_s2", lambda: NormalizedAffine(3), 3, perturb=0.5),
    _sphere("normalized_affine_s3", lambda: NormalizedAffine(4, init="orthogonal", seed=0), 4),
    _sphere(
        "sphere_compose",
        lambda: Compose([NormalizedAffine(3), NormalizedTranslation(3), NormalizedLinear(3)]),
        3,
    ),
    _simplex("calibration_3", lambda: CalibrationTransform(3, temperature=2.0), 3),
    _simplex("temperature_scaling_4", lambda: CalibrationTransform(4, shift=False, temperature=0.5), 4),
    _simplex("generalized_calibration_3", lambda: GeneralizedCalibration(3), 3),
    _simplex("generalized_calibration_5", lambda: GeneralizedCalibration(5, init="orthogonal", seed=2), 5),
    _simplex("generalized_calibration_2", lambda: GeneralizedCalibration(2, shift=False), 2),
    _simplex("simplex_compose", lambda: Compose([CalibrationTransform(4), GeneralizedCalibration(4)]), 4),
    Case("cholesky_product_1", lambda: CholeskyProduct(1), perturb=0.0, atol=1e-10),
    Case("cholesky_product_3", lambda: CholeskyProduct(3), perturb=0.0, atol=1e-10),
    Case(
        "cholesky_product_inverse_3",
        lambda: Inverse(CholeskyProduct(3)),
        sampler=pd_sampler(3),
        perturb=0.0,
        atol=1e-10,
        inverse_atol=1e-10,
    ),
]


# ---------------------------------------------------------------------------------- quadrature (tests)
def circle_quadrature(k: int = 2048) -> tuple[Tensor, Tensor]:
    """Points of S¹ and arc-length weights (trapezoid rule: spectrally accurate for smooth periodic maps)."""
    theta = torch.arange(k, dtype=torch.float64) * (2 * torch.pi / k)
    return torch.stack([theta.cos(), theta.sin()], -1), torch.full(
        (k,), 2 * torch.pi / k, dtype=torch.float64
    )


def _gauss_legendre(k: int) -> tuple[Tensor, Tensor]:
    import numpy as np

    t, w = np.polynomial.legendre.leggauss(k)
    return torch.from_numpy(t), torch.from_numpy(w)


def sphere2_quadrature(k_t: int = 160, k_phi: int = 160) -> tuple[Tensor, Tensor]:
    """Points of S² and area weights: Gauss–Legendre in cos θ times the trapezoid rule in φ."""
    t, wt = _gauss_legendre(k_t)
    phi = torch.arange(k_phi, dtype=torch.float64) * (2 * torch.pi / k_phi)
    T, P = torch.meshgrid(t, phi, indexing="ij")
    r = torch.sqrt(1 - T * T)
    x = torch.stack([r * P.cos(), r * P.sin(), T], -1).reshape(-1, 3)
    w = (wt[:, None] * torch.full((k_phi,), 2 * torch.pi / k_phi, dtype=torch.float64)).reshape(-1)
    return x, w


def simplex2_quadrature(k: int = 120) -> tuple[Tensor, Tensor]:
    """Points of the open 2-simplex (in R³) and weights for the Lebesgue measure dp₁dp₂ (Duffy map
    p₁ = u, p₂ = (1-u)v of Gauss–Legendre nodes). Multiply by √3 for the Hausdorff measure."""
    s, ws = _gauss_legendre(k)
    s, ws = (s + 1) / 2, ws / 2
    U, V = torch.meshgrid(s, s, indexing="ij")
    p1, p2 = U, (1 - U) * V
    p = torch.stack([p1, p2, (1 - U) * (1 - V)], -1).reshape(-1, 3)
    w = (ws[:, None] * ws[None, :] * (1 - U)).reshape(-1)
    return p, w
