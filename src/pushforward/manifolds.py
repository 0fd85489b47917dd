"""Flows on isometrically embedded manifolds (the unit sphere, the probability simplex).

The public home of the manifold tools — :class:`~pushforward.transforms.manifold.ManifoldTransform`,
:func:`~pushforward.transforms.manifold.manifold_log_volume_ratio`, the projections and tangent bases —
which live in :mod:`pushforward.transforms.manifold`, beside the transforms built on them. Every name of
that module's ``__all__`` is available here.

Example:
    >>> import torch
    >>> from pushforward.manifolds import sphere_projection
    >>> sphere_projection(torch.tensor([[3.0, 4.0]]))
    tensor([[0.6000, 0.8000]])
"""

from __future__ import annotations

from .transforms import manifold as _manifold

__all__ = list(_manifold.__all__)
__facade_of__ = "pushforward.transforms.manifold"  # documented there (the API pages list it once)


def __getattr__(name: str) -> object:
    if name in _manifold.__all__:
        return getattr(_manifold, name)
    raise AttributeError(f"module 'pushforward.manifolds' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
