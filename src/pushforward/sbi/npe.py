r"""Neural posterior estimation (NPE): train a conditional flow on simulations to get an amortised posterior.

Given simulations :math:`(\theta_i, x_i)` with :math:`\theta_i \sim p(\theta)` and
:math:`x_i \sim p(x \mid \theta_i)`, maximising :math:`\sum_i \log q(\theta_i \mid x_i)` over a conditional
density :math:`q` makes :math:`q(\theta \mid x)` approach the posterior :math:`p(\theta \mid x)` for every
``x`` at once (the expected KL divergence to the posterior is minimised). Here :math:`q` is a
:class:`~pushforward.sbi.Posterior`: a conditional flow on the standardised, unconstrained parameter, so its
mass stays on the prior's support.

Reference: Papamakarios & Murray, "Fast ε-free Inference of Simulation Models with Bayesian Conditional
Density Estimation", NeurIPS 2016; Lueckmann, Boelts, Greenberg, Gonçalves & Macke, "Benchmarking
Simulation-Based Inference", AISTATS 2021.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..flows.autoregressive import MAF, NSF
from ..flows.core import Flow
from ..train.config import TrainConfig
from ..train.losses import MaximumLikelihood
from .estimator import PosteriorEstimator

__all__ = ["NPE"]


class NPE(PosteriorEstimator):
    r"""Neural posterior estimation: fit :math:`q(\theta \mid x)` to simulations and return a
    :class:`~pushforward.sbi.Posterior`.

    ``NPE(prior, ...).fit(theta, x)`` splits the simulations into training and validation sets
    (``validation_fraction``) and trains the posterior with the one engine (:func:`pushforward.train.train`,
    maximum likelihood of :math:`q(\theta \mid x)` in θ's units) under :data:`~pushforward.sbi.estimator.SBI_DEFAULTS`
    (Adam, clipping, the rate annealed to 0 by a cosine) until the validation loss has not improved for
    ``patience`` epochs; the best weights are kept and the history is ``posterior.history``.

    By default (``flow="auto"``) two flows are trained on the same split, an affine MAF and a neural spline
    flow, and the one with the lower validation loss is kept (``posterior.flow_scores`` holds both losses,
    ``posterior.flow_kind`` the choice). Neither wins everywhere: on sbibm's gaussian_linear (a Gaussian
    posterior) the spline flow overfits 10,000 simulations within a few epochs and ends 0.11 nats per
    held-out simulation worse than the MAF, while on two_moons and slcp the MAF is 0.3 and 1.1 nats worse than the
    spline flow; the validation loss picks the better one on all three, for 35-65 % more training time (see
    ``benchmarks/results/issue16/README.md``). ``flow="nsf"`` or ``"maf"`` trains one of them only.

    The annealed rate matters: on sbibm's two_moons and slcp at 10,000 simulations, a constant rate of 5e-4
    with 20 epochs of patience (common NPE practice) stopped on a noisy validation curve and ended 0.17-0.18
    nats per held-out simulation worse than this default, in about the same time (on gaussian_linear, which
    overfits within 10 epochs, it was 0.03 nats better); see ``benchmarks/results/issue16/README.md``.

    Args:
        prior: The prior (``torch.distributions`` distribution, a
            :class:`pushforward.distributions.BoxUniform`, or ``None`` for an unbounded parameter); only
            its support is used, so bounded priors give posteriors with all their mass inside it.
        flow: ``"auto"`` (default: train both below, keep the better on validation), ``"nsf"``
            (``NSF(d, context=k, layers=layers, hidden=hidden, bins=bins)``), ``"maf"``
            (``MAF(d, context=k, layers=layers, hidden=hidden)``), or a conditional flow on ``(d,)`` with
            ``context_features`` equal to the embedding size ``k``.
        embedding: Optional network ``(batch, *x_shape) → (batch, k)`` (see :mod:`pushforward.nets.embedding`),
            trained jointly (with ``flow="auto"``, each candidate trains its own copy and the winner's weights
            are loaded into this module); needed when ``x`` is not a vector.
        z_score_x, validation_fraction, config, progress, settings: See
            :class:`~pushforward.sbi.estimator.PosteriorEstimator` (e.g. ``epochs=50, seed=0``).

    Raises:
        TypeError: a prior that is not a distribution (e.g. a string).
        ValueError: on mismatched or non-finite simulations, a prior of the wrong event shape.
        TrainingDiverged: when training diverges.

    Example:
        >>> import torch
        >>> prior = torch.distributions.Independent(torch.distributions.Uniform(-torch.ones(1), torch.ones(1)), 1)
        >>> theta = prior.sample((500,))
        >>> x = theta + 0.1 * torch.randn(500, 1)
        >>> npe = NPE(prior, layers=1, hidden=(16, 16), epochs=2, seed=0)
        >>> post = npe.fit(theta, x)
        >>> post.sample(10, torch.tensor([0.3])).shape
        torch.Size([10, 1])
    """

    def __init__(
        self,
        prior: object | None,
        *,
        flow: Flow | str = "auto",
        embedding: nn.Module | None = None,
        layers: int = 5,
        hidden: Sequence[int] = (64, 64),
        bins: int = 8,
        z_score_x: str | None = "auto",
        validation_fraction: float = 0.1,
        config: TrainConfig | None = None,
        progress: bool = False,
        **settings: object,
    ) -> None:
        if isinstance(flow, str) and flow not in ("auto", "nsf", "maf"):
            raise ValueError(f"flow must be 'auto', 'nsf', 'maf' or a Flow, got {flow!r}")
        if not isinstance(flow, (str, nn.Module)):
            raise TypeError(f"flow must be 'auto', 'nsf', 'maf' or a Flow, got {type(flow).__name__}")
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
        self.layers, self.hidden, self.bins = layers, tuple(hidden), bins

    def flow_kinds(self) -> list[str]:
        return ["maf", "nsf"] if self.flow == "auto" else [str(self.flow)]

    def make_flow(self, kind: str, d: int, context: int) -> Flow:
        if kind == "nsf":
            return NSF(d, context=context, layers=self.layers, hidden=self.hidden, bins=self.bins)
        return MAF(d, context=context, layers=self.layers, hidden=self.hidden)

    def make_loss(self) -> MaximumLikelihood:
        return MaximumLikelihood()
