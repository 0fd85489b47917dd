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

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..flows.continuous import FFJORD
from ..flows.core import Flow
from ..train.config import TrainConfig
from ..train.engine import train
from ..train.losses import FlowMatching
from .posterior import Posterior, check_prior, check_simulations, prepare_posterior

__all__ = ["FMPE"]


def FMPE(
    prior: object | None,
    theta: Tensor,
    x: Tensor,
    *,
    flow: Flow | None = None,
    embedding: nn.Module | None = None,
    hidden: Sequence[int] = (64, 64, 64),
    z_score_x: str | None = "auto",
    validation_fraction: float = 0.1,
    batch_size: int = 200,
    lr: float = 1e-3,
    max_epochs: int = 500,
    patience: int = 20,
    sigma_min: float = 1e-4,
    time_exponent: float = 0.0,
    clip_grad: float | None = 5.0,
    schedule: str | None = None,
    ema: float | None = None,
    seed: int | None = None,
    checkpoint: str | None = None,
    resume: bool = False,
) -> Posterior:
    r"""Flow-matching posterior estimation: fit :math:`q(\theta \mid x)` to simulations with
    :func:`pushforward.train.train` (the :class:`~pushforward.train.losses.FlowMatching` loss) and return a
    :class:`~pushforward.sbi.Posterior` (``sample(n, x)``, ``log_prob(theta, x)``, ``map(x)``).

    The simulations are split into training and validation sets; Adam at a constant rate runs until the
    validation flow-matching loss has not improved for ``patience`` epochs (at most ``max_epochs``) and the
    best weights are kept. The history is in ``posterior.history``.

    Args:
        prior: The prior (``torch.distributions`` distribution, :class:`pushforward.distributions.BoxUniform`
            or ``None``); only its support is used.
        theta: Parameters ``(n, d)`` drawn from the prior.
        x: Observations ``(n, *x_shape)``.
        flow: A conditional flow of :class:`~pushforward.transforms.ContinuousFlow` layers on ``(d,)``;
            default ``FFJORD(d, context=k, hidden=hidden, trace="exact")``.
        embedding: Optional network ``(batch, *x_shape) → (batch, k)``, trained jointly; needed when ``x`` is
            not a vector (it must then have an ``out_features`` attribute unless ``flow`` is given).
        z_score_x: See :meth:`Posterior.fit_standardization`.
        validation_fraction, batch_size, lr, max_epochs, patience, clip_grad: Training settings.
        schedule: None (constant rate) or ``"cosine"`` (annealed to 0 over ``max_epochs``).
        ema: Decay of a moving average of the weights, scored on validation and kept
            (:class:`~pushforward.train.config.TrainConfig`); None keeps the raw weights.
        sigma_min, time_exponent: The path's :math:`\sigma_{\min}` and the time density's exponent
            (:func:`~pushforward.train.flow_matching.flow_matching_loss`).
        seed: Seeds the split, the initialisation, shuffling, base draws and times.
        checkpoint, resume: Crash-safe checkpoints and resuming (:func:`pushforward.train.train`).

    Raises:
        TypeError: a prior that is not a distribution (e.g. a string).
        ValueError: on mismatched simulations, parameters outside the prior's support, a prior of the wrong
            event shape or bad settings;
        TrainingDiverged: when training diverges.

    Example:
        >>> import torch
        >>> prior = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(1), 1.0), 1)
        >>> theta = prior.sample((400,))
        >>> x = theta + 0.5 * torch.randn(400, 1)
        >>> post = FMPE(prior, theta, x, hidden=(16, 16), max_epochs=2, seed=0)
        >>> post.sample(10, torch.tensor([0.3])).shape
        torch.Size([10, 1])
    """
    if not isinstance(theta, Tensor) or not isinstance(x, Tensor):
        raise TypeError("theta and x must be torch tensors")
    if not theta.is_floating_point():
        theta = theta.to(torch.get_default_dtype())
    x = x.to(theta.dtype)
    check_prior(prior, theta.shape[-1] if theta.dim() == 2 else None)
    check_simulations(
        theta, x, validation_fraction, batch_size=batch_size, max_epochs=max_epochs, patience=patience
    )
    if embedding is None and x.dim() > 2:
        raise ValueError(f"x has shape {tuple(x.shape[1:])} per observation: pass an embedding net")
    n, d = theta.shape
    n_val = max(1, round(validation_fraction * n))
    if n - n_val < 2:
        raise ValueError(f"{n} simulations are too few: need at least 2 for training after the split")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        if flow is None:
            context = getattr(embedding, "out_features", None) if embedding is not None else x.shape[1]
            if context is None:
                raise ValueError("the embedding has no out_features attribute: pass the flow explicitly")
            flow = FFJORD(d, context=int(context), hidden=hidden, trace="exact")
    posterior, _, train_idx, val_idx = prepare_posterior(
        flow, prior, embedding, theta, x, n_val=n_val, generator=generator, z_score_x=z_score_x
    )
    n_train = n - n_val
    config = TrainConfig(
        epochs=max_epochs,
        batch_size=batch_size,
        lr=lr,
        clip_grad=clip_grad,
        schedule=schedule or "constant",
        patience=patience,
        eval_every=math.ceil(n_train / batch_size),
        ema=ema,
        seed=seed,
    ).validate()
    history = train(
        posterior,
        FlowMatching(sigma_min=sigma_min, time_exponent=time_exponent),
        (theta[train_idx], x[train_idx]),
        (theta[val_idx], x[val_idx]),
        config,
        checkpoint=checkpoint,
        resume=resume,
    )
    posterior.history = history
    posterior.eval()
    return posterior
