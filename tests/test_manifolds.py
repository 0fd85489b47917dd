"""Manifold flows: closed-form volume ratios vs the autodiff ratio, round trips, validation, gradients on
the manifold, and densities of whole flows integrating to 1 on S¹, S² and the 2-simplex by quadrature."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward import Flow, set_validation
from pushforward.distributions import Dirichlet, UniformSphere, VonMisesFisher, VonMisesFisherMixture
from pushforward.manifolds import (
    Simplex,
    Sphere,
    manifold_log_volume_ratio,
    simplex_projection,
    sphere_area,
    sphere_projection,
    tangent_basis,
)
from pushforward.transforms import (
    CalibrationTransform,
    Compose,
    GeneralizedCalibration,
    NormalizedAffine,
    NormalizedLinear,
    NormalizedTranslation,
)

from .registry.manifold import circle_quadrature, simplex2_quadrature, sphere2_quadrature

torch.set_num_threads(1)


def _perturbed(t, scale: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    t = t.double()
    with torch.no_grad():
        for p in t.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return t.eval()


SPHERE = [
    (lambda n: NormalizedTranslation(n), "translation"),
    (lambda n: NormalizedLinear(n), "linear"),
    (lambda n: NormalizedAffine(n), "affine"),
]
SIMPLEX = [
    (lambda n: CalibrationTransform(n), "calibration"),
    (lambda n: CalibrationTransform(n, shift=False), "temperature"),
    (lambda n: GeneralizedCalibration(n), "generalized"),
]


# ---------------------------------------------------------------------------------- the autodiff ratio
def test_autodiff_ratio_of_known_maps():
    g = torch.Generator().manual_seed(0)
    x = sphere_projection(torch.randn(5, 3, generator=g, dtype=torch.float64))
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    # isometries have ratio 1, however f is extended off the sphere
    for f in (lambda u: u, lambda u: u @ q.T, lambda u: sphere_projection(3.0 * u @ q.T)):
        torch.testing.assert_close(
            manifold_log_volume_ratio(f, x, sphere_projection, 2), torch.zeros(5, dtype=x.dtype)
        )
    # on the circle, the rotation by angle s·θ (θ ↦ sθ) has ratio s wherever it is smooth
    theta = torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64)
    pts = torch.stack([theta.cos(), theta.sin()], -1)

    def power(u):
        a = torch.atan2(u[:, 1], u[:, 0]) * 1.5
        return torch.stack([a.cos(), a.sin()], -1)

    lr = manifold_log_volume_ratio(power, pts, sphere_projection, 1)
    torch.testing.assert_close(lr, torch.full((3,), math.log(1.5), dtype=torch.float64))


def test_tangent_bases_are_orthonormal_and_tangent():
    g = torch.Generator().manual_seed(1)
    x = sphere_projection(torch.randn(4, 4, generator=g, dtype=torch.float64))
    x[0] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # a point where plain QR would fail
    T = tangent_basis(sphere_projection, x, 3)
    torch.testing.assert_close(T.transpose(1, 2) @ T, torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
    torch.testing.assert_close(torch.einsum("bnm,bn->bm", T, x), torch.zeros(4, 3, dtype=torch.float64))
    p = torch.softmax(torch.randn(3, 4, generator=g, dtype=torch.float64), -1)
    Ts = tangent_basis(simplex_projection, p, 3)
    torch.testing.assert_close(Ts.sum(1), torch.zeros(3, 3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_ratio_argument_errors():
    with pytest.raises(ValueError, match="shape"):
        manifold_log_volume_ratio(lambda u: u, torch.ones(3), sphere_projection, 2)
    with pytest.raises(ValueError, match="dim"):
        manifold_log_volume_ratio(lambda u: u, torch.ones(2, 3), sphere_projection, 0)


# ---------------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("make", [m for m, _ in SPHERE], ids=[i for _, i in SPHERE])
def test_sphere_closed_form_ratio_and_inverse(make, seed, n):
    t = _perturbed(make(n), 0.8, seed)
    g = torch.Generator().manual_seed(100 + seed)
    x = sphere_projection(torch.randn(6, n, generator=g, dtype=torch.float64))
    y, ladj = t(x)
    torch.testing.assert_close(ladj, t.autodiff_ladj(x), atol=1e-8, rtol=0)
    torch.testing.assert_close(torch.linalg.vector_norm(y, dim=-1), torch.ones(6, dtype=torch.float64))
    x_rec, ladj_inv = t.inverse(y)
    torch.testing.assert_close(x_rec, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ladj_inv, -ladj, atol=1e-10, rtol=0)
    inv_ratio = manifold_log_volume_ratio(lambda u: t.inverse(u)[0], y, sphere_projection, n - 1)
    torch.testing.assert_close(ladj_inv, inv_ratio, atol=1e-8, rtol=0)


def test_sphere_near_boundary_shift():
    """‖c‖ close to 1 (strong concentration) keeps the closed forms exact."""
    t = NormalizedTranslation(3).double()
    with torch.no_grad():
        t.raw_shift.copy_(torch.tensor([30.0, -10.0, 5.0]))  # ‖c‖ ≈ 0.97
    x = sphere_projection(torch.randn(8, 3, dtype=torch.float64))
    y, ladj = t(x)
    torch.testing.assert_close(ladj, t.autodiff_ladj(x), atol=1e-8, rtol=1e-10)
    torch.testing.assert_close(t.inverse(y)[0], x, atol=1e-9, rtol=0)


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("make", [m for m, _ in SIMPLEX], ids=[i for _, i in SIMPLEX])
def test_simplex_closed_form_ratio_and_inverse(make, seed, n):
    t = _perturbed(make(n), 0.8, seed)
    g = torch.Generator().manual_seed(200 + seed)
    p = torch.softmax(1.5 * torch.randn(6, n, generator=g, dtype=torch.float64), -1)
    q, ladj = t(p)
    torch.testing.assert_close(ladj, t.autodiff_ladj(p), atol=1e-8, rtol=0)
    torch.testing.assert_close(q.sum(-1), torch.ones(6, dtype=torch.float64))
    p_rec, ladj_inv = t.inverse(q)
    torch.testing.assert_close(p_rec, p, atol=1e-10, rtol=0)
    torch.testing.assert_close(ladj_inv, -ladj, atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: NormalizedAffine(3),
        lambda: NormalizedTranslation(2),
        lambda: NormalizedLinear(4),
        lambda: CalibrationTransform(3),
        lambda: GeneralizedCalibration(4),
    ],
)
def test_gradients_reach_every_parameter_on_the_manifold(make):
    t = _perturbed(make(), 0.3, 0)
    n = t.features
    g = torch.Generator().manual_seed(3)
    proj = sphere_projection if isinstance(t.manifold, Sphere) else simplex_projection
    x = proj(torch.rand(5, n, generator=g, dtype=torch.float64) + 0.1)
    y, ladj = t(x)
    x2, ladj2 = t.inverse(y.detach())
    loss = (y * torch.arange(n, dtype=y.dtype)).sum() + ladj.sum() + (x2[:, 0]).sum() + ladj2.sum()
    loss.backward()
    for name, p in t.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
        assert torch.isfinite(p.grad).all(), name


# ---------------------------------------------------------------------------------- validation
def test_points_off_the_manifold_raise():
    x = torch.tensor([[1.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="off the unit sphere"):
        NormalizedAffine(3)(x)
    with pytest.raises(ValueError, match="off the unit sphere"):
        NormalizedTranslation(3).inverse(x)
    with pytest.raises(ValueError, match="coordinates"):
        Sphere(3).check(torch.ones(2, 4))
    with pytest.raises(ValueError, match="<= 0"):
        CalibrationTransform(3)(torch.tensor([[0.5, 0.5, 0.0]]))
    with pytest.raises(ValueError, match="do not sum to 1"):
        GeneralizedCalibration(3)(torch.tensor([[0.5, 0.5, 0.5]]))
    with pytest.raises(ValueError, match="do not sum to 1"):
        Dirichlet([1.0, 1.0]).log_prob(torch.tensor([[0.2, 0.2]]))
    with pytest.raises(ValueError, match="off the unit sphere"):
        UniformSphere(2).log_prob(torch.tensor([[0.5, 0.5]]))
    with pytest.raises(ValueError):
        Sphere(1)
    with pytest.raises(ValueError):
        Simplex(1)
    with pytest.raises(ValueError, match="temperature"):
        CalibrationTransform(3, temperature=0.0)


def test_validation_can_be_switched_off():
    set_validation(False)
    try:
        y, _ = NormalizedLinear(3)(torch.tensor([[2.0, 0.0, 0.0]]))  # projected onto the sphere anyway
    finally:
        set_validation(True)
    torch.testing.assert_close(y, torch.tensor([[1.0, 0.0, 0.0]]))


def test_float32_chains_stay_within_tolerance():
    torch.manual_seed(0)
    t = _perturbed(Compose([NormalizedAffine(3) for _ in range(6)]), 0.5, 4).float()
    flow = Flow(t, UniformSphere(3))
    x = flow.sample((256,))
    assert torch.isfinite(flow.log_prob(x)).all()


# ---------------------------------------------------------------------------------- densities integrate to 1
def _sphere_flow(n: int, base, seed: int) -> Flow:
    t = Compose([NormalizedAffine(n), NormalizedTranslation(n), NormalizedLinear(n), NormalizedAffine(n)])
    return Flow(_perturbed(t, 0.5, seed), base.double())


def test_flow_density_integrates_to_one_on_s1():
    x, w = circle_quadrature(2048)
    for base in (UniformSphere(2), VonMisesFisher([1.0, 0.5], 3.0)):
        flow = _sphere_flow(2, base, 0)
        with torch.no_grad():
            total = (flow.log_prob(x).exp() * w).sum()
        assert abs(float(total) - 1.0) < 1e-3, float(total)


def test_flow_density_integrates_to_one_on_s2():
    x, w = sphere2_quadrature(160, 160)
    mixture = VonMisesFisherMixture(
        torch.eye(3), torch.tensor([4.0, 8.0, 2.0]), torch.tensor([0.5, 0.3, 0.2])
    )
    for base in (UniformSphere(3), mixture):
        flow = _sphere_flow(3, base, 1)
        with torch.no_grad():
            total = (flow.log_prob(x).exp() * w).sum()
        assert abs(float(total) - 1.0) < 1e-3, float(total)


def test_sphere_flow_sampling_matches_log_prob():
    torch.manual_seed(0)
    flow = _sphere_flow(3, VonMisesFisher([0.0, 0.0, 1.0], 5.0), 2)
    x, lp = flow.sample_and_log_prob((64,))
    torch.testing.assert_close(torch.linalg.vector_norm(x, dim=-1), torch.ones(64, dtype=x.dtype))
    torch.testing.assert_close(lp, flow.log_prob(x), atol=1e-9, rtol=0)


@pytest.mark.parametrize("measure", ["hausdorff", "lebesgue"])
def test_flow_density_integrates_to_one_on_the_2_simplex(measure):
    p, w = simplex2_quadrature(120)
    if measure == "hausdorff":
        w = w * math.sqrt(3.0)  # Hausdorff area element of the embedded simplex: √3 dp₁dp₂
    t = Compose([CalibrationTransform(3, temperature=0.8), GeneralizedCalibration(3)])
    flow = Flow(_perturbed(t, 0.3, 5), Dirichlet([2.0, 3.0, 2.5], measure=measure).double())
    with torch.no_grad():
        total = (flow.log_prob(p).exp() * w).sum()
    assert abs(float(total) - 1.0) < 1e-3, float(total)


def test_wrong_measure_is_detected():
    """The quadrature test can fail: a Lebesgue density integrated against the Hausdorff measure gives √3."""
    p, w = simplex2_quadrature(80)
    flow = Flow(CalibrationTransform(3).double(), Dirichlet([2.0, 2.0, 2.0], measure="lebesgue").double())
    with torch.no_grad():
        total = float((flow.log_prob(p).exp() * w * math.sqrt(3.0)).sum())
    assert abs(total - math.sqrt(3.0)) < 1e-3


def test_uniform_sphere_constant():
    for n in (2, 3, 4):
        assert math.isclose(sphere_area(n), [2 * math.pi, 4 * math.pi, 2 * math.pi**2][n - 2])
