"""Base distributions (``nn.Module`` s that move with ``.to``)."""

from .base import BoxUniform, DiagNormal, Distribution, MixtureOfGaussians, StandardNormal
from .discretized import AutoregressiveLogisticMixture, Categorical, DiscretizedLogisticMixture
from .simplex import Dirichlet
from .sphere import UniformSphere, VonMisesFisher, VonMisesFisherMixture

__all__ = [
    "AutoregressiveLogisticMixture",
    "BoxUniform",
    "Categorical",
    "DiagNormal",
    "Dirichlet",
    "DiscretizedLogisticMixture",
    "Distribution",
    "MixtureOfGaussians",
    "StandardNormal",
    "UniformSphere",
    "VonMisesFisher",
    "VonMisesFisherMixture",
]
