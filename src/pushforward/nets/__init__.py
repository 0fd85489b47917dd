"""Conditioner networks: they predict the parameters of transformers."""

from .conv import ConvResNet
from .embedding import CNNEmbedding, DeepSetEmbedding, MLPEmbedding
from .graphical import GraphicalConditioner
from .lipschitz import LipschitzMLP, LipSwish, SpectralLinear
from .made import MADE, MaskedLinear
from .mlp import MLP, activation

__all__ = [
    "MADE",
    "MLP",
    "CNNEmbedding",
    "ConvResNet",
    "DeepSetEmbedding",
    "GraphicalConditioner",
    "LipSwish",
    "LipschitzMLP",
    "MLPEmbedding",
    "MaskedLinear",
    "SpectralLinear",
    "activation",
]
