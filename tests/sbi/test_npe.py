"""NPE: training on simulations, bounded priors, embeddings, conjugate-Gaussian recovery (issue 16)."""

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, Uniform

from pushforward.nets.embedding import DeepSetEmbedding
from pushforward.sbi import NPE, Posterior


def _gaussian_simulations(n, sigma=0.5, dim=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, dim, generator=g)
    return theta, theta + sigma * torch.randn(n, dim, generator=g)


def test_npe_returns_a_trained_posterior_on_a_box_prior():
    prior = Independent(Uniform(torch.zeros(2), torch.ones(2)), 1)
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(400, 2, generator=g)
    x = theta + 0.05 * torch.randn(400, 2, generator=g)
    post = NPE(prior, layers=1, hidden=(16, 16), epochs=3, seed=0).fit(theta, x)
    assert isinstance(post, Posterior)
    assert len(post.history.val_loss) == 3 and post.history.val_loss[-1] < post.history.val_loss[0]
    samples = post.sample((500,), torch.tensor([0.5, 0.99]))
    assert bool(((samples > 0) & (samples < 1)).all())


def test_npe_rejects_bad_simulations():
    prior = Independent(Uniform(torch.zeros(1), torch.ones(1)), 1)
    theta = torch.rand(50, 1)
    with pytest.raises(ValueError, match="outside the prior's support"):
        NPE(prior, epochs=1).fit(theta + 2.0, theta)
    with pytest.raises(ValueError, match="rows"):
        NPE(prior, epochs=1).fit(theta, theta[:40])
    with pytest.raises(ValueError, match="embedding"):
        NPE(prior, epochs=1).fit(theta, torch.randn(50, 3, 3))
    with pytest.raises(ValueError, match="non-finite"):
        NPE(prior, epochs=1).fit(theta, theta.clone().fill_(float("nan")))


def test_npe_with_a_deep_set_embedding_on_iid_observations():
    torch.manual_seed(0)
    theta = torch.randn(300, 1)
    x = theta[:, None, :] + torch.randn(300, 5, 1)  # 5 iid observations per simulation
    embedding = DeepSetEmbedding(1, 4, hidden=(16,), latent=8)
    post = NPE(Normal(torch.zeros(1), 1.0), embedding=embedding, layers=1, hidden=(16, 16), epochs=2).fit(
        theta, x
    )
    x_o = torch.randn(5, 1)
    lp = post.log_prob(torch.zeros(3, 1), x_o)
    assert torch.allclose(lp, post.log_prob(torch.zeros(3, 1), x_o.flip(0)), atol=1e-5)
    assert post.sample((4,), x_o).shape == (4, 1)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_npe_recovers_a_conjugate_gaussian_posterior(dtype):
    # θ ~ N(0, I), x | θ ~ N(θ, σ² I): the posterior is N(x / (1 + σ²), σ² / (1 + σ²) I)
    sigma = 0.5
    theta, x = _gaussian_simulations(3000, sigma, dim=2)
    prior = MultivariateNormal(torch.zeros(2), torch.eye(2))
    post = NPE(prior, layers=2, hidden=(32, 32), epochs=300, patience=20, seed=0).fit(
        theta.to(dtype), x.to(dtype)
    )
    torch.manual_seed(1)
    x_o = torch.tensor([1.0, -0.5], dtype=dtype)
    samples = post.sample((20000,), x_o)
    assert samples.dtype == dtype
    mean, std = x_o / (1 + sigma**2), (sigma**2 / (1 + sigma**2)) ** 0.5
    assert torch.allclose(samples.mean(0), mean, atol=0.06)
    # 3,000 simulations leave a finite-sample error (validation NLL ~0.035 nats above the exact posterior's
    # entropy; measured stds 0.51 / 0.46): 20 % still rejects the prior's width (1.0) and scaling errors
    assert torch.allclose(samples.std(0), torch.full_like(mean, std), rtol=0.2)


def test_npe_auto_keeps_the_candidate_with_the_lower_validation_loss():
    theta, x = _gaussian_simulations(400, dim=2)
    prior = MultivariateNormal(torch.zeros(2), torch.eye(2))
    kw = dict(layers=1, hidden=(16, 16), epochs=3, seed=0)
    auto = NPE(prior, **kw).fit(theta, x)
    assert set(auto.flow_scores) == {"maf", "nsf"}
    assert auto.flow_kind == min(auto.flow_scores, key=auto.flow_scores.get)
    assert auto.history.best_val_loss == auto.flow_scores[auto.flow_kind]
    # each candidate is trained exactly as it would be alone (same split, initialisation and shuffling)
    for kind in ("maf", "nsf"):
        alone = NPE(prior, flow=kind, **kw).fit(theta, x)
        assert alone.flow_kind == kind and alone.flow_scores == {}
        assert alone.history.best_val_loss == auto.flow_scores[kind]
    chosen = NPE(prior, flow=auto.flow_kind, **kw).fit(theta, x)
    probe, x_o = torch.randn(5, 2), torch.tensor([0.3, -0.2])
    assert torch.allclose(auto.log_prob(probe, x_o), chosen.log_prob(probe, x_o))


def test_npe_auto_trains_the_callers_embedding():
    torch.manual_seed(0)
    theta = torch.randn(300, 1)
    x = theta[:, None, :] + torch.randn(300, 5, 1)
    embedding = DeepSetEmbedding(1, 4, hidden=(16,), latent=8)
    before = [p.detach().clone() for p in embedding.parameters()]
    post = NPE(Normal(torch.zeros(1), 1.0), embedding=embedding, layers=1, hidden=(16, 16), epochs=2).fit(
        theta, x
    )
    assert post.embedding.net is embedding
    assert any(not torch.equal(a, b) for a, b in zip(before, embedding.parameters(), strict=True))


def test_npe_rejects_an_unknown_flow():
    theta, x = _gaussian_simulations(50)
    with pytest.raises(ValueError, match="flow must be"):
        NPE(None, flow="realnvp", epochs=1).fit(theta, x)
    with pytest.raises(TypeError, match="flow must be"):
        NPE(None, flow=3, epochs=1).fit(theta, x)


def test_one_set_of_defaults_and_one_shape_for_both_estimators():
    from pushforward.sbi import FMPE, SBI_DEFAULTS

    npe, fmpe = NPE(None), FMPE(None)
    assert npe.config == fmpe.config == SBI_DEFAULTS
    assert NPE(None, lr=3e-4).config.lr == 3e-4 and NPE(None).config.lr == SBI_DEFAULTS.lr
    with pytest.raises(ValueError, match="fit the estimator first"):
        npe.loss(torch.zeros(3, 1), torch.zeros(3, 1))
    theta, x = _gaussian_simulations(200)
    post = NPE(None, flow="maf", layers=1, hidden=(8,), epochs=2, seed=0)
    fitted = post.fit(theta, x)
    held = _gaussian_simulations(100, seed=1)
    expected = -fitted.log_prob(*held).mean()
    torch.testing.assert_close(post.loss(*held), expected)


@pytest.mark.parametrize(
    "prior, error, match",
    [
        ("uniform", TypeError, "prior must be"),
        (Normal(torch.zeros(2), 1.0), ValueError, "shape"),
        (torch.distributions.Dirichlet(torch.ones(1)), ValueError, "reparametrise"),
    ],
)
def test_priors_are_checked_before_training(prior, error, match):
    theta, x = _gaussian_simulations(50)
    with pytest.raises(error, match=match):
        NPE(prior, epochs=1).fit(theta, x)
