"""FMPE: recovers a conjugate Gaussian posterior; keeps mass on a bounded prior's support; validates input."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal, Uniform

from pushforward.sbi.fmpe import FMPE

NOISE = 0.5


def conjugate_posterior(x0):
    """θ ~ N(0, I), x | θ ~ N(θ, NOISE² I): θ | x ~ N(x / (1 + NOISE²), NOISE² / (1 + NOISE²) I)."""
    return x0 / (1 + NOISE**2), NOISE / math.sqrt(1 + NOISE**2)


@pytest.mark.slow
def test_recovers_a_conjugate_gaussian_posterior():
    torch.manual_seed(0)
    prior = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
    theta = prior.sample((4000,))
    x = theta + NOISE * torch.randn_like(theta)
    post = FMPE(prior, hidden=(64, 64), batch_size=256, epochs=40, patience=8, seed=0).fit(theta, x)
    assert post.history.best_step > 0
    for x0 in (torch.tensor([0.5]), torch.tensor([-1.5])):
        mean, sd = conjugate_posterior(x0)
        draws = post.sample((4000,), x0)
        points = mean + sd * torch.tensor([[0.0], [1.0], [-1.5]])
        with torch.no_grad():
            log_q = post.log_prob(points, x0)
        log_p = Independent(Normal(mean, sd), 1).log_prob(points)
        errors = (float(draws.mean() - mean), float(draws.std() - sd), float((log_q - log_p).abs().max()))
        assert abs(errors[0]) < 0.1 and abs(errors[1]) < 0.08 and errors[2] < 0.35, (x0, errors)


def test_bounded_prior_keeps_every_sample_inside_and_trains_an_embedding():
    torch.manual_seed(1)
    prior = Independent(Uniform(-torch.ones(1), torch.ones(1)), 1)
    theta = prior.sample((300,))
    x = torch.cat([theta, theta**2], 1) + 0.1 * torch.randn(300, 2)
    embedding = nn.Linear(2, 3)
    embedding.out_features = 3
    before = embedding.weight.detach().clone()
    post = FMPE(prior, embedding=embedding, hidden=(16,), epochs=3, seed=0).fit(theta, x)
    assert not torch.equal(before, post.embedding.net.weight)
    draws = post.sample((500,), torch.tensor([0.9, 0.8]))
    assert bool(((draws > -1) & (draws < 1)).all())
    assert torch.isfinite(post.log_prob(draws, torch.tensor([0.9, 0.8]))).all()


def test_bad_input():
    prior = Independent(Uniform(-torch.ones(1), torch.ones(1)), 1)
    theta, x = torch.rand(50, 1) * 2 - 1, torch.randn(50, 1)
    with pytest.raises(ValueError, match="outside the prior"):
        FMPE(prior, epochs=1).fit(theta * 3, x)
    with pytest.raises(ValueError, match="rows"):
        FMPE(prior, epochs=1).fit(theta, x[:10])
    with pytest.raises(ValueError, match="validation_fraction"):
        FMPE(prior, validation_fraction=1.0).fit(theta, x)
    with pytest.raises(ValueError, match="embedding"):
        FMPE(prior, epochs=1).fit(theta, torch.randn(50, 2, 2))
    with pytest.raises(TypeError, match="tensors"):
        FMPE(prior).fit(theta.numpy(), x)
