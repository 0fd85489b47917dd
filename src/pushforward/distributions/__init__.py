"""Base distributions (``nn.Module`` s that move with ``.to``)."""

from .base import BoxUniform, DiagNormal, Distribution, MixtureOfGaussians, StandardNormal
from .simplex import Dirichlet
from .sphere import UniformSphere, VonMisesFisher, VonMisesFisherMixture

__all__ = [
    "BoxUniform",
    "DiagNormal",
    "Dirichlet",
    "Distribution",
    "MixtureOfGaussians",
    "StandardNormal",
    "UniformSphere",
    "VonMisesFisher",
    "VonMisesFisherMixture",
]
