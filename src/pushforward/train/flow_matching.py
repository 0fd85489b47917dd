r"""Conditional flow matching: simulation-free training of continuous normalizing flows.

A :class:`~pushforward.transforms.ContinuousFlow` integrates :math:`dz/d\tau = f(z, \tau; c)` from
:math:`\tau = 0` (data) to :math:`\tau = T` (latent). Instead of maximising the likelihood through the ODE
solver (FFJORD), flow matching regresses :math:`f` on the velocity of a probability path that moves the data
to the base distribution, one sample at a time (Lipman, Chen, Ben-Hamu, Nickel & Le, "Flow Matching for
Generative Modeling", ICLR 2023).

**The path.** In the paper's time :math:`s \in [0, 1]` (noise at :math:`s = 0`, data at :math:`s = 1`), the
optimal-transport conditional path from a base draw :math:`x_0` to a data point :math:`x_1` is

.. math:: \psi_s(x_0 \mid x_1) = \big(1 - (1 - \sigma_{\min})\,s\big)\,x_0 + s\,x_1, \qquad
    \frac{d\psi_s}{ds} = x_1 - (1 - \sigma_{\min})\,x_0,

a straight line with constant speed. Its marginal at :math:`s = 0` is the base distribution and at
:math:`s = 1` the data smoothed by :math:`\mathcal N(0, \sigma_{\min}^2 I)`.

**Direction.** pushforward's flows map data to latent, so the ODE runs the path *backwards*: for a flow of
:math:`K` stacked continuous layers (forward order :math:`k = 0, \dots, K-1`, each over :math:`[0, T_k]`),
layer :math:`k` at local time :math:`\tau` sits at :math:`s = 1 - (k + \tau / T_k) / K` and its regression
target is the chain rule :math:`\frac{d\psi}{d\tau} = \frac{d\psi}{ds}\frac{ds}{d\tau}`:

.. math:: \mathcal L(\theta) = \mathbb E_{k, \tau, x_0, (x_1, c)}
    \Big\| f_k\big(\psi_s(x_0 \mid x_1), \tau; c\big) - \frac{(1 - \sigma_{\min})\,x_0 - x_1}{K\,T_k}\Big\|^2 .

Its minimiser is the marginal velocity field, whose ODE carries the data distribution onto the base; the
exact log-density afterwards is the usual instantaneous change of variables (``flow.log_prob``). With a
context :math:`c` the same loss, conditioned on :math:`c`, learns :math:`p(x \mid c)` (as in flow-matching
posterior estimation). :math:`x_0` is drawn from ``flow.base``; for a non-Gaussian base the same formula is
the independent-coupling path, which still ends exactly at the base.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..flows.core import Flow
from ..flows.preset import Preset
from ..transforms.base import Compose
from ..transforms.continuous import ContinuousFlow
from .fit import Data, _unpack, as_loader

__all__ = [
    "FlowMatchingHistory",
    "continuous_layers",
    "fit_flow_matching",
    "flow_matching_loss",
    "ot_conditional_path",
]


@dataclass
class FlowMatchingHistory:
    """What :func:`fit_flow_matching` did: mean train and validation flow-matching loss per evaluation round."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    best_val_loss: float = math.inf
    best_step: int = -1
    skipped_batches: int = 0
    stopped_early: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict:
        """A JSON-serialisable dictionary."""
        return dict(self.__dict__)


def ot_conditional_path(x0: Tensor, x1: Tensor, s: Tensor, sigma_min: float) -> tuple[Tensor, Tensor]:
    r"""The optimal-transport conditional path of Lipman et al. (2023) and its velocity, in their time
    :math:`s` (noise :math:`x_0` at 0, data :math:`x_1` at 1):

    .. math:: \psi_s = \big(1 - (1 - \sigma_{\min})s\big)x_0 + s\,x_1, \qquad
        \dot\psi_s = x_1 - (1 - \sigma_{\min})\,x_0.

    Args:
        x0, x1: Base and data draws, shape ``(batch, D)``.
        s: Times, shape ``(batch,)``.
        sigma_min: Width of the path's end at the data.

    Returns:
        ``(psi, velocity)``, both ``(batch, D)``.

    Example:
        >>> psi, u = ot_conditional_path(torch.zeros(2, 1), torch.ones(2, 1), torch.tensor([0.0, 1.0]), 0.0)
        >>> psi.flatten().tolist(), u.flatten().tolist()
        ([0.0, 1.0], [1.0, 1.0])
    """
    s = s.reshape(-1, *([1] * (x1.dim() - 1)))
    a = 1.0 - sigma_min
    return (1.0 - a * s) * x0 + s * x1, x1 - a * x0


def continuous_layers(flow: Flow) -> list[ContinuousFlow]:
    """The continuous layers of ``flow`` in forward (data → latent) order, or ``ValueError`` when its
    transform is not a :class:`ContinuousFlow` or a composition of them only (flow matching needs every
    layer to be an ODE).

    Example:
        >>> from pushforward.flows import FFJORD
        >>> len(continuous_layers(FFJORD(2, layers=2, hidden=(8,))))
        2
    """
    transform = getattr(flow, "transform", None)
    parts = list(transform.transforms) if isinstance(transform, Compose) else [transform]
    if not isinstance(flow, Flow) or not all(isinstance(p, ContinuousFlow) for p in parts):
        raise ValueError(
            "flow matching trains a Flow whose transform is a ContinuousFlow or a Compose of ContinuousFlows "
            f"only (e.g. the FFJORD preset without augment); got {type(transform).__name__}"
        )
    if type(flow) is not Flow and not isinstance(flow, Preset):  # a preset is a plain Flow underneath
        raise ValueError(
            f"flow matching needs a plain Flow, got {type(flow).__name__} (augmented flows are not supported)"
        )
    return parts  # type: ignore[return-value]


def flow_matching_loss(
    flow: Flow,
    x1: Tensor,
    context: Tensor | None = None,
    *,
    sigma_min: float = 1e-4,
    time_exponent: float = 0.0,
    x0: Tensor | None = None,
    u: Tensor | None = None,
) -> Tensor:
    r"""The conditional flow-matching loss of ``flow`` on the data batch ``x1`` (see the module docstring):
    mean over the batch of :math:`\|f_k(\psi_s, \tau; c) - \dot\psi_s\,ds/d\tau\|^2`.

    Args:
        flow: A flow of :class:`ContinuousFlow` layers (:func:`continuous_layers`).
        x1: Data, ``(batch, D)``.
        context: Context ``(batch, C)`` for a conditional flow.
        sigma_min: :math:`\sigma_{\min}`.
        time_exponent: :math:`\beta \ge 0`: path times are drawn with density :math:`\propto s^\beta`
            (0: uniform; larger values put more weight near the data, as flow-matching posterior estimation
            proposes).
        x0: Base draws (default: sampled from ``flow.base``).
        u: Positions along the whole path, :math:`u = 1 - s \in [0, 1)` (0 at the data), ``(batch,)``,
            choosing the layer and its time (default: drawn as above).

    Example:
        >>> from pushforward.flows import FFJORD
        >>> loss = flow_matching_loss(FFJORD(2, hidden=(16,)), torch.randn(8, 2))
        >>> loss.backward()
    """
    layers = continuous_layers(flow)
    if x0 is None:
        x0 = flow.base.sample((x1.shape[0],)).to(x1)
    if u is None:
        uniform = torch.rand(x1.shape[0], dtype=x1.dtype, device=x1.device)
        u = 1.0 - uniform.pow(1.0 / (1.0 + time_exponent)) if time_exponent else uniform
    k_layers = len(layers)
    scaled = u * k_layers
    k = scaled.floor().clamp(max=k_layers - 1)
    frac = scaled - k  # position inside layer k, in [0, 1)
    psi, velocity = ot_conditional_path(x0, x1, 1.0 - u, sigma_min)
    if k_layers == 1:
        layer = layers[0]
        pred = layer.dynamics.net(frac * layer.time, psi, context if layer.context_features else None)
        return (pred + velocity / layer.time).pow(2).reshape(x1.shape[0], -1).sum(-1).mean()
    err = x1.new_zeros(x1.shape[0])
    for i, layer in enumerate(layers):
        rows = (k == i).nonzero().squeeze(-1)
        if rows.numel() == 0:
            continue
        ctx = None if context is None or not layer.context_features else context.index_select(0, rows)
        target = -velocity.index_select(0, rows) / (k_layers * layer.time)
        pred = layer.dynamics.net(frac.index_select(0, rows) * layer.time, psi.index_select(0, rows), ctx)
        err = err.index_copy(0, rows, (pred - target).pow(2).reshape(rows.numel(), -1).sum(-1))
    return err.mean()


def fit_flow_matching(
    flow: Flow,
    train: Data,
    val: Data | None = None,
    *,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    clip_grad: float | None = 5.0,
    schedule: str | None = "cosine",
    sigma_min: float = 1e-4,
    time_exponent: float = 0.0,
    embedding: nn.Module | None = None,
    patience: int | None = None,
    eval_every: int | None = None,
    seed: int | None = None,
    callback: Callable[[int, float], None] | None = None,
    ema: float | None = None,
) -> FlowMatchingHistory:
    r"""Train the continuous flow ``flow`` (in place) by conditional flow matching with Adam.

    The loss is :func:`flow_matching_loss` (optimal-transport path, :math:`\sigma_{\min}`); see the module
    docstring for the direction convention. Afterwards ``flow.log_prob`` (the exact ODE log-density) and
    ``flow.sample`` work as for a maximum-likelihood FFJORD.

    Args:
        flow: A :class:`Flow` whose transform is a :class:`~pushforward.transforms.ContinuousFlow` or a
            ``Compose`` of them (the ``FFJORD`` preset); its dynamics must accept one time per row (the
            default :class:`~pushforward.transforms.TimeMLP` does).
        train: Data ``(N, D)`` (tensor or array), or a ``(data, context)`` tuple for a conditional flow, or a
            ``DataLoader`` yielding ``x`` or ``(x, context)``.
        val: Validation data in the same forms: enables early stopping on the validation loss (computed with
            base draws and times fixed once, so it is deterministic) and restores the best weights.
        steps, batch_size, lr, weight_decay: Optimisation settings.
        clip_grad: Max gradient norm (``None``: no clipping).
        schedule: ``"cosine"`` annealing to 0, or ``None`` for a constant rate.
        sigma_min: :math:`\sigma_{\min}` of the path, in ``[0, 1)``.
        time_exponent: :math:`\beta` of the time density :math:`\propto s^\beta` (0: uniform).
        embedding: Optional network applied to the context before the flow sees it, trained jointly (the
            contexts in ``train``/``val`` are then its inputs: pass ``DataLoader`` objects); its state is
            restored with the flow's.
        patience: Stop after this many evaluation rounds without validation improvement.
        eval_every: Steps between evaluation rounds (default: ``steps / 50``, at least 1).
        seed: Seeds shuffling, base draws and times; the global RNG is left untouched.
        callback: Called as ``callback(step, train_loss)`` after every applied step.
        ema: Decay of an exponential moving average of the weights (e.g. ``0.999``; Polyak & Juditsky,
            "Acceleration of Stochastic Approximation by Averaging", 1992), as is usual for flow-matching and
            diffusion models: the validation loss is computed with the averaged weights and the averaged
            weights are the ones kept (the best ones with ``val``, the last ones without). ``None`` keeps
            the raw weights.

    Returns:
        A :class:`FlowMatchingHistory`. Batches whose loss or gradient is not finite are skipped (counted),
        never applied; if no batch could be applied, or the validation loss is never finite,
        ``FloatingPointError``.

    Example:
        >>> from pushforward.flows import FFJORD
        >>> from pushforward.data import toy
        >>> flow = FFJORD(2, hidden=(32, 32), trace="exact")
        >>> history = fit_flow_matching(flow, toy("8gaussians", 1000), steps=20, seed=0)
        >>> flow.log_prob(torch.zeros(1, 2)).shape
        torch.Size([1])
    """
    continuous_layers(flow)
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not (isinstance(sigma_min, (int, float)) and 0.0 <= sigma_min < 1.0):
        raise ValueError(f"sigma_min must be a number in [0, 1), got {sigma_min!r}")
    if not (isinstance(time_exponent, (int, float)) and 0.0 <= time_exponent < math.inf):
        raise ValueError(f"time_exponent must be a finite number >= 0, got {time_exponent!r}")
    if patience is not None and patience <= 0:
        raise ValueError(f"patience must be positive, got {patience}")
    if eval_every is None:
        eval_every = max(1, steps // 50)
    elif eval_every <= 0:
        raise ValueError(f"eval_every must be positive, got {eval_every}")
    if schedule not in (None, "none", "constant", "cosine"):
        raise ValueError(f"schedule must be 'cosine' or None, got {schedule!r}")
    if embedding is not None and not isinstance(embedding, nn.Module):
        raise TypeError(f"embedding must be an nn.Module, got {type(embedding).__name__}")
    if ema is not None and not (isinstance(ema, (int, float)) and 0.0 < ema < 1.0):
        raise ValueError(f"ema must be a decay in (0, 1) or None, got {ema!r}")
    model = nn.ModuleDict({"flow": flow, **({"embedding": embedding} if embedding is not None else {})})
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the flow has no trainable parameters")
    device = params[0].device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        loader = as_loader(train, flow, batch_size, shuffle=True, name="train", generator=gen)
        val_set = _fixed_validation(flow, val, device, time_exponent) if val is not None else None

        def loss_of(x: Tensor, c: Tensor | None, x0: Tensor | None = None, u: Tensor | None = None) -> Tensor:
            if embedding is not None and c is not None:
                c = embedding(c)
            return flow_matching_loss(
                flow, x, c, sigma_min=sigma_min, time_exponent=time_exponent, x0=x0, u=u
            )

        return _train(
            model,
            params,
            loss_of,
            loader,
            val_set,
            steps,
            _Settings(lr, weight_decay, clip_grad, schedule, patience, eval_every, callback, device, ema),
        )


@dataclass
class _Settings:
    lr: float
    weight_decay: float
    clip_grad: float | None
    schedule: str | None
    patience: int | None
    eval_every: int
    callback: Callable[[int, float], None] | None
    device: torch.device
    ema: float | None = None


def _fixed_validation(flow: Flow, val: Data, device: torch.device, time_exponent: float) -> list[tuple]:
    """Validation batches with their base draws and path positions drawn once (a deterministic loss)."""
    out = []
    for batch in as_loader(val, flow, 4096, shuffle=False, name="val"):
        x, c = _unpack(batch, device)
        x0 = flow.base.sample((x.shape[0],)).to(x)
        uniform = torch.rand(x.shape[0], dtype=x.dtype, device=x.device)
        out.append((x, c, x0, 1.0 - uniform.pow(1.0 / (1.0 + time_exponent)) if time_exponent else uniform))
    return out


def _train(model, params, loss_of, loader, val_set, steps: int, cfg: _Settings) -> FlowMatchingHistory:
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if cfg.schedule == "cosine" else None
    history = FlowMatchingHistory()
    best_state: dict | None = None
    rounds_without_gain, running, n_running, applied = 0, 0.0, 0, 0
    max_norm = cfg.clip_grad if cfg.clip_grad is not None else math.inf
    average = _WeightAverage(params, cfg.ema) if cfg.ema is not None else None
    start = time.perf_counter()
    model.train()
    batches = _forever(loader)
    for step in range(1, steps + 1):
        x, c = _unpack(next(batches), cfg.device)
        loss = loss_of(x, c)
        opt.zero_grad(set_to_none=True)
        value = float(loss.detach())
        if math.isfinite(value):
            loss.backward()
            if torch.isfinite(torch.nn.utils.clip_grad_norm_(params, max_norm)):
                opt.step()
                applied += 1
                if average is not None:
                    average.update(applied)
                running, n_running = running + value, n_running + 1
                if cfg.callback is not None:
                    cfg.callback(step, value)
            else:
                opt.zero_grad(set_to_none=True)
                history.skipped_batches += 1
        else:
            history.skipped_batches += 1
        if sched is not None and applied:  # (no schedule step before the first optimizer step)
            sched.step()
        if step % cfg.eval_every == 0 or step == steps:
            history.train_loss.append(running / n_running if n_running else math.nan)
            history.steps.append(step)
            running, n_running = 0.0, 0
            if val_set is not None:
                with torch.no_grad(), _averaged(average):
                    total = sum(float(loss_of(x, c, x0, u)) * x.shape[0] for x, c, x0, u in val_set)
                    v = total / sum(b[0].shape[0] for b in val_set)
                    history.val_loss.append(v)
                    if v < history.best_val_loss - 1e-7:
                        history.best_val_loss, history.best_step = v, step
                        best_state = copy.deepcopy(model.state_dict())
                        rounds_without_gain = 0
                    else:
                        rounds_without_gain += 1
                if cfg.patience is not None and rounds_without_gain >= cfg.patience:
                    history.stopped_early = True
                    break
    history.seconds = time.perf_counter() - start
    if applied == 0:
        raise FloatingPointError(
            f"flow matching diverged: all {history.skipped_batches} batches had a non-finite loss or gradient"
        )
    if best_state is not None:
        model.load_state_dict(best_state)
    elif val_set is not None:
        raise FloatingPointError("flow matching diverged: the validation loss was never finite")
    elif average is not None:
        average.swap()  # no validation: keep the averaged weights
    model.eval()
    return history


class _WeightAverage:
    """An exponential moving average of ``params`` with the usual warm-up: after the ``t``-th applied step
    the decay is ``min(decay, (1 + t) / (10 + t))``, so early averages are not dominated by the initial
    weights. :meth:`swap` exchanges the averaged and the live values in place (twice restores them)."""

    def __init__(self, params: list[Tensor], decay: float) -> None:
        self.params, self.decay = params, float(decay)
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self, t: int) -> None:
        weight = 1.0 - min(self.decay, (1.0 + t) / (10.0 + t))
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach(), weight)

    @torch.no_grad()
    def swap(self) -> None:
        for s, p in zip(self.shadow, self.params):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


@contextlib.contextmanager
def _averaged(average: _WeightAverage | None):
    """Within the block the parameters hold their averaged values (no-op when ``average`` is None)."""
    if average is None:
        yield
        return
    average.swap()
    try:
        yield
    finally:
        average.swap()


def _forever(loader):
    while True:
        yield from loader
