"""Distributions on the sphere and the simplex: normalisation by quadrature, closed forms, samplers."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward.distributions import Dirichlet, UniformSphere, VonMisesFisher, VonMisesFisherMixture
from pushforward.distributions.sphere import log_bessel_iv, log_vmf_normalizer

from ..registry.manifold import circle_quadrature, simplex2_quadrature, sphere2_quadrature

torch.set_num_threads(1)


def test_log_bessel_matches_closed_forms():
    k = torch.tensor([1e-4, 0.3, 2.0, 40.0, 600.0], dtype=torch.float64)
    torch.testing.assert_close(log_bessel_iv(0.0, k), torch.special.i0e(k).log() + k)
    torch.testing.assert_close(log_bessel_iv(1.0, k), torch.special.i1e(k).log() + k)
    # I_{1/2}(k) = sqrt(2 / (pi k)) sinh k
    half = 0.5 * math.log(2 / math.pi) - 0.5 * k.log() + k + torch.log1p(-torch.exp(-2 * k)) - math.log(2)
    torch.testing.assert_close(log_bessel_iv(0.5, k), half)


def test_vmf_normaliser_on_s2_and_limit():
    k = torch.tensor([0.01, 1.0, 25.0, 300.0], dtype=torch.float64)
    expected = (
        k.log() - math.log(4 * math.pi) - (k + torch.log1p(-torch.exp(-2 * k)) - math.log(2))
    )  # κ/(4π sinh κ)
    torch.testing.assert_close(log_vmf_normalizer(k, 3), expected)
    zero = torch.zeros(1, dtype=torch.float64)
    torch.testing.assert_close(
        log_vmf_normalizer(zero, 3), torch.tensor([-math.log(4 * math.pi)], dtype=torch.float64)
    )
    tiny = torch.tensor([1e-9], dtype=torch.float64)
    torch.testing.assert_close(
        log_vmf_normalizer(tiny, 5), torch.tensor([-math.log(8 * math.pi**2 / 3)], dtype=torch.float64)
    )


@pytest.mark.parametrize("kappa", [0.5, 6.0, 40.0])
def test_vmf_integrates_to_one(kappa):
    x1, w1 = circle_quadrature(4096)
    vmf = VonMisesFisher([0.6, -0.8], kappa).double()
    assert abs(float((vmf.log_prob(x1).exp() * w1).sum()) - 1) < 1e-6
    x2, w2 = sphere2_quadrature(200, 64)
    vmf = VonMisesFisher([0.2, 0.3, -0.9], kappa).double()
    assert abs(float((vmf.log_prob(x2).exp() * w2).sum()) - 1) < 1e-4


def test_uniform_and_mixture_integrate_to_one():
    x2, w2 = sphere2_quadrature(120, 120)
    assert abs(float((UniformSphere(3).double().log_prob(x2).exp() * w2).sum()) - 1) < 1e-10
    mix = VonMisesFisherMixture(
        [[1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]], [3.0, 10.0, 1.0], [0.2, 0.5, 0.3]
    ).double()
    assert abs(float((mix.log_prob(x2).exp() * w2).sum()) - 1) < 1e-4


@pytest.mark.parametrize("n", [2, 3, 5])
def test_vmf_samples_have_the_right_mean_resultant(n):
    torch.manual_seed(n)
    kappa = torch.tensor(4.0, dtype=torch.float64)
    loc = torch.nn.functional.normalize(torch.arange(1.0, n + 1, dtype=torch.float64), dim=0)
    x = VonMisesFisher(loc, 4.0).double().sample((4000,))
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(4000, dtype=torch.float64))
    expected = (log_bessel_iv(n / 2, kappa) - log_bessel_iv(n / 2 - 1, kappa)).exp()  # A_n(κ)
    assert abs(float((x @ loc).mean()) - float(expected)) < 0.02


def test_vmf_s2_rsample_is_reparameterised():
    vmf = VonMisesFisher([0.0, 0.0, 1.0], 3.0, learnable=True).double()
    x = vmf.rsample((16,))
    x[:, 2].sum().backward()
    assert vmf.log_concentration.grad is not None and float(vmf.log_concentration.grad) != 0.0


def test_learnable_parameters_and_errors():
    mix = VonMisesFisherMixture(torch.eye(3), 5.0, learnable=True)
    assert {n for n, _ in mix.named_parameters()} == {"raw_locs", "log_concentrations", "logits"}
    assert mix.sample((7,)).shape == (7, 3)
    with pytest.raises(ValueError, match="non-zero"):
        VonMisesFisher([0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="positive"):
        VonMisesFisher([1.0, 0.0], -1.0)
    with pytest.raises(ValueError, match="weights"):
        VonMisesFisherMixture(torch.eye(2), 1.0, [1.0, 2.0, 3.0])


def test_dirichlet_measures():
    alpha = torch.tensor([2.0, 3.0, 0.7], dtype=torch.float64)
    p = torch.softmax(torch.randn(5, 3, dtype=torch.float64), -1)
    ref = torch.distributions.Dirichlet(alpha).log_prob(p)
    torch.testing.assert_close(Dirichlet(alpha, measure="lebesgue").double().log_prob(p), ref)
    torch.testing.assert_close(Dirichlet(alpha).double().log_prob(p), ref - 0.5 * math.log(3))
    with pytest.raises(ValueError, match="measure"):
        Dirichlet(alpha, measure="area")
    with pytest.raises(ValueError, match="positive"):
        Dirichlet([1.0, -1.0])


def test_dirichlet_integrates_to_one_and_samples():
    q, w = simplex2_quadrature(100)
    d = Dirichlet([2.0, 3.0, 4.0]).double()
    assert abs(float((d.log_prob(q).exp() * w * math.sqrt(3)).sum()) - 1) < 1e-6  # Hausdorff area √3 dp₁dp₂
    x = d.rsample((500,))
    torch.testing.assert_close(x.sum(-1), torch.ones(500, dtype=torch.float64))
    assert torch.isfinite(d.log_prob(x)).all()
