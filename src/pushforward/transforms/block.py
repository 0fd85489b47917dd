r"""Block neural autoregressive flow (BNAF): a monotone masked network with an exact log-determinant.

A BNAF transform is a feed-forward network
:math:`\mathbb{R}^D \to \mathbb{R}^{DH_1} \to \dots \to \mathbb{R}^D` whose weight matrices are
**block lower-triangular**: the block :math:`(d, d')` of size :math:`H_\ell \times H_{\ell-1}` is zero
for :math:`d' > d`, free for :math:`d' < d` and elementwise *positive* (:math:`W_{dd} = e^{\hat W_{dd}}`)
on the diagonal, with weight normalisation of each row. Strictly increasing activations (``tanh``) keep
every output :math:`z_d` strictly increasing in :math:`x_d` and independent of
:math:`x_{>d}`, so the Jacobian is lower triangular with positive diagonal:

.. math:: \log\left|\det \frac{\partial z}{\partial x}\right| = \sum_d \log \frac{\partial z_d}{\partial x_d},
    \qquad \frac{\partial z_d}{\partial x_d} = W^{(L)}_{dd}\, \mathrm{diag}(\sigma'_{L-1})\, W^{(L-1)}_{dd}
    \cdots \mathrm{diag}(\sigma'_1)\, W^{(1)}_{dd},

computed exactly in log space: every factor is positive, so the product of diagonal blocks is a chain of
``logsumexp`` matrix products. A gated residual :math:`z = g\,x + (1 - g)\,\mathrm{net}(x)`,
:math:`g = \sigma(\alpha) \in (0, 1)`, makes the map onto :math:`\mathbb{R}^D` (``tanh`` saturates) and
keeps it monotone. The inverse is solved numerically, dimension by dimension, with bracketed bisection.

Reference: De Cao, Titov & Aziz, "Block Neural Autoregressive Flow", UAI 2019.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..inversion import bisection
from .base import Transform, broadcast_context
from .elementwise import log_tanh_derivative

__all__ = ["BlockAutoregressive", "MaskedBlockLinear"]


class MaskedBlockLinear(nn.Module):
    r"""A block lower-triangular linear map :math:`\mathbb{R}^{D \cdot i} \to \mathbb{R}^{D \cdot o}` (one
    BNAF layer).

    .. math:: W = \mathrm{diag}(e^{g}) \frac{\tilde W}{\lVert \tilde W \rVert_{\text{row}}}, \qquad
        \tilde W_{dd'} = \begin{cases} e^{\hat W_{dd}} & d = d' \\ \hat W_{dd'} & d' < d \\ 0 & d' > d,
        \end{cases}

    so the diagonal blocks are positive and :math:`\log W_{dd} = g + \hat W_{dd} - \log\lVert\tilde
    W\rVert_{\text{row}}`.
    :meth:`forward` also propagates the log of the diagonal Jacobian blocks.

    Reference: De Cao, Titov & Aziz, "Block Neural Autoregressive Flow", UAI 2019.

    Example:
        >>> layer = MaskedBlockLinear(3, 1, 4)
        >>> h, log_j = layer(torch.randn(5, 3), torch.zeros(5, 3, 1))
        >>> h.shape, log_j.shape
        (torch.Size([5, 12]), torch.Size([5, 3, 4]))
    """

    def __init__(self, features: int, in_block: int, out_block: int) -> None:
        super().__init__()
        D, i, o = features, in_block, out_block
        self.features, self.in_block, self.out_block = D, i, o
        row_block = torch.arange(D * o) // o
        col_block = torch.arange(D * i) // i
        self.register_buffer("diag_mask", row_block[:, None] == col_block[None, :])
        self.register_buffer("lower_mask", row_block[:, None] > col_block[None, :])
        weight = torch.empty(D * o, D * i)
        bound = 1.0 / math.sqrt(i)
        nn.init.uniform_(weight, -bound, bound)
        diag_init = torch.log(torch.empty(D * o, D * i).uniform_(0.1, 1.0) * bound)
        weight = torch.where(self.diag_mask, diag_init, weight * self.lower_mask)
        self.weight = nn.Parameter(weight)
        with torch.no_grad():
            self.log_gain = nn.Parameter(0.5 * torch.log((self._raw() ** 2).sum(-1)))
        self.bias = nn.Parameter(torch.empty(D * o).uniform_(-bound, bound))

    def _raw(self) -> Tensor:
        return torch.where(self.diag_mask, self.weight.exp(), self.weight * self.lower_mask)

    def weights(self) -> tuple[Tensor, Tensor]:
        """The normalised weight ``(D·o, D·i)`` and the log of its diagonal blocks ``(D, o, i)``."""
        raw = self._raw()
        log_norm = 0.5 * torch.log((raw**2).sum(-1, keepdim=True))
        w = torch.exp(self.log_gain[:, None] - log_norm) * raw
        log_diag = self.log_gain[:, None] + self.weight - log_norm
        D, i, o = self.features, self.in_block, self.out_block
        log_diag = log_diag[self.diag_mask].view(D, o, i)
        return w, log_diag

    def forward(self, h: Tensor, log_j: Tensor) -> tuple[Tensor, Tensor]:
        """``h`` of shape ``(B, D·i)`` and ``log_j`` (log diagonal Jacobian blocks ``(B, D, i)`` w.r.t. the
        scalar ``x_d``) → ``(B, D·o)`` and ``(B, D, o)``."""
        w, log_diag = self.weights()
        out = F.linear(h, w, self.bias)
        new = torch.logsumexp(log_diag.unsqueeze(0) + log_j.unsqueeze(-2), dim=-1)
        return out, new

    def extra_repr(self) -> str:
        return f"features={self.features}, in_block={self.in_block}, out_block={self.out_block}"


class BlockAutoregressive(Transform):
    r"""A BNAF transform: block-autoregressive monotone network with a gated residual (see module docstring).

    .. math:: z = g \odot x + (1 - g) \odot \big(W_L \tanh(\cdots \tanh(W_1 x + b_1 + V c) \cdots) + b_L\big),

    autoregressive in the natural order: :math:`z_d` depends on :math:`x_{\le d}` (and the context) and
    increases with :math:`x_d`. ``ladj`` is exact (log-space product of the diagonal blocks). The inverse solves
    :math:`z_d = f_d(x_{<d}, x_d)` for :math:`x_d`, ``d = 1..D``, by bracketed bisection (the bracket is
    expanded until it holds the root), so ``analytic_inverse = False``; the implicit-function gradient is
    attached to the result so samples stay differentiable.

    Args:
        features: Number of features ``D``.
        hidden: Block widths per feature of the hidden layers (hidden layer ``ℓ`` has ``D · hidden[ℓ]``
            units).
        context: Number of context features (added, unmasked, to the first hidden layer).
        residual: ``"gated"`` (default) or ``None`` (plain network; bounded, hence not onto, so its inverse
            can
            fail for latents out of range).
        atol, max_iter: Tolerance and cap of the bisection inverse.

    Reference: De Cao, Titov & Aziz, "Block Neural Autoregressive Flow", UAI 2019.

    Example:
        >>> t = BlockAutoregressive(2, hidden=(8, 8))
        >>> z, ladj = t(torch.randn(5, 2))
        >>> x, _ = t.inverse(z)          # numerical, dimension by dimension
    """

    analytic_inverse = False

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (16, 16),
        *,
        context: int = 0,
        residual: str | None = "gated",
        atol: float = 1e-10,
        max_iter: int = 200,
    ) -> None:
        if not isinstance(features, int) or isinstance(features, bool) or features < 1:
            raise ValueError(f"features must be a positive int, got {features!r}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(
                f"BlockAutoregressive needs at least one positive hidden block width, got {hidden}"
            )
        if residual not in ("gated", None):
            raise ValueError(f"residual must be 'gated' or None, got {residual!r}")
        if not atol > 0 or max_iter < 1:
            raise ValueError("atol must be positive and max_iter at least 1")
        super().__init__(features, context)
        sizes = (1, *hidden, 1)
        self.layers = nn.ModuleList(MaskedBlockLinear(features, a, b) for a, b in itertools.pairwise(sizes))
        self.context_net = nn.Linear(context, features * hidden[0]) if context else None
        self.residual = residual
        self.gate = nn.Parameter(torch.zeros(features)) if residual == "gated" else None
        self.atol = atol
        self.max_iter = max_iter

    def _map(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        B, D = x.shape
        h = x
        log_j = x.new_zeros(B, D, 1)
        for k, layer in enumerate(self.layers):
            h, log_j = layer(h, log_j)
            if k == 0 and self.context_net is not None:
                if context is None:
                    raise ValueError(f"this transform expects a context of {self.context_features} features")
                broadcast_context(context, B)
                h = h + self.context_net(context)
            if k < len(self.layers) - 1:
                log_j = log_j + log_tanh_derivative(h).view(B, D, -1)
                h = torch.tanh(h)
        logd = log_j.view(B, D)
        if self.gate is not None:
            log_g, log_1mg = F.logsigmoid(self.gate), F.logsigmoid(-self.gate)
            h = log_g.exp() * x + log_1mg.exp() * h
            logd = torch.logaddexp(log_g.expand_as(logd), log_1mg + logd)
        return h, logd

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z, logd = self._map(x, context)
        return z, logd.sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # one tolerance per element: a batch-wide scale let one huge row loosen every other row
        tol = (torch.finfo(z.dtype).eps ** 0.75 * (1.0 + z.detach().abs())).clamp_min(self.atol)
        with torch.no_grad():
            zd = z.detach()
            x = zd.clone()
            for d in range(self.features):

                def f(t: Tensor, d: int = d) -> Tensor:
                    xx = x.clone()
                    xx[:, d] = t
                    return self._map(xx, context)[0][:, d]

                x[:, d] = bisection(
                    f, zd[:, d], zd[:, d] - 1.0, zd[:, d] + 1.0, atol=tol[:, d], max_iter=self.max_iter
                )
        if torch.is_grad_enabled() and (z.requires_grad or any(p.requires_grad for p in self.parameters())):
            x = self._implicit_gradient(x, z, context)
        _, logd = self._map(x, context)
        return x, -logd.sum(1)

    def _implicit_gradient(self, x: Tensor, z: Tensor, context: Tensor | None) -> Tensor:
        r""":math:`\hat x = x - J^{-1}(f(x) - z)` with the (lower-triangular) Jacobian :math:`J` detached:
        equal to
        ``x`` at the root, with the exact first-order gradients w.r.t. ``z`` and the parameters."""
        xs = x.detach().requires_grad_(True)
        with torch.enable_grad():
            zz = self._map(xs, context)[0]
            rows = [
                torch.autograd.grad(zz[:, d].sum(), xs, retain_graph=True)[0] for d in range(self.features)
            ]
        J = torch.stack(rows, 1).detach()  # (B, D, D), J[b, d, j] = ∂z_d/∂x_j
        residual = self._map(x.detach(), context)[0] - z
        step = torch.linalg.solve_triangular(J, residual.unsqueeze(-1), upper=False).squeeze(-1)
        return x.detach() - step

    def extra_repr(self) -> str:
        hidden = tuple(layer.out_block for layer in self.layers[:-1])
        return f"{super().extra_repr()}, hidden={hidden}, residual={self.residual}"
