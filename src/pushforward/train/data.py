"""Training data for the engine: tensors, arrays, ``(data, context)`` tuples or ``DataLoader`` objects,
validated against the model (shape, dtype, finiteness, emptiness) before any step.

Tensors go through a ``DistributedSampler`` (one replica when not distributed) so that the global batches
are the same sets for any number of processes and a resumed run finds its place: epoch ``e`` uses the
permutation seeded by ``seed + e``.

Example:
    >>> from pushforward.flows import RealNVP
    >>> flow = RealNVP(2, layers=1, hidden=(4,))
    >>> len(as_loader(torch.randn(10, 2), flow, batch_size=4, shuffle=False))
    3
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from ..checks import check_input

__all__ = ["Data", "as_loader", "comm_device", "make_loader", "model_dtype", "split", "unpack"]

Data = Tensor | np.ndarray | tuple | DataLoader


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of ``model``'s first floating parameter or buffer (the default dtype if none)."""
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def _to_tensor(a: Tensor | np.ndarray, name: str, dtype: torch.dtype) -> Tensor:
    if isinstance(a, np.ndarray):
        if not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"{name} must be numeric, got numpy dtype {a.dtype}")
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, Tensor):
        raise TypeError(f"{name} must be a tensor, a numpy array, a (data, context) tuple or a DataLoader")
    return a.to(dtype)


def _shapes(model: nn.Module) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    event = getattr(model, "event_shape", None)
    if event is None:
        raise TypeError(f"{type(model).__name__} has no event_shape: pass the data as a DataLoader")
    context_shape = getattr(model, "context_shape", None)
    if context_shape is None:
        k = int(getattr(model, "context_features", 0) or 0)
        context_shape = (k,) if k else None
    return tuple(event), (tuple(context_shape) if context_shape is not None else None)


def as_loader(
    data: Data,
    model: nn.Module,
    batch_size: int,
    shuffle: bool,
    name: str = "data",
    generator: torch.Generator | None = None,
) -> DataLoader:
    """Wrap tensors / arrays / ``(x, context)`` tuples in a validated ``DataLoader``; pass loaders through."""
    if isinstance(data, DataLoader):
        return data
    return DataLoader(
        _dataset(data, model, name),
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=False,
        generator=generator,
    )


def _dataset(data: Data, model: nn.Module, name: str) -> TensorDataset:
    dtype = model_dtype(model)
    event, context_shape = _shapes(model)
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"{name} as a tuple must be (data, context), got {len(data)} items")
        if context_shape is None:
            raise ValueError(f"the model is unconditional: pass {name} without a context")
        x = check_input(_to_tensor(data[0], name, dtype), event, name=name)
        c = check_input(_to_tensor(data[1], f"{name} context", dtype), context_shape, name=f"{name} context")
        if c.shape[0] != x.shape[0]:
            raise ValueError(f"{name} has {x.shape[0]} rows but its context has {c.shape[0]}")
        return TensorDataset(x, c)
    x = check_input(_to_tensor(data, name, dtype), event, name=name)
    if context_shape is not None:
        raise ValueError(f"the model is conditional: pass {name} as a (data, context) tuple")
    return TensorDataset(x)


def make_loader(
    data: Data,
    model: nn.Module,
    cfg,
    rank: int,
    world: int,
    device: torch.device,
    distributed: bool,
    *,
    shuffle: bool = True,
) -> tuple[DataLoader, DistributedSampler | None]:
    """The engine's loader for ``data`` and its sampler (``None`` for a user's ``DataLoader`` or without
    shuffling). Validation loaders use batches of at least 1024 rows."""
    if isinstance(data, DataLoader):
        return data, None
    name = "train" if shuffle else "val"
    dataset = _dataset(data, model, name)
    if not shuffle:
        own = torch.Generator().manual_seed(0)  # iterating must not draw from the global RNG (exact resume)
        return DataLoader(dataset, batch_size=max(cfg.batch_size, 1024), shuffle=False, generator=own), None
    if cfg.seed is not None:
        base_seed = int(cfg.seed)
    else:
        base_seed = int(torch.randint(0, 2**31 - 1, ()))
        if distributed:
            import torch.distributed as dist

            t = torch.tensor([base_seed], dtype=torch.int64, device=comm_device(device))
            dist.broadcast(t, 0)
            base_seed = int(t)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=base_seed)
    own = torch.Generator().manual_seed(
        base_seed
    )  # iterating must not draw from the global RNG (exact resume)
    # whole batches of indices: the tensors are indexed once per batch (not once per row, then collated)
    batches = BatchSampler(sampler, batch_size=cfg.batch_size // world, drop_last=False)
    return DataLoader(dataset, sampler=batches, batch_size=None, generator=own), sampler


def unpack(batch: object, device: torch.device | None) -> tuple[Tensor, ...]:
    """A loader's batch as a tuple of tensors on ``device`` (a bare tensor becomes ``(x,)``)."""
    parts = tuple(batch) if isinstance(batch, (list, tuple)) else (batch,)
    if not parts or not all(isinstance(p, Tensor) for p in parts):
        raise TypeError("a DataLoader for training must yield tensors: x or (x, context)")
    if device is not None:
        parts = tuple(p.to(device) for p in parts)
    return parts


def split(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor | None]:
    """``(x, context)`` of a batch ``(x,)`` or ``(x, context)`` (context ``None`` when absent)."""
    return batch[0], (batch[1] if len(batch) > 1 else None)


def comm_device(device: torch.device | None) -> torch.device:
    """Where collective tensors live: the GPU with NCCL, else the CPU."""
    import torch.distributed as dist

    if device is not None and device.type == "cuda" and dist.get_backend() == "nccl":
        return device
    return torch.device("cpu")
