r"""The one training engine: every objective (maximum likelihood, flow matching, VI, posterior estimation,
bits/dim) is minimised by :func:`train`.

:func:`train` alone owns the optimizer (Adam), the learning-rate schedule (linear warm-up, then cosine
annealing to 0 or a constant rate), gradient clipping by global norm, the non-finite guard
(:func:`~pushforward.train.step.skip_nonfinite_step`), divergence detection (one
:class:`~pushforward.train.step.TrainingDiverged`), early stopping with best-weights restore, an exponential
moving average of the weights, crash-safe checkpoints with ``resume``, ``DistributedDataParallel``, the
progress bar and ``torch.compile`` of the loss where a measured break-even says it pays
(``config.compile``, :mod:`~pushforward.train.compiling`). What differs between uses is a **loss object**:

- ``loss(model, batch) -> Tensor``: the scalar to minimise (a mean over the batch); ``batch`` is the tuple
  a ``DataLoader`` yields, ``(x,)`` or ``(x, context)`` (``()`` for a data-free loss);
- ``loss.units``: what the numbers are (``"nats"``, ``"bits/dim"``, ...), shown by the progress bar;
- optional ``loss.validation(model, batch)``: a deterministic validation score (default: the loss itself,
  without gradient, in eval mode); ``loss.needs_data = False`` for data-free losses (VI), which run
  ``steps`` steps without a loader; ``loss.check(model)`` to refuse a model before any work;
  ``loss.max_worsening(model)``: how far (in ``units``) the best validation score may end above the
  untrained model's before the run counts as diverged.

The schedule after :math:`t` steps of :math:`T` with :math:`W` warm-up steps is

.. math:: \eta_t = \eta \cdot \begin{cases} (t + 1)/W & t < W \\
    \tfrac12\big(1 + \cos(\pi\,(t - W)/(T - W))\big) & t \ge W \ \text{(cosine; 1 when constant)}\end{cases}

(Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017; Kingma & Ba, "Adam:
A Method for Stochastic Optimization", ICLR 2015). The weight average after the :math:`k`-th applied step is
:math:`\bar\theta \leftarrow \bar\theta + (1 - \beta_k)(\theta - \bar\theta)`,
:math:`\beta_k = \min(\beta, (1 + k)/(10 + k))` (Polyak & Juditsky, "Acceleration of Stochastic
Approximation by Averaging", 1992).

Example:
    >>> from pushforward.flows import RealNVP
    >>> from pushforward.data import toy
    >>> from pushforward.train.config import TrainConfig
    >>> from pushforward.train.losses import MaximumLikelihood
    >>> flow = RealNVP(2, layers=2, hidden=(16,))
    >>> history = train(flow, MaximumLikelihood(), toy("moons", 500, seed=0), config=TrainConfig(steps=20))
    >>> history.units, len(history.train_loss) > 0
    ('nats', True)
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .compiling import CompilePlan
from .config import TrainConfig
from .data import Data, comm_device, make_loader, unpack
from .step import TrainingDiverged, skip_nonfinite_step

__all__ = ["History", "train"]


def default_optimizer(params: list[Tensor], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam with PyTorch's fused kernel (one pass over every parameter) where this torch build offers it for
    these parameters (one CPU or CUDA device, floating point), else the for-each implementation.

    The fused step measured 5.6x faster than the for-each one on an AVX2 core and 2.2x with scalar kernels
    (``ATEN_CPU_CAPABILITY=default``), a MAF training step 1.06-1.10x faster in all
    (``benchmarks/ab_kernels.py --adam``, ``benchmarks/results/issue31/``); the update is the same Adam.

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(3))
        >>> type(default_optimizer([w], 1e-3, 0.0)).__name__
        'Adam'
    """
    devices = {p.device.type for p in params}
    if len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params):
        try:
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):  # torch < 2.4 has no fused CPU Adam
            pass
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)


@dataclass
class History:
    """What :func:`train` did: the mean train and validation loss (in ``units``) per evaluation round, and more.

    Attributes:
        train_loss, val_loss, steps: Per evaluation round.
        units: The loss's units (``"nats"`` per row for maximum likelihood, ``"bits/dim"``, ...).
        best_val_loss, best_step: The best validation score and the step it was reached at.
        initial_val_loss: The untrained model's validation score.
        skipped_batches: Steps whose loss or gradient was not finite (never applied).
        stopped_early: Stopped by ``patience`` or ``max_seconds``; ``stop_reason`` says which.
        seconds: Wall time; ``resumed_from_step``: the checkpoint's step when resumed, else 0.
        diagnostics: Post-training checks (e.g. invertibility), or None.
        extras: Objective-specific results (e.g. VI's ``log_z``, ``ess``).
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    units: str = "nats"
    best_val_loss: float = math.inf
    best_step: int = -1
    initial_val_loss: float = math.nan
    skipped_batches: int = 0
    stopped_early: bool = False
    stop_reason: str = "steps"
    seconds: float = 0.0
    resumed_from_step: int = 0
    diagnostics: dict | None = None
    extras: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """A JSON-serialisable dictionary."""
        return copy.deepcopy(dict(self.__dict__))


class _LossModule(nn.Module):
    """``model`` and ``loss`` as one module whose forward is the loss, so that ``DistributedDataParallel``
    wraps every objective (not only those that call ``model.forward``)."""

    def __init__(self, model: nn.Module, loss: Callable) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: tuple) -> Tensor:
        return self.loss(self.model, batch)


class WeightAverage:
    """The exponential moving average of ``params`` of the module docstring; :meth:`swap` exchanges the
    averaged and the live values in place (twice restores them).

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> avg = WeightAverage([w], 0.9)
        >>> with torch.no_grad():
        ...     _ = w.fill_(1.0)
        >>> avg.update(1)
        >>> round(float(avg.shadow[0]), 4)  # weight 1 - min(0.9, 2/11)
        0.8182
    """

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
def _averaged(average: WeightAverage | None):
    if average is None:
        yield
        return
    average.swap()
    try:
        yield
    finally:
        average.swap()


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """The schedule of the module docstring: the factor on the peak rate after ``step`` steps.

    Example:
        >>> [round(lr_factor(t, 10, 2, "cosine"), 3) for t in (0, 1, 2, 6, 10)]
        [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


def _params_finite(params: list[Tensor]) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params)


def _batches(loader: DataLoader, sampler, epoch: int, skip: int) -> Iterator:
    """Yield ``(epoch, index_in_epoch, batch)`` forever, starting ``skip`` batches into ``epoch``."""
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        seen = 0
        for i, batch in enumerate(loader):
            seen += 1
            if skip > 0:
                skip -= 1
                continue
            yield epoch, i, batch
        if seen == 0:
            raise ValueError("the training DataLoader yielded no batch (empty data)")
        epoch += 1
        skip = 0


@dataclass
class _Plan:
    total: int
    per_epoch: int
    eval_every: int
    checkpoint_every: int | None


class _Run:
    """The state of one :func:`train` call; methods are the phases of the loop."""

    def __init__(self, model, loss, config: TrainConfig, distributed: bool, optimizer) -> None:
        self.model, self.loss, self.cfg = model, loss, config
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.device = self.params[0].device
        self.rank, self.world = 0, 1
        if distributed:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):
                raise ValueError(
                    "distributed=True needs an initialised process group; launch with torchrun and call "
                    "pushforward.train.distributed.init() first"
                )
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
            if config.batch_size % self.world:
                raise ValueError(
                    f"batch_size {config.batch_size} must be divisible by the number of processes {self.world}"
                )
        self.distributed = distributed
        self.opt = optimizer or default_optimizer(self.params, config.lr, config.weight_decay)
        self.history = History(units=str(getattr(loss, "units", "")))
        self.best_state: dict | None = None
        self.good_state: dict = copy.deepcopy(model.state_dict())
        self.rounds_without_gain, self.running, self.n_running, self.applied = 0, 0.0, 0, 0
        self.average = WeightAverage(self.params, config.ema) if config.ema is not None else None
        self.objective: nn.Module | Callable = loss
        self.compiling = CompilePlan("eager", model, loss, 0)  # _loop chooses per TrainConfig.compile
        if distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = bool(getattr(loss, "unused_parameters", False))
            self.objective = DistributedDataParallel(
                _LossModule(model, loss), device_ids=ids, find_unused_parameters=unused
            )

    # ------------------------------------------------------------------ pieces
    def batch_loss(self, batch: tuple) -> Tensor:
        if self.distributed:
            return self.objective(batch)  # type: ignore[operator]
        return self.compiling.loss(batch)

    @torch.no_grad()
    def evaluate(self, val: DataLoader) -> float:
        was = self.model.training
        self.model.eval()
        score = getattr(self.loss, "validation", None)
        total, count = 0.0, 0
        try:
            with _averaged(self.average):
                for batch in val:
                    batch = unpack(batch, self.device)
                    rows = batch[0].shape[0]
                    value = score(self.model, batch) if score is not None else self.loss(self.model, batch)
                    total += float(value) * rows
                    count += rows
        finally:
            self.model.train(was)
        if count == 0:
            raise ValueError("the validation data is empty (the loader yielded no rows)")
        return total / count

    def state(self, step: int, epoch: int, position: int, total: int, fingerprint: str | None) -> dict:
        return {
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": position,
            "total": total,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "history": self.history.as_dict(),
            "best_state": self.best_state,
            "rounds_without_gain": self.rounds_without_gain,
            "running": self.running,
            "n_running": self.n_running,
            "applied": self.applied,
            "average": self.average.shadow if self.average is not None else None,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "fingerprint": fingerprint,
            "loss": self.loss.state_dict() if hasattr(self.loss, "state_dict") else None,
        }

    def restore(self, path: str | Path, fingerprint: str | None, total: int) -> tuple[int, int, int]:
        ck = load_checkpoint(path, map_location=self.device)
        if fingerprint is not None and ck.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{path} was written by a run with other data or settings (fingerprint mismatch); "
                "delete it or pass another checkpoint path"
            )
        try:
            self.model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["optimizer"])
            for k, v in ck["history"].items():
                setattr(self.history, k, v)
            self.best_state = ck.get("best_state")
            self.rounds_without_gain = int(ck["rounds_without_gain"])
            self.running, self.n_running = float(ck["running"]), int(ck["n_running"])
            self.applied = int(ck.get("applied", 0))
            if self.average is not None and ck.get("average") is not None:
                self.average.shadow = [t.to(p) for t, p in zip(ck["average"], self.params)]
            torch.set_rng_state(ck["rng_cpu"])
            if ck.get("rng_cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(ck["rng_cuda"])
            if ck.get("loss") is not None and hasattr(self.loss, "load_state_dict"):
                self.loss.load_state_dict(ck["loss"])
            step, epoch, position = int(ck["step"]), int(ck["epoch"]), int(ck["batch_in_epoch"])
        except (KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(
                f"{path}: not a checkpoint of this model ({type(e).__name__}: {e})"
            ) from None
        if int(ck["total"]) != total:
            warnings.warn(
                f"the checkpoint was written for {ck['total']} steps, this run has {total}", stacklevel=3
            )
        self.good_state = copy.deepcopy(self.model.state_dict())
        self.history.resumed_from_step = step
        return step + 1, epoch, position

    def end_round(self, step: int, val: DataLoader | None) -> dict:
        """Record one evaluation round; returns the progress-bar postfix."""
        h = self.history
        train_loss = self.running / self.n_running if self.n_running else math.nan
        self.running, self.n_running = 0.0, 0
        h.train_loss.append(train_loss)
        h.steps.append(step)
        postfix = {"train": f"{train_loss:.4g} {h.units}"}
        if not _params_finite(self.params):
            raise self.diverged(step, "params")
        if val is not None:
            v = self.evaluate(val)
            h.val_loss.append(v)
            postfix["val"] = f"{v:.4g} {h.units}"
            if v < h.best_val_loss - (
                1e-7 * max(1.0, abs(h.best_val_loss)) if math.isfinite(h.best_val_loss) else 0.0
            ):
                h.best_val_loss, h.best_step = v, step
                with _averaged(self.average):
                    self.best_state = copy.deepcopy(self.model.state_dict())
                self.rounds_without_gain = 0
            else:
                self.rounds_without_gain += 1
            if self.cfg.patience is not None and self.rounds_without_gain >= self.cfg.patience:
                h.stopped_early, h.stop_reason = True, "patience"
        self.good_state = copy.deepcopy(self.model.state_dict())
        return postfix

    def diverged(self, step: int, reason: str) -> TrainingDiverged:
        """The one error for a run that diverged; the weights are put back to the last finite state when the
        current ones are not finite."""
        h = self.history
        if not _params_finite(self.params):
            self.model.load_state_dict(self.good_state)
        if reason == "params":
            why = f"the parameters became non-finite by step {step} (restored the last finite ones)"
        elif reason == "nonfinite":
            why = f"no finite validation loss in {len(h.val_loss)} evaluations"
        elif reason == "worse":
            why = (
                f"the best validation loss {h.best_val_loss:.4g} {h.units} is worse than the untrained model's "
                f"{h.initial_val_loss:.4g} by more than {self.loss_margin():.4g}"
            )
        else:
            why = (
                f"{h.skipped_batches} of the {step} steps run (of {self.plan.total} planned) had a non-finite "
                "loss or gradient and were skipped"
            )
        return TrainingDiverged(
            f"training diverged: {why}; lower the learning rate (or check the data for extreme values)",
            skipped=h.skipped_batches,
            steps=step,
            best_val_loss=h.best_val_loss if h.val_loss else math.nan,
            history=h,
        )

    def loss_margin(self) -> float:
        margin = getattr(self.loss, "max_worsening", None)
        return float(margin(self.model)) if margin is not None else math.inf

    def global_loss(self, loss: Tensor) -> tuple[float, bool]:
        """The batch loss averaged over ranks, and whether it is finite on every rank."""
        if not self.distributed:
            value = float(loss.detach())
            return value, math.isfinite(value)
        import torch.distributed as dist

        d = loss.detach()
        finite = torch.isfinite(d)
        t = torch.stack([torch.where(finite, d, torch.zeros_like(d)), (~finite).to(d.dtype)]).double()
        t = t.to(comm_device(d.device))
        dist.all_reduce(t)
        return float(t[0]) / dist.get_world_size(), float(t[1]) == 0.0


def _plan(cfg: TrainConfig, per_epoch: int | None, checkpoint, checkpoint_every: int | None) -> _Plan:
    if per_epoch is None and cfg.epochs is not None:
        raise ValueError("epochs needs training data; give steps for a data-free loss")
    total = cfg.steps if cfg.steps is not None else (cfg.epochs or 0) * (per_epoch or 1)
    total = total or 1000
    eval_every = cfg.eval_every or max(per_epoch or 1, math.ceil(total / 50))
    if checkpoint is not None and checkpoint_every is None:
        checkpoint_every = eval_every
    if cfg.warmup >= total and cfg.warmup > 0:
        raise ValueError(f"warmup ({cfg.warmup} steps) must be shorter than the run ({total} steps)")
    return _Plan(total, per_epoch or 1, eval_every, checkpoint_every)


def train(
    model: nn.Module,
    loss: Callable,
    train: Data | None = None,
    val: Data | None = None,
    config: TrainConfig | None = None,
    *,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    fingerprint: str | None = None,
    distributed: bool = False,
    progress: bool = False,
    callback: Callable[[int, float], None] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> History:
    """Minimise ``loss`` over the parameters of ``model`` (in place); see the module docstring.

    Args:
        model: The module to train (a :class:`~pushforward.Flow`, a posterior, a dequantized image model...).
        loss: A loss object (:mod:`pushforward.train.losses`).
        train: Training data: a tensor / array ``(N, *event_shape)``, a ``(data, context)`` tuple, or a
            ``DataLoader`` yielding ``(x,)`` or ``(x, context)``; ``None`` for a data-free loss.
        val: Validation data in the same forms: early stopping (``config.patience``) and best-weights restore.
        config: The settings (:class:`~pushforward.train.config.TrainConfig`), validated before any work.
        checkpoint: Path of a checkpoint written atomically every ``checkpoint_every`` steps (default: every
            evaluation round) and at the end, by rank 0 only: weights, optimizer, RNG state, data position,
            history, best weights and the weight average.
        resume: Continue from ``checkpoint`` if it exists; with the same data and settings the resumed run
            reproduces the uninterrupted one exactly.
        fingerprint: Identifies the data and settings; stored in the checkpoint, and ``resume`` refuses a
            checkpoint with another one (:class:`~pushforward.train.checkpoint.CheckpointError`).
        distributed: Train with ``DistributedDataParallel`` on the initialised default process group; every
            global batch of ``batch_size`` rows is sharded over the ranks.
        progress: Show a progress bar with the train and validation loss in ``loss.units``.
        callback: Called as ``callback(step, loss_value)`` after every applied step.
        optimizer: A ready optimizer instead of Adam (the schedule still applies).

    Returns:
        A :class:`History`.

    Raises:
        TrainingDiverged: More than ``config.max_skipped_fraction`` of the steps had a non-finite loss or
            gradient (raised as soon as that is certain); the parameters became non-finite (the last finite
            ones are restored); no validation score was finite; or the best one is worse than the untrained
            model's by more than ``loss.max_worsening(model)``.
        ValueError, TypeError: Settings or data that cannot work, before the first step.
    """
    cfg = (config if config is not None else TrainConfig()).validate()
    _check_arguments(model, loss, checkpoint, checkpoint_every, resume)
    check = getattr(loss, "check", None)
    if check is not None:
        check(model)
    needs_data = bool(getattr(loss, "needs_data", True))
    if needs_data and train is None:
        raise ValueError("this loss needs training data")
    if not needs_data and (train is not None or val is not None):
        raise ValueError("this loss is data-free (e.g. variational inference): pass no train/val data")
    forked = cfg.seed is not None
    devices = [torch.cuda.current_device()] if forked and torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices, enabled=forked):
        if forked:
            torch.manual_seed(cfg.seed)
        run = _Run(model, loss, cfg, distributed, optimizer)
        loader = sampler = val_loader = None
        if needs_data:
            loader, sampler = make_loader(train, model, cfg, run.rank, run.world, run.device, distributed)
            if val is not None:
                val_loader = make_loader(val, model, cfg, 0, 1, run.device, False, shuffle=False)[0]
        per_epoch = len(loader) if loader is not None and hasattr(loader, "__len__") else None
        if loader is not None and per_epoch == 0:
            raise ValueError("the training DataLoader is empty")
        if val_loader is not None and hasattr(val_loader, "__len__") and len(val_loader) == 0:
            raise ValueError("the validation DataLoader is empty")
        run.plan = _plan(cfg, per_epoch if needs_data else None, checkpoint, checkpoint_every)
        return _loop(run, loader, sampler, val_loader, checkpoint, resume, fingerprint, progress, callback)


def _check_arguments(model, loss, checkpoint, checkpoint_every, resume) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(loss):
        raise TypeError(
            f"loss must be a loss object (callable as loss(model, batch)), got {type(loss).__name__}"
        )
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1
    ):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")


def _loop(
    run: _Run, loader, sampler, val_loader, checkpoint, resume, fingerprint, progress, callback
) -> History:
    from tqdm.auto import tqdm

    cfg, plan, h = run.cfg, run.plan, run.history
    base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in run.opt.param_groups]
    start_step, epoch, position = 1, 0, 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        start_step, epoch, position = run.restore(checkpoint, fingerprint, plan.total)
    if run.distributed and cfg.compile is True:
        warnings.warn("compile=True: distributed runs train eagerly", RuntimeWarning, stacklevel=3)
    setting = False if run.distributed else cfg.compile
    run.compiling = CompilePlan.choose(run.model, run.loss, setting, steps=plan.total - start_step + 1)
    start = time.perf_counter()
    if val_loader is not None and start_step == 1:
        h.initial_val_loss = run.evaluate(val_loader)
    run.model.train()
    bar = tqdm(total=plan.total, initial=start_step - 1, disable=not progress or run.rank != 0, leave=False)
    bar.set_description("train")
    batches = _batches(loader, sampler, epoch, position) if loader is not None else None
    step = start_step
    try:
        while step <= plan.total and not h.stopped_early:
            began = time.perf_counter()
            if batches is not None:
                epoch, index, raw = next(batches)
                position = index + 1
                if position >= plan.per_epoch:
                    epoch, position = epoch + 1, 0
                batch = unpack(raw, run.device)
            else:
                batch = ()
            factor = lr_factor(step - 1, plan.total, cfg.warmup, cfg.schedule)
            for group, lr in zip(run.opt.param_groups, base_lrs):
                group["lr"] = lr * factor
            loss = run.batch_loss(batch)
            value, finite = run.global_loss(loss)
            if skip_nonfinite_step(loss, run.params, run.opt, cfg.clip_grad, finite=finite):
                run.applied += 1
                if run.average is not None:
                    run.average.update(run.applied)
                run.running += value
                run.n_running += 1
                if callback is not None:
                    callback(step, value)
            else:
                h.skipped_batches += 1
                if h.skipped_batches > cfg.max_skipped_fraction * plan.total:
                    raise run.diverged(step, "skipped")  # can no longer end below the limit
            run.compiling.after_step(step - start_step + 1, time.perf_counter() - began)
            bar.update(1)
            out_of_time = (
                cfg.max_seconds is not None and h.seconds + time.perf_counter() - start >= cfg.max_seconds
            )
            if out_of_time:
                h.stopped_early, h.stop_reason = True, "time"
            if step % plan.eval_every == 0 or step == plan.total or out_of_time:
                bar.set_postfix(run.end_round(step, val_loader))
            due = plan.checkpoint_every is not None and step % plan.checkpoint_every == 0
            if checkpoint is not None and (due or step == plan.total or h.stopped_early):
                h.seconds += time.perf_counter() - start
                start = time.perf_counter()
                if run.rank == 0:
                    save_checkpoint(run.state(step, epoch, position, plan.total, fingerprint), checkpoint)
            step += 1
    finally:
        bar.close()
    h.seconds += time.perf_counter() - start
    if run.compiling.compile_seconds is not None:
        h.extras["compile_seconds"] = run.compiling.compile_seconds
    return _finish(run, step - 1, val_loader)


def _finish(run: _Run, ran: int, val_loader) -> History:
    h, cfg = run.history, run.cfg
    if h.skipped_batches > cfg.max_skipped_fraction * max(ran, 1):
        raise run.diverged(ran, "skipped")
    if not _params_finite(run.params):
        raise run.diverged(ran, "params")
    if run.best_state is not None:
        run.model.load_state_dict(run.best_state)
    elif run.average is not None:
        run.average.swap()  # no validation: keep the averaged weights
    run.model.eval()
    if val_loader is not None and h.val_loss and not math.isfinite(h.best_val_loss):
        raise run.diverged(ran, "nonfinite")
    if h.best_val_loss > h.initial_val_loss + run.loss_margin():  # False while either is NaN
        raise run.diverged(ran, "worse")
    finish = getattr(run.loss, "finish", None)
    if finish is not None:
        finish(run.model, h)
    return h
