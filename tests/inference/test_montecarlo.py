"""Monte Carlo under a flow: plain MC and self-normalised importance sampling on known integrals."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward import Flow, expectation
from pushforward.inference.montecarlo import kish_ess, log_mean_exp, self_normalised_mean
from pushforward.transforms import Affine


def _gaussian_flow(loc=(0.0, 0.0), scale=(1.0, 1.0)) -> Flow:
    """x = loc + scale · z. Affine maps data → latent as z = x e^s + b: s = −log scale, b = −loc/scale."""
    t = Affine(2).double()
    loc_t, scale_t = torch.tensor(loc, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64)
    with torch.no_grad():
        t.log_scale.copy_(-scale_t.log())
        t.shift.copy_(-loc_t / scale_t)
    return Flow(t).double()


def test_plain_monte_carlo_of_second_moment():
    torch.manual_seed(0)
    est, se, ess = expectation(lambda x: (x**2).sum(-1), _gaussian_flow(), 20_000)
    assert ess == 20_000
    assert abs(float(se) - 2.0 / math.sqrt(20_000)) < 0.002  # Var(χ²₂) = 4
    assert abs(float(est) - 2.0) < 4 * float(se)


def test_plain_monte_carlo_vector_valued():
    torch.manual_seed(1)
    result = expectation(lambda x: x, _gaussian_flow((1.0, -2.0), (0.5, 2.0)), 20_000, batch_size=3000)
    assert result.estimate.shape == (2,) and result.n == 20_000
    assert bool(
        ((result.estimate - torch.tensor([1.0, -2.0], dtype=torch.float64)).abs() < 4 * result.stderr).all()
    )
    torch.testing.assert_close(
        result.stderr, torch.tensor([0.5, 2.0], dtype=torch.float64) / math.sqrt(20_000), rtol=0.05, atol=0
    )


def test_importance_sampling_towards_a_shifted_unnormalised_target():
    """Target ∝ N(x; (1, 0), I)·e^{7}: E_p[x1] = 1, E_p[x1²] = 2; ESS/n ≈ e^{-1} for a unit shift."""
    torch.manual_seed(2)

    def log_p(x):
        return -0.5 * ((x - torch.tensor([1.0, 0.0], dtype=x.dtype)) ** 2).sum(-1) + 7.0

    flow = _gaussian_flow(scale=(1.5, 1.5))
    n = 40_000
    est, se, ess = expectation(lambda x: torch.stack([x[:, 0], x[:, 0] ** 2], -1), flow, n, log_p)
    truth = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert bool(((est - truth).abs() < 4 * se).all()), (est, se)
    assert 0.2 * n < ess < n


def test_importance_sampling_standard_error_is_calibrated():
    """Over repeated runs, the reported SE matches the spread of the estimates."""
    torch.manual_seed(3)
    flow = _gaussian_flow(scale=(1.3, 1.3))
    log_p = lambda x: -0.5 * ((x - 0.5) ** 2).sum(-1)  # noqa: E731
    runs = [expectation(lambda x: x[:, 1], flow, 2000, log_p) for _ in range(60)]
    spread = torch.stack([r.estimate for r in runs]).std()
    mean_se = torch.stack([r.stderr for r in runs]).mean()
    assert 0.7 < float(spread / mean_se) < 1.4


def test_pure_helpers():
    log_w = torch.log(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    assert kish_ess(log_w) == pytest.approx(4.0)
    assert kish_ess(torch.tensor([0.0, -1e9, -1e9])) == pytest.approx(1.0)
    log_z, se = log_mean_exp(torch.log(torch.tensor([1.0, 3.0], dtype=torch.float64)) + 1000.0)
    assert log_z == pytest.approx(1000.0 + math.log(2.0)) and se == pytest.approx(
        math.sqrt(2) / (math.sqrt(2) * 2)
    )
    mu, _, ess = self_normalised_mean(torch.tensor([1.0, 3.0]), torch.log(torch.tensor([3.0, 1.0])))
    assert float(mu) == pytest.approx(1.5) and ess == pytest.approx(16 / 10)


def test_bad_arguments():
    flow = _gaussian_flow()
    with pytest.raises(ValueError, match="n must be"):
        expectation(lambda x: x[:, 0], flow, 1)
    with pytest.raises(TypeError):
        expectation(lambda x: x[:, 0], torch.nn.Linear(2, 2), 10)
    with pytest.raises(ValueError, match="one value per sample"):
        expectation(lambda x: x.sum(), flow, 10)
    with pytest.raises(ValueError, match="shape"):
        expectation(lambda x: x[:, 0], flow, 10, lambda x: x)
    with pytest.raises(ValueError, match="NaN"):
        expectation(lambda x: x[:, 0], flow, 10, lambda x: torch.full_like(x[:, 0], math.nan))
