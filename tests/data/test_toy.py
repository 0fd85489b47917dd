"""Toy densities: seeded, right shapes, right supports/entropies."""

import math

import numpy as np
import pytest
import torch

from pushforward.data import ENTROPY, TOY_DENSITIES, toy


@pytest.mark.parametrize("name", sorted(TOY_DENSITIES))
def test_toy_shapes_and_seeding(name):
    a, b, c = toy(name, 500, seed=3), toy(name, 500, seed=3), toy(name, 500, seed=4)
    assert a.shape == (500, 2) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_checkerboard_support_area_matches_entropy():
    x = toy("checkerboard", 20000).numpy() / 2  # back to [-2, 2]^2
    cells = np.floor(x).astype(int)
    occupied = {tuple(c) for c in cells}
    assert len(occupied) == 8  # 8 of 16 unit cells -> area 8, times 2^2 scaling = 32
    assert ENTROPY["checkerboard"] == pytest.approx(math.log(32))


def test_8gaussians_moments_match_entropy_model():
    x = toy("8gaussians", 40000, seed=0)
    radius = x.norm(dim=1)
    assert float(radius.mean()) == pytest.approx(4 / 1.414, abs=0.05)
    assert ENTROPY["8gaussians"] == pytest.approx(2.838, abs=1e-3)


def test_unknown_name_and_bad_n():
    with pytest.raises(ValueError, match="unknown toy"):
        toy("nope", 10)
    with pytest.raises(ValueError):
        toy("moons", 0)
