"""Conditioner networks: they predict the parameters of transformers."""

from .conv import ConvResNet
from .lipschitz import LipschitzMLP, LipSwish, SpectralLinear
from .made import MADE, MaskedLinear
from .mlp import MLP, activation

__all__ = ["MADE", "MLP", "ConvResNet", "LipSwish", "LipschitzMLP", "MaskedLinear", "SpectralLinear", "activation"]
