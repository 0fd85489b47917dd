"""Elementwise transformers (the bijection half of coupling and autoregressive layers)."""

from .affine import AdditiveTransformer, AffineTransformer
from .base import Transformer
from .sigmoidal import DeepSigmoidTransformer
from .spline import RQSTransformer

__all__ = [
    "AdditiveTransformer",
    "AffineTransformer",
    "DeepSigmoidTransformer",
    "RQSTransformer",
    "Transformer",
]
