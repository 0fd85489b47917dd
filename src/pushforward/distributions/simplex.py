r"""Base distributions on the open probability simplex :math:`\Delta^{n-1}` (full probability vectors)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..transforms.manifold import Simplex
from .base import Distribution, _sample_shape

__all__ = ["Dirichlet", "log_dirichlet_density"]

_MEASURES = ("hausdorff", "lebesgue")


def log_dirichlet_density(p: Tensor, concentration: Tensor) -> Tensor:
    r"""Dirichlet log-density w.r.t. the Lebesgue measure of the first :math:`n-1` coordinates:

    .. math:: \log p(x) = \sum_i (\alpha_i - 1)\log x_i + \log\Gamma\big(\textstyle\sum_i\alpha_i\big)
        - \sum_i \log\Gamma(\alpha_i).
    """
    return (
        ((concentration - 1) * p.log()).sum(-1)
        + torch.lgamma(concentration.sum(-1))
        - torch.lgamma(concentration).sum(-1)
    )


class Dirichlet(Distribution):
    r"""The Dirichlet distribution :math:`\operatorname{Dir}(\alpha)` on the simplex, as a flow base.

    ``measure`` fixes the reference measure of the density:

    * ``"hausdorff"`` (default): the surface measure of the simplex embedded in :math:`\mathbb{R}^n`, the
      measure of :mod:`pushforward.manifolds` (the same convention as the sphere distributions). It is
      :math:`\sqrt{n}` times the Lebesgue measure of :math:`(p_1, \dots, p_{n-1})`, so the log-density is
      the textbook one minus :math:`\tfrac12\log n`.
    * ``"lebesgue"``: the textbook density on the first :math:`n - 1` coordinates (the values of
      ``torch.distributions.Dirichlet``).

    Flows on the simplex (:mod:`pushforward.transforms.simplex`) have volume ratios valid for both, so a
    ``Flow`` inherits the base's measure. With ``learnable=True``, :math:`\log\alpha` is a parameter.
    Samples are reparameterised (``torch.distributions.Dirichlet.rsample``).

    Reference: Kotz, Balakrishnan & Johnson, "Continuous Multivariate Distributions", 2000, ch. 49.

    Example:
        >>> d = Dirichlet(torch.tensor([2.0, 2.0, 2.0]), measure="lebesgue")
        >>> d.log_prob(torch.tensor([[1 / 3, 1 / 3, 1 / 3]]))  # log(120 / 27)
        tensor([1.4917])
    """

    def __init__(
        self, concentration: Tensor | Sequence[float], *, measure: str = "hausdorff", learnable: bool = False
    ) -> None:
        alpha = torch.as_tensor(concentration, dtype=torch.get_default_dtype()).clone()
        if alpha.dim() != 1 or alpha.shape[0] < 2:
            raise ValueError(
                f"concentration must be a vector of n >= 2 values, got shape {tuple(alpha.shape)}"
            )
        if not bool((alpha > 0).all()):
            raise ValueError("concentration values must be positive")
        if measure not in _MEASURES:
            raise ValueError(f"measure must be one of {_MEASURES}, got {measure!r}")
        super().__init__(alpha.shape[0])
        self.simplex = Simplex(alpha.shape[0])
        self.measure = measure
        if learnable:
            self.log_concentration = nn.Parameter(alpha.log())
        else:
            self.register_buffer("log_concentration", alpha.log())

    @property
    def concentration(self) -> Tensor:
        r"""The concentrations :math:`\alpha`."""
        return self.log_concentration.exp()

    def log_prob(self, z: Tensor) -> Tensor:
        self.simplex.check(z, "Dirichlet.log_prob input")
        lp = log_dirichlet_density(z, self.concentration)
        if self.measure == "hausdorff":
            lp = lp - 0.5 * math.log(self.event_shape[0])
        return lp

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        shape = _sample_shape(sample_shape)
        x = torch.distributions.Dirichlet(self.concentration).rsample(torch.Size(shape))
        tiny = torch.finfo(x.dtype).tiny
        x = x.clamp_min(tiny)
        return x / x.sum(-1, keepdim=True)

    def extra_repr(self) -> str:
        return f"n={self.event_shape[0]}, measure={self.measure!r}"
