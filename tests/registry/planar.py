"""Registry cases: planar, radial, Householder and Sylvester transforms (sampling-direction flows).

Identity-like initialisations (planar ``u = 0``, Sylvester ``R = 0``) are replaced by random parameters
of order one, so the maps tested are strongly non-linear; the registry's ``perturb`` adds noise on top.
"""

from __future__ import annotations

import torch

from pushforward.transforms import Compose, Householder, Inverse, Planar, Radial, Sylvester, Transform

from . import Case


def _randomised(t: Transform, scale: float = 1.0, seed: int = 0) -> Transform:
    """Overwrite every parameter with ``scale`` × standard normal noise (seeded)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in t.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return t


def _near_singular_planar() -> Planar:
    """A planar layer with w·û close to −1: the scalar equation of the inverse is badly conditioned."""
    t = Planar(3)
    with torch.no_grad():
        t.w.copy_(torch.tensor([1.5, -0.5, 0.8]))
        t.u.copy_(-4.0 * t.w / t.w.pow(2).sum())  # w·u = −4 → w·û ≈ −1 + softplus(−4 + log(e−1)) ≈ −0.99
        t.b.fill_(0.3)
    return t


CASES = [
    Case("planar", lambda: _randomised(Planar(3))),
    Case("planar_init", lambda: Planar(4), perturb=0.3),
    Case("planar_large", lambda: _randomised(Planar(5), scale=3.0, seed=1), atol=1e-5, inverse_atol=1e-5),
    Case("planar_near_singular", _near_singular_planar, perturb=0.0, atol=1e-5, inverse_atol=1e-5),
    Case("planar_1d", lambda: _randomised(Planar(1), seed=2)),
    Case("radial", lambda: Radial(3)),
    Case("radial_randomised", lambda: _randomised(Radial(4), seed=3)),
    Case("radial_contracting", lambda: _contracting_radial()),
    Case("householder", lambda: Householder(4)),
    Case("householder_few", lambda: Householder(5, reflections=2)),
    Case("sylvester", lambda: _randomised(Sylvester(4), scale=0.8, seed=4)),
    Case("sylvester_init", lambda: Sylvester(3, reflections=1), perturb=0.3),
    Case("sylvester_no_reflection", lambda: _randomised(Sylvester(3, reflections=0), seed=5)),
    Case(
        "planar_radial_sylvester_stack",
        lambda: Compose(
            [
                _randomised(Planar(3), seed=6),
                _randomised(Radial(3), seed=7),
                _randomised(Sylvester(3), 0.7, 8),
            ]
        ),
    ),
    Case("inverse_planar", lambda: Inverse(_randomised(Planar(3), seed=9))),
]


def _contracting_radial() -> Radial:
    """A radial layer with β close to −α (strong contraction towards z0)."""
    t = Radial(3)
    with torch.no_grad():
        t.log_alpha.fill_(0.5)
        t.beta_raw.fill_(-5.0)  # β = −α + softplus(−5) ≈ −α + 0.0067
    return t
