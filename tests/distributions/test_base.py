"""Base distributions: log-densities against torch.distributions, sampling moments, device/dtype."""

import math

import pytest
import torch
from torch import distributions as D

from pushforward.distributions import BoxUniform, DiagNormal, MixtureOfGaussians, StandardNormal


def test_standard_normal_matches_torch():
    z = torch.randn(10, 3)
    ref = D.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(StandardNormal(3).log_prob(z), ref)
    img = torch.randn(4, 2, 3, 3)
    assert StandardNormal((2, 3, 3)).log_prob(img).shape == (4,)


def test_diag_normal_matches_torch_and_moments():
    q = DiagNormal(2, loc=1.5, scale=0.5)
    z = torch.randn(10, 2)
    ref = D.Normal(1.5, 0.5).log_prob(z).sum(-1)
    torch.testing.assert_close(q.log_prob(z), ref)
    s = q.sample((20000,))
    torch.testing.assert_close(s.mean(0), torch.full((2,), 1.5), atol=0.03, rtol=0)
    torch.testing.assert_close(s.std(0), torch.full((2,), 0.5), atol=0.03, rtol=0)


def test_box_uniform():
    u = BoxUniform(torch.tensor([0.0, -1.0]), torch.tensor([2.0, 1.0]))
    lp = u.log_prob(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))
    assert math.isclose(float(lp[0]), -math.log(4.0), rel_tol=1e-6) and lp[1] == -math.inf
    s = u.sample((1000,))
    assert (s[:, 0] >= 0).all() and (s[:, 0] <= 2).all()
    with pytest.raises(ValueError):
        BoxUniform(torch.ones(2), torch.zeros(2))


def test_mixture_matches_torch():
    m = MixtureOfGaussians(2, 3, seed=1)
    with torch.no_grad():
        m.logits.copy_(torch.tensor([0.1, -0.3, 0.5]))
        m.log_scale.copy_(0.2 * torch.randn(3, 2))
    ref = D.MixtureSameFamily(
        D.Categorical(logits=m.logits), D.Independent(D.Normal(m.loc, m.log_scale.exp()), 1)
    )
    z = torch.randn(20, 2)
    torch.testing.assert_close(m.log_prob(z), ref.log_prob(z))
    s = m.sample((30000,))
    torch.testing.assert_close(s.mean(0), ref.mean, atol=0.05, rtol=0)


def test_distributions_follow_dtype():
    for dist in (StandardNormal(2), DiagNormal(2), MixtureOfGaussians(2, 2)):
        d64 = dist.to(torch.float64)
        assert d64.sample((3,)).dtype == torch.float64
        assert d64.log_prob(torch.zeros(3, 2, dtype=torch.float64)).dtype == torch.float64
