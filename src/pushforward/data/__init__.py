"""Datasets: seeded 2-D toy densities and loaders."""

from . import uci  # noqa: F401  (pushforward.data.uci.load)
from .images import (
    bits_per_dim,
    load_digits_images,
    load_mnist,
    uniform_dequantize,
)
from .targets import (
    ENERGIES,
    ENERGY_LOG_Z,
    TARGETS,
    banana_log_prob,
    banana_sample,
    energy_u1,
    energy_u2,
    energy_u3,
    energy_u4,
    neal_funnel_log_prob,
    neal_funnel_sample,
    target_log_density,
)
from .toy import ENTROPY, TOY_DENSITIES, toy

__all__ = [
    "ENERGIES",
    "ENERGY_LOG_Z",
    "ENTROPY",
    "TARGETS",
    "TOY_DENSITIES",
    "banana_log_prob",
    "banana_sample",
    "bits_per_dim",
    "energy_u1",
    "energy_u2",
    "energy_u3",
    "energy_u4",
    "load_digits_images",
    "load_mnist",
    "neal_funnel_log_prob",
    "neal_funnel_sample",
    "target_log_density",
    "toy",
    "uniform_dequantize",
]
