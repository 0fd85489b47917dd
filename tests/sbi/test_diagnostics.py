"""SBC ranks and expected coverage on a Gaussian model with a known posterior (issue 16)."""

import math

import pytest
import torch

from pushforward.sbi import expected_coverage, plot_calibration, rank_uniformity, sbc_ranks


class GaussianPosterior:
    """θ ~ N(0, I), x ~ N(θ, I): exact posterior N(x / 2, I / 2); ``scale``/``shift`` make it wrong."""

    def __init__(self, scale: float = 0.5**0.5, shift: float = 0.0) -> None:
        self.scale, self.shift = scale, shift

    def sample(self, sample_shape, context=None):
        x = context
        return x / 2 + self.shift + self.scale * torch.randn(*sample_shape, *x.shape, dtype=x.dtype)

    def log_prob(self, theta, context=None):
        z = (theta - context / 2 - self.shift) / self.scale
        return (-0.5 * z**2 - math.log(self.scale) - 0.5 * math.log(2 * math.pi)).sum(-1)


def _simulations(n=400, d=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, d, generator=g, dtype=dtype)
    return theta, theta + torch.randn(n, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sbc_ranks_uniform_for_the_exact_posterior_and_not_for_wrong_ones(dtype):
    torch.manual_seed(0)
    theta, x = _simulations(dtype=dtype)
    exact = sbc_ranks(GaussianPosterior(), theta, x, num_posterior_samples=50)
    assert exact.ranks.shape == (400, 2) and int(exact.ranks.min()) >= 0 and int(exact.ranks.max()) <= 50
    assert bool((exact.p_values > 1e-3).all())
    overconfident = sbc_ranks(GaussianPosterior(scale=0.4), theta, x, num_posterior_samples=50)
    assert bool((overconfident.p_values < 1e-6).all())
    biased = sbc_ranks(GaussianPosterior(shift=0.4), theta, x, num_posterior_samples=50)
    assert bool((biased.p_values < 1e-6).all())


def test_rank_uniformity_p_values():
    ranks = torch.arange(1000).remainder(11)[:, None]  # perfectly uniform on 0..10
    assert float(rank_uniformity(ranks, 10)[0]) > 0.99
    assert float(rank_uniformity(torch.zeros(1000, 1, dtype=torch.long), 10)[0]) < 1e-10
    with pytest.raises(ValueError, match="bins"):
        rank_uniformity(ranks, 10, bins=50)


def test_expected_coverage_is_the_diagonal_only_when_calibrated(tmp_path):
    torch.manual_seed(0)
    theta, x = _simulations(n=300)
    exact = expected_coverage(GaussianPosterior(), theta, x, num_posterior_samples=200)
    assert torch.allclose(exact.coverage, exact.levels, atol=0.1)
    over = expected_coverage(GaussianPosterior(scale=0.4), theta, x, num_posterior_samples=200)
    middle = (over.levels > 0.2) & (over.levels < 0.8)
    assert bool((over.coverage[middle] < over.levels[middle] - 0.1).all())
    under = expected_coverage(GaussianPosterior(scale=1.2), theta, x, num_posterior_samples=200)
    assert bool((under.coverage[middle] > under.levels[middle] + 0.1).all())
    sbc = sbc_ranks(GaussianPosterior(), theta, x, num_posterior_samples=30)
    path = tmp_path / "calibration.png"
    fig = plot_calibration(sbc, exact, path=path)
    assert path.stat().st_size > 1000 and len(fig.axes) == 3


def test_diagnostics_reject_mismatched_inputs():
    theta, x = _simulations(n=10)
    with pytest.raises(ValueError, match="rows"):
        sbc_ranks(GaussianPosterior(), theta, x[:5])
    with pytest.raises(ValueError, match="give"):
        plot_calibration()
