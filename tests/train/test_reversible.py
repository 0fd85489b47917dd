"""Reversible backprop: same gradients as standard autograd, less saved activation memory."""

from __future__ import annotations

import copy

import pytest
import torch

from pushforward.flows.image import Glow, RealNVPImage
from pushforward.nets import ConvResNet
from pushforward.transforms import (
    ActNorm,
    AffineCoupling,
    BatchNorm,
    Compose,
    InvConv1x1,
    Squeeze,
    channel_mask,
)
from pushforward.transforms.reversible import ReversibleCompose, saved_tensor_bytes

torch.set_num_threads(1)
SHAPE = (4, 4, 4)


def _layers(steps: int, context: int = 0, seed: int = 0) -> list:
    torch.manual_seed(seed)
    out = []
    for _ in range(steps):
        out += [
            ActNorm(SHAPE),
            InvConv1x1(SHAPE),
            AffineCoupling(channel_mask(SHAPE), ConvResNet(4, 8, 8, 1, context=context), context=context),
        ]
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in out:
            for p in layer.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return out


def _grads(stack, x, c):
    x = x.clone().requires_grad_(True)
    c = c.clone().requires_grad_(True)
    z, ladj = stack(x, c)
    loss = (z**2).sum() * 0.5 - ladj.sum() + (z[:, 0] ** 3).sum()
    loss.backward()
    return [x.grad, c.grad] + [p.grad for p in stack.parameters()], z.detach(), ladj.detach()


def test_gradients_equal_standard_backprop():
    plain = Compose(_layers(4, context=3)).double().train()
    x = torch.randn(5, *SHAPE, dtype=torch.float64)
    c = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        plain(x, c)  # ActNorm data-dependent initialisation, shared by both copies
    rev = ReversibleCompose(copy.deepcopy(list(plain.transforms))).double().train()
    g_plain, z_plain, l_plain = _grads(plain, x, c)
    g_rev, z_rev, l_rev = _grads(rev, x, c)
    torch.testing.assert_close(z_rev, z_plain, atol=0, rtol=0)
    torch.testing.assert_close(l_rev, l_plain, atol=0, rtol=0)
    assert len(g_plain) == len(g_rev)
    for a, b in zip(g_plain, g_rev):
        assert a is not None and b is not None
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)


def test_reversible_stores_less_than_standard_backprop():
    layers = _layers(8)
    x = torch.randn(8, *SHAPE)
    plain = Compose(copy.deepcopy(layers)).train()
    rev = ReversibleCompose(copy.deepcopy(layers)).train()
    with torch.no_grad():
        plain(x)
        rev(x)
    _, bytes_plain = saved_tensor_bytes(plain, x)
    _, bytes_rev = saved_tensor_bytes(rev, x)
    assert bytes_rev * 5 < bytes_plain, (bytes_rev, bytes_plain)


def test_glow_preset_reversible_matches_standard():
    torch.manual_seed(0)
    a = Glow((1, 4, 4), levels=2, steps=2, hidden=(8,), context=2).double()
    b = Glow((1, 4, 4), levels=2, steps=2, hidden=(8,), context=2, reversible=True).double()
    x = 0.05 + 0.9 * torch.rand(6, 1, 4, 4, dtype=torch.float64)
    c = torch.eye(2, dtype=torch.float64)[torch.tensor([0, 1, 0, 1, 0, 1])]
    a.train()
    a.log_prob(x, c)  # initialise ActNorm, then copy everything into the reversible model
    b.load_state_dict(a.state_dict())
    b.train()
    la, lb = a.log_prob(x, c), b.log_prob(x, c)
    torch.testing.assert_close(lb, la, atol=1e-10, rtol=0)
    la.sum().backward()
    lb.sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, atol=1e-6, rtol=1e-6, msg=name)


def test_rejects_layers_it_cannot_recompute():
    with pytest.raises(ValueError, match="BatchNorm"):
        ReversibleCompose([BatchNorm(SHAPE), InvConv1x1(SHAPE)])

    class Numeric(InvConv1x1):
        analytic_inverse = False

    with pytest.raises(ValueError, match="analytic inverse"):
        ReversibleCompose([Numeric(SHAPE)])


def test_no_grad_path_is_plain_compose():
    rev = ReversibleCompose(_layers(2)).eval()
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        z, ladj = rev(x)
        z2, ladj2 = Compose.forward(rev, x)
    assert torch.equal(z, z2) and torch.equal(ladj, ladj2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layers_with_constant_ladj_train(dtype):
    # Squeeze's ladj is a constant with no graph; it used to be handed to autograd.grad
    # ("element 1 of tensors does not require grad"), so no reversible image preset could train
    torch.manual_seed(0)
    parts = [Squeeze((1, 2, 2)), ActNorm((4, 1, 1))]
    rev = ReversibleCompose(copy.deepcopy(parts)).to(dtype)
    plain = Compose(copy.deepcopy(parts)).to(dtype)
    x = torch.randn(6, 1, 2, 2, dtype=dtype)
    with torch.no_grad():
        plain(x)
        rev(x)  # the same ActNorm initialisation in both
    grads = []
    for stack in (plain, rev):
        xg = x.clone().requires_grad_(True)
        z, ladj = stack(xg)
        (z.square().sum() - ladj.sum()).backward()
        grads.append([xg.grad, *(p.grad for p in stack.parameters())])
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a)


def test_reversible_image_preset_trains():
    torch.manual_seed(0)
    flow = RealNVPImage((1, 4, 4), scales=2, layers=1, hidden=(4,), reversible=True)
    loss = -flow.log_prob(torch.rand(3, 1, 4, 4).clamp(0.01, 0.99)).mean()
    loss.backward()
    assert all(p.grad is not None for p in flow.parameters() if p.requires_grad)
