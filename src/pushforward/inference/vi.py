r"""Stochastic variational inference with a flow: reverse-KL fitting to an unnormalised density.

For an unnormalised target :math:`\tilde p(z) = Z\, p(z)` and a flow :math:`q_\theta`,

.. math:: \mathrm{ELBO}(\theta) = \mathbb{E}_{q_\theta}[\log\tilde p(x) - \log q_\theta(x)]
    = \log Z - \mathrm{KL}(q_\theta \,\|\, p) \le \log Z,

estimated with reparameterised samples :math:`x = f_\theta^{-1}(z)`, :math:`z \sim p_Z` — only the flow's
``inverse`` direction is used (:meth:`pushforward.Flow.sample_and_log_prob`), which is the cheap one for
planar, radial, Sylvester and IAF-type flows. After training, importance sampling gives
:math:`\log Z \approx \log\frac1n\sum_i \tilde p(x_i)/q(x_i)` with its standard error and the effective
sample size (see :mod:`pushforward.inference.montecarlo`).

Reference: Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015 (including the
annealed objective :math:`\beta_t \log\tilde p - \log q`, :math:`\beta_t = \min(1, 0.01 + t/T_{anneal})`);
Hoffman, Blei, Wang & Paisley, "Stochastic Variational Inference", JMLR 2013.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..flows.core import Flow
from ..train.step import skip_nonfinite_step
from .montecarlo import kish_ess, log_mean_exp

__all__ = ["VIResult", "evaluate_vi", "fit_vi"]

LogDensity = Callable[[Tensor], Tensor]


@dataclass
class VIResult:
    """What :func:`fit_vi` did and found.

    Attributes:
        elbo: ELBO estimate (β = 1, nats) of every applied step's minibatch.
        final_elbo, elbo_stderr: ELBO on the ``eval_samples`` evaluation draws, with its standard error.
        log_z, log_z_stderr: Importance-sampled :math:`\\log Z` (log-mean-exp of
            :math:`\\log\\tilde p - \\log q`) and its delta-method standard error.
        ess: Kish effective sample size of the evaluation importance weights; ``ess_fraction = ess / n``.
        eval_samples: Number of evaluation draws.
        diverged: ``True`` when training hit a non-finite ELBO or parameters and was stopped; the flow then
            holds the last finite snapshot of its parameters, never NaNs.
        message: Human-readable summary (why training stopped, if it did).
        skipped_steps: Steps whose loss or gradient was not finite (not applied).
        steps: Steps run.
        seconds: Wall time of training and evaluation.
    """

    elbo: list[float] = field(default_factory=list)
    final_elbo: float = math.nan
    elbo_stderr: float = math.nan
    log_z: float = math.nan
    log_z_stderr: float = math.nan
    ess: float = math.nan
    ess_fraction: float = math.nan
    eval_samples: int = 0
    diverged: bool = False
    message: str = ""
    skipped_steps: int = 0
    steps: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        """A JSON-serialisable dictionary."""
        return dict(self.__dict__)


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
    if n < 2:
        raise ValueError(f"need at least 2 evaluation samples, got {n}")
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


def _params_finite(params: list[Tensor]) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params)


def fit_vi(
    flow: Flow,
    log_density: LogDensity,
    *,
    steps: int = 5000,
    samples: int = 256,
    lr: float = 1e-3,
    anneal: int = 0,
    clip_grad: float | None = 10.0,
    schedule: str | None = "cosine",
    eval_samples: int = 20_000,
    max_nonfinite: int = 20,
    snapshot_every: int = 50,
    seed: int | None = None,
    progress: bool = False,
    optimizer: torch.optim.Optimizer | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> VIResult:
    r"""Fit ``flow`` to the unnormalised density ``exp(log_density)`` by maximising the ELBO (reverse KL).

    Args:
        flow: An unconditional flow, trained in place. Only its sampling (inverse) direction is used.
        log_density: ``x ↦ log p̃(x)`` for a batch ``(m, *event_shape)``, returning ``(m,)``; differentiable.
        steps: Optimisation steps.
        samples: Reparameterised samples per step.
        lr: Adam learning rate.
        anneal: Steps of the annealed objective :math:`\beta_t\log\tilde p - \log q` with
            :math:`\beta_t = \min(1, 0.01 + t/\text{anneal})` (Rezende & Mohamed 2015); 0 disables it.
        clip_grad: Max gradient norm (``None``: no clipping).
        schedule: ``"cosine"`` decay of the learning rate to 0, or ``None``.
        eval_samples: Draws for the final importance-sampling diagnostics (0 to skip them).
        max_nonfinite: Stop and report divergence after this many consecutive non-finite steps.
        snapshot_every: Steps between snapshots of finite parameters (restored on divergence).
        seed: Seeds ``torch``'s global generator before training.
        progress: Show a tqdm progress bar.
        optimizer: A ready optimizer to use instead of Adam.
        callback: Called as ``callback(step, elbo)`` after every applied step.

    Returns:
        A :class:`VIResult`. A non-finite ELBO or gradient skips the step; ``max_nonfinite`` in a row, or
        non-finite parameters after a step, stop training, restore the last finite snapshot, set
        ``diverged=True`` and warn — the flow never comes back with NaN parameters.

    Example:
        >>> from pushforward.flows import PlanarFlow
        >>> from pushforward.data import target_log_density
        >>> flow = PlanarFlow(2, layers=8)
        >>> result = fit_vi(flow, target_log_density("u1"), steps=50, samples=64)
        >>> log_z, stderr, ess = result.log_z, result.log_z_stderr, result.ess  # floats
    """
    from tqdm.auto import tqdm

    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a pushforward Flow, got {type(flow).__name__}")
    if flow.context_features:
        raise ValueError("fit_vi takes an unconditional flow (context_features=0)")
    if not callable(log_density):
        raise TypeError("log_density must be callable")
    for name, value, low in (
        ("steps", steps, 1),
        ("samples", samples, 1),
        ("max_nonfinite", max_nonfinite, 1),
        ("snapshot_every", snapshot_every, 1),
        ("anneal", anneal, 0),
        ("eval_samples", eval_samples, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if seed is not None:
        torch.manual_seed(seed)

    params = [p for p in flow.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the flow has no trainable parameters")
    opt = optimizer or torch.optim.Adam(params, lr=lr)
    sched = None
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    elif schedule not in (None, "none", "constant"):
        raise ValueError(f"schedule must be 'cosine' or None, got {schedule!r}")

    result = VIResult()
    start = time.perf_counter()
    snapshot = copy.deepcopy(flow.state_dict())
    in_a_row = 0
    flow.train()
    bar = tqdm(total=steps, disable=not progress, desc="fit_vi", leave=False)
    try:
        for step in range(1, steps + 1):
            result.steps = step
            x, log_q = flow.sample_and_log_prob((samples,))
            log_p = _log_p(log_density, x)
            beta = min(1.0, 0.01 + step / anneal) if anneal else 1.0
            loss = (log_q - beta * log_p).mean()
            elbo = (log_p - log_q).mean().detach()
            applied = skip_nonfinite_step(loss, params, opt, clip_grad)
            if sched is not None and applied:
                sched.step()
            bar.update(1)
            if not applied:
                result.skipped_steps += 1
                in_a_row += 1
                if in_a_row >= max_nonfinite:
                    result.diverged = True
                    result.message = (
                        f"diverged: {in_a_row} consecutive steps with a non-finite ELBO or gradient "
                        f"(last ELBO {float(elbo):.4g}) at step {step}; restored the last finite parameters"
                    )
                    break
                continue
            if not _params_finite(params):
                result.diverged = True
                result.message = (
                    f"diverged: non-finite parameters after step {step}; restored the last finite snapshot"
                )
                break
            in_a_row = 0
            result.elbo.append(float(elbo))
            if callback is not None:
                callback(step, float(elbo))
            if step % snapshot_every == 0:
                snapshot = copy.deepcopy(flow.state_dict())
                bar.set_postfix(elbo=f"{float(elbo):.3f}")
    finally:
        bar.close()
    flow.eval()
    if result.diverged:
        flow.load_state_dict(snapshot)
        warnings.warn(f"fit_vi {result.message}", RuntimeWarning, stacklevel=2)
    elif not result.message:
        result.message = f"completed {result.steps} steps ({result.skipped_steps} skipped)"
    if eval_samples:
        diag = evaluate_vi(flow, log_density, eval_samples)
        result.final_elbo, result.elbo_stderr = diag["elbo"], diag["elbo_stderr"]
        result.log_z, result.log_z_stderr = diag["log_z"], diag["log_z_stderr"]
        result.ess, result.ess_fraction = diag["ess"], diag["ess_fraction"]
        result.eval_samples = eval_samples
    result.seconds = time.perf_counter() - start
    return result
