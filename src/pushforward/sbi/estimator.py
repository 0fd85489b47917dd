r"""The one shape of a posterior estimator (:class:`~pushforward.sbi.NPE`, :class:`~pushforward.sbi.FMPE`):
``Estimator(prior, *, flow=..., embedding=None, z_score_x="auto", config=None, **settings)``, then
``fit(theta, x) -> Posterior`` and ``loss(theta, x)``, with one set of training defaults
(:data:`SBI_DEFAULTS`) and one standardisation (:meth:`Posterior.fit_standardization`: θ z-scored in the
unconstrained space, x by median and IQR so that one extreme simulation cannot flatten the rest).

Training is the one engine's (:func:`pushforward.train.train`); the estimators differ only in their loss
object (maximum likelihood of :math:`q(\theta \mid x)` for NPE, flow matching for FMPE) and their default
flow.

Reference: Lueckmann, Boelts, Greenberg, Gonçalves & Macke, "Benchmarking Simulation-Based Inference",
AISTATS 2021 (the training protocol: a validation split, early stopping on its loss).

Example:
    >>> SBI_DEFAULTS.batch_size, SBI_DEFAULTS.schedule, SBI_DEFAULTS.patience
    (200, 'cosine', 30)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ..flows.core import Flow
from ..train.config import TrainConfig
from ..train.engine import History, train
from .posterior import Posterior, check_prior

__all__ = ["SBI_DEFAULTS", "PosteriorEstimator"]

#: The training defaults of every posterior estimator: batches of 200, Adam at 1e-3 annealed to 0 by a cosine
#: over at most 200 epochs, clipping at norm 5, early stopping after 30 epochs without validation
#: improvement (one evaluation per epoch). On sbibm's two_moons and slcp at 10,000 simulations the annealed
#: rate ended 0.17-0.18 nats per held-out simulation better than a constant 5e-4 with 20 epochs of patience
#: (``benchmarks/results/issue16/README.md``).
SBI_DEFAULTS = TrainConfig(epochs=200, batch_size=200, lr=1e-3, clip_grad=5.0, schedule="cosine", patience=30)


def as_simulations(theta: object, x: object) -> tuple[Tensor, Tensor]:
    """``theta`` and ``x`` as floating tensors of one dtype (``TypeError`` for anything else)."""
    out = []
    for name, a in (("theta", theta), ("x", x)):
        if not isinstance(a, Tensor):
            raise TypeError(f"theta and x must be torch tensors, got {name} of type {type(a).__name__}")
        out.append(a if a.is_floating_point() else a.to(torch.get_default_dtype()))
    return out[0], out[1].to(out[0].dtype)


class PosteriorEstimator:
    """The shared estimator shape; subclasses define :meth:`flow_kinds`, :meth:`make_flow` and
    :meth:`make_loss`.

    Args:
        prior: The prior (a ``torch.distributions`` distribution, a
            :class:`pushforward.distributions.BoxUniform`, or ``None`` for an unbounded parameter); checked
            for type here and for event shape against θ in :meth:`fit`. Only its support is used.
        flow: The estimator's choice of flow, or a conditional flow on ``(d,)`` whose ``context_features``
            is the embedding size.
        embedding: Optional network ``(batch, *x_shape) → (batch, k)`` trained jointly; needed when ``x``
            is not a vector (it must then have ``out_features`` unless ``flow`` is a Flow).
        z_score_x: ``"auto"``, ``"independent"``, ``"structured"`` or None (:meth:`Posterior.fit_standardization`).
        validation_fraction: Share of the simulations held out for early stopping, in ``(0, 1)``.
        config: Training settings (default :data:`SBI_DEFAULTS`); ``settings`` override its fields
            (``epochs``, ``batch_size``, ``lr``, ``patience``, ``seed``, ...). ``seed`` also seeds the split
            and the flow's initialisation.
        progress: Show the engine's progress bar.
    """

    def __init__(
        self,
        prior: object | None,
        *,
        flow: Flow | str = "auto",
        embedding: nn.Module | None = None,
        z_score_x: str | None = "auto",
        validation_fraction: float = 0.1,
        config: TrainConfig | None = None,
        progress: bool = False,
        **settings: object,
    ) -> None:
        check_prior(prior)
        if embedding is not None and not isinstance(embedding, nn.Module):
            raise TypeError(f"embedding must be an nn.Module, got {type(embedding).__name__}")
        if z_score_x not in ("auto", "independent", "structured", None):
            raise ValueError(
                f"z_score_x must be 'auto', 'independent', 'structured' or None, got {z_score_x!r}"
            )
        if not isinstance(validation_fraction, float) or not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
        self.prior, self.flow, self.embedding = prior, flow, embedding
        self.z_score_x, self.validation_fraction, self.progress = z_score_x, validation_fraction, progress
        self.config = (config or SBI_DEFAULTS).replace(**settings).validate()
        if self.config.steps is None and self.config.epochs is None:
            raise ValueError("give epochs (or steps)")
        self.posterior_: Posterior | None = None

    # ------------------------------------------------------------------ what subclasses define
    def flow_kinds(self) -> list[str]:  # pragma: no cover - abstract
        """The names of the candidate flows (the best on validation is kept)."""
        raise NotImplementedError

    def make_flow(self, kind: str, d: int, context: int) -> Flow:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_loss(self) -> Callable:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ the shared shape
    def _candidates(self, d: int, x: Tensor) -> dict[str, Flow]:
        if isinstance(self.flow, nn.Module):
            return {"custom": self.flow}
        if self.embedding is None and x.dim() > 2:
            raise ValueError(
                f"x has shape {tuple(x.shape[1:])} per observation: pass an embedding net (e.g. "
                "pushforward.nets.embedding.CNNEmbedding or DeepSetEmbedding) that maps it to a vector"
            )
        context = getattr(self.embedding, "out_features", None) if self.embedding is not None else x.shape[1]
        if context is None:
            raise ValueError("the embedding has no out_features attribute: pass the flow explicitly")
        seed = self.config.seed
        out = {}
        for kind in self.flow_kinds():  # with a seed, each initialised as when trained alone
            with torch.random.fork_rng(devices=[], enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                out[kind] = self.make_flow(kind, d, int(context))
        return out

    def fit(
        self, theta: Tensor, x: Tensor, *, checkpoint: str | Path | None = None, resume: bool = False
    ) -> Posterior:
        """Train on simulations ``theta (n, d)``, ``x (n, *x_shape)`` and return the :class:`Posterior` (also
        kept as ``self.posterior_``; its training history is ``posterior.history``). ``checkpoint`` and
        ``resume`` are the engine's (one file per candidate flow: ``PATH.KIND``)."""
        theta, x = as_simulations(theta, x)
        check_prior(self.prior, theta.shape[-1] if theta.dim() == 2 else None)
        check_simulations(theta, x, self.validation_fraction)
        n, d = theta.shape
        n_val = max(1, round(self.validation_fraction * n))
        if n - n_val < 2:
            raise ValueError(f"{n} simulations are too few: need at least 2 for training after the split")
        seed = self.config.seed
        split_seed = seed if seed is not None else int(torch.randint(0, 2**62, ()))
        config = self.config
        if config.eval_every is None:  # one evaluation per epoch: patience counts epochs
            config = config.replace(eval_every=math.ceil((n - n_val) / config.batch_size))
        candidates = self._candidates(d, x)
        results: dict[str, tuple[Posterior, History, nn.Module | None]] = {}
        for kind, flow in candidates.items():
            embedding = self.embedding
            if embedding is not None and len(candidates) > 1:
                embedding = _copy_module(embedding)
            generator = torch.Generator().manual_seed(split_seed)  # every candidate sees the same split
            posterior, _, train_idx, val_idx = prepare_posterior(
                flow,
                self.prior,
                embedding,
                theta,
                x,
                n_val=n_val,
                generator=generator,
                z_score_x=self.z_score_x,
            )
            path = (
                None
                if checkpoint is None
                else (checkpoint if len(candidates) == 1 else f"{checkpoint}.{kind}")
            )
            history = train(
                posterior,
                self.make_loss(),
                (theta[train_idx], x[train_idx]),
                (theta[val_idx], x[val_idx]),
                config,
                checkpoint=path,
                resume=resume,
                progress=self.progress,
            )
            results[kind] = (posterior, history, embedding)
        scores = {name: r[1].best_val_loss for name, r in results.items()}
        best = min(scores, key=lambda k: (scores[k], k != "nsf"))  # a tie keeps the spline flow
        posterior, history, embedding = results[best]
        if self.embedding is not None and embedding is not self.embedding:
            self.embedding.load_state_dict(embedding.state_dict())  # type: ignore[union-attr]
            posterior.embedding.net = self.embedding
        posterior.history = history
        posterior.flow_kind = best
        posterior.flow_scores = scores if len(scores) > 1 else {}
        posterior.eval()
        self.posterior_ = posterior
        return posterior

    def loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """The estimator's training loss (a scalar, mean over the rows) of the fitted posterior on
        simulations ``theta``, ``x`` (e.g. held-out ones), without gradient."""
        if self.posterior_ is None:
            raise ValueError("fit the estimator first")
        theta, x = as_simulations(theta, x)
        check_simulations(theta, x, self.validation_fraction)
        loss = self.make_loss()
        score = getattr(loss, "validation", loss)
        with torch.no_grad():
            return score(self.posterior_, (theta, x))


def prepare_posterior(
    flow: Flow,
    prior: object,
    embedding: nn.Module | None,
    theta: Tensor,
    x: Tensor,
    *,
    n_val: int,
    generator: torch.Generator,
    z_score_x: str | None,
) -> tuple[Posterior, Tensor, Tensor, Tensor]:
    """The shared start of every estimator: the :class:`Posterior` around ``flow`` (in ``theta``'s dtype),
    its standardisation fitted on a random training split, and the parameters in the flow's latent space.

    Returns ``(posterior, v, train_idx, val_idx)`` with ``v`` the standardised unconstrained parameters.
    Raises ``ValueError`` when a parameter lies outside the prior's support or on its boundary.
    """
    n = theta.shape[0]
    flow = flow.to(theta.dtype)
    if embedding is not None:
        embedding = embedding.to(theta.dtype)
    posterior = Posterior.from_prior(flow, prior, embedding=embedding, x_shape=tuple(x.shape[1:]))
    posterior = posterior.to(theta.dtype)
    outside = ~posterior.in_support(theta)
    if bool(outside.any()):
        raise ValueError(f"{int(outside.sum())} of the parameters theta lie outside the prior's support")

    perm = torch.randperm(n, generator=generator)
    train_idx, val_idx = perm[n_val:], perm[:n_val]
    posterior.fit_standardization(theta[train_idx], x[train_idx], z_score_x=z_score_x)
    posterior.set_standardization(x_low=x.amin(0), x_high=x.amax(0))  # the range of every simulation
    with torch.no_grad():
        v, _ = posterior.theta_to_latent(posterior.clamp_to_support(theta))
    if not bool(torch.isfinite(v).all()):
        raise ValueError(
            "some parameters map to infinity in the unconstrained space (on the support's boundary)"
        )
    return posterior, v, train_idx, val_idx


def check_simulations(theta: Tensor, x: Tensor, validation_fraction: float, **positive_ints: object) -> None:
    """``ValueError`` unless ``theta`` is ``(n, d)``, ``x`` is ``(n, ...)``, the validation fraction lies in
    ``(0, 1)`` and every named training setting is a positive int."""
    if theta.dim() != 2:
        raise ValueError(f"theta must have shape (n, d), got {tuple(theta.shape)}")
    if x.dim() < 2 or x.shape[0] != theta.shape[0]:
        raise ValueError(f"x must have shape (n, ...) with n = {theta.shape[0]} rows, got {tuple(x.shape)}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    for name, v in positive_ints.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def _copy_module(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module)
