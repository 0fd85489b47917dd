"""Variational inference: ELBO fitting, log Z by importance sampling, divergence reporting, validation."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward import Flow, TrainingDiverged, fit_vi
from pushforward.data import ENERGY_LOG_Z, target_log_density
from pushforward.flows import PlanarFlow, RealNVP
from pushforward.inference.vi import evaluate_vi
from pushforward.transforms import Affine

LOG_Z0 = 1.5
LOC, SCALE = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])


def gaussian_log_density(x):
    """Unnormalised N(LOC, diag SCALE²) with log Z = LOG_Z0."""
    u = (x - LOC) / SCALE
    return -0.5 * (u * u).sum(-1) - SCALE.log().sum() - math.log(2 * math.pi) + LOG_Z0


def test_fit_vi_recovers_gaussian_and_log_z():
    torch.manual_seed(0)
    flow = Flow(Affine(2))
    result = fit_vi(flow, gaussian_log_density, steps=250, samples=64, lr=0.05, eval_samples=4000, seed=0)
    r = result.extras
    assert result.skipped_batches == 0 and len(r["elbo"]) == 250 and result.units == "nats"
    assert abs(r["log_z"] - LOG_Z0) < 0.01 and r["log_z_stderr"] < 0.01
    assert r["ess_fraction"] > 0.95
    assert r["final_elbo"] <= r["log_z"] + 3 * r["log_z_stderr"] + 1e-6
    assert r["elbo"][-1] > r["elbo"][0]


def test_planar_flow_on_u1_smoke():
    """A short run on U1: finite diagnostics, ELBO below log Z, log Z in the right region."""
    torch.manual_seed(1)
    flow = PlanarFlow(2, layers=4)
    result = fit_vi(
        flow, target_log_density("u1"), steps=150, samples=128, lr=0.02, eval_samples=4000, seed=1
    )
    r = result.extras
    assert math.isfinite(r["log_z"]) and math.isfinite(r["ess"])
    assert r["final_elbo"] < ENERGY_LOG_Z["u1"]
    assert abs(r["log_z"] - ENERGY_LOG_Z["u1"]) < 0.75  # can miss at most about one of two modes (log 2)


@pytest.mark.slow
def test_u1_log_z_acceptance():
    """Acceptance: planar K=16 fitted by fit_vi gets U1's log Z (1.8775 by quadrature) within 0.02 nats."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    flow = PlanarFlow(2, layers=16)
    result = fit_vi(
        flow, target_log_density("u1"), steps=3000, samples=256, lr=5e-3, eval_samples=100_000, seed=0
    )
    assert abs(result.extras["log_z"] - ENERGY_LOG_Z["u1"]) < 0.02, result
    assert result.extras["log_z_stderr"] < 0.005


def test_non_finite_elbo_raises_training_diverged_and_keeps_the_weights():
    torch.manual_seed(2)
    flow = PlanarFlow(2, layers=2)
    before = {k: v.clone() for k, v in flow.state_dict().items()}
    with pytest.raises(TrainingDiverged, match="non-finite") as info:
        fit_vi(flow, lambda x: torch.full_like(x[:, 0], math.nan), steps=50, eval_samples=0)
    assert info.value.skipped == 26 and info.value.steps == 26  # raised once more than half must be skipped
    for k, v in flow.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_exploding_parameters_are_restored():
    """An absurd learning rate sends parameters to inf/NaN: TrainingDiverged, last finite weights kept."""
    torch.manual_seed(3)
    flow = RealNVP(2, layers=2, hidden=(8,))

    def steep(x):
        return -1e30 * (x**2).sum(-1)

    with pytest.raises(TrainingDiverged):
        fit_vi(flow, steep, steps=50, samples=16, lr=1e38, clip_grad=None, eval_every=1, eval_samples=0)
    assert all(torch.isfinite(p).all() for p in flow.parameters())


def test_bad_arguments():
    flow = PlanarFlow(2, layers=1)
    with pytest.raises(ValueError, match="steps"):
        fit_vi(flow, gaussian_log_density, steps=0)
    with pytest.raises(ValueError, match="one value per sample"):
        fit_vi(flow, lambda x: x, steps=1, eval_samples=0)
    with pytest.raises(TypeError):
        fit_vi(torch.nn.Linear(2, 2), gaussian_log_density)
    with pytest.raises(ValueError, match="unconditional"):
        fit_vi(RealNVP(2, layers=2, hidden=(4,), context=1), gaussian_log_density)
    with pytest.raises(ValueError, match="lr"):
        fit_vi(flow, gaussian_log_density, lr=0.0)
    with pytest.raises(ValueError, match="eval_samples"):
        fit_vi(flow, gaussian_log_density, eval_samples=10**11)
    with pytest.raises(ValueError, match="clip_grad"):
        fit_vi(flow, gaussian_log_density, clip_grad=-1.0)
    with pytest.raises(ValueError):
        evaluate_vi(flow, gaussian_log_density, n=1)
