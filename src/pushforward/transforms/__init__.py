"""Bijections. Every transform maps data → latent in ``forward``; see :mod:`pushforward.transforms.base`."""

from .base import Compose, Inverse, Transform
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
from .elementwise import ActNorm, Affine, BatchNorm, Logit, NormalCDF, Scale, Shift, Sigmoid, Tanh
from .linear import LULinear, Permutation

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "Affine",
    "AffineCoupling",
    "BatchNorm",
    "Compose",
    "Coupling",
    "Inverse",
    "LULinear",
    "Logit",
    "NormalCDF",
    "Permutation",
    "Scale",
    "Shift",
    "Sigmoid",
    "Tanh",
    "Transform",
    "alternating_mask",
    "half_mask",
    "mask_schedule",
    "random_mask",
    "schedule_mask",
]
