r"""Bijections for matrices: filling lower-triangular matrices and the Cholesky-product flow.

Ordering convention (used everywhere here): a lower-triangular :math:`D \times D` matrix and a symmetric
matrix are stored as the **row-major lower-triangular half-vectorisation**
:math:`\operatorname{vech}(M) = (M_{11}, M_{21}, M_{22}, M_{31}, M_{32}, M_{33}, \dots, M_{DD})` of length
:math:`D(D+1)/2` — the order of ``torch.tril_indices`` and of Bittner's :math:`L(z)` (whose entries are
:math:`z_1` at :math:`(1,1)`, :math:`z_2` at :math:`(2,1)`, :math:`z_3` at :math:`(2,2)`, …). The log
Jacobian determinants do not depend on the order.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Transform

__all__ = [
    "CholeskyProduct",
    "FillTriangular",
    "cholesky_product",
    "cholesky_product_inverse",
    "fill_triangular",
    "symmetric_from_vech",
    "triangular_size",
    "vech",
]


# ---------------------------------------------------------------------------------- pure functions
def triangular_size(m: int) -> int:
    """The ``D`` with ``D (D + 1) / 2 == m``; ``ValueError`` when ``m`` is not a triangular number."""
    D = round((math.sqrt(8 * m + 1) - 1) / 2)
    if m < 1 or D * (D + 1) // 2 != m:
        raise ValueError(f"{m} is not a triangular number D(D+1)/2: it cannot hold a lower-triangular matrix")
    return D


def fill_triangular(x: Tensor, D: int) -> Tensor:
    r"""Row-major fill of ``x`` (``(..., D(D+1)/2)``) into lower-triangular matrices ``(..., D, D)``."""
    rows, cols = torch.tril_indices(D, D, device=x.device)
    out = x.new_zeros(*x.shape[:-1], D, D)
    out[..., rows, cols] = x
    return out


def vech(matrix: Tensor) -> Tensor:
    r"""Row-major lower-triangular half-vectorisation of ``(..., D, D)`` matrices (inverse of
    :func:`fill_triangular` on lower-triangular matrices)."""
    D = matrix.shape[-1]
    rows, cols = torch.tril_indices(D, D, device=matrix.device)
    return matrix[..., rows, cols]


def symmetric_from_vech(s: Tensor, D: int) -> Tensor:
    """The symmetric matrices whose lower halves are ``s`` (``(..., D(D+1)/2)`` → ``(..., D, D)``)."""
    low = fill_triangular(s, D)
    return low + low.transpose(-1, -2) - torch.diag_embed(torch.diagonal(low, dim1=-2, dim2=-1))


def _diag_index(D: int) -> list[int]:
    """Positions of the diagonal entries in the row-major vech: ``d(d+3)/2`` for 0-based ``d``."""
    return [d * (d + 3) // 2 for d in range(D)]


def _cholesky_log_det(diag_z: Tensor) -> Tensor:
    r"""The Cholesky-product log-det :math:`D\log 2 + \sum_d (D-d+1)\log L_{dd} + \sum_d z_{dd}`, with
    :math:`\log L_{dd} = z_{dd}` (``diag_z``)."""
    D = diag_z.shape[-1]
    powers = torch.arange(D, 0, -1, dtype=diag_z.dtype, device=diag_z.device)  # D - d + 1, d = 1..D
    return D * math.log(2.0) + (powers * diag_z).sum(-1) + diag_z.sum(-1)


def cholesky_product(z: Tensor, D: int) -> tuple[Tensor, Tensor]:
    r"""The Cholesky-product flow (Bittner, 2019) and its log Jacobian determinant:

    .. math:: f(z) = \operatorname{vech}(L(z) L(z)^\top), \quad
        L(z) = \begin{pmatrix} e^{z_1} & & \\ z_2 & e^{z_3} & \\ z_4 & z_5 & e^{z_6} \\ \vdots & & & \ddots
        \end{pmatrix},

    .. math:: \log\left|\det\frac{\partial f}{\partial z}\right| = \underbrace{D\log 2 + \sum_{d=1}^D
        (D-d+1)\log L_{dd}}_{\log|\partial\,\operatorname{vech}\Sigma / \partial L|}
        + \underbrace{\sum_{d=1}^D z_{dd}}_{\log|\partial L / \partial z|}.

    Args:
        z: Unconstrained vectors ``(batch, D(D+1)/2)``.
        D: Matrix size.

    Returns:
        ``(vech(Σ), ladj)`` with :math:`\Sigma = L L^\top` positive definite.
    """
    diag = _diag_index(D)
    diag_z = z[..., diag]
    L = fill_triangular(z, D)
    L = L - torch.diag_embed(diag_z) + torch.diag_embed(diag_z.exp())
    return vech(L @ L.transpose(-1, -2)), _cholesky_log_det(diag_z)


def cholesky_product_inverse(s: Tensor, D: int, name: str = "input") -> tuple[Tensor, Tensor]:
    r"""Inverse of :func:`cholesky_product`: :math:`\operatorname{vech}(\Sigma) \mapsto z` through the
    Cholesky factor :math:`\Sigma = L L^\top` (:math:`z_{dd} = \log L_{dd}`), with the negated log-det.

    Raises ``ValueError`` (naming ``name``) when some :math:`\Sigma` is not positive definite.
    """
    sigma = symmetric_from_vech(s, D)
    L, info = torch.linalg.cholesky_ex(sigma)
    bad = info != 0
    if bool(bad.any()):
        raise ValueError(
            f"{name}: {int(bad.sum())} matrices are not positive definite (vech in row-major "
            "lower-triangular order: M11, M21, M22, M31, ...)"
        )
    diag_log = torch.diagonal(L, dim1=-2, dim2=-1).log()
    z = vech(L - torch.diag_embed(torch.diagonal(L, dim1=-2, dim2=-1)) + torch.diag_embed(diag_log))
    return z, -_cholesky_log_det(diag_log)


# ---------------------------------------------------------------------------------- modules
class FillTriangular(nn.Module):
    r"""Vector ↔ lower-triangular matrix, in row-major order:
    :math:`(x_1, x_2, x_3, \dots) \mapsto \begin{pmatrix} x_1 & & \\ x_2 & x_3 & \\ x_4 & x_5 & x_6
    \end{pmatrix}`.

    A linear isometry between :math:`\mathbb{R}^{D(D+1)/2}` and the lower-triangular matrices, so its
    log-determinant is 0. It changes the number of stored scalars (:math:`D(D+1)/2 \to D^2`), so it is a
    helper module rather than a :class:`~pushforward.transforms.Transform` (whose latent and event sizes
    agree); :class:`CholeskyProduct` uses it for :math:`L(z)`.

    Reference: the ``fill_triangular`` bijector of Dillon et al., "TensorFlow Distributions", 2017.

    Example:
        >>> FillTriangular(2)(torch.tensor([[1.0, 2.0, 3.0]]))
        tensor([[[1., 0.],
                 [2., 3.]]])
    """

    def __init__(self, D: int) -> None:
        super().__init__()
        if D < 1:
            raise ValueError(f"matrix size D must be positive, got {D}")
        self.D = int(D)
        self.features = self.D * (self.D + 1) // 2

    def forward(self, x: Tensor) -> Tensor:
        """Vectors ``(..., D(D+1)/2)`` → lower-triangular ``(..., D, D)``."""
        if x.shape[-1] != self.features:
            raise ValueError(f"FillTriangular({self.D}) needs {self.features} entries, got {x.shape[-1]}")
        return fill_triangular(x, self.D)

    def inverse(self, matrix: Tensor) -> Tensor:
        """Lower-triangular ``(..., D, D)`` → vectors ``(..., D(D+1)/2)``."""
        if matrix.dim() < 2 or matrix.shape[-2:] != (self.D, self.D):
            raise ValueError(f"FillTriangular({self.D}).inverse needs (..., {self.D}, {self.D}) matrices")
        if bool((torch.triu(matrix, 1) != 0).any()):
            raise ValueError(
                "FillTriangular.inverse input is not lower-triangular (non-zero entries above the diagonal)"
            )
        return vech(matrix)

    def extra_repr(self) -> str:
        return f"D={self.D}"


class CholeskyProduct(Transform):
    r"""The Cholesky-product flow (Bittner, 2019): :math:`z \in \mathbb{R}^{D(D+1)/2} \mapsto
    \operatorname{vech}(L(z)L(z)^\top)`, with :math:`L(z)` lower-triangular with exponentiated diagonal,

    .. math:: \log\left|\det\frac{\partial f}{\partial z}\right| = D\log 2 + \sum_{d=1}^D (D-d+1)\log L_{dd}
        + \sum_{d=1}^D z_{dd}

    (the seed's log line misses the ``+`` after :math:`D\log 2`). ``vech`` is row-major lower-triangular
    (see the module docs).

    Direction: like :class:`~pushforward.transforms.Sigmoid`, ``forward`` is the seed's map
    :math:`f`, from unconstrained vectors to (half-vectorised) positive-definite matrices. A flow *over*
    covariance matrices maps data :math:`\operatorname{vech}(\Sigma)` to the latent space, so it starts with
    the inverse: ``Flow(Compose([CholeskyProduct(D).inv, <flow on R^m>]), StandardNormal(m))`` gives the
    density of :math:`\operatorname{vech}(\Sigma)` w.r.t. the Lebesgue measure on the
    :math:`D(D+1)/2` distinct entries — the measure of ``torch.distributions.Wishart``. The inverse checks
    positive definiteness (``ValueError`` otherwise). No parameters.

    Reference: Bittner, "Normalizing flows in tf_utils", 2019 ("Cholesky Product Flows");
    Pinheiro & Bates, "Unconstrained parametrizations for variance-covariance matrices", 1996 (the
    log-Cholesky parameterisation).

    Example:
        >>> t = CholeskyProduct(2)
        >>> s, ladj = t(torch.zeros(1, 3))  # vech of the identity
        >>> s
        tensor([[1., 0., 1.]])
    """

    def __init__(self, D: int) -> None:
        if D < 1:
            raise ValueError(f"matrix size D must be positive, got {D}")
        super().__init__(D * (D + 1) // 2)
        self.D = int(D)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return cholesky_product(x, self.D)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return cholesky_product_inverse(z, self.D, "CholeskyProduct.inverse input")

    def extra_repr(self) -> str:
        return f"D={self.D}"
