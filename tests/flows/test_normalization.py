"""Flows are normalised: their densities integrate to 1 by quadrature (random init and after a short fit)."""

import pytest
import torch

from pushforward import Flow, fit
from pushforward.data import toy
from pushforward.flows import RealNVP
from pushforward.transforms import Affine, Compose, Inverse, LULinear, Tanh

from .quadrature import perturbed


def _integrate_1d(flow, lo=-30.0, hi=30.0, n=200001):
    x = torch.linspace(lo, hi, n, dtype=torch.float64).unsqueeze(-1)
    with torch.no_grad():
        p = flow.log_prob(x).exp()
    return float(torch.trapezoid(p, x[:, 0]))


def _integrate_2d(flow, lim=8.0, n=801):
    g = torch.linspace(-lim, lim, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx, yy], -1).reshape(-1, 2)
    with torch.no_grad():
        p = torch.cat([flow.log_prob(c).exp() for c in pts.split(100000)]).reshape(n, n)
    return float(torch.trapezoid(torch.trapezoid(p, g, dim=1), g))


def test_1d_bounded_flow_integrates_to_one():
    """Data on (-1, 1): atanh (Inverse(Tanh)) then an affine map to the latent line."""
    torch.manual_seed(0)
    flow = perturbed(Flow(Compose([Inverse(Tanh(1)), Affine(1)])).double(), 0.5)
    x = torch.linspace(-1 + 1e-12, 1 - 1e-12, 400001, dtype=torch.float64).unsqueeze(-1)
    with torch.no_grad():
        p = flow.log_prob(x).exp()
    assert abs(float(torch.trapezoid(p, x[:, 0])) - 1.0) < 1e-3


def test_1d_affine_chain_integrates_to_one():
    torch.manual_seed(1)
    flow = perturbed(Flow(Compose([Affine(1), LULinear(1), Affine(1)])).double(), 0.4)
    assert abs(_integrate_1d(flow) - 1.0) < 1e-3


def test_2d_realnvp_random_init_integrates_to_one():
    torch.manual_seed(0)
    flow = perturbed(RealNVP(2, layers=4, hidden=(16, 16)).double(), 0.3)
    assert abs(_integrate_2d(flow) - 1.0) < 1e-3


def test_2d_realnvp_after_fit_integrates_to_one():
    torch.manual_seed(0)
    flow = RealNVP(2, layers=4, hidden=(32, 32))
    fit(flow, toy("moons", 4000, seed=0), steps=300, batch_size=256, lr=3e-3, progress=False, seed=0)
    flow = flow.double()
    assert abs(_integrate_2d(flow, lim=6.0) - 1.0) < 1e-3


@pytest.mark.parametrize("dtype", [torch.float64])
def test_quadrature_detects_an_unnormalised_density(dtype):
    """The check can fail: dropping the ladj gives a mass far from 1."""

    class Broken(Flow):
        def log_prob(self, x, context=None):
            z, _ = self.transform(x)
            return self.base.log_prob(z)

    torch.manual_seed(0)
    flow = perturbed(Broken(Compose([Affine(1)])).to(dtype), 0.5, seed=3)
    assert abs(_integrate_1d(flow) - 1.0) > 1e-2
