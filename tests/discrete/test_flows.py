"""Discrete flows: exact normalisation over enumerable spaces, training with ``pushforward.fit``, sampling."""

from __future__ import annotations

import pytest
import torch

import pushforward
from pushforward.distributions import Categorical, DiscretizedLogisticMixture
from pushforward.distributions.discretized import discretized_logistic_mixture_log_pmf
from pushforward.flows import DISCRETE_PRESETS, IDF, PRESETS, DiscreteFlow, IntegerDiscreteFlow

from .common import DTYPES, perturb


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("features", "categories"), [(2, 5), (3, 3), (3, 4)])
def test_categorical_flow_sums_to_one(dtype, features, categories):
    flow = perturb(DiscreteFlow(features, categories=categories, layers=3, hidden=(16,)), 1.0).to(dtype)
    grid = torch.cartesian_prod(*[torch.arange(categories, dtype=dtype)] * features).reshape(-1, features)
    lp = flow.log_prob(grid).detach()
    total = float(torch.logsumexp(lp.double(), 0).exp())
    assert total == pytest.approx(1.0, abs=1e-5 if dtype == torch.float32 else 1e-12)
    # the flow is not the base alone: the layers change the pmf
    assert not torch.allclose(lp, flow.base.log_prob(grid))


@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_flow_sums_to_one(dtype):
    """Over a window much wider than the pmf's spread, the mass is 1 up to the logistic tails."""
    flow = perturb(IDF(2, layers=3, hidden=(8,), components=3), 0.05).to(dtype)
    r = torch.arange(-150, 151, dtype=dtype)
    grid = torch.cartesian_prod(r, r)
    with torch.no_grad():
        lp = flow.log_prob(grid)
        z = flow.transform(grid)[0]
    assert float(torch.logsumexp(lp.double(), 0).exp()) == pytest.approx(1.0, abs=1e-5)
    assert not torch.equal(z, grid), "the perturbed couplings should move points"
    # the preimages of a latent window are distinct points whose pmf is the base pmf of the window
    with torch.no_grad():
        x = flow.transform.inverse(grid)[0]
        assert torch.unique(x, dim=0).shape[0] == grid.shape[0]
        torch.testing.assert_close(flow.log_prob(x), flow.base.log_prob_chunks([grid], []))


def test_factor_out_prior_is_normalised_per_element():
    flow = perturb(IDF((1, 4, 4), levels=2, layers=1, hidden=(8,), components=3), 0.1).double()
    kept = torch.randint(0, 256, (2, *flow.base.kept_shapes[0])).double()
    logits, loc, log_scale = flow.base.chunk_parameters(0, kept)
    k = torch.arange(-3000.0, 3300.0, dtype=torch.float64).reshape(-1, 1, 1, 1, 1)
    mass = discretized_logistic_mixture_log_pmf(k, logits, loc, log_scale).exp().sum(0)
    torch.testing.assert_close(mass, torch.ones_like(mass), atol=1e-9, rtol=0)


def test_idf_log_prob_matches_its_chunks():
    """log_prob = log P(top) + sum of conditional chunk log-pmfs, computed independently here."""
    flow = perturb(IDF((1, 4, 4), levels=2, layers=2, hidden=(8,), components=2), 0.1).double()
    x = torch.randint(0, 256, (3, 1, 4, 4)).double()
    chunks, kept = flow.latents(x)
    ref = sum(
        discretized_logistic_mixture_log_pmf(
            z, *flow.base.chunk_parameters(k, kept[k] if k < len(kept) else None)
        )
        .reshape(3, -1)
        .sum(-1)
        for k, z in enumerate(chunks)
    )
    torch.testing.assert_close(flow.log_prob(x), ref)
    flat = flow.transform(x)[0]
    torch.testing.assert_close(flat, torch.cat([c.reshape(3, -1) for c in chunks], 1))


def test_idf_rejects_bad_input():
    flow = IDF((1, 4, 4), levels=2, layers=1, hidden=(8,))
    with pytest.raises(ValueError, match="non-integer"):
        flow.log_prob(torch.full((2, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="shape"):
        flow.log_prob(torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match="NaN"):
        flow.log_prob(torch.full((2, 1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="image shape"):
        IDF((4, 4))
    with pytest.raises(ValueError, match="kept parts"):
        flow.base.log_prob(torch.zeros(2, 16))


def test_categorical_flow_rejects_out_of_range():
    flow = DiscreteFlow(3, categories=4, layers=2, hidden=(8,))
    with pytest.raises(ValueError, match="out of range"):
        flow.log_prob(torch.tensor([[0.0, 4.0, 1.0]]))
    with pytest.raises(ValueError, match="out of range"):
        flow.log_prob(torch.tensor([[0.0, -1.0, 1.0]]))


def test_samples_are_integers_in_shape():
    flow = perturb(IDF((1, 4, 4), levels=2, layers=1, hidden=(8,), components=2), 0.1)
    x, lp = flow.sample_and_log_prob((5,))
    assert x.shape == (5, 1, 4, 4) and torch.equal(x, x.round()) and lp.shape == (5,)
    torch.testing.assert_close(lp, flow.log_prob(x))
    cat = DiscreteFlow(4, categories=3, layers=2, hidden=(8,))
    s = cat.sample((7,))
    assert s.shape == (7, 4) and bool(((s >= 0) & (s <= 2)).all())


def test_sampling_follows_the_pmf():
    """Empirical frequencies of 20k draws match the exact pmf on a 3 x 3 space (chi-square bound)."""
    torch.manual_seed(0)
    flow = perturb(DiscreteFlow(2, categories=3, layers=2, hidden=(8,)), 1.0)
    s = flow.sample((20000,))
    grid = torch.cartesian_prod(torch.arange(3.0), torch.arange(3.0))
    p = flow.log_prob(grid).exp().detach()
    counts = torch.stack([((s == g).all(-1)).sum() for g in grid]).double()
    chi2 = float((((counts - 20000 * p) ** 2) / (20000 * p)).sum())
    assert chi2 < 30.0  # 8 degrees of freedom: P(chi2 > 30) < 3e-4


def test_discrete_distributions():
    base = DiscretizedLogisticMixture((2, 3), components=2, loc=5.0, scale=2.0)
    z = base.sample((4000,))
    assert z.shape == (4000, 2, 3) and torch.equal(z, z.round())
    assert abs(float(z.mean()) - 5.0) < 0.3
    cat = Categorical(2, categories=4)
    with pytest.raises(ValueError):
        cat.log_prob(torch.tensor([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="categories"):
        Categorical(2, categories=1)


def test_presets_registered():
    assert DISCRETE_PRESETS["idf"] is IDF and DISCRETE_PRESETS["discrete"] is DiscreteFlow
    assert not set(DISCRETE_PRESETS) & set(PRESETS)  # the continuous tooling never trains them on reals
    assert isinstance(
        DISCRETE_PRESETS["idf"]((1, 4, 4), levels=2, layers=1, hidden=(8,)), IntegerDiscreteFlow
    )


@pytest.mark.parametrize("kind", ["idf", "categorical"])
def test_fit_trains_a_discrete_flow(kind):
    """pushforward.fit lowers the negative log-likelihood of structured integer data (straight-through)."""
    torch.manual_seed(0)
    n = 512
    if kind == "idf":
        a = torch.randint(0, 40, (n, 1)).double()
        data = torch.cat([a, a + torch.randint(-1, 2, (n, 1)).double() + 100], 1).float()
        flow = IDF(2, layers=2, hidden=(32,), components=2)
    else:
        a = torch.randint(0, 5, (n, 1))
        data = torch.cat([a, (a + 1) % 5, (2 * a) % 5], 1).float()
        flow = DiscreteFlow(3, categories=5, layers=2, hidden=(32,))
    before = float(-flow.log_prob(data).mean().detach())
    pushforward.fit(flow, data, steps=150, lr=1e-2, batch_size=128, progress=False, seed=0)
    after = float(-flow.log_prob(data).mean().detach())
    assert after < before - 0.8, (before, after)


@pytest.mark.parametrize("dtype", DTYPES)
def test_onehot_path_matches_the_integer_path(dtype):
    """CategoricalFlow.log_prob (one-hot, for gradients) equals base.log_prob(transform(x)); each layer's
    forward_onehot is the one-hot encoding of its forward, and its gradient reaches the conditioner."""
    flow = perturb(DiscreteFlow(3, categories=6, layers=3, hidden=(16,)), 1.0).to(dtype)
    x = torch.cartesian_prod(*[torch.arange(6, dtype=dtype)] * 3)
    torch.testing.assert_close(flow.log_prob(x), flow.base.log_prob(flow.transform(x)[0]))
    layer = flow.layers[0]
    onehot = torch.nn.functional.one_hot(x.long(), 6).to(dtype)
    y = layer.forward_onehot(onehot)
    assert torch.equal(y.argmax(-1).to(dtype), layer(x)[0])
    assert torch.equal(y.detach(), torch.nn.functional.one_hot(layer(x)[0].long(), 6).to(dtype))
    (y * torch.randn(y.shape, dtype=dtype)).sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in layer.conditioner.parameters())
