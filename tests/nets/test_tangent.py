"""Forward-mode Jacobians: activation derivatives and the Lipschitz MLP's Jacobian against autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pushforward.estimators import jacobian
from pushforward.nets import LipschitzMLP, LipSwish
from pushforward.nets.tangent import activation_derivative, identity_tangent, linear_tangent, tangent_jacobian
from pushforward.transforms import ResidualBlock

ACTIVATIONS = [
    nn.Softplus(),
    nn.Softplus(beta=2.0, threshold=3.0),
    nn.Tanh(),
    nn.ELU(alpha=0.7),
    nn.SiLU(),
    nn.ReLU(),
    nn.LeakyReLU(0.1),
    nn.Identity(),
    LipSwish(beta=1.7),
]


@pytest.mark.parametrize("module", ACTIVATIONS, ids=lambda m: type(m).__name__)
def test_activation_derivative_matches_autograd(module):
    x = torch.linspace(-6, 6, 241, dtype=torch.float64).requires_grad_(True)
    module = module.double()
    (expected,) = torch.autograd.grad(module(x).sum(), x)
    got = activation_derivative(module, x.detach())
    assert got is not None
    torch.testing.assert_close(got, expected)


def test_unknown_activation_has_no_derivative():
    assert activation_derivative(nn.GELU(), torch.zeros(3)) is None


def test_tangents_of_a_linear_map_give_its_weight():
    x = torch.randn(5, 3, dtype=torch.float64)
    w = torch.randn(4, 3 + 2, dtype=torch.float64)  # two extra, x-independent input columns
    jac = tangent_jacobian(linear_tangent(identity_tangent(x), w))
    torch.testing.assert_close(jac, w[:, :3].expand(5, 4, 3))


@pytest.mark.parametrize("activation", ["lipswish", "elu", "tanh", "relu"])
@pytest.mark.parametrize("context", [0, 2])
def test_lipschitz_mlp_jacobian_matches_autograd(activation, context):
    torch.manual_seed(0)
    net = LipschitzMLP(3, hidden=(16, 8), context=context, activation=activation).double().eval()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(6, context, dtype=torch.float64) if context else None
    g = net(x, c)
    result = net.forward_and_jacobian(x, c)
    assert result is not None
    g2, jac = result
    torch.testing.assert_close(g2, g)
    torch.testing.assert_close(jac, jacobian(g, x))


def test_forward_jacobian_advances_power_iteration_like_forward():
    torch.manual_seed(0)
    a = LipschitzMLP(2, hidden=(8,)).train()
    b = LipschitzMLP(2, hidden=(8,)).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 2)
    out = a(x)
    out2, _ = b.forward_and_jacobian(x)
    torch.testing.assert_close(out2, out)
    for (name, u), (_, v) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(u, v, msg=name)


def test_residual_block_without_known_derivative_falls_back_to_autograd():
    torch.manual_seed(0)
    block = ResidualBlock(2, hidden=(8,), activation=nn.Hardtanh, ladj_mode="exact").double().eval()
    assert block.net.forward_and_jacobian(torch.zeros(1, 2, dtype=torch.float64)) is None
    x = torch.randn(5, 2, dtype=torch.float64)
    _, ladj = block(x)
    full = torch.autograd.functional.jacobian(lambda v: block(v)[0].sum(0), x).permute(1, 0, 2)
    torch.testing.assert_close(ladj, torch.linalg.slogdet(full)[1])
