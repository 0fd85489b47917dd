r"""Unnormalised target densities for variational inference, Monte Carlo and MCMC tests.

* :func:`energy_u1` … :func:`energy_u4`: the four 2-D energies of Rezende & Mohamed (2015, table 1),
  :math:`p(z) \propto e^{-U(z)}`, with

  .. math::
      w_1(z) = \sin(\tfrac{2\pi z_1}{4}),\quad w_2(z) = 3 e^{-\frac12 ((z_1 - 1)/0.6)^2},\quad
      w_3(z) = 3\,\sigma((z_1 - 1)/0.3),

      U_1(z) = \tfrac12\left(\frac{\lVert z\rVert - 2}{0.4}\right)^2
               - \log\left(e^{-\frac12 (\frac{z_1 - 2}{0.6})^2} + e^{-\frac12 (\frac{z_1 + 2}{0.6})^2}\right),

      U_2(z) = \tfrac12\left(\frac{z_2 - w_1}{0.4}\right)^2,\quad
      U_3(z) = -\log\left(e^{-\frac12(\frac{z_2 - w_1}{0.35})^2}
               + e^{-\frac12(\frac{z_2 - w_1 + w_2}{0.35})^2}\right),

      U_4(z) = -\log\left(e^{-\frac12(\frac{z_2 - w_1}{0.4})^2}
               + e^{-\frac12(\frac{z_2 - w_1 + w_3}{0.35})^2}\right).

  :math:`U_1` is proper on :math:`\mathbb{R}^2`. :math:`U_2, U_3, U_4` do not depend on :math:`z_1` far
  from the origin, so :math:`e^{-U}` is **improper** on :math:`\mathbb{R}^2`; here they are made proper with
  a stated **envelope** (not a hard box, which would give reparameterised samples outside it
  :math:`\log p = -\infty`): we add

  .. math:: E(z) = \tfrac12 \left(\frac{\max(|z_1| - 4, 0)}{0.5}\right)^2,

  so the targets equal the paper's on the strip :math:`|z_1| \le 4` (its figures show the box
  :math:`[-4, 4]^2`) and decay like a half-Gaussian of scale 0.5 beyond it. :data:`ENERGY_LOG_Z` gives
  :math:`\log\int e^{-U}` for all four, by quadrature.
* :func:`neal_funnel_log_prob`: Neal's funnel in :math:`D` dimensions,
  :math:`v = z_1 \sim \mathcal N(0, 3^2)`, :math:`z_{2..D} \mid v \sim \mathcal N(0, e^{v} I)` — normalised.
* :func:`banana_log_prob`: a Rosenbrock-type banana, :math:`z_1 \sim \mathcal N(a, \sigma_1^2)`,
  :math:`z_2 \mid z_1 \sim \mathcal N(z_1^2, \sigma_2^2)`, i.e.
  :math:`\log p = -\frac{(z_1 - a)^2}{2\sigma_1^2} - \frac{(z_2 - z_1^2)^2}{2\sigma_2^2} + \text{const}`
  (the Rosenbrock function with weights) — normalised.

References: Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015; Neal, "Slice
Sampling", Annals of Statistics 2003 (the funnel); Haario, Saksman & Tamminen, "Adaptive proposal
distribution for random walk Metropolis algorithm", 1999 (banana-shaped targets).

Example:
    >>> from pushforward.data import target_log_density
    >>> log_p = target_log_density("u1")
    >>> log_p(torch.zeros(3, 2)).shape
    torch.Size([3])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ENERGIES",
    "ENERGY_LOG_Z",
    "TARGETS",
    "banana_log_prob",
    "banana_sample",
    "energy_envelope",
    "energy_u1",
    "energy_u2",
    "energy_u3",
    "energy_u4",
    "neal_funnel_log_prob",
    "neal_funnel_sample",
    "target_log_density",
]

_LOG_2PI = math.log(2 * math.pi)
#: Half-width of the strip on which U2–U4 equal the paper's energies, and the envelope scale beyond it.
ENVELOPE_HALF_WIDTH, ENVELOPE_SCALE = 4.0, 0.5


def _check_2d(z: Tensor, name: str) -> None:
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} takes a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"{name} takes a floating-point tensor, got dtype {z.dtype}")
    if z.dim() < 1 or z.shape[-1] != 2:
        raise ValueError(f"{name} takes points of shape (..., 2), got {tuple(z.shape)}")


def _sq(t: Tensor) -> Tensor:
    return 0.5 * t * t


def _w1(z1: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z1 / 4)


def _w2(z1: Tensor) -> Tensor:
    return 3.0 * torch.exp(-_sq((z1 - 1.0) / 0.6))


def _w3(z1: Tensor) -> Tensor:
    return 3.0 * torch.sigmoid((z1 - 1.0) / 0.3)


def energy_envelope(z: Tensor) -> Tensor:
    r"""The envelope :math:`E(z) = \frac12(\max(|z_1| - 4, 0)/0.5)^2` that makes U2–U4 proper."""
    return _sq(F.relu(z[..., 0].abs() - ENVELOPE_HALF_WIDTH) / ENVELOPE_SCALE)


def energy_u1(z: Tensor) -> Tensor:
    r"""Rezende & Mohamed's :math:`U_1` (a ring with two modes), proper on :math:`\mathbb{R}^2`."""
    _check_2d(z, "energy_u1")
    z1 = z[..., 0]
    ring = _sq((z.norm(dim=-1) - 2.0) / 0.4)
    modes = torch.logaddexp(-_sq((z1 - 2.0) / 0.6), -_sq((z1 + 2.0) / 0.6))
    return ring - modes


def energy_u2(z: Tensor) -> Tensor:
    r""":math:`U_2` (a sine wave) plus the envelope :func:`energy_envelope`."""
    _check_2d(z, "energy_u2")
    return _sq((z[..., 1] - _w1(z[..., 0])) / 0.4) + energy_envelope(z)


def energy_u3(z: Tensor) -> Tensor:
    r""":math:`U_3` (a splitting sine wave) plus the envelope :func:`energy_envelope`."""
    _check_2d(z, "energy_u3")
    z1, z2 = z[..., 0], z[..., 1]
    d = z2 - _w1(z1)
    return -torch.logaddexp(-_sq(d / 0.35), -_sq((d + _w2(z1)) / 0.35)) + energy_envelope(z)


def energy_u4(z: Tensor) -> Tensor:
    r""":math:`U_4` (a sine wave with a step) plus the envelope :func:`energy_envelope`."""
    _check_2d(z, "energy_u4")
    z1, z2 = z[..., 0], z[..., 1]
    d = z2 - _w1(z1)
    return -torch.logaddexp(-_sq(d / 0.4), -_sq((d + _w3(z1)) / 0.35)) + energy_envelope(z)


#: Name → energy :math:`U` (the unnormalised log-density is :math:`-U`).
ENERGIES: dict[str, Callable[[Tensor], Tensor]] = {
    "u1": energy_u1,
    "u2": energy_u2,
    "u3": energy_u3,
    "u4": energy_u4,
}

#: :math:`\log \int_{\mathbb{R}^2} e^{-U(z)}\,dz` by quadrature (float64 Riemann/trapezoidal sum with
#: spacing 2e-3 on :math:`[-8, 8]^2`, outside which the mass is below 1e-13; re-checked on a coarser grid by
#: ``tests/data/test_targets.py``).
ENERGY_LOG_Z: dict[str, float] = {
    "u1": 1.877502,
    "u2": 2.227630,
    "u3": 2.787245,
    "u4": 2.856238,
}


def neal_funnel_log_prob(z: Tensor, scale: float = 3.0) -> Tensor:
    r"""Normalised log-density of Neal's funnel: :math:`v = z_1 \sim \mathcal N(0, \text{scale}^2)`,
    :math:`z_i \mid v \sim \mathcal N(0, e^{v})` for :math:`i \ge 2`. Shape ``(..., D)`` → ``(...)``."""
    if not isinstance(z, Tensor) or not z.is_floating_point():
        raise TypeError("neal_funnel_log_prob takes a floating-point torch.Tensor")
    if z.dim() < 1 or z.shape[-1] < 2:
        raise ValueError(
            f"neal_funnel_log_prob needs points of shape (..., D) with D >= 2, got {tuple(z.shape)}"
        )
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    v, x = z[..., 0], z[..., 1:]
    k = x.shape[-1]
    log_pv = -_sq(v / scale) - math.log(scale) - 0.5 * _LOG_2PI
    log_px = -0.5 * (x * x).sum(-1) * torch.exp(-v) - 0.5 * k * v - 0.5 * k * _LOG_2PI
    return log_pv + log_px


def neal_funnel_sample(
    n: int, dim: int = 10, scale: float = 3.0, generator: torch.Generator | None = None
) -> Tensor:
    """Exact samples ``(n, dim)`` of Neal's funnel (first coordinate is the log-variance ``v``)."""
    if n < 1 or dim < 2:
        raise ValueError(f"need n >= 1 and dim >= 2, got n={n}, dim={dim}")
    v = scale * torch.randn(n, 1, generator=generator)
    return torch.cat([v, torch.randn(n, dim - 1, generator=generator) * torch.exp(0.5 * v)], -1)


def banana_log_prob(z: Tensor, a: float = 1.0, sigma1: float = 1.0, sigma2: float = 0.5) -> Tensor:
    r"""Normalised log-density of the banana :math:`z_1 \sim \mathcal N(a, \sigma_1^2)`,
    :math:`z_2 \mid z_1 \sim \mathcal N(z_1^2, \sigma_2^2)`."""
    _check_2d(z, "banana_log_prob")
    if sigma1 <= 0 or sigma2 <= 0:
        raise ValueError(f"sigma1 and sigma2 must be positive, got {sigma1}, {sigma2}")
    z1, z2 = z[..., 0], z[..., 1]
    return -_sq((z1 - a) / sigma1) - _sq((z2 - z1 * z1) / sigma2) - math.log(sigma1 * sigma2) - _LOG_2PI


def banana_sample(
    n: int, a: float = 1.0, sigma1: float = 1.0, sigma2: float = 0.5, generator: torch.Generator | None = None
) -> Tensor:
    """Exact samples ``(n, 2)`` of :func:`banana_log_prob`."""
    if n < 1:
        raise ValueError(f"need n >= 1, got {n}")
    z1 = a + sigma1 * torch.randn(n, generator=generator)
    z2 = z1 * z1 + sigma2 * torch.randn(n, generator=generator)
    return torch.stack([z1, z2], -1)


#: Target name → unnormalised log-density constructor ``(dim) -> log_density``.
TARGETS: tuple[str, ...] = ("u1", "u2", "u3", "u4", "funnel", "banana")


def target_log_density(name: str, dim: int = 10) -> Callable[[Tensor], Tensor]:
    """The (unnormalised) log-density ``z ↦ log p(z)`` of a named target (see :data:`TARGETS`).

    ``dim`` is used by ``"funnel"`` only. Energies return :math:`-U(z)`; funnel and banana are normalised.
    """
    if name in ENERGIES:
        energy = ENERGIES[name]
        return lambda z: -energy(z)
    if name == "funnel":
        if dim < 2:
            raise ValueError(f"the funnel needs dim >= 2, got {dim}")

        def funnel(z: Tensor) -> Tensor:
            if z.shape[-1] != dim:
                raise ValueError(f"funnel target has dim {dim}, got points of shape {tuple(z.shape)}")
            return neal_funnel_log_prob(z)

        return funnel
    if name == "banana":
        return banana_log_prob
    raise ValueError(f"unknown target {name!r}; choose from {TARGETS}")
