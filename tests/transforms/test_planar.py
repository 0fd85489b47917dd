"""Planar and radial layers: reparameterisations, pure formulas, inverses, presets and validation."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward.flows import PRESETS, PlanarFlow, RadialFlow, SylvesterFlow
from pushforward.inversion import bisection
from pushforward.transforms import Inverse, Planar, Radial
from pushforward.transforms.planar import (
    constrain_planar_u,
    planar_log_det,
    planar_map,
    radial_inverse_radius,
    radial_log_det,
    radial_map,
)

torch.set_default_dtype(torch.float32)


def test_planar_init_is_identity():
    torch.manual_seed(0)
    layer = Planar(3)
    x = torch.randn(6, 3)
    z, ladj = layer(x)
    torch.testing.assert_close(z, x)
    torch.testing.assert_close(ladj, torch.zeros(6))
    assert layer.w.abs().max() <= math.sqrt(6 / 4) + 1e-6  # Glorot bound for fan (3, 1)


@pytest.mark.parametrize("seed", range(5))
def test_constrained_u_satisfies_invertibility_condition(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(4, generator=g, dtype=torch.float64)
    for scale in (0.1, 1.0, 10.0, 100.0):
        u = scale * torch.randn(4, generator=g, dtype=torch.float64)
        u_hat = constrain_planar_u(u, w)
        assert float(w @ u_hat) > -1.0
        # w·û = m(w·u), m(a) = −1 + δ + (1 − δ) softplus(a + log(e − 1)); the correction is along w only
        m = -1.0 + 1e-4 + (1 - 1e-4) * torch.nn.functional.softplus(w @ u + math.log(math.e - 1))
        torch.testing.assert_close(w @ u_hat, m)
        residual = (u_hat - u) - ((u_hat - u) @ w) * w / (w @ w)
        assert float(residual.abs().max()) < 1e-10


def test_planar_log_det_is_matrix_determinant_lemma():
    g = torch.Generator().manual_seed(1)
    w, u = torch.randn(3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    b = torch.tensor(0.4, dtype=torch.float64)
    u_hat = constrain_planar_u(u, w)
    z = torch.randn(3, generator=g, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda t: planar_map(t.unsqueeze(0), u_hat, w, b)[0], z)
    expected = torch.linalg.slogdet(J)[1]
    torch.testing.assert_close(planar_log_det(z @ w, w @ u_hat, b), expected)


def test_planar_inverse_matches_bisection_along_w():
    """The Newton solve of the scalar equation agrees with plain bisection."""
    torch.manual_seed(3)
    layer = Planar(2).double()
    with torch.no_grad():
        layer.u.copy_(torch.tensor([2.0, -1.0]))
        layer.b.fill_(0.5)
    x = 3 * torch.randn(50, 2, dtype=torch.float64)
    z, _ = layer(x)
    wu = float(layer.w.detach() @ layer.u_hat().detach())
    a = bisection(lambda t: t + wu * torch.tanh(t + 0.5), x @ layer.w.detach(), -10.0, 10.0, atol=1e-13)
    torch.testing.assert_close(z @ layer.w.detach(), a, atol=1e-9, rtol=0)


def test_planar_float32_roundtrip_and_extreme_inputs():
    torch.manual_seed(4)
    layer = Planar(3)
    with torch.no_grad():
        layer.u.normal_(0, 3)
    z = torch.cat([torch.randn(10, 3), 1e4 * torch.randn(2, 3)])
    x, ladj = layer.inverse(z)
    z_rec, ladj_f = layer(x)
    torch.testing.assert_close(z_rec, z, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(ladj_f, -ladj, atol=1e-4, rtol=1e-4)


def test_radial_constraints_and_closed_form_radius():
    torch.manual_seed(5)
    layer = Radial(3).double()
    with torch.no_grad():
        layer.beta_raw.fill_(-30.0)  # β → −α: the most contracting allowed
    alpha, beta = layer.alpha_beta()
    assert float(alpha) > 0 and float(beta) > -float(alpha)
    r = torch.tensor([0.0, 1e-6, 0.3, 2.0, 1e3], dtype=torch.float64)
    s = r * (1 + beta / (alpha + r))
    torch.testing.assert_close(radial_inverse_radius(s, alpha, beta), r, atol=1e-9, rtol=1e-9)


def test_radial_log_det_matches_jacobian():
    g = torch.Generator().manual_seed(6)
    z0 = torch.randn(4, generator=g, dtype=torch.float64)
    alpha, beta = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-0.5, dtype=torch.float64)
    z = torch.randn(4, generator=g, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda t: radial_map(t.unsqueeze(0), z0, alpha, beta)[0][0], z)
    r = (z - z0).norm()
    torch.testing.assert_close(radial_log_det(r, alpha, beta, 4), torch.linalg.slogdet(J)[1])


@pytest.mark.parametrize("cls", [Planar, Radial])
def test_bad_input_raises(cls):
    with pytest.raises(ValueError):
        cls(0)
    with pytest.raises(TypeError):
        cls(2.5)
    layer = cls(3)
    with pytest.raises(ValueError, match="shape"):
        layer(torch.randn(4, 2))
    with pytest.raises(ValueError, match="shape"):
        layer.inverse(torch.randn(4, 3, 1))


@pytest.mark.parametrize("preset", [PlanarFlow, RadialFlow, SylvesterFlow])
def test_presets_sample_and_score_consistently(preset):
    torch.manual_seed(7)
    flow = preset(3, layers=3).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, log_q = flow.sample_and_log_prob((20,))
    torch.testing.assert_close(flow.log_prob(x), log_q, atol=1e-8, rtol=1e-8)


def test_preset_density_direction_and_registry():
    assert PRESETS["planar"] is PlanarFlow and PRESETS["radial"] is RadialFlow
    assert PRESETS["sylvester"] is SylvesterFlow
    flow = PlanarFlow(2, layers=2, cheap="density")
    assert all(isinstance(t, Inverse) for t in flow.transform)
    assert flow.log_prob(torch.randn(5, 2)).shape == (5,)
    with pytest.raises(ValueError, match="conditioner"):
        PlanarFlow(2, context=3)
    with pytest.raises(ValueError, match="cheap"):
        RadialFlow(2, cheap="both")
    with pytest.raises(ValueError, match="layers"):
        SylvesterFlow(2, layers=0)


def test_planar_sampling_gradients_reach_parameters():
    torch.manual_seed(8)
    flow = PlanarFlow(2, layers=2)
    x, log_q = flow.sample_and_log_prob((32,))
    (x.pow(2).sum() + log_q.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in flow.parameters())
