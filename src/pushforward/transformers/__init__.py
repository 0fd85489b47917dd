"""Elementwise transformers (the bijection half of coupling and autoregressive layers)."""

from .affine import AdditiveTransformer, AffineTransformer
from .base import Transformer

__all__ = ["AdditiveTransformer", "AffineTransformer", "Transformer"]
