"""Crash-safe training checkpoints.

A checkpoint is written to a temporary file in the target's directory, flushed and ``fsync``-ed, then moved
over the target with :func:`os.replace` (atomic on POSIX and Windows). A process killed at any moment (even
``kill -9`` in the middle of a write) therefore leaves either the previous complete checkpoint or the new
complete one, never a torn file. Checkpoints are loaded with ``torch.load(weights_only=True)``, which
restores tensors and plain containers only and never runs pickled code.

Example:
    >>> import torch
    >>> save_checkpoint({"step": 3, "w": torch.zeros(2)}, "run.ckpt")
    >>> load_checkpoint("run.ckpt")["step"]
    3
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "atomic_write_bytes", "load_checkpoint", "save_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated or not a pushforward checkpoint."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + ``os.replace``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename durable; not possible on every platform
        fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Serialise ``state`` (tensors, numbers, strings, lists, dicts) and write it atomically to ``path``."""
    buf = io.BytesIO()
    torch.save({"format": "pushforward-checkpoint", "version": 1, "state": state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (safe: ``weights_only=True``).

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: The file is truncated, corrupted or not a pushforward checkpoint.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint")
    if not p.is_file() or p.stat().st_size == 0:
        raise CheckpointError(f"{p}: not a checkpoint (an empty file or not a regular file)")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for damaged archives
        raise CheckpointError(
            f"{p}: not a readable checkpoint ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != "pushforward-checkpoint":
        raise CheckpointError(f"{p}: not a pushforward checkpoint")
    return obj["state"]
