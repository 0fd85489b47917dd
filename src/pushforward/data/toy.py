r"""Seeded 2-D toy densities (the FFJORD / RealNVP benchmark set).

Each generator returns a ``float32`` tensor of shape ``(n, 2)``. :data:`ENTROPY` gives the differential
entropy (nats) where it is known in closed form or to good accuracy, i.e. the best test NLL a perfect
model can reach.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["ENTROPY", "TOY_DENSITIES", "toy"]


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    n1 = n // 2
    n2 = n - n1
    t1 = rng.uniform(0, math.pi, n1)
    t2 = rng.uniform(0, math.pi, n2)
    a = np.stack([np.cos(t1), np.sin(t1)], 1)
    b = np.stack([1 - np.cos(t2), 0.5 - np.sin(t2)], 1)
    x = np.concatenate([a, b]) + rng.normal(0, 0.1, (n, 2))
    return (x - np.array([0.5, 0.25])) * 2


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    # Components N(c_k, 0.5² I) with centres 4·(cos, sin)(kπ/4), everything divided by 1.414 (FFJORD's set).
    angles = np.arange(8) * math.pi / 4
    centers = 4.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
    idx = rng.integers(0, 8, n)
    return (centers[idx] + 0.5 * rng.normal(size=(n, 2))) / 1.414


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    # Uniform on 8 of the 16 unit squares of [-2, 2]², scaled by 2: support area 32, entropy log 32.
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 1, n) - rng.integers(0, 2, n) * 2.0 + np.floor(x1) % 2
    return np.stack([x1, x2], 1) * 2


def _pinwheel(rng: np.random.Generator, n: int) -> np.ndarray:
    radial_std, tangential_std, arms, rate = 0.3, 0.1, 5, 0.25
    angles = np.linspace(0, 2 * math.pi, arms, endpoint=False)
    feats = rng.normal(size=(n, 2)) * np.array([radial_std, tangential_std])
    feats[:, 0] += 1.0
    labels = rng.integers(0, arms, n)
    rot = angles[labels] + rate * np.exp(feats[:, 0])
    c, s = np.cos(rot), np.sin(rot)
    out = np.stack([c * feats[:, 0] - s * feats[:, 1], s * feats[:, 0] + c * feats[:, 1]], 1)
    return 2 * out


def _two_spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    m = np.sqrt(rng.uniform(size=n)) * 540 * (2 * math.pi) / 360
    sign = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
    d = np.stack([-np.cos(m) * m, np.sin(m) * m], 1) * sign[:, None]
    return d / 3 + rng.normal(size=(n, 2)) * 0.1


def _rings(rng: np.random.Generator, n: int) -> np.ndarray:
    radii = np.array([1.0, 2.0, 3.0, 4.0])
    r = radii[rng.integers(0, 4, n)]
    t = rng.uniform(0, 2 * math.pi, n)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1) * 0.75 + rng.normal(size=(n, 2)) * 0.08


def _circles(rng: np.random.Generator, n: int) -> np.ndarray:
    r = np.where(rng.uniform(size=n) < 0.5, 1.0, 0.5)
    t = rng.uniform(0, 2 * math.pi, n)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1) * 3 + rng.normal(size=(n, 2)) * 0.08


TOY_DENSITIES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "moons": _moons,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "2spirals": _two_spirals,
    "rings": _rings,
    "circles": _circles,
}

#: Differential entropy in nats. 8gaussians: log 8 + log(2πe·σ²) with σ = 0.5/1.414 (components are
#: separated by > 5σ, so the overlap correction is below 1e-4); checkerboard: log 32 (uniform on area 32).
ENTROPY: dict[str, float] = {
    "8gaussians": math.log(8) + math.log(2 * math.pi * math.e * (0.5 / 1.414) ** 2),
    "checkerboard": math.log(32.0),
}


def toy(name: str, n: int, seed: int = 0) -> Tensor:
    """``n`` samples of the 2-D toy density ``name`` (one of :data:`TOY_DENSITIES`), seeded.

    Example:
        >>> toy("8gaussians", 5, seed=1).shape
        torch.Size([5, 2])
    """
    if name not in TOY_DENSITIES:
        raise ValueError(f"unknown toy density {name!r}; choose from {sorted(TOY_DENSITIES)}")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    rng = np.random.default_rng(seed)
    return torch.from_numpy(TOY_DENSITIES[name](rng, n).astype(np.float32))
