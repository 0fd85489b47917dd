"""Flows on isometrically embedded manifolds (the unit sphere, the probability simplex): the public home of
the manifold tools, which live in :mod:`pushforward.transforms.manifold`."""

from .transforms.manifold import (
    Manifold,
    ManifoldTransform,
    Simplex,
    Sphere,
    manifold_log_volume_ratio,
    simplex_projection,
    sphere_area,
    sphere_projection,
    tangent_basis,
)

__all__ = [
    "Manifold",
    "ManifoldTransform",
    "Simplex",
    "Sphere",
    "manifold_log_volume_ratio",
    "simplex_projection",
    "sphere_area",
    "sphere_projection",
    "tangent_basis",
]
