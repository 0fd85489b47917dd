r"""Base distributions on the unit sphere :math:`\mathbb{S}^{n-1} \subset \mathbb{R}^n`.

Densities are with respect to the surface (Hausdorff) measure of the sphere, the measure the spherical
flows of :mod:`pushforward.transforms.sphere` use, so that ``Flow(transform, VonMisesFisher(...))`` has
densities integrating to 1 over the sphere. Points are unit vectors of shape ``(..., n)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..transforms.manifold import Sphere, sphere_area, sphere_projection
from .base import Distribution, _sample_shape

__all__ = [
    "UniformSphere",
    "VonMisesFisher",
    "VonMisesFisherMixture",
    "log_bessel_iv",
    "log_vmf_normalizer",
    "sample_vmf",
]


# ---------------------------------------------------------------------------------- pure functions
def log_bessel_iv(order: float, x: Tensor) -> Tensor:
    r""":math:`\log I_\nu(x)` of the modified Bessel function of the first kind (:math:`\nu \ge 0`,
    :math:`x > 0`), from its power series summed in log space (exact to rounding, differentiable in ``x``):

    .. math:: \log I_\nu(x) = \operatorname{logsumexp}_{k=0}^{K}\Big[(2k + \nu)\log\tfrac{x}{2}
        - \log k! - \log\Gamma(k + \nu + 1)\Big],

    with :math:`K = \lceil x_{\max}/2 + 12\sqrt{x_{\max}} + 60\rceil` (the terms peak at :math:`k \approx x/2`
    and decay like a Gaussian of width :math:`O(\sqrt{x})` beyond it). Computed in float64. The cost is
    :math:`O(x)` per value, fine for concentrations up to :math:`\sim 10^5`.
    """
    x64 = x.to(torch.float64).clamp_min(1e-300)
    K = math.ceil(float(x64.detach().max()) / 2 + 12 * math.sqrt(float(x64.detach().max())) + 60)
    k = torch.arange(K + 1, dtype=torch.float64, device=x.device)
    terms = (
        (2 * k + order) * torch.log(x64.unsqueeze(-1) / 2) - torch.lgamma(k + 1) - torch.lgamma(k + order + 1)
    )
    return torch.logsumexp(terms, dim=-1).to(x.dtype)


def log_vmf_normalizer(concentration: Tensor, n: int) -> Tensor:
    r"""Log of the von Mises–Fisher normaliser on :math:`\mathbb{S}^{n-1}` (w.r.t. surface measure):

    .. math:: \log C_n(\kappa) = \nu\log\kappa - (\nu + 1)\log 2\pi - \log I_\nu(\kappa),
        \qquad \nu = n/2 - 1,

    with its limit :math:`-\log|\mathbb{S}^{n-1}|` at :math:`\kappa = 0` (uniform). For :math:`n = 3`,
    :math:`C_3(\kappa) = \kappa / (4\pi\sinh\kappa)`.
    """
    nu = 0.5 * n - 1.0
    kappa = concentration.clamp_min(1e-30)
    out = nu * torch.log(kappa) - (nu + 1) * math.log(2 * math.pi) - log_bessel_iv(nu, kappa)
    return torch.where(concentration > 0, out, torch.full_like(out, -math.log(sphere_area(n))))


def _wood_cosines(kappa: Tensor, n: int) -> Tensor:
    r"""Wood's (1994) rejection sampler for :math:`w = \mu^\top x` under vMF(:math:`\kappa`) on
    :math:`\mathbb{S}^{n-1}`, one draw per entry of ``kappa`` (not reparameterised)."""
    kappa = kappa.detach().to(torch.float64)
    m = n - 1
    b = m / (2 * kappa + torch.sqrt(4 * kappa * kappa + m * m))
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + m * torch.log1p(-x0 * x0)
    beta = torch.distributions.Beta(
        torch.tensor(0.5 * m, dtype=torch.float64), torch.tensor(0.5 * m, dtype=torch.float64)
    )
    w = torch.empty_like(kappa)
    todo = torch.ones_like(kappa, dtype=torch.bool)
    while bool(todo.any()):
        idx = todo.nonzero().squeeze(-1)
        zb = beta.sample((idx.numel(),)).to(kappa.device)
        u = torch.rand(idx.numel(), dtype=torch.float64, device=kappa.device)
        bi, x0i, ci, ki = b[idx], x0[idx], c[idx], kappa[idx]
        wi = (1 - (1 + bi) * zb) / (1 - (1 - bi) * zb)
        ok = ki * wi + m * torch.log1p(-x0i * wi) - ci >= torch.log(u)
        w[idx[ok]] = wi[ok]
        todo[idx[ok]] = False
    return w


def sample_vmf(loc: Tensor, concentration: Tensor) -> Tensor:
    r"""One von Mises–Fisher draw per row of ``loc`` (``(N, n)`` unit mean directions) and
    ``concentration`` (``(N,)``).

    :math:`x = w\mu + \sqrt{1 - w^2}\,v` with :math:`v` uniform on the unit vectors orthogonal to
    :math:`\mu` and :math:`w = \mu^\top x`. For :math:`n = 3`, :math:`w = 1 + \kappa^{-1}\log(u + (1-u)
    e^{-2\kappa})` by inverting its CDF, which is reparameterised in :math:`\kappa` and :math:`\mu`; for other
    :math:`n`, :math:`w` comes from Wood's rejection sampler (reparameterised in :math:`\mu` only).

    Reference: Wood, "Simulation of the von Mises Fisher distribution", 1994.
    """
    N, n = loc.shape
    if n == 3:
        kappa = concentration.clamp_min(1e-12)
        u = torch.rand(N, dtype=loc.dtype, device=loc.device)
        w = 1 + torch.log(u + (1 - u) * torch.exp(-2 * kappa)) / kappa
    else:
        w = _wood_cosines(concentration, n).to(loc.dtype)
    xi = torch.randn(N, n, dtype=loc.dtype, device=loc.device)
    v = F.normalize(xi - (xi * loc).sum(-1, keepdim=True) * loc, dim=-1)
    w = w.clamp(-1.0, 1.0).unsqueeze(-1)
    return sphere_projection(w * loc + torch.sqrt((1 - w * w).clamp_min(0)) * v)


def _as_tensor(value: Tensor | Sequence[float] | float) -> Tensor:
    return torch.as_tensor(value, dtype=torch.get_default_dtype()).clone()


# ---------------------------------------------------------------------------------- distributions
class UniformSphere(Distribution):
    r"""The uniform distribution on :math:`\mathbb{S}^{n-1}`: :math:`\log p(x) = -\log|\mathbb{S}^{n-1}|`,
    :math:`|\mathbb{S}^{n-1}| = 2\pi^{n/2}/\Gamma(n/2)`; samples are normalised standard normal vectors.

    Example:
        >>> UniformSphere(3).log_prob(torch.tensor([[0.0, 0.0, 1.0]]))  # -log(4 pi)
        tensor([-2.5310])
    """

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.sphere = Sphere(n)
        self.register_buffer("_zero", torch.zeros(()))

    def log_prob(self, z: Tensor) -> Tensor:
        self.sphere.check(z, "UniformSphere.log_prob input")
        return torch.full(
            z.shape[:-1], -math.log(sphere_area(self.event_shape[0])), dtype=z.dtype, device=z.device
        )

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        shape = _sample_shape(sample_shape) + self.event_shape
        return sphere_projection(torch.randn(shape, dtype=self._zero.dtype, device=self._zero.device))


class VonMisesFisher(Distribution):
    r"""The von Mises–Fisher distribution on :math:`\mathbb{S}^{n-1}`:

    .. math:: p(x) = C_n(\kappa)\exp(\kappa\,\mu^\top x), \qquad
        C_n(\kappa) = \frac{\kappa^{n/2-1}}{(2\pi)^{n/2} I_{n/2-1}(\kappa)},

    with mean direction :math:`\mu` (``loc``, normalised internally) and concentration :math:`\kappa \ge 0`.
    With ``learnable=True``, :math:`\mu` (unnormalised) and :math:`\log\kappa` are parameters.

    Reference: Mardia & Jupp, "Directional Statistics", 2000; Wood, "Simulation of the von Mises Fisher
    distribution", 1994 (sampling).

    Example:
        >>> vmf = VonMisesFisher(torch.tensor([0.0, 0.0, 1.0]), 10.0)
        >>> x = vmf.sample((5,))
        >>> vmf.log_prob(x).shape
        torch.Size([5])
    """

    def __init__(
        self, loc: Tensor | Sequence[float], concentration: Tensor | float = 1.0, *, learnable: bool = False
    ) -> None:
        loc_t = _as_tensor(loc)
        if loc_t.dim() != 1 or loc_t.shape[0] < 2 or not bool(loc_t.norm() > 0):
            raise ValueError(f"loc must be a non-zero vector of size n >= 2, got shape {tuple(loc_t.shape)}")
        kappa = _as_tensor(concentration)
        if kappa.dim() != 0 or not bool(kappa > 0):
            raise ValueError(f"concentration must be a positive scalar, got {concentration}")
        super().__init__(loc_t.shape[0])
        self.sphere = Sphere(loc_t.shape[0])
        raw = F.normalize(loc_t, dim=0)
        if learnable:
            self.raw_loc = nn.Parameter(raw)
            self.log_concentration = nn.Parameter(kappa.log())
        else:
            self.register_buffer("raw_loc", raw)
            self.register_buffer("log_concentration", kappa.log())

    @property
    def loc(self) -> Tensor:
        """The unit mean direction :math:`\\mu`."""
        return F.normalize(self.raw_loc, dim=0)

    @property
    def concentration(self) -> Tensor:
        """The concentration :math:`\\kappa`."""
        return self.log_concentration.exp()

    def log_prob(self, z: Tensor) -> Tensor:
        self.sphere.check(z, "VonMisesFisher.log_prob input")
        kappa = self.concentration
        return log_vmf_normalizer(kappa, self.event_shape[0]) + kappa * (z @ self.loc)

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        shape = _sample_shape(sample_shape)
        N = math.prod(shape)
        loc = self.loc.expand(N, -1)
        x = sample_vmf(loc, self.concentration.expand(N))
        return x.reshape(*shape, *self.event_shape)


class VonMisesFisherMixture(Distribution):
    r"""A mixture of ``k`` von Mises–Fisher distributions on :math:`\mathbb{S}^{n-1}`:

    .. math:: p(x) = \sum_{j=1}^k \pi_j\, C_n(\kappa_j)\exp(\kappa_j \mu_j^\top x), \qquad
        \pi = \operatorname{softmax}(\ell).

    Used both as a multimodal target and (``learnable=True``) as a trainable base. Samples pick a component,
    then draw from it (the component choice carries no gradient).

    Args:
        locs: Mean directions ``(k, n)`` (normalised internally).
        concentrations: :math:`\kappa_j`, a positive scalar or ``(k,)``.
        weights: Mixture weights ``(k,)`` (normalised), default uniform.
        learnable: Make directions, log-concentrations and logits parameters.

    Example:
        >>> mix = VonMisesFisherMixture(torch.eye(3), 20.0)
        >>> mix.log_prob(mix.sample((4,))).shape
        torch.Size([4])
    """

    def __init__(
        self,
        locs: Tensor | Sequence[Sequence[float]],
        concentrations: Tensor | Sequence[float] | float = 1.0,
        weights: Tensor | Sequence[float] | None = None,
        *,
        learnable: bool = False,
    ) -> None:
        locs_t = _as_tensor(locs)
        if locs_t.dim() != 2 or locs_t.shape[1] < 2 or not bool((locs_t.norm(dim=1) > 0).all()):
            raise ValueError(
                f"locs must be (k, n) non-zero vectors with n >= 2, got shape {tuple(locs_t.shape)}"
            )
        k, n = locs_t.shape
        kappa = _as_tensor(concentrations).expand(k).clone()
        if not bool((kappa > 0).all()):
            raise ValueError("concentrations must be positive")
        w = torch.ones(k) if weights is None else _as_tensor(weights)
        if w.shape != (k,) or not bool((w > 0).all()):
            raise ValueError(f"weights must be {k} positive numbers")
        super().__init__(n)
        self.sphere = Sphere(n)
        values = {
            "raw_locs": F.normalize(locs_t, dim=1),
            "log_concentrations": kappa.log(),
            "logits": (w / w.sum()).log(),
        }
        for name, value in values.items():
            if learnable:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    @property
    def locs(self) -> Tensor:
        """Unit mean directions ``(k, n)``."""
        return F.normalize(self.raw_locs, dim=1)

    @property
    def concentrations(self) -> Tensor:
        """Concentrations ``(k,)``."""
        return self.log_concentrations.exp()

    def log_prob(self, z: Tensor) -> Tensor:
        self.sphere.check(z, "VonMisesFisherMixture.log_prob input")
        kappa = self.concentrations
        comp = log_vmf_normalizer(kappa, self.event_shape[0]) + kappa * (z @ self.locs.T)
        return torch.logsumexp(comp + F.log_softmax(self.logits, -1), dim=-1)

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        shape = _sample_shape(sample_shape)
        N = math.prod(shape)
        idx = torch.multinomial(F.softmax(self.logits.detach(), -1), N, replacement=True)
        x = sample_vmf(self.locs[idx], self.concentrations[idx])
        return x.reshape(*shape, *self.event_shape)
