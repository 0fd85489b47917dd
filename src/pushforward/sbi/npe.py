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

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..flows.autoregressive import MAF, NSF
from ..flows.core import Flow
from ..train.config import TrainConfig
from ..train.engine import History, train
from ..train.losses import MaximumLikelihood
from .posterior import Posterior, check_prior, check_simulations, prepare_posterior

__all__ = ["NPE"]


def _as_tensor(a: object, name: str) -> Tensor:
    if not isinstance(a, Tensor):
        try:
            a = torch.as_tensor(a)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a tensor or an array, got {type(a).__name__}") from None
    if not a.is_floating_point():
        a = a.to(torch.get_default_dtype())
    return a


def NPE(
    prior: object | None,
    theta: Tensor,
    x: Tensor,
    *,
    flow: Flow | str = "auto",
    embedding: nn.Module | None = None,
    layers: int = 5,
    hidden: Sequence[int] = (64, 64),
    bins: int = 8,
    z_score_x: str | None = "auto",
    validation_fraction: float = 0.1,
    batch_size: int = 200,
    lr: float = 1e-3,
    max_epochs: int = 200,
    patience: int = 30,
    clip_grad: float | None = 5.0,
    weight_decay: float = 0.0,
    schedule: str | None = "cosine",
    seed: int | None = None,
    progress: bool = False,
) -> Posterior:
    r"""Neural posterior estimation: fit :math:`q(\theta \mid x)` to simulations and return a
    :class:`~pushforward.sbi.Posterior`.

    The data are split into training and validation sets (``validation_fraction``); the posterior is
    trained by the one engine (:func:`pushforward.train.train` with the maximum-likelihood loss on
    :math:`\log q(\theta \mid x)`, in θ's units) (Adam, gradient clipping, the rate annealed from ``lr`` to 0 over
    ``max_epochs`` by a cosine schedule) until the validation loss has not improved for ``patience`` epochs,
    and the best weights are kept. The training history is in ``posterior.history``.

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
        theta: Parameters ``(n, d)``, drawn from the prior.
        x: Simulated observations ``(n, *x_shape)``.
        flow: ``"auto"`` (default: train both below, keep the better on validation), ``"nsf"``
            (``NSF(d, context=k, layers=layers, hidden=hidden, bins=bins)``), ``"maf"``
            (``MAF(d, context=k, layers=layers, hidden=hidden)``), or a conditional flow on ``(d,)`` with
            ``context_features`` equal to the embedding size ``k``.
        embedding: Optional network ``(batch, *x_shape) → (batch, k)`` (see :mod:`pushforward.nets.embedding`),
            trained jointly (with ``flow="auto"``, each candidate trains its own copy and the winner's weights
            are loaded into this module); needed when ``x`` is not a vector.
        z_score_x: ``"auto"``, ``"independent"``, ``"structured"`` or None (see
            :meth:`Posterior.fit_standardization`).
        validation_fraction, batch_size, lr, max_epochs, patience, clip_grad, weight_decay: Training
            settings (batch 200, 10 % validation, peak rate 1e-3, at most 200 epochs, stop after 30 epochs
            without improvement).
        schedule: ``"cosine"`` (anneal the rate to 0 over ``max_epochs``) or None (constant rate).
        seed: Seeds the split, the initialisation and the shuffling.

    Raises:
        TypeError: a prior that is not a distribution (e.g. a string).
        ValueError: on mismatched or non-finite simulations, a prior of the wrong event shape.
        TrainingDiverged: when training diverges.

    Example:
        >>> import torch
        >>> prior = torch.distributions.Independent(torch.distributions.Uniform(-torch.ones(1), torch.ones(1)), 1)
        >>> theta = prior.sample((500,))
        >>> x = theta + 0.1 * torch.randn(500, 1)
        >>> post = NPE(prior, theta, x, layers=1, hidden=(16, 16), max_epochs=2, seed=0)
        >>> post.sample(10, torch.tensor([0.3])).shape
        torch.Size([10, 1])
    """
    theta = _as_tensor(theta, "theta")
    x = _as_tensor(x, "x").to(theta.dtype)
    check_prior(prior, theta.shape[-1] if theta.dim() == 2 else None)
    check_simulations(
        theta, x, validation_fraction, batch_size=batch_size, max_epochs=max_epochs, patience=patience
    )
    n, d = theta.shape
    n_val = max(1, round(validation_fraction * n))
    if n - n_val < 2:
        raise ValueError(
            f"{n} simulations are too few: need at least 2 for training after the validation split"
        )
    if embedding is None and x.dim() > 2:
        raise ValueError(
            f"x has shape {tuple(x.shape[1:])} per observation: pass an embedding net (e.g. "
            "pushforward.nets.embedding.CNNEmbedding or DeepSetEmbedding) that maps it to a vector"
        )
    context = getattr(embedding, "out_features", None) if embedding is not None else x.shape[1]
    if isinstance(flow, str):
        if flow not in ("auto", "nsf", "maf"):
            raise ValueError(f"flow must be 'auto', 'nsf', 'maf' or a Flow, got {flow!r}")
        if context is None:
            raise ValueError("the embedding has no out_features attribute: pass the flow explicitly")
        kinds = ["maf", "nsf"] if flow == "auto" else [flow]
    elif isinstance(flow, nn.Module):
        kinds = [flow]
    else:
        raise TypeError(f"flow must be 'auto', 'nsf', 'maf' or a Flow, got {type(flow).__name__}")

    n_train = n - n_val
    config = TrainConfig(
        epochs=max_epochs,
        batch_size=batch_size,
        lr=lr,
        clip_grad=clip_grad,
        weight_decay=weight_decay,
        schedule=schedule or "constant",
        patience=patience,
        eval_every=math.ceil(n_train / batch_size),
        seed=seed,
    ).validate()

    def fit_candidate(
        flow: Flow, embedding: nn.Module | None, generator: torch.Generator
    ) -> tuple[Posterior, History]:
        posterior, _, train_idx, val_idx = prepare_posterior(
            flow, prior, embedding, theta, x, n_val=n_val, generator=generator, z_score_x=z_score_x
        )
        history = train(
            posterior,
            MaximumLikelihood(),
            (theta[train_idx], x[train_idx]),
            (theta[val_idx], x[val_idx]),
            config,
            progress=progress,
        )
        return posterior, history

    # every candidate sees the same split (and, with a seed, the same initial state as when trained alone)
    split_seed = seed if seed is not None else int(torch.randint(0, 2**62, ()))
    results: dict[str, tuple[Posterior, History, nn.Module | None]] = {}
    for kind in kinds:
        generator = torch.Generator().manual_seed(split_seed)
        if seed is not None:
            torch.manual_seed(seed)
        emb = copy.deepcopy(embedding) if embedding is not None and len(kinds) > 1 else embedding
        if kind == "nsf":
            candidate = NSF(d, context=int(context), layers=layers, hidden=hidden, bins=bins)  # type: ignore[arg-type]
        elif kind == "maf":
            candidate = MAF(d, context=int(context), layers=layers, hidden=hidden)  # type: ignore[arg-type]
        else:
            candidate = kind
        posterior, history = fit_candidate(candidate, emb, generator)
        results[kind if isinstance(kind, str) else "custom"] = (posterior, history, emb)
    scores = {name: r[1].best_val_loss for name, r in results.items()}
    best = min(scores, key=lambda k: (scores[k], k != "nsf"))  # a tie keeps the spline flow
    posterior, history, emb = results[best]
    if embedding is not None and emb is not embedding:
        embedding.load_state_dict(emb.state_dict())  # type: ignore[union-attr]
        posterior.embedding = embedding
    posterior.history = history
    posterior.flow_kind = best
    posterior.flow_scores = scores if len(scores) > 1 else {}
    posterior.eval()
    return posterior
