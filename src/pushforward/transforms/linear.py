r"""Linear bijections: permutations and LU-parameterised invertible matrices."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import Transform

__all__ = ["LULinear", "LUMatrix", "Permutation"]


class Permutation(Transform):
    r"""Reorders features: :math:`f(x)_i = x_{\pi(i)}`, volume preserving (:math:`\log|\det J| = 0`).

    Args:
        features: Number of features ``D``.
        order: ``"reverse"``, ``"random"`` (drawn from ``seed``) or an explicit permutation of ``range(D)``.
        seed: Seed of the random permutation.

    Example:
        >>> Permutation(4, "reverse")(torch.arange(4.).view(1, 4))[0]
        tensor([[3., 2., 1., 0.]])
    """

    def __init__(self, features: int, order: str | Sequence[int] | Tensor = "reverse", seed: int = 0) -> None:
        super().__init__(features)
        if isinstance(order, str):
            if order == "reverse":
                perm = torch.arange(features - 1, -1, -1)
            elif order == "random":
                perm = torch.randperm(features, generator=torch.Generator().manual_seed(seed))
            else:
                raise ValueError(f"order must be 'reverse', 'random' or a permutation, got {order!r}")
        else:
            perm = torch.as_tensor(order, dtype=torch.long)
            if perm.shape != (features,) or not torch.equal(perm.sort().values, torch.arange(features)):
                raise ValueError(f"order must be a permutation of range({features}), got {perm.tolist()}")
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.index_select(1, self.perm), x.new_zeros(x.shape[0])  # (cheaper than x[:, perm])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z.index_select(1, self.inv_perm), z.new_zeros(z.shape[0])


class LUMatrix(nn.Module):
    r"""An invertible ``n x n`` matrix in LU form, :math:`W = P L (U + \operatorname{diag}(s \odot e^{u}))`.

    :math:`P` is a fixed permutation, :math:`L` unit lower-triangular, :math:`U` strictly upper-triangular,
    :math:`s` fixed signs and :math:`u` learnable log-magnitudes, so :math:`\log|\det W| = \sum_i u_i`
    costs O(n) and solves are two triangular solves. Initialised from a random rotation (Glow,
    ``"orthogonal"``), the identity (``"identity"``) or the reversal permutation (``"reverse"``: :math:`P`
    reverses the features and :math:`L = U = I`, so the matrix starts as the permutation that alternates
    the order of autoregressive layers and learns any other mixing from there). Shared by :class:`LULinear`
    and the invertible 1x1 convolution.

    Reference: Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", 2018.
    """

    def __init__(self, n: int, init: str = "orthogonal", seed: int | None = None) -> None:
        super().__init__()
        if init == "orthogonal":
            g = torch.Generator().manual_seed(seed) if seed is not None else None
            q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
            p, l, u = torch.linalg.lu(q)
        elif init == "identity":
            p = l = u = torch.eye(n, dtype=torch.float64)
        elif init == "reverse":
            l = u = torch.eye(n, dtype=torch.float64)
            p = torch.flip(l, dims=[1])
        else:
            raise ValueError(f"init must be 'orthogonal', 'identity' or 'reverse', got {init!r}")
        diag = torch.diagonal(u)
        dtype = torch.get_default_dtype()
        self.register_buffer("permutation", p.to(dtype))
        self.register_buffer("sign", torch.sign(diag).to(dtype))
        self.register_buffer("lower_mask", torch.tril(torch.ones(n, n, dtype=dtype), -1))
        self.lower = nn.Parameter(torch.tril(l, -1).to(dtype))
        self.upper = nn.Parameter(torch.triu(u, 1).to(dtype))
        self.log_diag = nn.Parameter(diag.abs().log().to(dtype))
        self.n = n

    def factors(self) -> tuple[Tensor, Tensor]:
        """The triangular factors ``(L, U)`` with ``W = P L U``."""
        eye = torch.eye(self.n, dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * self.log_diag.exp())
        return lower, upper

    def matrix(self) -> Tensor:
        """The matrix :math:`W`."""
        lower, upper = self.factors()
        return self.permutation @ lower @ upper

    def logabsdet(self) -> Tensor:
        r""":math:`\log|\det W|`."""
        return self.log_diag.sum()

    def solve(self, y: Tensor) -> Tensor:
        """``W⁻¹ y`` for ``y`` of shape ``(n, m)`` (two triangular solves and a permutation)."""
        lower, upper = self.factors()
        t = self.permutation.T @ y
        t = torch.linalg.solve_triangular(lower, t, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, t, upper=True)

    def inverse_matrix(self) -> Tensor:
        """The matrix :math:`W^{-1}`."""
        return self.solve(torch.eye(self.n, dtype=self.lower.dtype, device=self.lower.device))


class LULinear(Transform):
    r"""Invertible affine map :math:`f(x) = W x + b` with :math:`W` in LU form (:class:`LUMatrix`).

    :math:`\log|\det J| = \sum_i u_i`, O(D); the inverse uses two triangular solves. Mixing all features
    between coupling or autoregressive layers, it generalises permutations.

    References: Kingma & Dhariwal, "Glow", 2018; Durkan et al., "Neural Spline Flows", 2019.

    Example:
        >>> z, ladj = LULinear(4)(torch.randn(8, 4))
    """

    def __init__(
        self, features: int, *, bias: bool = True, init: str = "orthogonal", seed: int | None = None
    ):
        super().__init__(features)
        self.lu = LUMatrix(features, init=init, seed=seed)
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = x @ self.lu.matrix().T
        if self.bias is not None:
            z = z + self.bias
        return z, self.lu.logabsdet().expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.bias is not None:
            z = z - self.bias
        x = self.lu.solve(z.T).T
        return x, -self.lu.logabsdet().expand(z.shape[0])
