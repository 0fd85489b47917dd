r"""Stochastic variational inference with a flow: reverse-KL fitting to an unnormalised density.

For an unnormalised target :math:`\tilde p(z) = Z\, p(z)` and a flow :math:`q_\theta`,

.. math:: \mathrm{ELBO}(\theta) = \mathbb{E}_{q_\theta}[\log\tilde p(x) - \log q_\theta(x)]
    = \log Z - \mathrm{KL}(q_\theta \,\|\, p) \le \log Z,

estimated with reparameterised samples :math:`x = f_\theta^{-1}(z)`, :math:`z \sim p_Z` — only the flow's
``inverse`` direction is used (:meth:`pushforward.Flow.sample_and_log_prob`), which is the cheap one for
planar, radial, Sylvester and IAF-type flows. After training, importance sampling gives
:math:`\log Z \approx \log\frac1n\sum_i \tilde p(x_i)/q(x_i)` with its standard error and the effective
sample size (see :mod:`pushforward.inference.montecarlo`). Training is the one engine's
(:func:`pushforward.train.train`) with the :class:`ReverseKL` loss object.

Reference: Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015 (including the
annealed objective :math:`\beta_t \log\tilde p - \log q`, :math:`\beta_t = \min(1, 0.01 + t/T_{anneal})`);
Hoffman, Blei, Wang & Paisley, "Stochastic Variational Inference", JMLR 2013.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..flows.core import Flow
from ..train.config import TrainConfig
from ..train.engine import History
from ..train.engine import train as run_training
from .montecarlo import kish_ess, log_mean_exp

__all__ = ["MAX_EVAL_SAMPLES", "ReverseKL", "evaluate_vi", "fit_vi"]

LogDensity = Callable[[Tensor], Tensor]

#: Most evaluation draws :func:`fit_vi` accepts (the importance-sampling estimate's error shrinks as
#: 1/sqrt(n): 10^8 draws are far beyond any useful precision and already take minutes).
MAX_EVAL_SAMPLES = 10**8


def _log_p(log_density: LogDensity, x: Tensor) -> Tensor:
    lp = log_density(x)
    if not isinstance(lp, Tensor):
        raise TypeError(f"log_density must return a torch.Tensor, got {type(lp).__name__}")
    if lp.shape != x.shape[:1]:
        raise ValueError(
            f"log_density must return one value per sample, shape ({x.shape[0]},); got {tuple(lp.shape)}"
        )
    return lp


@torch.no_grad()
def evaluate_vi(
    flow: Flow, log_density: LogDensity, n: int = 10_000, batch_size: int = 8192
) -> dict[str, float]:
    r"""Importance-sampling diagnostics of ``flow`` as an approximation of ``exp(log_density)``.

    Returns a dictionary with ``elbo``, ``elbo_stderr``, ``log_z``, ``log_z_stderr``, ``ess`` and
    ``ess_fraction`` computed from ``n`` fresh draws.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_EVAL_SAMPLES:
        raise ValueError(f"need between 2 and {MAX_EVAL_SAMPLES} evaluation samples, got {n!r}")
    parts = []
    done = 0
    while done < n:
        m = min(batch_size, n - done)
        x, log_q = flow.sample_and_log_prob((m,))
        parts.append((_log_p(log_density, x) - log_q).double())
        done += m
    log_w = torch.cat(parts)
    finite = log_w[torch.isfinite(log_w)]
    elbo = float(log_w.mean())
    elbo_se = float(finite.std() / math.sqrt(finite.numel())) if finite.numel() > 1 else math.nan
    if bool(torch.isnan(log_w).any()):
        return dict(
            elbo=math.nan,
            elbo_stderr=math.nan,
            log_z=math.nan,
            log_z_stderr=math.nan,
            ess=0.0,
            ess_fraction=0.0,
        )
    log_z, log_z_se = log_mean_exp(log_w)
    ess = kish_ess(log_w) if math.isfinite(log_z) else 0.0
    return dict(
        elbo=elbo, elbo_stderr=elbo_se, log_z=log_z, log_z_stderr=log_z_se, ess=ess, ess_fraction=ess / n
    )


class ReverseKL:
    r"""The reverse-KL (negative ELBO) loss of variational inference, a data-free loss object for
    :func:`pushforward.train.train`:

    .. math:: \mathcal L_t = \frac1m\sum_{j=1}^m \big[\log q_\theta(x_j) - \beta_t \log\tilde p(x_j)\big],
        \qquad x_j = f_\theta^{-1}(z_j),\ z_j \sim p_Z,

    with :math:`\beta_t = \min(1, 0.01 + t/T_{anneal})` for the first ``anneal`` steps (1 afterwards). At
    the end of training, :meth:`finish` adds the importance-sampling diagnostics of :func:`evaluate_vi`
    (``log_z``, ``log_z_stderr``, ``ess``, ``ess_fraction``, ``final_elbo``, ``elbo_stderr``) and the ELBO of
    every applied step (``elbo``) to ``History.extras``.

    Args:
        log_density: ``x ↦ log p̃(x)`` for a batch ``(m, *event_shape)``, returning ``(m,)``; differentiable.
        samples: Reparameterised draws per step.
        anneal: Steps of the annealed objective (0: none).
        eval_samples: Draws for the final diagnostics (0: skip them; at most :data:`MAX_EVAL_SAMPLES`).

    Reference: Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.

    Example:
        >>> from pushforward.flows import PlanarFlow
        >>> loss = ReverseKL(lambda x: -0.5 * (x**2).sum(-1), samples=8)
        >>> loss(PlanarFlow(2, layers=1), ()).shape, loss.units
        (torch.Size([]), 'nats')
    """

    units = "nats"
    needs_data = False

    def __init__(
        self, log_density: LogDensity, *, samples: int = 256, anneal: int = 0, eval_samples: int = 20_000
    ) -> None:
        if not callable(log_density):
            raise TypeError("log_density must be callable")
        for name, value, low, high in (
            ("samples", samples, 1, MAX_EVAL_SAMPLES),
            ("anneal", anneal, 0, None),
            ("eval_samples", eval_samples, 0, MAX_EVAL_SAMPLES),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
            if high is not None and value > high:
                raise ValueError(f"{name} must be at most {high}, got {value}")
        self.log_density, self.samples, self.anneal, self.eval_samples = (
            log_density,
            samples,
            anneal,
            eval_samples,
        )
        self.calls = 0
        self.elbo: list[float] = []

    def __call__(self, model: Flow, batch: tuple = ()) -> Tensor:
        self.calls += 1
        x, log_q = model.sample_and_log_prob((self.samples,))
        log_p = _log_p(self.log_density, x)
        beta = min(1.0, 0.01 + self.calls / self.anneal) if self.anneal else 1.0
        elbo = float((log_p - log_q).mean().detach())
        if math.isfinite(elbo):
            self.elbo.append(elbo)
        return (log_q - beta * log_p).mean()

    def check(self, model: Flow) -> None:
        if not isinstance(model, Flow):
            raise TypeError(f"flow must be a pushforward Flow, got {type(model).__name__}")
        if model.context_features:
            raise ValueError("variational inference takes an unconditional flow (context_features=0)")

    def state_dict(self) -> dict:
        return {"calls": self.calls, "elbo": list(self.elbo)}

    def load_state_dict(self, state: dict) -> None:
        self.calls, self.elbo = int(state["calls"]), [float(v) for v in state["elbo"]]

    def finish(self, model: Flow, history: History) -> None:
        history.extras["elbo"] = list(self.elbo)
        if self.eval_samples:
            diag = evaluate_vi(model, self.log_density, self.eval_samples)
            diag["final_elbo"] = diag.pop("elbo")
            history.extras.update(diag)
            history.extras["eval_samples"] = self.eval_samples


def fit_vi(
    flow: Flow,
    log_density: LogDensity,
    *,
    samples: int = 256,
    anneal: int = 0,
    eval_samples: int = 20_000,
    config: TrainConfig | None = None,
    progress: bool = False,
    optimizer: torch.optim.Optimizer | None = None,
    callback: Callable[[int, float], None] | None = None,
    checkpoint=None,
    resume: bool = False,
    **settings: object,
) -> History:
    r"""Fit ``flow`` to the unnormalised density ``exp(log_density)`` by maximising the ELBO (reverse KL): a
    thin caller of :func:`pushforward.train.train` with :class:`ReverseKL`.

    Args:
        flow: An unconditional flow, trained in place. Only its sampling (inverse) direction is used.
        log_density: ``x ↦ log p̃(x)`` for a batch ``(m, *event_shape)``, returning ``(m,)``; differentiable.
        samples: Reparameterised samples per step.
        anneal: Steps of the annealed objective :math:`\beta_t\log\tilde p - \log q` with
            :math:`\beta_t = \min(1, 0.01 + t/\text{anneal})` (Rezende & Mohamed 2015); 0 disables it.
        eval_samples: Draws for the final importance-sampling diagnostics (0 to skip them).
        config: A :class:`~pushforward.train.config.TrainConfig`; ``settings`` override its fields (``steps``
            (default 5000), ``lr`` (default 1e-3), ``clip_grad`` (default 10), ``schedule``, ``seed``, ...).
        progress, optimizer, callback, checkpoint, resume: See :func:`pushforward.train.train`.

    Returns:
        A :class:`~pushforward.train.History` (negative annealed ELBO per evaluation round, in nats) whose
        ``extras`` hold ``elbo`` (every applied step's ELBO), ``final_elbo``, ``elbo_stderr``, ``log_z``,
        ``log_z_stderr``, ``ess``, ``ess_fraction`` and ``eval_samples``.

    Raises:
        TrainingDiverged: most steps had a non-finite ELBO or gradient, or the parameters became non-finite
            (the last finite parameters are restored first: the flow never comes back with NaNs).

    Example:
        >>> from pushforward.flows import PlanarFlow
        >>> from pushforward.data import target_log_density
        >>> flow = PlanarFlow(2, layers=8)
        >>> history = fit_vi(flow, target_log_density("u1"), steps=50, samples=64)
        >>> log_z, stderr, ess = (history.extras[k] for k in ("log_z", "log_z_stderr", "ess"))
    """
    loss = ReverseKL(log_density, samples=samples, anneal=anneal, eval_samples=eval_samples)
    base = config or TrainConfig(steps=5000, lr=1e-3, clip_grad=10.0)
    cfg = base.replace(**settings).validate()
    return run_training(
        flow,
        loss,
        None,
        None,
        cfg,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        callback=callback,
        optimizer=optimizer,
    )
