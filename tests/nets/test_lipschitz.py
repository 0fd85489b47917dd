"""Lipschitz networks: spectral normalisation, LipSwish, and the Lipschitz bound of the MLP."""

from __future__ import annotations

import pytest
import torch

from pushforward.nets import LipschitzMLP, LipSwish, SpectralLinear
from pushforward.nets.lipschitz import power_iteration

torch.set_default_dtype(torch.float32)


def test_power_iteration_finds_the_spectral_norm():
    w = torch.randn(7, 5, dtype=torch.float64)
    u, v = power_iteration(
        w, torch.ones(7, dtype=torch.float64) / 7**0.5, torch.ones(5, dtype=torch.float64), 300
    )
    torch.testing.assert_close(u @ w @ v, torch.linalg.matrix_norm(w, ord=2))


@pytest.mark.parametrize("coeff", [0.5, 0.97])
def test_spectral_linear_bounds_the_norm(coeff):
    torch.manual_seed(0)
    layer = SpectralLinear(6, 9, coeff=coeff).double()
    with torch.no_grad():
        layer.weight.mul_(10)
        layer.refresh()
    norm = torch.linalg.matrix_norm(layer.normalized_weight().detach(), ord=2)
    assert float(norm) <= coeff + 1e-9
    # A small weight is left unchanged.
    with torch.no_grad():
        layer.weight.mul_(1e-3 / float(torch.linalg.matrix_norm(layer.weight, ord=2)))
        layer.refresh()
    torch.testing.assert_close(layer.normalized_weight(), layer.weight)


def test_power_iteration_updates_only_in_training_with_grad():
    torch.manual_seed(0)
    layer = SpectralLinear(4, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(4, 4))
    u0 = layer.u.clone()
    layer.eval()
    layer(torch.randn(2, 4))
    assert torch.equal(layer.u, u0)
    layer.train()
    with torch.no_grad():
        layer(torch.randn(2, 4))
    assert torch.equal(layer.u, u0)
    layer(torch.randn(2, 4))
    assert not torch.equal(layer.u, u0)


@pytest.mark.parametrize("beta", [0.1, 1.0, 10.0])
def test_lipswish_is_one_lipschitz(beta):
    x = torch.linspace(-20, 20, 20001, dtype=torch.float64, requires_grad=True)
    act = LipSwish(beta).double()
    (d,) = torch.autograd.grad(act(x).sum(), x)
    assert float(d.abs().max()) <= 1.0
    assert float(d.abs().max()) > 0.9  # and not much smaller: the 1/1.1 normalisation is tight
    torch.testing.assert_close(act.beta, torch.tensor(beta, dtype=torch.float64))


def test_lipschitz_mlp_bound_holds_empirically():
    torch.manual_seed(0)
    g = LipschitzMLP(3, hidden=(32, 32), context=2, coeff=0.9).double()
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, SpectralLinear):
                m.weight.mul_(10)
                m.refresh()
    bound = g.lipschitz_bound()
    assert bound <= 0.9**3 + 1e-9
    x, y = torch.randn(2, 2000, 3, dtype=torch.float64)
    c = torch.randn(2000, 2, dtype=torch.float64)
    ratio = (g(x, c) - g(y, c)).norm(dim=-1) / (x - y).norm(dim=-1)
    assert float(ratio.max()) <= bound


def test_bad_arguments():
    with pytest.raises(ValueError):
        LipschitzMLP(3, activation="softmax")
    with pytest.raises(ValueError):
        LipSwish(0.0)
    with pytest.raises(ValueError):
        SpectralLinear(2, 2, coeff=0.0)
    with pytest.raises(ValueError, match="context"):
        LipschitzMLP(2, context=1)(torch.randn(3, 2))
