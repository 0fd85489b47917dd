"""Spherical flows: the seed's closed forms, special cases and identities of the pure formulas."""

from __future__ import annotations

import torch

from pushforward.manifolds import sphere_projection
from pushforward.transforms import NormalizedAffine, NormalizedLinear, NormalizedTranslation
from pushforward.transforms.sphere import normalized_affine, normalized_affine_inverse

torch.set_num_threads(1)
G = torch.Generator().manual_seed(0)


def _points(k: int, n: int) -> torch.Tensor:
    return sphere_projection(torch.randn(k, n, generator=G, dtype=torch.float64))


def _matrix(n: int) -> torch.Tensor:
    return torch.eye(n, dtype=torch.float64) + 0.4 * torch.randn(n, n, generator=G, dtype=torch.float64)


def test_translation_closed_forms_of_the_seed():
    n = 3
    c = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    x = _points(5, n)
    y, ladj = normalized_affine(x, None, c)
    torch.testing.assert_close(y, (x + c) / (x + c).norm(dim=-1, keepdim=True))
    torch.testing.assert_close(
        ladj, torch.log((1 + x @ c) / (x + c).norm(dim=-1) ** n)
    )  # Boulerice & Ducharme
    ell = y @ c + torch.sqrt((y @ c) ** 2 + 1 - c @ c)  # the seed's inverse
    torch.testing.assert_close(normalized_affine_inverse(y, None, c)[0], ell[:, None] * y - c)


def test_linear_closed_forms_of_the_seed():
    n = 4
    M = _matrix(n)
    x = _points(5, n)
    y, ladj = normalized_affine(x, M, None)
    Mx = x @ M.T
    torch.testing.assert_close(ladj, torch.linalg.slogdet(M)[1] - n * Mx.norm(dim=-1).log())
    # f⁻¹(·; M) = f(·; M⁻¹), with the ratio of f(·; M⁻¹)
    x_rec, ladj_inv = normalized_affine_inverse(y, M, None)
    x_alt, ladj_alt = normalized_affine(y, torch.linalg.inv(M), None)
    torch.testing.assert_close(x_rec, x)
    torch.testing.assert_close(x_alt, x)
    torch.testing.assert_close(ladj_inv, ladj_alt)


def test_affine_equals_linear_with_rank_one_update():
    """R_aff(x; M, c) = R_lin(x; M + c xᵀ) and f_aff(x) = f_lin(x; M + c xᵀ) on the sphere."""
    n = 3
    M = _matrix(n)
    c = M @ torch.tensor([0.2, 0.1, -0.4], dtype=torch.float64)
    for x in _points(4, n):
        y, ladj = normalized_affine(x[None], M, c)
        y_lin, ladj_lin = normalized_affine(x[None], M + torch.outer(c, x), None)
        torch.testing.assert_close(y, y_lin)
        torch.testing.assert_close(ladj, ladj_lin)


def test_affine_inverse_uses_w_formula():
    n = 3
    M = _matrix(n)
    c = M @ torch.tensor([0.3, 0.3, 0.1], dtype=torch.float64)
    x = _points(6, n)
    y, _ = normalized_affine(x, M, c)
    W = torch.linalg.inv(M @ M.T)
    yWc, yWy, cWc = y @ W @ c, ((y @ W) * y).sum(-1), c @ W @ c
    ell = (yWc + torch.sqrt(yWc**2 + yWy * (1 - cWc))) / yWy
    x_seed = (ell[:, None] * y - c) @ torch.linalg.inv(M).T
    torch.testing.assert_close(x_seed, x)
    torch.testing.assert_close(normalized_affine_inverse(y, M, c)[0], x)


def test_modules_start_at_identity_and_respect_constraints():
    x = _points(3, 3)
    for t in (NormalizedTranslation(3), NormalizedLinear(3), NormalizedAffine(3)):
        y, ladj = t.double()(x)
        torch.testing.assert_close(y, x)
        torch.testing.assert_close(ladj, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    t = NormalizedAffine(3).double()
    with torch.no_grad():
        t.raw_shift.fill_(100.0)
    M, c = t.matrix_and_shift()
    assert float(torch.linalg.solve(M, c).detach().norm()) < 1.0
    t = NormalizedTranslation(2)
    with torch.no_grad():
        t.raw_shift.fill_(-1e3)
    assert float(t.shift.detach().norm()) < 1.0


def test_translation_density_peaks_at_minus_c():
    """With a uniform latent, log p(x) = const + log R_f(x): R = (1 + xᵀc)/‖x + c‖³ is 9 at -c, 0.36 at +c."""
    t = NormalizedTranslation(3).double()
    with torch.no_grad():
        t.raw_shift.copy_(torch.tensor([0.0, 0.0, 2.0]))  # c = (0, 0, 2/3)
    poles = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(t(poles)[1].exp(), torch.tensor([0.36, 9.0], dtype=torch.float64))
