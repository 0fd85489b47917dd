"""Multi-process data-parallel training with ``torch.distributed``.

Launch with ``torchrun --nproc_per_node N -m pushforward fit DATA --distributed ...`` (or call :func:`init`
yourself and pass ``distributed=True`` to :func:`pushforward.fit`). :func:`fit` then wraps the flow in
``DistributedDataParallel`` and shards each global batch of ``batch_size`` rows across the ranks with a
``DistributedSampler`` (every rank gets ``batch_size / world_size`` rows). Because the sampler's shards of
one epoch's permutation interleave, the union of the ranks' k-th batches is exactly the k-th batch a single
process with the same seed draws, and DDP's gradient averaging makes every step equal to the single-process
step (up to floating-point reduction order). The backend is ``nccl`` on CUDA and ``gloo`` on CPU; rank 0
alone shows progress and writes checkpoints and model files.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["cleanup", "init", "is_main_process", "world"]


def init(device: str = "auto", backend: str | None = None) -> tuple[int, int, torch.device]:
    """Initialise the default process group from torchrun's environment variables.

    Returns ``(rank, world_size, device)``; on CUDA each process uses GPU ``LOCAL_RANK``.

    Raises:
        ValueError: The environment variables set by ``torchrun`` are missing.
    """
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(
            f"--distributed needs to be launched by torchrun (missing environment variables: "
            f"{', '.join(missing)}); "
            "e.g. torchrun --nproc_per_node 2 -m pushforward fit DATA --distributed ..."
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"))
    return dist.get_rank(), dist.get_world_size(), dev


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this is rank 0 (or the only process)."""
    return world()[0] == 0


def cleanup() -> None:
    """Destroy the default process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
