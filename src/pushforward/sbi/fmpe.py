r"""Flow-matching posterior estimation (FMPE): an amortised posterior from a conditional continuous flow
trained by flow matching instead of maximum likelihood.

Given simulations :math:`(\theta_i, x_i)`, :math:`\theta_i \sim p(\theta)`, :math:`x_i \sim p(x \mid \theta_i)`,
the conditional flow-matching loss

.. math:: \mathbb E_{s, \theta_0 \sim \mathcal N(0, I), (\theta, x)}
    \big\| v(\psi_s(\theta_0 \mid \theta), s; x) - \dot\psi_s(\theta_0 \mid \theta) \big\|^2

(optimal-transport path :math:`\psi_s`, see :mod:`pushforward.train.flow_matching`) is minimised by the
velocity field whose ODE carries :math:`\mathcal N(0, I)` onto :math:`p(\theta \mid x)` for every :math:`x`.
Training needs no ODE solve; the exact density afterwards comes from the instantaneous change of variables.
Here the field models the standardised, unconstrained parameter of a :class:`~pushforward.sbi.Posterior`,
so samples stay on the prior's support and ``log_prob`` is a normalised density of :math:`\theta`.

Reference: Wildberger, Dax, Buchholz, Green, Macke & Schölkopf, "Flow Matching for Scalable
Simulation-Based Inference", NeurIPS 2023; Lipman, Chen, Ben-Hamu, Nickel & Le, "Flow Matching for
Generative Modeling", ICLR 2023.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..flows.continuous import FFJORD
from ..flows.core import Flow
from ..train.config import TrainConfig
from ..train.losses import FlowMatching
from .estimator import PosteriorEstimator

__all__ = ["FMPE"]


class FMPE(PosteriorEstimator):
    r"""Flow-matching posterior estimation: ``FMPE(prior, ...).fit(theta, x)`` fits
    :math:`q(\theta \mid x)` by flow matching and returns the same :class:`~pushforward.sbi.Posterior` as
    :class:`~pushforward.sbi.NPE`, trained by the same engine under the same defaults
    (:data:`~pushforward.sbi.estimator.SBI_DEFAULTS`), with the
    :class:`~pushforward.train.losses.FlowMatching` loss in place of maximum likelihood (so it also gets
    checkpoints, ``resume`` and divergence detection).

    Args:
        prior: The prior (``torch.distributions`` distribution, :class:`pushforward.distributions.BoxUniform`
            or ``None``); only its support is used.
        flow: ``"auto"`` (``FFJORD(d, context=k, hidden=hidden, trace="exact")``) or a conditional flow of
            :class:`~pushforward.transforms.ContinuousFlow` layers on ``(d,)``.
        embedding: Optional network ``(batch, *x_shape) → (batch, k)``, trained jointly.
        hidden: Hidden widths of the default flow's velocity network.
        sigma_min, time_exponent: The path's :math:`\sigma_{\min}` and the time density's exponent
            (:func:`~pushforward.train.flow_matching.flow_matching_loss`).
        z_score_x, validation_fraction, config, progress, settings: See
            :class:`~pushforward.sbi.estimator.PosteriorEstimator` (e.g. ``epochs=50, ema=0.999, seed=0``).

    Example:
        >>> import torch
        >>> prior = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(1), 1.0), 1)
        >>> theta = prior.sample((400,))
        >>> x = theta + 0.5 * torch.randn(400, 1)
        >>> post = FMPE(prior, hidden=(16, 16), epochs=2, seed=0).fit(theta, x)
        >>> post.sample(10, torch.tensor([0.3])).shape
        torch.Size([10, 1])
    """

    def __init__(
        self,
        prior: object | None,
        *,
        flow: Flow | str = "auto",
        embedding: nn.Module | None = None,
        hidden: Sequence[int] = (64, 64, 64),
        sigma_min: float = 1e-4,
        time_exponent: float = 0.0,
        z_score_x: str | None = "auto",
        validation_fraction: float = 0.1,
        config: TrainConfig | None = None,
        progress: bool = False,
        **settings: object,
    ) -> None:
        if not (flow == "auto" or isinstance(flow, nn.Module)):
            raise ValueError(f"flow must be 'auto' or a Flow of continuous layers, got {flow!r}")
        self.loss_object = FlowMatching(sigma_min=sigma_min, time_exponent=time_exponent)  # validates them
        super().__init__(
            prior,
            flow=flow,
            embedding=embedding,
            z_score_x=z_score_x,
            validation_fraction=validation_fraction,
            config=config,
            progress=progress,
            **settings,
        )
        self.hidden = tuple(hidden)

    def flow_kinds(self) -> list[str]:
        return ["ffjord"]

    def make_flow(self, kind: str, d: int, context: int) -> Flow:
        return FFJORD(d, context=context, hidden=self.hidden, trace="exact")

    def make_loss(self) -> FlowMatching:
        return self.loss_object
