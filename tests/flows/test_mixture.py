"""Mixtures of flows: exact log-sum-exp density, sampling by component, EM weights, training with fit."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward import Flow, fit
from pushforward.flows import MAF, MixtureFlow
from pushforward.transforms import Affine


def _blob(loc: float, scale: float) -> Flow:
    """A normal N(loc, scale²) in 2-D, as a flow (z = (x − loc) / scale)."""
    t = Affine(2)
    with torch.no_grad():
        t.log_scale.fill_(-math.log(scale))
        t.shift.fill_(-loc / scale)
    return Flow(t)


def test_density_is_the_weighted_sum_and_integrates_to_one():
    mix = MixtureFlow(
        [_blob(-2.0, 0.5), _blob(1.5, 1.0), MAF(2, layers=1, hidden=(8,))], weights=[0.2, 0.5, 0.3]
    )
    mix = mix.double()
    x = torch.randn(7, 2, dtype=torch.float64)
    manual = sum(w * c.log_prob(x).exp() for w, c in zip([0.2, 0.5, 0.3], mix.components))
    torch.testing.assert_close(mix.log_prob(x), manual.log())
    g = torch.linspace(-9, 9, 601, dtype=torch.float64)
    grid = torch.cartesian_prod(g, g)
    with torch.no_grad():
        total = float(mix.log_prob(grid).exp().sum()) * float(g[1] - g[0]) ** 2
    assert total == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampling_by_component_and_sample_and_log_prob(dtype):
    torch.manual_seed(0)
    mix = MixtureFlow([_blob(-4.0, 0.5), _blob(4.0, 0.5)], weights=[0.25, 0.75]).to(dtype)
    x = mix.sample((20_000,))
    assert x.shape == (20_000, 2) and x.dtype == dtype
    right = float((x[:, 0] > 0).to(torch.float64).mean())
    assert right == pytest.approx(0.75, abs=0.015)
    y, log_p = mix.sample_and_log_prob((5, 3))
    assert y.shape == (5, 3, 2) and log_p.shape == (5, 3)
    torch.testing.assert_close(log_p, mix.log_prob(y))


def test_responsibilities_and_em_weights():
    mix = MixtureFlow([_blob(-4.0, 0.5), _blob(4.0, 0.5)])
    data = torch.cat([torch.randn(300, 2) * 0.5 - 4.0, torch.randn(100, 2) * 0.5 + 4.0])
    r = mix.responsibilities(data)
    assert r.shape == (400, 2)
    torch.testing.assert_close(r.sum(-1), torch.ones(400))
    weights = mix.update_weights(data)
    torch.testing.assert_close(weights, torch.tensor([0.75, 0.25]), atol=1e-3, rtol=0)


def test_fit_trains_a_mixture_on_two_separated_blobs():
    torch.manual_seed(1)
    data = torch.cat([torch.randn(600, 2) * 0.3 + torch.tensor([-3.0, 0.0]), torch.randn(600, 2) * 0.3 + 3.0])
    mix = MixtureFlow([_blob(-1.0, 1.0), _blob(1.0, 1.0)])
    with torch.no_grad():
        before = float(-mix.log_prob(data).mean())
    fit(mix, data, steps=300, lr=2e-2, progress=False, seed=0)
    with torch.no_grad():
        after = float(-mix.log_prob(data).mean())
    assert after < before - 1.0
    assert float(mix.weights.min()) > 0.35


def test_conditional_components():
    mix = MixtureFlow([MAF(2, context=3, layers=1, hidden=(8,)) for _ in range(2)])
    c = torch.randn(4, 3)
    assert mix.log_prob(torch.randn(4, 2), c).shape == (4,)
    assert mix.sample((5,), c).shape == (5, 4, 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="event shape"):
        MixtureFlow([MAF(2, layers=1), MAF(3, layers=1)])
    with pytest.raises(ValueError, match="positive"):
        MixtureFlow([MAF(2, layers=1), MAF(2, layers=1)], weights=[1.0, 0.0])
    with pytest.raises(TypeError, match="Flows"):
        MixtureFlow([torch.nn.Linear(2, 2)])
    with pytest.raises(ValueError):
        MixtureFlow([MAF(2, layers=1)]).log_prob(torch.randn(3, 4))
