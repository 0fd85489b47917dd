"""BNAF: block-triangular structure, exact log-det, numerical inverse, differentiable samples."""

from __future__ import annotations

import pytest
import torch

from pushforward.inversion import ConvergenceError
from pushforward.transforms import BlockAutoregressive
from pushforward.transforms.block import MaskedBlockLinear

D64 = torch.float64


def _bnaf(*args, seed: int = 0, **kwargs) -> BlockAutoregressive:
    torch.manual_seed(seed)
    return BlockAutoregressive(*args, **kwargs).double()


def test_jacobian_lower_triangular_positive_diagonal_and_exact_logdet():
    t = _bnaf(4, hidden=(5, 3))
    x = torch.randn(6, 4, dtype=D64)
    _, ladj = t(x)
    for i in range(6):
        J = torch.autograd.functional.jacobian(lambda v: t(v[None])[0][0], x[i])
        assert torch.all(J.triu(1) == 0)
        assert torch.all(J.diagonal() > 0)
        torch.testing.assert_close(ladj[i], J.diagonal().log().sum(), atol=1e-10, rtol=0)


def test_block_layer_log_diagonal():
    layer = MaskedBlockLinear(3, 2, 4).double()
    w, log_diag = layer.weights()
    blocks = torch.stack([w[4 * d : 4 * d + 4, 2 * d : 2 * d + 2] for d in range(3)])
    torch.testing.assert_close(log_diag, blocks.log())
    assert torch.all(w.view(3, 4, 3, 2)[0, :, 1:] == 0) and torch.all(w.view(3, 4, 3, 2)[1, :, 2] == 0)


def test_inverse_roundtrip_float64_and_far_latents():
    t = _bnaf(3, hidden=(8, 8))
    z = torch.cat([torch.randn(20, 3, dtype=D64), torch.full((1, 3), 25.0, dtype=D64)])
    x, ladj_inv = t.inverse(z)
    z_rec, ladj = t(x)
    torch.testing.assert_close(z_rec, z, atol=1e-8, rtol=0)
    torch.testing.assert_close(ladj_inv, -ladj, atol=1e-10, rtol=0)


def test_inverse_float32():
    torch.manual_seed(0)
    t = BlockAutoregressive(2, hidden=(8,))
    z = torch.randn(50, 2)
    x, _ = t.inverse(z)
    torch.testing.assert_close(t(x)[0], z, atol=1e-4, rtol=0)


def test_sample_gradient_is_implicit_gradient():
    t = _bnaf(3, hidden=(4,))
    z = torch.randn(5, 3, dtype=D64, requires_grad=True)
    x, _ = t.inverse(z)
    J_inv = torch.autograd.functional.jacobian(lambda v: t.inverse(v[None])[0][0], z[0].detach())
    J = torch.autograd.functional.jacobian(lambda v: t(v[None])[0][0], x[0].detach())
    torch.testing.assert_close(J_inv, torch.linalg.inv(J), atol=1e-8, rtol=1e-8)
    x.sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in t.parameters())


def test_without_residual_the_range_is_bounded_and_inverse_fails_loudly():
    t = _bnaf(1, hidden=(3,), residual=None)
    with pytest.raises(ConvergenceError):
        t.inverse(torch.full((1, 1), 1e6, dtype=D64))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="hidden"):
        BlockAutoregressive(2, hidden=())
    with pytest.raises(ValueError, match="residual"):
        BlockAutoregressive(2, residual="plain")
    t = BlockAutoregressive(2, context=3)
    with pytest.raises(ValueError, match="context"):
        t(torch.randn(4, 2))
    with pytest.raises(ValueError, match="shape"):
        t(torch.randn(4, 3), torch.randn(4, 3))
