r"""Stochastic trace and log-determinant estimators (pure functions on autograd graphs).

All functions take ``fx = f(x)`` computed from ``x`` with autograd (``x.requires_grad``), for maps that act on
each sample independently (row ``i`` of ``fx`` depends on row ``i`` of ``x`` only), and return per-sample
values of shape ``(batch,)``. Jacobian products are vector–Jacobian products :math:`v^\top J`, one backward
pass each, so nothing of size :math:`D^2` is formed except by the exact functions.

* Hutchinson: :math:`\operatorname{tr}(A) = \mathbb{E}[v^\top A v]` for probes with
  :math:`\mathbb{E}[v v^\top] = I` — Gaussian or Rademacher (Hutchinson, "A stochastic estimator of the
  trace of the influence matrix for Laplacian smoothing splines", 1990; Grathwohl et al., "FFJORD", 2019).
* Residual log-determinant: for :math:`\operatorname{Lip}(g) < 1`,
  :math:`\log\det(I + J_g) = \sum_{k\ge1} \frac{(-1)^{k+1}}{k}\operatorname{tr}(J_g^k)` (Behrmann et al.,
  "Invertible Residual Networks", 2019), truncated (biased) or with the Russian-roulette reweighting
  :math:`\sum_{k=1}^{N} \frac{(-1)^{k+1}}{k}\frac{v^\top J^k v}{P(N\ge k)}`, unbiased (Chen, Behrmann,
  Duvenaud & Jacobsen, "Residual Flows for Invertible Generative Modeling", 2019).
* Neumann gradient: :math:`\partial_\theta \log\det(I+J) = \mathbb{E}\big[\sum_{k=0}^{N-1}
  \frac{(-1)^k}{P(N\ge k+1)} v^\top J^k (\partial_\theta J) v\big]` (Chen et al. 2019, eq. 8), computed by
  backpropagating a surrogate :math:`w^\top J v` with :math:`w` detached — memory constant in ``N``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "exact_trace",
    "hutchinson_trace",
    "jacobian",
    "logdet_identity_plus",
    "residual_logdet",
    "residual_logdet_exact",
    "roulette_survival",
    "roulette_terms",
    "sample_probe",
    "series_terms",
]

PROBES = ("gaussian", "rademacher")


def sample_probe(like: Tensor, kind: str = "gaussian", generator: torch.Generator | None = None) -> Tensor:
    r"""A Hutchinson probe shaped like ``like`` with :math:`\mathbb{E}[v v^\top] = I`: standard normal
    (``"gaussian"``) or uniform on :math:`\{-1, 1\}` (``"rademacher"``, lower variance)."""
    if kind == "gaussian":
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    if kind == "rademacher":
        bits = torch.randint(0, 2, like.shape, generator=generator, device=like.device)
        return bits.to(like.dtype) * 2 - 1
    raise ValueError(f"probe must be one of {PROBES}, got {kind!r}")


def _vjp(fx: Tensor, x: Tensor, v: Tensor, create_graph: bool) -> Tensor:
    (out,) = torch.autograd.grad(fx, x, v, retain_graph=True, create_graph=create_graph, allow_unused=True)
    return torch.zeros_like(x) if out is None else out


def jacobian(fx: Tensor, x: Tensor, create_graph: bool = False) -> Tensor:
    """Per-sample Jacobians ``(batch, D, D)`` of ``fx`` (``(batch, D)``) w.r.t. ``x``: ``D`` backward
    passes."""
    rows = []
    for i in range(fx.shape[1]):
        e = torch.zeros_like(fx)
        e[:, i] = 1
        rows.append(_vjp(fx, x, e, create_graph))
    return torch.stack(rows, dim=1)


def exact_trace(fx: Tensor, x: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    r"""Exact :math:`\operatorname{tr}(\partial f/\partial x)` and :math:`\|\partial f/\partial x\|_F^2` per
    sample, with ``D`` backward passes."""
    tr = torch.zeros(fx.shape[0], dtype=fx.dtype, device=fx.device)
    frob = torch.zeros_like(tr)
    for i in range(fx.shape[1]):
        e = torch.zeros_like(fx)
        e[:, i] = 1
        row = _vjp(fx, x, e, create_graph)
        tr = tr + row[:, i]
        frob = frob + (row * row).sum(-1)
    return tr, frob


def hutchinson_trace(
    fx: Tensor, x: Tensor, probe: Tensor, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    r"""Hutchinson estimates :math:`v^\top J v` of :math:`\operatorname{tr} J` and :math:`\|v^\top J\|^2` of
    :math:`\|J\|_F^2` (both unbiased), from one vector–Jacobian product with the probe ``v``."""
    vj = _vjp(fx, x, probe, create_graph)
    return (vj * probe).sum(-1), (vj * vj).sum(-1)


def logdet_identity_plus(J: Tensor) -> Tensor:
    r""":math:`\log|\det(I + J)|` per sample of Jacobians ``(batch, D, D)``."""
    eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
    return torch.linalg.slogdet(eye + J)[1]


def residual_logdet_exact(gx: Tensor, x: Tensor, create_graph: bool = False) -> Tensor:
    r""":math:`\log|\det(I + \partial g/\partial x)|` from the full per-sample autograd Jacobian
    (small ``D``)."""
    return logdet_identity_plus(jacobian(gx, x, create_graph))


def series_terms(n_terms: int) -> list[float]:
    r"""Weights :math:`c_k = (-1)^{k+1}/k`, :math:`k = 1..n`, of the truncated log-det power series."""
    if n_terms < 1:
        raise ValueError(f"n_terms must be >= 1, got {n_terms}")
    return [(-1) ** (k + 1) / k for k in range(1, n_terms + 1)]


def roulette_survival(k: int, n_exact: int, p: float) -> float:
    r""":math:`P(N \ge k)` for the Russian-roulette length :math:`N = \max(n_{exact} + M, 1)`,
    :math:`M \sim \mathrm{Geometric}(p)` on :math:`\{0, 1, \dots\}` (:math:`P(M \ge m) = (1-p)^m`):

    .. math:: P(N \ge k) = \begin{cases} 1 & k \le \max(n_{exact}, 1) \\
        (1-p)^{k - n_{exact}} & \text{otherwise,} \end{cases}

    since the first term is always computed (with ``n_exact = 0``, :math:`N \ge 1` surely, and
    :math:`N \ge k \iff M \ge k` for :math:`k \ge 2`)."""
    if k <= max(n_exact, 1):
        return 1.0
    return (1.0 - p) ** (k - n_exact)


def roulette_terms(
    n_exact: int, p: float, generator: torch.Generator | None = None
) -> tuple[list[float], list[float]]:
    r"""Draw the Russian-roulette truncation :math:`N = \max(n_{exact} + M, 1)`,
    :math:`M \sim \mathrm{Geometric}(p)` (:math:`P(M \ge m) = (1-p)^m`), and return the reweighted series
    weights :math:`c_k = \frac{(-1)^{k+1}}{k\,P(N \ge k)}` for :math:`k = 1..N` together with the
    probabilities :math:`P(N \ge k)` (:func:`roulette_survival`).
    :math:`\mathbb{E}_N[\sum_{k\le N} c_k a_k] = \sum_k \frac{(-1)^{k+1}}{k} a_k`; the variance is finite
    when :math:`|a_k| \le C L^k` with :math:`L^2 < 1 - p`."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"roulette probability p must lie in (0, 1), got {p}")
    if n_exact < 0:
        raise ValueError(f"n_exact must be >= 0, got {n_exact}")
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    m = math.floor(math.log(max(u, 1e-300)) / math.log1p(-p))
    n = max(n_exact + m, 1)
    probs = [roulette_survival(k, n_exact, p) for k in range(1, n + 1)]
    return [(-1) ** (k + 1) / (k * probs[k - 1]) for k in range(1, n + 1)], probs


def residual_logdet(
    gx: Tensor,
    x: Tensor,
    probes: Tensor,
    weights: list[float],
    probs: list[float] | None = None,
    *,
    create_graph: bool = False,
    neumann_grad: bool = False,
) -> Tensor:
    r"""Stochastic :math:`\log\det(I + J_g)` per sample: :math:`\frac1P\sum_{p}\sum_{k=1}^{N} c_k\,
    v_p^\top J^k v_p` with the series weights ``weights`` (:func:`series_terms` or :func:`roulette_terms`).

    Args:
        gx, x: ``g(x)`` and ``x`` (``(batch, D)``), with ``x.requires_grad``.
        probes: ``(P, batch, D)`` Hutchinson probes.
        weights: The series weights :math:`c_1..c_N`.
        probs: :math:`P(N \ge k)` for the Neumann gradient (all ones for a truncated series).
        create_graph: Keep a graph for backpropagation (training).
        neumann_grad: Backpropagate the Neumann-series gradient estimator (a detached value plus a
            surrogate :math:`w^\top J v` with zero value), instead of differentiating through the ``N``
            vector–Jacobian products: memory constant in ``N``.
    """
    n = len(weights)
    probs = probs if probs is not None else [1.0] * n
    total = torch.zeros(gx.shape[0], dtype=gx.dtype, device=gx.device)
    use_neumann = neumann_grad and create_graph
    for v in probes:
        w = v
        value = torch.zeros_like(total)
        grad_vec = torch.zeros_like(v)
        for k in range(1, n + 1):
            if use_neumann:
                grad_vec = grad_vec + ((-1) ** (k - 1) / probs[k - 1]) * w  # weight of v^T J^{k-1}
            w = _vjp(gx, x, w, create_graph and not use_neumann)  # v^T J^k
            value = value + weights[k - 1] * (w * v).sum(-1)
        if use_neumann:
            surrogate = (_vjp(gx, x, grad_vec.detach(), True) * v).sum(-1)
            value = value.detach() + surrogate - surrogate.detach()
        total = total + value
    return total / probes.shape[0]
