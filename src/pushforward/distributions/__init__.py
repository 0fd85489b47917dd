"""Base distributions (``nn.Module`` s that move with ``.to``)."""

from .base import BoxUniform, DiagNormal, Distribution, MixtureOfGaussians, StandardNormal

__all__ = ["BoxUniform", "DiagNormal", "Distribution", "MixtureOfGaussians", "StandardNormal"]
