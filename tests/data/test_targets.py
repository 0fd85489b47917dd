"""Built-in VI targets: normalisation (quadrature), documented formulas, exact samplers, validation."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward.data import (
    ENERGIES,
    ENERGY_LOG_Z,
    TARGETS,
    banana_log_prob,
    banana_sample,
    energy_u1,
    neal_funnel_log_prob,
    neal_funnel_sample,
    target_log_density,
)
from pushforward.data.targets import energy_envelope


def _log_z_by_grid(energy, half_width: float = 8.0, h: float = 0.025) -> float:
    xs = torch.arange(-half_width, half_width + h / 2, h, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1)
    return float(torch.logsumexp((-energy(grid)).flatten(), 0) + 2 * math.log(h))


@pytest.mark.parametrize("name", sorted(ENERGIES))
def test_energy_log_z_constants_match_quadrature(name):
    assert abs(_log_z_by_grid(ENERGIES[name]) - ENERGY_LOG_Z[name]) < 1e-4


def test_u1_matches_the_paper_formula_and_known_log_z():
    z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, -1.0]], dtype=torch.float64)
    r = z.norm(dim=-1)
    expected = 0.5 * ((r - 2) / 0.4) ** 2 - torch.log(
        torch.exp(-0.5 * ((z[:, 0] - 2) / 0.6) ** 2) + torch.exp(-0.5 * ((z[:, 0] + 2) / 0.6) ** 2)
    )
    torch.testing.assert_close(energy_u1(z), expected)
    assert abs(ENERGY_LOG_Z["u1"] - 1.8775) < 1e-4


def test_envelope_only_acts_outside_the_strip():
    z = torch.tensor([[3.9, 10.0], [-4.0, -3.0], [5.0, 0.0]])
    torch.testing.assert_close(energy_envelope(z), torch.tensor([0.0, 0.0, 0.5 * (1.0 / 0.5) ** 2]))
    # U2 without the envelope would not depend on z1 shifts of one period (4) far out; with it, it does
    u2 = ENERGIES["u2"]
    assert float(u2(torch.tensor([[6.0, 0.0]]))) > float(u2(torch.tensor([[2.0, 0.0]]))) + 1.0


@pytest.mark.parametrize("name,sample", [("funnel", neal_funnel_sample), ("banana", banana_sample)])
def test_normalised_targets_integrate_to_one(name, sample):
    """Funnel: the density factorises as documented. Banana: unit mass on a grid, exact sampler moments."""
    g = torch.Generator().manual_seed(0)
    if name == "funnel":
        x = neal_funnel_sample(4000, dim=2, generator=g).double()
        lp = neal_funnel_log_prob(x)
        # log p(v) + log p(x|v) with v ~ N(0, 9): check the conditional structure directly
        torch.testing.assert_close(
            lp,
            torch.distributions.Normal(0, 3).log_prob(x[:, 0])
            + torch.distributions.Normal(0, torch.exp(0.5 * x[:, 0])).log_prob(x[:, 1]),
        )
    else:
        xs = torch.linspace(-6, 8, 561, dtype=torch.float64)
        ys = torch.linspace(-10, 60, 1751, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1)
        mass = torch.exp(banana_log_prob(grid)).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
        assert abs(float(mass) - 1.0) < 1e-3
        s = sample(20000, generator=g)
        assert abs(float(s[:, 0].mean()) - 1.0) < 0.05 and abs(float(s[:, 1].mean()) - 2.0) < 0.1


def test_target_lookup_and_validation():
    for name in TARGETS:
        dim = 10 if name == "funnel" else 2
        assert target_log_density(name, dim=dim)(torch.zeros(3, dim)).shape == (3,)
    with pytest.raises(ValueError, match="unknown target"):
        target_log_density("u5")
    with pytest.raises(ValueError, match="shape"):
        energy_u1(torch.zeros(3, 3))
    with pytest.raises(TypeError):
        energy_u1(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError):
        target_log_density("funnel", dim=4)(torch.zeros(2, 3))
    with pytest.raises(ValueError):
        banana_log_prob(torch.zeros(1, 2), sigma2=0.0)
