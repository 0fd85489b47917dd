"""Reading and writing the bytes of a model file, bounded by construction.

Reading opens the path without following it into anything but a regular file (symlinks are resolved by the
operating system and the opened target is checked with ``fstat``; devices, FIFOs, sockets and directories are
refused without reading a byte, and the file is opened non-blocking so that a FIFO cannot hang the
reader), checks the size against a limit before reading, and reads at most that many bytes.

Example:
    >>> try:
    ...     read_bounded("/dev/null")
    ... except ModelFileError as e:
    ...     print(e)
    /dev/null: not a regular file (a device, FIFO or socket); model files are files
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "MAX_FILE_BYTES",
    "ModelFileError",
    "digest",
    "parse_json",
    "read_bounded",
    "tensor_table",
    "write_file",
]

#: Default upper bound of a model file's size in bytes (``max_bytes`` of :func:`pushforward.io.load`).
MAX_FILE_BYTES = 4 * 2**30
#: Upper bound of the safetensors JSON header (the config lives in it); it may also not exceed 1 MiB plus
#: twice the bytes of the weights.
MAX_HEADER_BYTES = 100 * 2**20
#: safetensors dtypes a model file may store (parameters and buffers: floats, integer and boolean masks).
TENSOR_DTYPES = {"F16", "BF16", "F32", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"}
_ITEM_BYTES = {
    "F16": 2,
    "BF16": 2,
    "F32": 4,
    "F64": 8,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
KEY = "pushforward"


class ModelFileError(ValueError):
    """A model file that is missing pieces, truncated, tampered with, too large, or describes something that
    cannot be built from the weights it carries. The message is one line and names the file."""


def _open_regular(p: Path, max_bytes: int) -> tuple[int, int]:
    """A file descriptor of the regular file ``p`` and its size (at most ``max_bytes``)."""
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no such model file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{p}: is a directory, not a model file") from None
    except OSError as e:
        raise ModelFileError(f"{p}: cannot open ({e.strerror})") from None
    info = os.fstat(fd)
    problem = None
    if stat.S_ISDIR(info.st_mode):
        problem = "is a directory, not a model file"
    elif not stat.S_ISREG(info.st_mode):
        problem = "not a regular file (a device, FIFO or socket); model files are files"
    elif info.st_size > max_bytes:
        problem = f"{info.st_size} bytes, more than the limit of {max_bytes} (max_bytes)"
    if problem is not None:
        os.close(fd)
        raise ModelFileError(f"{p}: {problem}")
    return fd, info.st_size


def _read(fd: int, n: int, p: Path) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 2**26))
        if not chunk:
            raise ModelFileError(f"{p}: the file is shorter than its header says (truncated while reading)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_bounded(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[dict, dict, bytes]:
    """Read a model file in two bounded steps: the safetensors header first, then (only when the header's
    tensors tile the rest of the file exactly) the tensor data.

    Returns:
        ``(header, table, raw)``: the parsed header, name → (dtype, shape) of its tensors, and the file's bytes.

    Raises:
        FileNotFoundError: No such file.
        ModelFileError: Not a regular file (directory, device, FIFO, socket), larger than ``max_bytes``, a bad
            header, or a size that does not match the header.
    """
    p = Path(path)
    fd, size = _open_regular(p, max_bytes)
    try:
        if size < 8:
            raise ModelFileError(f"{p}: empty or truncated model file ({size} bytes)")
        prefix = _read(fd, 8, p)
        (n,) = struct.unpack("<Q", prefix)
        if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise ModelFileError(f"{p}: not a pushforward model file, or truncated (bad safetensors header)")
        if n > 2**20 + 2 * (size - 8 - n):
            raise ModelFileError(
                f"{p}: a {n}-byte header is out of proportion to the {size - 8 - n} bytes of weights"
            )
        text = _read(fd, n, p)
        header = parse_json(text, "the header", p)
        if not isinstance(header, dict):
            raise ModelFileError(f"{p}: corrupted header")
        table = tensor_table(header, size - 8 - n, p)
        rest = _read(fd, size - 8 - n, p)
        if os.read(fd, 1):
            raise ModelFileError(f"{p}: the file grew while it was read")
        return header, table, prefix + text + rest
    finally:
        os.close(fd)


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-finite number {name} in JSON")


def parse_json(text: str | bytes, what: str, path: Path) -> Any:
    """``json.loads`` that refuses NaN/Infinity literals, over-long integers and deep nesting with a
    :class:`ModelFileError`."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise ModelFileError(f"{path}: {what} is nested too deeply") from None
    except (UnicodeDecodeError, ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: {what} is not valid JSON ({' '.join(str(e).split())[:120]})") from None


def tensor_table(header: dict, data_bytes: int, path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name → (dtype, shape) of every tensor the header declares. Dtypes are allow-listed, shapes are
    non-negative integers, and the declared byte ranges must tile the data section exactly (so the sizes
    are bounded by the bytes the file carries)."""
    table, ranges = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise ModelFileError(f"{path}: corrupted header entry for tensor {name!r}")
        dtype, shape, offsets = info.get("dtype"), info["shape"], info.get("data_offsets")
        if dtype not in TENSOR_DTYPES:
            raise ModelFileError(f"{path}: tensor {name!r} has dtype {dtype!r}, not allowed in model files")
        if len(shape) > 8 or not all(_is_int(d) and 0 <= d <= data_bytes for d in shape):
            raise ModelFileError(f"{path}: tensor {name!r} has a bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise ModelFileError(f"{path}: tensor {name!r} has bad data offsets")
        numel = 1
        for d in shape:
            numel *= d
        if offsets[1] - offsets[0] != numel * _ITEM_BYTES[dtype]:
            raise ModelFileError(f"{path}: tensor {name!r} does not match its byte range")
        ranges.append((offsets[0], offsets[1]))
        table[name] = (dtype, tuple(shape))
    position = 0
    for start, end in sorted(ranges):
        if start != position:
            raise ModelFileError(f"{path}: the tensors do not tile the data section (truncated or padded)")
        position = end
    if position != data_bytes:
        raise ModelFileError(
            f"{path}: the data section has {data_bytes} bytes but the tensors declare {position}"
        )
    return table


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def digest(config: dict, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the config (without its ``sha256`` field) and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    body = {k: v for k, v in config.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_file(path: str | Path, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Write ``tensors`` and the JSON ``config`` (with its checksum added) to one safetensors file,
    atomically."""
    from safetensors.torch import save

    from ..train.checkpoint import atomic_write_bytes

    cfg = dict(config)
    cfg["sha256"] = digest(cfg, tensors)
    data = save(tensors, metadata={KEY: json.dumps(cfg, allow_nan=False)})
    atomic_write_bytes(path, data)
