"""Conditioner networks: they predict the parameters of transformers."""

from .mlp import MLP, activation

__all__ = ["MLP", "activation"]
