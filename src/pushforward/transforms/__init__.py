"""Bijections. Every transform maps data → latent in ``forward``; see :mod:`pushforward.transforms.base`."""

from .autoregressive import MaskedAutoregressive
from .base import Compose, Inverse, Transform
from .block import BlockAutoregressive
from .columns import ColumnMaps, LogRatio
from .continuous import ContinuousFlow
from .conv import EmergingConv, FourierConv, MaskedConv
from .coupling import (
    AdditiveCoupling,
    AffineCoupling,
    Coupling,
    alternating_mask,
    half_mask,
    mask_schedule,
    random_mask,
    schedule_mask,
)
from .discrete import IntegerCoupling, ModularCoupling
from .elementwise import ActNorm, Affine, BatchNorm, Logit, NormalCDF, Scale, Shift, Sigmoid, Tanh
from .image import InvConv1x1, MultiScale, Squeeze, channel_mask, checkerboard_mask
from .linear import LULinear, Permutation
from .matrix import CholeskyProduct, FillTriangular
from .planar import Planar, Radial
from .preprocessing import Standardize, Whiten
from .residual import ResidualBlock
from .reversible import ReversibleCompose
from .simplex import CalibrationTransform, GeneralizedCalibration
from .sphere import NormalizedAffine, NormalizedLinear, NormalizedTranslation
from .stochastic import Langevin, MetropolisHastings
from .surjective import (
    AbsoluteValue,
    Augment,
    MaxPool,
    Slice,
    Sort,
    VariationalDequantization,
    is_exact,
)
from .sylvester import Householder, Sylvester

__all__ = [
    "AbsoluteValue",
    "ActNorm",
    "AdditiveCoupling",
    "Affine",
    "AffineCoupling",
    "Augment",
    "BatchNorm",
    "BlockAutoregressive",
    "CalibrationTransform",
    "CholeskyProduct",
    "ColumnMaps",
    "Compose",
    "ContinuousFlow",
    "Coupling",
    "EmergingConv",
    "FillTriangular",
    "FourierConv",
    "GeneralizedCalibration",
    "Householder",
    "IntegerCoupling",
    "InvConv1x1",
    "Inverse",
    "LULinear",
    "Langevin",
    "LogRatio",
    "Logit",
    "MaskedAutoregressive",
    "MaskedConv",
    "MaxPool",
    "MetropolisHastings",
    "ModularCoupling",
    "MultiScale",
    "NormalCDF",
    "NormalizedAffine",
    "NormalizedLinear",
    "NormalizedTranslation",
    "Permutation",
    "Planar",
    "Radial",
    "ResidualBlock",
    "ReversibleCompose",
    "Scale",
    "Shift",
    "Sigmoid",
    "Slice",
    "Sort",
    "Squeeze",
    "Standardize",
    "Sylvester",
    "Tanh",
    "Transform",
    "VariationalDequantization",
    "Whiten",
    "alternating_mask",
    "channel_mask",
    "checkerboard_mask",
    "half_mask",
    "is_exact",
    "mask_schedule",
    "random_mask",
    "schedule_mask",
]
