"""FillTriangular and the Cholesky-product flow (Bittner, "Normalizing flows in tf_utils", 2019)."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward import Flow
from pushforward.distributions import StandardNormal
from pushforward.transforms import CholeskyProduct, FillTriangular
from pushforward.transforms.matrix import (
    cholesky_product,
    cholesky_product_inverse,
    fill_triangular,
    symmetric_from_vech,
    triangular_size,
    vech,
)

torch.set_num_threads(1)


def test_fill_triangular_order_and_roundtrip():
    x = torch.arange(1.0, 7.0)[None]
    L = FillTriangular(3)(x)
    torch.testing.assert_close(L[0], torch.tensor([[1.0, 0, 0], [2, 3, 0], [4, 5, 6]]))
    torch.testing.assert_close(FillTriangular(3).inverse(L), x)
    torch.testing.assert_close(vech(fill_triangular(x, 3)), x)
    S = symmetric_from_vech(x, 3)[0]
    torch.testing.assert_close(S, S.T)
    torch.testing.assert_close(S[2], torch.tensor([4.0, 5.0, 6.0]))


def test_fill_triangular_errors():
    with pytest.raises(ValueError, match="6 entries"):
        FillTriangular(3)(torch.ones(1, 5))
    with pytest.raises(ValueError, match="lower-triangular"):
        FillTriangular(2).inverse(torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="triangular number"):
        triangular_size(5)
    assert triangular_size(10) == 4
    with pytest.raises(ValueError):
        CholeskyProduct(0)


def test_cholesky_product_matches_seed():
    D = 3
    z = torch.randn(4, 6, dtype=torch.float64)
    s, ladj = cholesky_product(z, D)
    L = fill_triangular(z, D)
    diag = torch.diagonal(L, dim1=-2, dim2=-1)
    L = L - torch.diag_embed(diag) + torch.diag_embed(diag.exp())
    torch.testing.assert_close(symmetric_from_vech(s, D), L @ L.transpose(-1, -2))
    log_Ldd = diag  # log L_dd = z_dd
    expected = D * math.log(2) + sum((D - d) * log_Ldd[:, d] for d in range(D)) + log_Ldd.sum(-1)
    torch.testing.assert_close(ladj, expected)
    # against the explicit Jacobian, D = 2: det = 4 L11² L22 · (L11 L22) for the exp diagonal
    z2 = torch.tensor([[0.3, -0.5, 0.2]], dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda u: cholesky_product(u[None], 2)[0][0], z2[0])
    torch.testing.assert_close(cholesky_product(z2, 2)[1][0], torch.linalg.slogdet(J)[1])


def test_inverse_rejects_non_positive_definite():
    with pytest.raises(ValueError, match="not positive definite"):
        CholeskyProduct(2).inverse(torch.tensor([[1.0, 2.0, 1.0]]))
    z, _ = cholesky_product_inverse(torch.tensor([[4.0, 2.0, 5.0]], dtype=torch.float64), 2)
    torch.testing.assert_close(z, torch.tensor([[math.log(2.0), 1.0, math.log(2.0)]], dtype=torch.float64))


def test_flow_density_on_1x1_matrices():
    """D = 1: σ = e^{2z}, so p(σ) = φ(½ log σ) / (2σ)."""
    flow = Flow(CholeskyProduct(1).inv, StandardNormal(1)).double()
    s = torch.tensor([[0.3], [1.0], [4.0]], dtype=torch.float64)
    z = 0.5 * s.log()
    expected = (-0.5 * z * z - 0.5 * math.log(2 * math.pi) - math.log(2.0) - s.log())[:, 0]
    torch.testing.assert_close(flow.log_prob(s), expected)
    torch.testing.assert_close(
        torch.distributions.LogNormal(0.0, 2.0).log_prob(s[:, 0]).to(expected), expected
    )
