"""Maximum-likelihood training of flows."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ..checks import check_input
from ..flows.core import Flow

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


def as_loader(data: Data, flow: Flow, batch_size: int, shuffle: bool, name: str = "data",
              generator: torch.Generator | None = None) -> DataLoader:
    """Wrap tensors / arrays / ``(x, context)`` tuples in a validated ``DataLoader``; pass loaders through."""
    if isinstance(data, DataLoader):
        return data
    dtype = flow._dtype() or torch.get_default_dtype()
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"{name} as a tuple must be (data, context), got {len(data)} items")
        x = check_input(_to_tensor(data[0], name, dtype), flow.event_shape, name=name)
        c = check_input(_to_tensor(data[1], f"{name} context", dtype), (flow.context_features,), name=f"{name} context")
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
) -> History:
    """Fit ``flow`` by maximum likelihood with Adam.

    Args:
        flow: The flow to train (in place).
        train: Training data: a tensor / numpy array of shape ``(N, *event_shape)``, a ``(data, context)``
            tuple for conditional flows, or a ``DataLoader`` yielding ``x`` or ``(x, context)``.
        val: Optional validation data in the same forms; enables early stopping and best-weights restore.
        steps, epochs: Training length (give one; default 1000 steps).
        batch_size, lr, weight_decay: Optimisation settings.
        clip_grad: Max gradient norm (``None`` disables clipping).
        schedule: ``"cosine"`` annealing to 0 over training, or ``None`` for a constant rate.
        patience: Stop after this many evaluation rounds without validation improvement.
        eval_every: Steps between evaluation rounds (default: one epoch, at most 50 rounds in all).
        progress: Show a tqdm progress bar.
        seed: Seeds the data shuffling.
        optimizer: A ready optimizer to use instead of Adam.
        callback: Called as ``callback(step, train_loss)`` after every applied step.

    Returns:
        A :class:`History`. Batches whose loss or gradient is not finite are skipped (counted in
        ``History.skipped_batches``), never applied.

    Example:
        >>> from pushforward.flows import RealNVP
        >>> from pushforward.data import toy
        >>> flow = RealNVP(2, layers=4, hidden=(64, 64))
        >>> history = fit(flow, toy("moons", 2000), steps=200, progress=False)
    """
    from tqdm.auto import tqdm

    if steps is not None and epochs is not None:
        raise ValueError("give steps or epochs, not both")
    if steps is not None and steps <= 0 or epochs is not None and epochs <= 0:
        raise ValueError("steps and epochs must be positive")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    loader = as_loader(train, flow, batch_size, shuffle=True, name="train", generator=gen)
    if val is not None and not isinstance(val, DataLoader):
        as_loader(val, flow, batch_size, shuffle=False, name="val")  # validate once, up front
    per_epoch = max(len(loader), 1)
    total = steps if steps is not None else (epochs or 0) * per_epoch
    if total == 0:
        total = 1000
    if eval_every is None:
        eval_every = max(per_epoch, math.ceil(total / 50))
    params = [p for p in flow.parameters() if p.requires_grad]
    opt = optimizer or torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = None
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    elif schedule not in (None, "none", "constant"):
        raise ValueError(f"schedule must be 'cosine' or None, got {schedule!r}")
    device = params[0].device if params else None

    history = History()
    best_state: dict | None = None
    rounds_without_gain = 0
    running, n_running = 0.0, 0
    start = time.perf_counter()
    flow.train()
    bar = tqdm(total=total, disable=not progress, desc="fit", leave=False)
    batches = _cycle(loader)
    try:
        for step in range(1, total + 1):
            x, c = _unpack(next(batches), device)
            loss = -flow.log_prob(x, c).mean()
            opt.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                history.skipped_batches += 1
            else:
                loss.backward()
                max_norm = clip_grad if clip_grad is not None else math.inf
                norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
                if torch.isfinite(norm):
                    opt.step()
                    running += float(loss)
                    n_running += 1
                    if callback is not None:
                        callback(step, float(loss))
                else:
                    history.skipped_batches += 1
            if sched is not None:
                sched.step()
            bar.update(1)
            if step % eval_every == 0 or step == total:
                train_nll = running / max(n_running, 1)
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
                    break
    finally:
        bar.close()
    if best_state is not None:
        flow.load_state_dict(best_state)
    flow.eval()
    history.seconds = time.perf_counter() - start
    return history
