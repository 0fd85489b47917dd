"""Maximum-likelihood training of flows."""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from ..checks import check_input
from ..flows.core import Flow
from .step import TrainingDiverged, skip_nonfinite_step

__all__ = ["History", "as_loader", "evaluate_nll", "fit"]

Data = Tensor | np.ndarray | tuple | DataLoader


@dataclass
class History:
    """What :func:`fit` did: mean train and validation NLL (nats) per evaluation round, and more."""

    train_nll: list[float] = field(default_factory=list)
    val_nll: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    best_val_nll: float = math.inf
    best_step: int = -1
    skipped_batches: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    resumed_from_step: int = 0
    diagnostics: dict | None = None
    initial_val_nll: float = math.nan

    def as_dict(self) -> dict:
        """A JSON-serialisable dictionary."""
        return dict(self.__dict__)


def _to_tensor(a: Tensor | np.ndarray, name: str, dtype: torch.dtype) -> Tensor:
    if isinstance(a, np.ndarray):
        if not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"{name} must be numeric, got numpy dtype {a.dtype}")
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, Tensor):
        raise TypeError(f"{name} must be a tensor, a numpy array, a (data, context) tuple or a DataLoader")
    if not a.is_floating_point():
        a = a.to(dtype)
    return a.to(dtype)


def as_loader(
    data: Data,
    flow: Flow,
    batch_size: int,
    shuffle: bool,
    name: str = "data",
    generator: torch.Generator | None = None,
) -> DataLoader:
    """Wrap tensors / arrays / ``(x, context)`` tuples in a validated ``DataLoader``; pass loaders through."""
    if isinstance(data, DataLoader):
        return data
    dtype = flow.dtype or torch.get_default_dtype()
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"{name} as a tuple must be (data, context), got {len(data)} items")
        x = check_input(_to_tensor(data[0], name, dtype), flow.event_shape, name=name)
        c = check_input(
            _to_tensor(data[1], f"{name} context", dtype), (flow.context_features,), name=f"{name} context"
        )
        if c.shape[0] != x.shape[0]:
            raise ValueError(f"{name} has {x.shape[0]} rows but its context has {c.shape[0]}")
        ds = TensorDataset(x, c)
    else:
        x = check_input(_to_tensor(data, name, dtype), flow.event_shape, name=name)
        if flow.context_features:
            raise ValueError(f"the flow is conditional: pass {name} as a (data, context) tuple")
        ds = TensorDataset(x)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=False, generator=generator)


def _unpack(batch, device: torch.device | None) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, (list, tuple)):
        x = batch[0]
        c = batch[1] if len(batch) > 1 else None
    else:
        x, c = batch, None
    if device is not None:
        x = x.to(device)
        c = c.to(device) if c is not None else None
    return x, c


@torch.no_grad()
def evaluate_nll(flow: Flow, data: Data, batch_size: int = 1024) -> float:
    """Mean negative log-likelihood (nats per sample) of ``data`` under ``flow``, in eval mode."""
    was_training = flow.training
    flow.eval()
    device = next(flow.parameters()).device if any(True for _ in flow.parameters()) else None
    total, count = 0.0, 0
    try:
        for batch in as_loader(data, flow, batch_size, shuffle=False):
            x, c = _unpack(batch, device)
            lp = flow.log_prob(x, c)
            total += float(-lp.sum())
            count += lp.numel()
    finally:
        flow.train(was_training)
    return total / max(count, 1)


def _cycle(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


def _batches(loader: DataLoader, sampler: DistributedSampler | None, epoch: int, skip: int) -> Iterator:
    """Yield ``(epoch, index_in_epoch, batch)`` forever, starting ``skip`` batches into ``epoch``."""
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if skip > 0:
                skip -= 1
                continue
            yield epoch, i, batch
        epoch += 1
        skip = 0


def _first_rows(data: Data, flow: Flow, n: int = 4096) -> tuple[Tensor, Tensor | None]:
    loader = as_loader(data, flow, n, shuffle=False, name="val")
    batch = next(iter(loader))
    return _unpack(batch, None)


def fit(
    flow: Flow,
    train: Data,
    val: Data | None = None,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    clip_grad: float | None = 5.0,
    schedule: str | None = "cosine",
    patience: int | None = None,
    eval_every: int | None = None,
    progress: bool = True,
    seed: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    callback: Callable[[int, float], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    distributed: bool = False,
    diagnostics: bool = False,
    max_skipped_fraction: float = 0.5,
    fingerprint: str | None = None,
) -> History:
    """Fit ``flow`` by maximum likelihood with Adam.

    Args:
        flow: The flow to train (in place).
        train: Training data: a tensor / numpy array of shape ``(N, *event_shape)``, a ``(data, context)``
            tuple for conditional flows, or a ``DataLoader`` yielding ``x`` or ``(x, context)``.
        val: Optional validation data in the same forms; enables early stopping and best-weights restore.
        steps, epochs: Training length (give one; default 1000 steps).
        batch_size, lr, weight_decay: Optimisation settings (``batch_size`` is the global batch; with
            ``distributed=True`` each of the ``W`` ranks gets ``batch_size / W`` rows).
        clip_grad: Max gradient norm (``None`` disables clipping).
        schedule: ``"cosine"`` annealing to 0 over training, or ``None`` for a constant rate.
        patience: Stop after this many evaluation rounds without validation improvement.
        eval_every: Steps between evaluation rounds (default: one epoch, at most 50 rounds in all).
        progress: Show a tqdm progress bar.
        seed: Seeds the data shuffling (epoch ``e`` uses the permutation seeded by ``seed + e``).
        optimizer: A ready optimizer to use instead of Adam.
        callback: Called as ``callback(step, train_loss)`` after every applied step.
        checkpoint: Path of a checkpoint file, written atomically every ``checkpoint_every`` steps (default:
            every evaluation round) and at the end, by rank 0 only. It holds the weights, optimizer,
            scheduler, RNG state, data position, history and best weights.
        checkpoint_every: Steps between checkpoints.
        resume: Continue from ``checkpoint`` if it exists (e.g. after the process was killed). With tensor
            data and the same arguments, the resumed run reproduces the uninterrupted run exactly.
        distributed: Train with ``DistributedDataParallel`` on the initialised default process group (see
            :mod:`pushforward.train.distributed`); shards every batch with a ``DistributedSampler``.
        diagnostics: After training, run :func:`pushforward.analysis.diagnostics.invertibility` on (up to 4096
            rows of) the validation data, or the training data without ``val``; stored in
            ``History.diagnostics``.
        fingerprint: A string identifying the data and settings of this run (e.g. a hash); it is stored in
            the checkpoint, and ``resume`` refuses a checkpoint with a different one.
        max_skipped_fraction: Largest fraction of the steps that may be skipped for a non-finite loss or
            gradient before the run counts as diverged (``1.0`` never raises for skips).

    Returns:
        A :class:`History`. Batches whose loss or gradient is not finite are skipped (counted in
        ``History.skipped_batches``), never applied (see :func:`pushforward.train.step.skip_nonfinite_step`).

    Raises:
        TrainingDiverged: More than ``max_skipped_fraction`` of the steps were skipped (raised as soon as
            that is certain); or validation data was given and no validation NLL was finite, or the best one
            is worse than the untrained flow's by more than 100 nats per dimension (far beyond overfitting:
            the optimisation blew up). The weights are left as they are; the checkpoint, if any, is kept.

    Example:
        >>> from pushforward.flows import RealNVP
        >>> from pushforward.data import toy
        >>> flow = RealNVP(2, layers=2, hidden=(16, 16))
        >>> history = fit(flow, toy("moons", 500), steps=20, progress=False)
    """
    from tqdm.auto import tqdm

    from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    if steps is not None and epochs is not None:
        raise ValueError("give steps or epochs, not both")
    if (steps is not None and steps <= 0) or (epochs is not None and epochs <= 0):
        raise ValueError("steps and epochs must be positive")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if checkpoint_every is not None and checkpoint_every <= 0:
        raise ValueError(f"checkpoint_every must be positive, got {checkpoint_every}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if not 0.0 <= max_skipped_fraction <= 1.0:
        raise ValueError(f"max_skipped_fraction must be in [0, 1], got {max_skipped_fraction}")
    params = [p for p in flow.parameters() if p.requires_grad]
    device = params[0].device if params else None

    rank, world = 0, 1
    if distributed:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "distributed=True needs an initialised process group; launch with torchrun and call "
                "pushforward.train.distributed.init() first"
            )
        rank, world = dist.get_rank(), dist.get_world_size()
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world}")

    # Data: tensors go through a DistributedSampler (one replica when not distributed) so that the global
    # batches are the same sets for any number of processes and resuming can find its place.
    sampler: DistributedSampler | None = None
    if isinstance(train, DataLoader):
        loader = train
    else:
        dataset = as_loader(train, flow, batch_size, shuffle=True, name="train").dataset
        if seed is not None:
            base_seed = int(seed)
        else:
            base_seed = int(torch.randint(0, 2**31 - 1, ()))
            if distributed:
                t = torch.tensor([base_seed], dtype=torch.int64, device=_comm_device(device))
                dist.broadcast(t, 0)
                base_seed = int(t)
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=base_seed)
        loader = DataLoader(dataset, batch_size=batch_size // world, sampler=sampler, drop_last=False)
    if val is not None and not isinstance(val, DataLoader):
        as_loader(val, flow, batch_size, shuffle=False, name="val")  # validate once, up front
    per_epoch = max(len(loader), 1)
    total = steps if steps is not None else (epochs or 0) * per_epoch
    if total == 0:
        total = 1000
    if eval_every is None:
        eval_every = max(per_epoch, math.ceil(total / 50))
    if checkpoint is not None and checkpoint_every is None:
        checkpoint_every = eval_every
    opt = optimizer or torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = None
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    elif schedule not in (None, "none", "constant"):
        raise ValueError(f"schedule must be 'cosine' or None, got {schedule!r}")

    model: torch.nn.Module = flow
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device is not None and device.type == "cuda" else None
        model = DistributedDataParallel(flow, device_ids=ids)

    history = History()
    best_state: dict | None = None
    rounds_without_gain = 0
    running, n_running = 0.0, 0
    start_step, start_epoch, skip = 1, 0, 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        ck = load_checkpoint(checkpoint, map_location=device or "cpu")
        if fingerprint is not None and ck.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{checkpoint} was written by a run with other data or settings (fingerprint mismatch); "
                "delete it or pass another checkpoint path"
            )
        flow.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if sched is not None and ck.get("scheduler") is not None:
            sched.load_state_dict(ck["scheduler"])
        for k, v in ck["history"].items():
            setattr(history, k, v)
        best_state = ck.get("best_state")
        rounds_without_gain = int(ck["rounds_without_gain"])
        running, n_running = float(ck["running"]), int(ck["n_running"])
        torch.set_rng_state(ck["rng_cpu"])
        if ck.get("rng_cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["rng_cuda"])
        if int(ck["total"]) != total:
            warnings.warn(
                f"the checkpoint was written for {ck['total']} steps, this run has {total}", stacklevel=2
            )
        start_step, start_epoch, skip = int(ck["step"]) + 1, int(ck["epoch"]), int(ck["batch_in_epoch"])
        history.resumed_from_step = int(ck["step"])

    def _save(step: int, epoch: int, batch_in_epoch: int) -> None:
        if checkpoint is None or rank != 0:
            return
        save_checkpoint(
            {
                "step": step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "total": total,
                "model": flow.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "history": history.as_dict(),
                "best_state": best_state,
                "rounds_without_gain": rounds_without_gain,
                "running": running,
                "n_running": n_running,
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "fingerprint": fingerprint,
            },
            checkpoint,
        )

    start = time.perf_counter()
    if val is not None and start_step == 1:
        history.initial_val_nll = evaluate_nll(flow, val, batch_size=max(batch_size, 1024))
    flow.train()
    bar = tqdm(
        total=total, initial=start_step - 1, disable=not progress or rank != 0, desc="fit", leave=False
    )
    batches = _batches(loader, sampler, start_epoch, skip)
    epoch, position = start_epoch, skip
    step = start_step
    try:
        while step <= total and not history.stopped_early:
            epoch, index, batch = next(batches)
            position = index + 1
            if position >= per_epoch:
                epoch, position = epoch + 1, 0
            x, c = _unpack(batch, device)
            loss = -model(x, c).mean()
            loss_value, finite = _global_loss(loss, distributed)
            if skip_nonfinite_step(loss, params, opt, clip_grad, finite=finite):
                running += loss_value
                n_running += 1
                if callback is not None:
                    callback(step, loss_value)
            else:
                history.skipped_batches += 1
                if history.skipped_batches > max_skipped_fraction * total:
                    raise _diverged(history, step, total)  # can no longer end below the limit
            if sched is not None:
                sched.step()
            bar.update(1)
            if step % eval_every == 0 or step == total:
                train_nll = running / max(n_running, 1) if n_running else math.nan
                running, n_running = 0.0, 0
                history.train_nll.append(train_nll)
                history.steps.append(step)
                postfix = {"train": f"{train_nll:.3f}"}
                if val is not None:
                    v = evaluate_nll(flow, val, batch_size=max(batch_size, 1024))
                    history.val_nll.append(v)
                    postfix["val"] = f"{v:.3f}"
                    if v < history.best_val_nll - 1e-6:
                        history.best_val_nll, history.best_step = v, step
                        best_state = copy.deepcopy(flow.state_dict())
                        rounds_without_gain = 0
                    else:
                        rounds_without_gain += 1
                bar.set_postfix(postfix)
                if patience is not None and rounds_without_gain >= patience:
                    history.stopped_early = True
            due = step % checkpoint_every == 0 if checkpoint_every else False
            if checkpoint is not None and (due or step == total or history.stopped_early):
                history.seconds += time.perf_counter() - start
                start = time.perf_counter()
                _save(step, epoch, position)
            step += 1
    finally:
        bar.close()
    if best_state is not None:
        flow.load_state_dict(best_state)
    flow.eval()
    history.seconds += time.perf_counter() - start
    ran = step - 1
    if history.skipped_batches > max_skipped_fraction * max(ran, 1):
        raise _diverged(history, ran, total)
    if val is not None and history.val_nll and not math.isfinite(history.best_val_nll):
        raise _diverged(history, ran, total, "nonfinite")
    if history.best_val_nll > history.initial_val_nll + 100.0 * flow.features:  # False while either is NaN
        raise _diverged(history, ran, total, "worse")
    if diagnostics:
        from ..analysis.diagnostics import invertibility

        source = val if val is not None else train
        if isinstance(source, DataLoader):
            x_d, c_d = _unpack(next(iter(source)), device)
        else:
            x_d, c_d = _first_rows(source, flow)
            x_d = x_d.to(device) if device is not None else x_d
            c_d = c_d.to(device) if c_d is not None and device is not None else c_d
        history.diagnostics = invertibility(flow, x_d, c_d).as_dict()
    return history


def _diverged(history: History, step: int, total: int, reason: str = "skipped") -> TrainingDiverged:
    """The error for a run that skipped too many batches (``reason="skipped"``), reached no finite
    validation score (``"nonfinite"``) or ended far worse than the untrained flow (``"worse"``)."""
    if reason == "nonfinite":
        why = f"no finite validation NLL in {len(history.val_nll)} evaluations"
    elif reason == "worse":
        why = (
            f"the best validation NLL {history.best_val_nll:.4g} is worse than the untrained flow's "
            f"{history.initial_val_nll:.4g} by more than 100 nats per dimension"
        )
    else:
        why = (
            f"{history.skipped_batches} of the {step} batches run (of {total} planned) had a non-finite loss "
            "or gradient and were skipped"
        )
    return TrainingDiverged(
        f"training diverged: {why}; lower the learning rate (or check the data for extreme values)",
        skipped=history.skipped_batches,
        steps=step,
        best_val_nll=history.best_val_nll if history.val_nll else math.nan,
        history=history,
    )


def _comm_device(device: torch.device | None) -> torch.device:
    import torch.distributed as dist

    if device is not None and device.type == "cuda" and dist.get_backend() == "nccl":
        return device
    return torch.device("cpu")


def _global_loss(loss: Tensor, distributed: bool) -> tuple[float, bool]:
    """The batch loss averaged over ranks, and whether it is finite on every rank."""
    if not distributed:
        value = float(loss.detach())
        return value, math.isfinite(value)
    import torch.distributed as dist

    d = loss.detach()
    finite = torch.isfinite(d)
    t = torch.stack([torch.where(finite, d, torch.zeros_like(d)), (~finite).to(d.dtype)]).double()
    t = t.to(_comm_device(d.device))
    dist.all_reduce(t)
    value = float(t[0]) / dist.get_world_size()
    return value, float(t[1]) == 0.0
