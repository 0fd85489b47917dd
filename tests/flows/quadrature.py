"""Quadrature helpers for the normalisation tests: total mass of a 2-D density on a wide grid."""

from __future__ import annotations

import torch


def perturbed(module, scale: float, seed: int = 0):
    """Add ``scale`` times seeded standard-normal noise to every parameter (moves a flow off the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def mass_2d(log_prob, half_width: float = 6.0, n: int = 301, scale: float = 1.0, chunk: int = 20000) -> float:
    r""":math:`\int_{\mathbb{R}^2} e^{\log p}` by the trapezoidal rule in :math:`u` after
    :math:`x = s \sinh u` per axis, :math:`u \in [-U, U]`: fine near the origin, out to
    :math:`|x| = s \sinh U` (±202 for the defaults), so heavy tails are covered; float64."""
    u = torch.linspace(-half_width, half_width, n, dtype=torch.float64)
    x, dx = scale * torch.sinh(u), scale * torch.cosh(u)
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    pts = torch.stack([xx, yy], -1).reshape(-1, 2)
    with torch.no_grad():
        p = torch.cat([log_prob(c).exp() for c in pts.split(chunk)]).reshape(n, n)
    w = dx[:, None] * dx[None, :]
    return float(torch.trapezoid(torch.trapezoid(p * w, u, dim=1), u))
