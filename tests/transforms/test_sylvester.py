"""Householder reflections and Sylvester layers: orthogonality, determinant identity, constraint, inverse."""

from __future__ import annotations

import pytest
import torch

from pushforward.transforms import Householder, Sylvester
from pushforward.transforms.sylvester import householder_matrix, sylvester_log_det, sylvester_map

torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("k", [0, 1, 3, 5])
def test_householder_matrix_is_orthogonal_with_sign_det(k):
    v = torch.randn(k, 5, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    q = householder_matrix(v)
    torch.testing.assert_close(q @ q.T, torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close(torch.linalg.det(q), torch.tensor((-1.0) ** k, dtype=torch.float64))


def test_householder_single_reflection_flips_its_vector():
    v = torch.tensor([[1.0, 2.0, -1.0]], dtype=torch.float64)
    t = Householder(3, reflections=1).double()
    with torch.no_grad():
        t.vectors.copy_(v)
    z, ladj = t(v)
    torch.testing.assert_close(z, -v)
    assert float(ladj.abs().max()) == 0.0


def test_sylvester_init_is_identity_and_diagonal_constraint_holds():
    torch.manual_seed(0)
    layer = Sylvester(4)
    x = torch.randn(5, 4)
    torch.testing.assert_close(layer(x)[0], x)
    with torch.no_grad():
        layer.r_diag.fill_(20.0)
        layer.r_tilde_diag.fill_(-20.0)  # r r̃ → −1 from above, never below
    r, rt = layer.triangular()
    assert bool((r.diagonal() * rt.diagonal() > -1).all())
    _, ladj = layer.inverse(torch.randn(5, 4))
    assert torch.isfinite(ladj).all()
    assert torch.equal(r, r.triu()) and torch.equal(rt, rt.triu())


def test_sylvester_log_det_matches_dense_determinant():
    g = torch.Generator().manual_seed(1)
    d = 4
    q = householder_matrix(torch.randn(3, d, generator=g, dtype=torch.float64))
    r = torch.randn(d, d, generator=g, dtype=torch.float64).triu()
    rt = torch.randn(d, d, generator=g, dtype=torch.float64).triu()
    r.diagonal().copy_(torch.tanh(r.diagonal()))
    rt.diagonal().copy_(torch.tanh(rt.diagonal()))
    b = torch.randn(d, generator=g, dtype=torch.float64)
    z = torch.randn(d, generator=g, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda t: sylvester_map(t.unsqueeze(0), q, r, rt, b)[0][0], z)
    _, pre = sylvester_map(z.unsqueeze(0), q, r, rt, b)
    torch.testing.assert_close(
        sylvester_log_det(pre, r.diagonal(), rt.diagonal())[0], torch.linalg.slogdet(J)[1]
    )


def test_sylvester_inverse_near_constraint_boundary():
    """With r_ii r̃_ii near −1 the scalar equations are badly conditioned; back-substitution still inverts."""
    torch.manual_seed(2)
    layer = Sylvester(3).double()
    with torch.no_grad():
        layer.r_off.normal_(0, 1.0)
        layer.r_diag.fill_(3.0)
        layer.r_tilde_diag.fill_(-3.0)
        layer.b.normal_()
    z = 2 * torch.randn(30, 3, dtype=torch.float64)
    x, ladj = layer.inverse(z)
    z_rec, ladj_f = layer(x)
    torch.testing.assert_close(z_rec, z, atol=1e-7, rtol=0)
    torch.testing.assert_close(ladj_f, -ladj, atol=1e-7, rtol=0)


def test_sylvester_float32_roundtrip():
    torch.manual_seed(3)
    layer = Sylvester(5, reflections=2)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.5 * torch.randn_like(p))
    z = torch.randn(64, 5)
    x, _ = layer.inverse(z)
    torch.testing.assert_close(layer(x)[0], z, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls", [Householder, Sylvester])
def test_bad_arguments_raise(cls):
    with pytest.raises(ValueError):
        cls(0)
    with pytest.raises(TypeError):
        cls(3, reflections=1.5)
    with pytest.raises(ValueError):
        cls(3, reflections=-1)
    with pytest.raises(ValueError, match="shape"):
        cls(3)(torch.randn(2, 4))
