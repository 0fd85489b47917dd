"""Datasets: seeded 2-D toy densities and loaders."""

from .toy import ENTROPY, TOY_DENSITIES, toy

__all__ = ["ENTROPY", "TOY_DENSITIES", "toy"]
