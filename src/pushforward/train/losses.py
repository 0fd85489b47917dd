r"""Loss objects: what :func:`pushforward.train.train` minimises.

A loss object is called as ``loss(model, batch) -> Tensor`` (a scalar: the mean over the batch), where
``batch`` is the tuple a ``DataLoader`` yields, ``(x,)`` or ``(x, context)``, and names its ``units``. It may
define ``validation(model, batch)`` (a deterministic score), ``check(model)`` (refuse a model before any
work) and ``max_worsening(model)`` (the divergence margin); see :mod:`pushforward.train.engine`.

- :class:`MaximumLikelihood`: :math:`-\frac1B\sum_i \log p(x_i \mid c_i)` (+ ``model.penalty()`` when the
  model defines one), in nats per row;
- :class:`FlowMatching`: the conditional flow-matching loss of
  :func:`~pushforward.train.flow_matching.flow_matching_loss` (optimal-transport path);
- :class:`BitsPerDim`: the dequantization bound of a
  :class:`~pushforward.flows.dequantization.DequantizedFlow` in bits per dimension.

The reverse-KL (ELBO) loss of variational inference is :class:`pushforward.inference.vi.ReverseKL`.

Reference: Papamakarios, Nalisnick, Rezende, Mohamed & Lakshminarayanan, "Normalizing Flows for
Probabilistic Modeling and Inference", JMLR 2021 (maximum likelihood); Lipman et al., "Flow Matching for
Generative Modeling", ICLR 2023; Theis, van den Oord & Bethge, "A note on the evaluation of generative
models", ICLR 2016 (bits/dim).

Example:
    >>> from pushforward.flows import RealNVP
    >>> flow = RealNVP(2, layers=1, hidden=(4,))
    >>> loss = MaximumLikelihood()
    >>> loss(flow, (torch.zeros(3, 2),)).shape, loss.units
    (torch.Size([]), 'nats')
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..data.images import check_levels
from ..flows.dequantization import DequantizedFlow
from .data import split
from .flow_matching import continuous_layers, flow_matching_loss, path_positions

__all__ = ["BitsPerDim", "FlowMatching", "MaximumLikelihood"]


class MaximumLikelihood:
    r"""Negative log-likelihood :math:`-\frac1B\sum_i\log p(x_i \mid c_i)` in nats per row; a model that
    defines ``penalty()`` has it added to the training loss (not to the validation score).

    The model is called as ``model(x, context)`` (a :class:`~pushforward.Flow`'s ``forward`` is its
    ``log_prob``), so anything offering ``log_prob``, ``forward = log_prob``, ``event_shape``,
    ``context_features`` and ``features`` trains with it.

    Example:
        >>> from pushforward.flows import MAF
        >>> flow = MAF(2, context=1, layers=1, hidden=(8,))
        >>> float(MaximumLikelihood()(flow, (torch.zeros(4, 2), torch.ones(4, 1)))) > 0
        True
    """

    units = "nats"

    def __call__(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x, c = split(batch)
        loss = -model(x, c).mean()
        penalty = getattr(model, "penalty", None)
        return loss + penalty() if callable(penalty) else loss

    def validation(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x, c = split(batch)
        return -model(x, c).mean()

    def check(self, model: nn.Module) -> None:
        if not hasattr(model, "event_shape"):
            raise TypeError(
                f"maximum likelihood trains a density model with log_prob and event_shape, got {type(model).__name__}"
            )

    def max_worsening(self, model: nn.Module) -> float:
        """100 nats per dimension: far beyond overfitting, the optimisation blew up."""
        return 100.0 * float(getattr(model, "features", math.prod(model.event_shape)))


class FlowMatching:
    r"""Conditional flow matching (optimal-transport path) for a flow of continuous layers; see
    :mod:`pushforward.train.flow_matching`. A model with an ``embedding`` module has it applied to the
    context first (trained jointly). Validation draws its base samples and path times from a generator
    seeded once (``validation_seed``), so the score is deterministic.

    Args:
        sigma_min: :math:`\sigma_{\min}` of the path, in ``[0, 1)``.
        time_exponent: :math:`\beta \ge 0` of the time density :math:`\propto s^\beta` (0: uniform).
        validation_seed: Seed of the validation draws.

    Example:
        >>> from pushforward.flows import FFJORD
        >>> loss = FlowMatching()
        >>> loss(FFJORD(2, hidden=(8,)), (torch.randn(4, 2),)).shape
        torch.Size([])
    """

    units = "flow-matching loss"
    unused_parameters = True  # a layer of a stack may get no row in a batch

    def __init__(
        self, *, sigma_min: float = 1e-4, time_exponent: float = 0.0, validation_seed: int = 0
    ) -> None:
        ok = isinstance(sigma_min, (int, float)) and not isinstance(sigma_min, bool)
        if not ok or not 0.0 <= sigma_min < 1.0:
            raise ValueError(f"sigma_min must be a number in [0, 1), got {sigma_min!r}")
        ok = isinstance(time_exponent, (int, float)) and not isinstance(time_exponent, bool)
        if not ok or not 0.0 <= time_exponent < math.inf:
            raise ValueError(f"time_exponent must be a finite number >= 0, got {time_exponent!r}")
        self.sigma_min, self.time_exponent = float(sigma_min), float(time_exponent)
        self.validation_seed = int(validation_seed)

    @staticmethod
    def _terms(model: nn.Module, batch: tuple[Tensor, ...]) -> tuple[nn.Module, Tensor, Tensor | None]:
        """``(flow, x, context)``: a model with ``flow_inputs`` (an embedded flow, a posterior) maps the batch
        into its flow's space first."""
        x, c = split(batch)
        inputs = getattr(model, "flow_inputs", None)
        return inputs(x, c) if inputs is not None else (model, x, c)

    def __call__(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        flow, x, c = self._terms(model, batch)
        return flow_matching_loss(flow, x, c, sigma_min=self.sigma_min, time_exponent=self.time_exponent)

    def validation(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        flow, x, c = self._terms(model, batch)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.validation_seed)
            x0 = flow.base.sample((x.shape[0],)).to(x)
            u = path_positions(x.shape[0], self.time_exponent, x)
        return flow_matching_loss(flow, x, c, sigma_min=self.sigma_min, x0=x0, u=u)

    def check(self, model: nn.Module) -> None:
        continuous_layers(model.flow if hasattr(model, "flow_inputs") else model)


class BitsPerDim:
    r"""Bits per dimension of a :class:`~pushforward.flows.dequantization.DequantizedFlow` (uniform or variational
    dequantization): :math:`-\log_2 P(x) / D` from the dequantization bound; batches are ``(pixels,)`` or
    ``(pixels, context)`` with integer-valued pixels in ``[0, levels)``.

    Example:
        >>> from pushforward.flows import Glow
        >>> from pushforward.flows.dequantization import DequantizedFlow
        >>> model = DequantizedFlow(Glow((1, 4, 4), levels=1, steps=1, hidden=(8,)), levels=4)
        >>> BitsPerDim()(model, (torch.randint(0, 4, (2, 1, 4, 4)).float(),)).shape
        torch.Size([])
    """

    units = "bits/dim"

    def __call__(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x, c = split(batch)
        return model.bits_per_dim(x, c).mean()

    def validation(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x, c = split(batch)
        check_levels(x, model.levels)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            return model.bits_per_dim(x, c).mean()

    def check(self, model: nn.Module) -> None:
        if not isinstance(model, DequantizedFlow):
            raise TypeError(f"bits/dim trains a DequantizedFlow, got {type(model).__name__}")

    def max_worsening(self, model: nn.Module) -> float:
        return 100.0
