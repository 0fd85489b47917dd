"""NeuTra with Pyro: potential correctness, exactness on a Gaussian, validation. Skipped without pyro."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("pyro")

from pushforward import Flow
from pushforward.inference.mcmc import effective_sample_size, neutra, neutra_potential, nuts
from pushforward.transforms import Affine


def _affine_flow(loc, scale) -> Flow:
    t = Affine(2)
    with torch.no_grad():
        t.log_scale.copy_(-torch.log(torch.tensor(scale)))
        t.shift.copy_(-torch.tensor(loc) / torch.tensor(scale))
    return Flow(t)


def gaussian(x):
    return -0.5 * (((x - torch.tensor([3.0, -1.0])) / torch.tensor([2.0, 0.5])) ** 2).sum(-1)


def test_potential_is_pulled_back_log_density():
    flow = _affine_flow([3.0, -1.0], [2.0, 0.5])
    potential = neutra_potential(flow, gaussian)
    z = torch.tensor([0.3, -1.2])
    # x = loc + scale·z, so U(z) = ½|z|² − log(2·0.5)
    expected = 0.5 * (z**2).sum() - math.log(2.0 * 0.5)
    torch.testing.assert_close(potential({"z": z}), expected)


def test_neutra_with_exact_flow_samples_the_target():
    flow = _affine_flow([3.0, -1.0], [2.0, 0.5])
    res = neutra(flow, gaussian, num_samples=150, warmup=50, seed=0)
    assert res.samples.shape == (150, 2) and res.latent.shape == (150, 2)
    assert res.gradient_evaluations > res.sampling_gradient_evaluations > 0
    assert abs(float(res.samples[:, 0].mean()) - 3.0) < 0.6
    assert abs(float(res.samples[:, 1].std()) - 0.5) < 0.2
    assert all(p.requires_grad for p in flow.parameters())  # restored after sampling


def test_neutra_leaves_mode_and_frozen_parameters_as_found():
    flow = _affine_flow([3.0, -1.0], [2.0, 0.5])
    flow.train()
    flow.transform.shift.requires_grad_(False)  # the user froze this one
    neutra(flow, gaussian, num_samples=5, warmup=5, seed=0)
    assert flow.training
    assert not flow.transform.shift.requires_grad
    assert flow.transform.log_scale.requires_grad


def test_plain_nuts_baseline_and_ess():
    res = nuts(lambda x: -0.5 * (x**2).sum(-1), torch.zeros(2), num_samples=100, warmup=50, seed=1)
    assert res.latent is None and res.samples.shape == (100, 2)
    ess = res.ess()
    assert ess.shape == (2,) and bool((ess > 10).all())
    assert res.ess_per_gradient().shape == (2,)


def test_bad_arguments():
    flow = _affine_flow([0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="kernel"):
        neutra(flow, gaussian, num_samples=5, warmup=0, kernel="mala")
    with pytest.raises(TypeError):
        neutra_potential(torch.nn.Linear(2, 2), gaussian)
    with pytest.raises(ValueError):
        effective_sample_size(torch.zeros(3, 2))
