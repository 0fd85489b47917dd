"""Input validation shared by flows, training and the CLI: clear errors instead of silent NaNs.

Every check raises :class:`ValueError` (bad values or shapes) or :class:`TypeError` (bad types), with a
message that names the argument and the problem. Validation is on by default; it costs one reduction per
call and can be switched off globally for benchmarks with :func:`set_validation`.

Memory is a budget: sampling and evaluation calls estimate the bytes they need and are refused before
allocating when that exceeds the memory available (or the cap set with :func:`set_max_memory`); large
requests whose result fits are processed in chunks (:func:`chunk_rows`).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "CHUNK_BYTES",
    "MAX_SAMPLE_VALUES",
    "WORK_PER_VALUE",
    "check_finite",
    "check_in_interval",
    "check_input",
    "check_memory",
    "check_sample_shape",
    "check_tensor",
    "chunk_rows",
    "format_bytes",
    "max_memory",
    "memory_budget",
    "module_dtype_device",
    "set_max_memory",
    "set_validation",
    "validation_enabled",
]

#: Most scalars one sampling call may produce (2**36, 256 GiB in float32): beyond it the request is refused
#: with a clear error instead of overflowing an index computation or exhausting memory.
MAX_SAMPLE_VALUES = 2**36

_VALIDATE = True
_MAX_MEMORY: int | None = None

#: Cap on the working memory of one chunk of a chunked sampling or evaluation call (also at most an eighth of
#: the budget): large enough to keep the per-chunk overhead negligible, small enough to leave room.
CHUNK_BYTES = 2**28

#: Working bytes per scalar of an event while a flow maps it (conditioner activations, intermediate latents,
#: log-determinants): a deliberate over-estimate for chunk sizes, not a measurement.
WORK_PER_VALUE = 32


def set_max_memory(nbytes: int | float | None) -> None:
    """Cap the memory (bytes) one sampling or evaluation call may plan for; ``None`` (default) uses the memory
    the machine has available (``MemAvailable`` of ``/proc/meminfo``, or the free memory of the CUDA device).

    Example:
        >>> set_max_memory(2 * 2**30)   # 2 GiB
        >>> max_memory()
        2147483648
        >>> set_max_memory(None)
    """
    global _MAX_MEMORY
    if nbytes is None:
        _MAX_MEMORY = None
        return
    import numbers

    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Real):
        raise TypeError(f"max_memory must be a number of bytes or None, got {type(nbytes).__name__}")
    if not math.isfinite(nbytes) or nbytes < 1:
        raise ValueError(f"max_memory must be a positive, finite number of bytes, got {nbytes!r}")
    _MAX_MEMORY = int(nbytes)


def max_memory() -> int | None:
    """The user's cap set by :func:`set_max_memory` (``None``: the machine's available memory)."""
    return _MAX_MEMORY


def _available_memory(device: torch.device | str | None) -> int | None:
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget(device: torch.device | str | None = None) -> int | None:
    """Bytes one call may use on ``device``: :func:`max_memory` when set, else the memory available there
    (``None`` when unknown: nothing is refused)."""
    return _MAX_MEMORY if _MAX_MEMORY is not None else _available_memory(device)


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``'7.5 GiB'``.

    Example:
        >>> format_bytes(8 * 10**9)
        '7.5 GiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_memory(nbytes: int, what: str, device: torch.device | str | None = None) -> None:
    """Refuse, before anything is allocated, a call whose estimated memory ``nbytes`` exceeds
    :func:`memory_budget`, with a ``ValueError`` saying how much it needs and how much there is."""
    budget = memory_budget(device)
    if budget is not None and nbytes > budget:
        source = (
            "the limit set by pushforward.set_max_memory"
            if _MAX_MEMORY is not None
            else (f"the memory available on {torch.device('cpu' if device is None else device)}")
        )
        raise ValueError(
            f"{what} needs about {format_bytes(nbytes)}, more than {source} ({format_bytes(budget)}); ask for "
            "less per call, or raise the limit with pushforward.set_max_memory(bytes)"
        )


def chunk_rows(rows: int, bytes_per_row: int, device: torch.device | str | None = None) -> int:
    """How many rows to process at once so that one chunk's working memory stays under
    ``min(CHUNK_BYTES, budget / 8)``; at least 1, at most ``rows`` (all of them while ``torch.compile``
    traces: compiled code runs whole batches)."""
    if torch.compiler.is_compiling():
        return rows
    budget = memory_budget(device)
    cap = CHUNK_BYTES if budget is None else min(CHUNK_BYTES, budget // 8)
    return max(1, min(rows, cap // max(1, bytes_per_row)))


def set_validation(enabled: bool) -> None:
    """Turn input validation on (default) or off for the whole process."""
    global _VALIDATE
    _VALIDATE = bool(enabled)


def validation_enabled() -> bool:
    """Whether input validation is on."""
    return _VALIDATE


def check_tensor(
    x: object, *, name: str = "x", dtype: torch.dtype | None = None, device: torch.device | None = None
) -> Tensor:
    """Check that ``x`` is a floating tensor of the model's ``dtype`` on the model's ``device`` (each when
    given): ``TypeError`` for a non-tensor, a non-floating or a mismatched dtype, ``ValueError`` naming both
    devices for a device mismatch.

    Example:
        >>> check_tensor(torch.zeros(2, dtype=torch.int64))
        Traceback (most recent call last):
        ...
        TypeError: x must be a floating-point tensor, got dtype torch.int64
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the model uses {dtype}; convert one of them with .to()"
        )
    if device is not None and x.device != torch.device(device):
        raise ValueError(
            f"{name} is on device {x.device} but the model is on device {device}; move one of them with .to()"
        )
    return x


def module_dtype_device(module: torch.nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    """The dtype and device of a module's first floating parameter or buffer (``(None, None)`` without any):
    what its inputs must match."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return None, None


def check_input(
    x: object,
    event_shape: Sequence[int],
    *,
    name: str = "x",
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
    allow_empty: bool = False,
) -> Tensor:
    """Check that ``x`` is a finite floating tensor of shape ``(*batch, *event_shape)``.

    Returns ``x`` unchanged. ``dtype`` and ``device``, when given, are the model's (:func:`check_tensor`).
    """
    x = check_tensor(x, name=name, dtype=dtype, device=device)
    event_shape = tuple(event_shape)
    k = len(event_shape)
    if x.dim() < k + 1 or tuple(x.shape[x.dim() - k :]) != event_shape:
        expected = "(batch, " + ", ".join(map(str, event_shape)) + ")"
        raise ValueError(f"{name} has shape {tuple(x.shape)}; expected {expected}")
    if not allow_empty and x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one sample")
    if _VALIDATE:
        check_finite(x, name)
    return x


def check_sample_shape(sample_shape: object, name: str = "sample_shape") -> tuple[int, ...]:
    """A sample shape as a tuple of non-negative Python ints: an int, or a sequence (tuple, list,
    ``torch.Size``) of ints. Raises ``TypeError`` for anything else (floats, tensors with a fraction, strings)
    and ``ValueError`` for negative sizes.

    Example:
        >>> check_sample_shape(3), check_sample_shape([2, 4])
        ((3,), (2, 4))
    """
    import numbers

    def one(v: object) -> int:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an int or a sequence of ints, got {v!r} ({type(v).__name__})")
        if int(v) < 0:
            raise ValueError(f"{name} must be non-negative, got {int(v)}")
        return int(v)

    if isinstance(sample_shape, Tensor):
        if sample_shape.dim() > 1 or sample_shape.is_floating_point() or sample_shape.is_complex():
            raise TypeError(f"{name} must be an int or a sequence of ints, got a tensor {sample_shape!r}")
        sample_shape = sample_shape.tolist()
    if isinstance(sample_shape, (str, bytes)) or not isinstance(sample_shape, (Sequence, numbers.Integral)):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {type(sample_shape).__name__}")
    if isinstance(sample_shape, numbers.Integral):
        return (one(sample_shape),)
    return tuple(one(v) for v in sample_shape)


def check_finite(x: Tensor, name: str = "x") -> Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or infinite values.

    Skipped while ``torch.compile`` traces: the check is data dependent (a graph break); compiled code
    trades it for speed, like :func:`set_validation` ``(False)``."""
    if x.device.type == "meta":  # no values to check (a device mismatch is reported by check_tensor)
        return x
    if _VALIDATE and not torch.compiler.is_compiling() and not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(f"{name} contains non-finite values ({n_nan} NaN, {n_inf} inf)")
    return x


def check_in_interval(x: Tensor, low: float, high: float, name: str = "x", *, closed: bool = False) -> Tensor:
    """Raise ``ValueError`` if some value of ``x`` is outside ``(low, high)`` (or ``[low, high]``)."""
    if not _VALIDATE:
        return x
    bad = (x < low) | (x > high) if closed else (x <= low) | (x >= high)
    if bool(bad.any()):
        lo, hi = ("[", "]") if closed else ("(", ")")
        raise ValueError(
            f"{name} is out of the support {lo}{low}, {high}{hi}: "
            f"{int(bad.sum())} values outside (min {float(x.min()):.4g}, max {float(x.max()):.4g})"
        )
    return x
