"""Helpers shared by the discrete-flow tests: the two dtypes and a seeded perturbation of every parameter."""

from __future__ import annotations

import pytest
import torch

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


def perturb(module, std: float, seed: int = 0):
    """Add ``std``-scaled Gaussian noise (drawn in float64 from ``seed``) to every parameter; returns ``module``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
    return module
