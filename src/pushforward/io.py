r"""Safe model files: the one file format (safetensors weights + a JSON config).

A model file is one `safetensors <https://huggingface.co/docs/safetensors>`_ file: the weights are its
tensors, and a JSON config sits in its header metadata under the key ``"pushforward"``::

    {"format": "pushforward-model", "format_version": 1, "pushforward_version": "0.1.0",
     "preset": "realnvp", "event_shape": [2], "context": 0, "options": {"layers": 8, "hidden": [64, 64]},
     "standardize": {"mean": [...], "scale": [...]}, "columns": ["a", "b"], "history": {...},
     "validation": {"quantiles": [...], "mean": -2.1, "std": 0.9, "n": 200}, "dtype": "float32",
     "sha256": "..."}

Loading parses the header as JSON, rebuilds the flow with
``PRESETS[preset](features, context=..., **options)``
and copies the tensors in with a strict ``load_state_dict``: nothing is ever unpickled, and no name in the
file is ever imported or called (presets are looked up in :data:`~pushforward.flows.PRESETS`, dtypes in an
allow-list). ``sha256`` covers the config (without the hash) and every tensor's name, dtype, shape and bytes.

What the hash protects, and what it does not: it is an *unkeyed* checksum, so it detects accidental
corruption (a flipped bit, a truncated copy, an edit that forgot to update it), but anyone who edits a file
can recompute it. It is not a signature: a file from an untrusted source must be treated as hostile. Loading
is therefore defensive on its own, before and independently of the hash: every config field is
type-checked, the declared sizes are bounded *by the file's own tensors* (no integer option may exceed the
number of scalars stored in the file, layer/level counts and list lengths may not exceed the number of
tensors, consecutive hidden sizes and the first hidden size times the input width may not exceed the stored
scalars, at most 2**24 features), tensor dtypes are allow-listed, and the flow the config describes must have
exactly the tensor names and shapes stored in the file. Any failure raises :class:`ModelFileError` with a
one-line reason, and never allocates more than a small multiple of the file's own size.

Example:
    >>> import numpy as np
    >>> from pushforward.tabular import FlowModel
    >>> x = np.random.default_rng(0).normal(size=(200, 2))
    >>> model = FlowModel.train(x, "realnvp", options={"layers": 2, "hidden": [8]}, steps=5, progress=False)
    >>> model.save("model.safetensors")
    >>> FlowModel.load("model.safetensors").log_prob(x[:5]).shape
    (5,)
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .flows.core import Flow

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "build_flow",
    "load_model",
    "save_model",
]

FORMAT_VERSION = 1
_KEY = "pushforward"
_MAX_HEADER = 100 * 2**20
_MAX_FEATURES = 2**24
#: Floating dtypes a model file may declare for its flow (an allow-list: nothing else is looked up).
MODEL_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: safetensors dtypes a model file may store (parameters and buffers: floats, integer and boolean masks).
_TENSOR_DTYPES = {"F16", "BF16", "F32", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"}
#: Options that count repeated blocks: each block stores at least one tensor.
_COUNT_OPTIONS = {"layers", "levels", "steps", "scales", "depth", "blocks", "reflections"}


class ModelFileError(ValueError):
    """A model file that is missing pieces, truncated, tampered with or from an unknown preset."""


def _presets() -> dict[str, Callable[..., Flow]]:
    from .flows import DISCRETE_PRESETS, PRESETS

    return {**PRESETS, **DISCRETE_PRESETS}


def _json_safe(value: Any, name: str) -> Any:
    """Options must survive JSON: numbers, strings, booleans, None, lists and string-keyed dicts."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"option {name} must be finite, got {value}")
        return float(value)
    if isinstance(value, (np.integer, np.floating)):
        return _json_safe(value.item(), name)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v, f"{name}.{k}") for k, v in value.items()}
    raise TypeError(
        f"option {name} has type {type(value).__name__}; model files only hold numbers, strings, booleans, "
        "lists and dicts"
    )


def _restore_option(value: Any) -> Any:
    return tuple(_restore_option(v) for v in value) if isinstance(value, list) else value


def build_flow(
    preset: str, event_shape: int | tuple[int, ...], *, context: int = 0, options: dict | None = None
) -> Flow:
    """Build ``PRESETS[preset]`` for data of ``event_shape`` (an int for vectors) with JSON-style options.

    Lists in ``options`` become tuples (e.g. ``hidden``). Raises ``ValueError`` naming the problem for an
    unknown preset or options the preset does not accept.
    """
    presets = _presets()
    name = str(preset).lower()
    if name not in presets:
        raise ValueError(f"unknown flow preset {preset!r}; available: {', '.join(sorted(presets))}")
    shape = tuple(event_shape) if isinstance(event_shape, (tuple, list)) else (int(event_shape),)
    features: int | tuple[int, ...] = shape[0] if len(shape) == 1 else shape
    if not isinstance(options or {}, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    kwargs = {k: _restore_option(v) for k, v in (options or {}).items()}
    if "base" in kwargs:  # takes a Distribution object, which JSON cannot describe
        raise ValueError(
            "option 'base' cannot be set here: it takes a Distribution object; build the flow in Python"
        )
    try:
        flow = presets[name](features, context=context, **kwargs)
    except TypeError as e:
        raise ValueError(
            f"preset {name!r} rejected its options {sorted(kwargs)}: {e}; valid options: "
            f"{', '.join(_preset_options(presets[name]))}"
        ) from None
    except (
        ValueError,
        RuntimeError,
        IndexError,
        KeyError,
        AttributeError,
        ZeroDivisionError,
        OverflowError,
    ) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot build preset {name!r} for event shape {shape}: {msg}") from None
    if not isinstance(flow, Flow):
        raise ValueError(f"preset {name!r} did not return a Flow")
    return flow


def _preset_options(preset: Callable[..., Flow]) -> list[str]:
    """The keyword options a preset accepts (besides ``features`` and ``context``)."""
    import inspect

    params = inspect.signature(preset).parameters.values()
    return [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.name != "context"]


# ---------------------------------------------------------------------------------------------- files
def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


def _digest(config: dict, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    body = {k: v for k, v in config.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_model(path: str | Path, flow: Flow, config: dict) -> None:
    """Write ``flow``'s weights and ``config`` (JSON-serialisable) to one safetensors file, atomically."""
    from safetensors.torch import save

    from ._version import __version__
    from .train.checkpoint import atomic_write_bytes

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in flow.state_dict().items()}
    cfg = dict(config)
    cfg.update(format="pushforward-model", format_version=FORMAT_VERSION, pushforward_version=__version__)
    cfg = _json_safe(cfg, "config")
    cfg["sha256"] = _digest(cfg, tensors)
    data = save(tensors, metadata={_KEY: json.dumps(cfg, allow_nan=False)})
    atomic_write_bytes(path, data)


def _read_header(raw: bytes, path: Path) -> dict:
    if len(raw) < 8:
        raise ModelFileError(f"{path}: truncated model file ({len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > _MAX_HEADER or 8 + n > len(raw):
        raise ModelFileError(f"{path}: not a pushforward model file, or truncated (bad safetensors header)")
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: corrupted header (not valid JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: corrupted header")
    return header


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tensor_table(header: dict, path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name → (dtype, shape) of every tensor the safetensors header declares; dtypes allow-listed."""
    table = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise ModelFileError(f"{path}: corrupted header entry for tensor {name!r}")
        dtype, shape = info.get("dtype"), info["shape"]
        if dtype not in _TENSOR_DTYPES:
            raise ModelFileError(f"{path}: tensor {name!r} has dtype {dtype!r}, not allowed in model files")
        if not all(_is_int(d) and 0 <= d < 2**40 for d in shape):
            raise ModelFileError(f"{path}: tensor {name!r} has a bad shape {shape!r}")
        table[name] = (dtype, tuple(shape))
    return table


def _ints_in(value: Any) -> list[int]:
    if _is_int(value):
        return [value]
    if isinstance(value, list):
        return [i for v in value for i in _ints_in(v)]
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ints_in(v)]
    return []


def _check_config(cfg: dict, table: dict[str, tuple[str, tuple[int, ...]]], path: Path) -> None:
    """Type-check the config and bound every size it declares by the tensors stored in the file.

    Raises :class:`ModelFileError` naming the first problem. Runs before anything is built.
    """

    def bad(msg: str) -> ModelFileError:
        return ModelFileError(f"{path}: {msg}")

    version = cfg.get("format_version")
    if not _is_int(version):
        raise bad(f"format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise bad(f"written by a newer pushforward (format {version}); please upgrade")
    for key in ("preset", "event_shape"):
        if key not in cfg:
            raise bad(f"the config lacks {key!r}")
    if not isinstance(cfg["preset"], str):
        raise bad(f"preset must be a name, got {cfg['preset']!r}")
    shape = cfg["event_shape"]
    if not isinstance(shape, list) or not shape or not all(_is_int(d) and 0 < d <= 2**16 for d in shape):
        raise bad(f"event_shape must be a list of positive integers (at most 65536), got {shape!r}")
    n_tensors = len(table)
    n_scalars = sum(math.prod(s) for _, s in table.values())
    features = math.prod(shape)
    if features > min(_MAX_FEATURES, max(n_scalars, 1)):
        raise bad(f"event_shape {shape} has {features} values, more than the file's weights can describe")
    context = cfg.get("context", 0)
    if not _is_int(context) or not 0 <= context <= max(n_scalars, 1):
        raise bad(f"context must be a non-negative integer the weights can describe, got {context!r}")
    dtype = cfg.get("dtype", "float32")
    if not isinstance(dtype, str) or dtype not in MODEL_DTYPES:
        raise bad(f"dtype {dtype!r} is not allowed; model files use one of {sorted(MODEL_DTYPES)}")
    options = cfg.get("options") or {}
    if not isinstance(options, dict):
        raise bad(f"options must be a JSON object, got {type(options).__name__}")
    for key, value in options.items():
        ints = _ints_in(value)
        if any(abs(i) > n_scalars for i in ints):
            raise bad(f"option {key}={value!r} exceeds the {n_scalars} scalars stored in the file")
        if key in _COUNT_OPTIONS and any(i > n_tensors for i in ints):
            raise bad(f"option {key}={value!r} asks for more blocks than the {n_tensors} tensors in the file")
        if isinstance(value, list):
            if len(value) > n_tensors:
                raise bad(
                    f"option {key} has {len(value)} entries, more than the {n_tensors} tensors in the file"
                )
            sizes = [v for v in value if _is_int(v)]
            pairs = [*zip(sizes, sizes[1:]), (sizes[0], max(1, shape[0] // 2))] if sizes else []
            if any(a * b > n_scalars for a, b in pairs):
                raise bad(
                    f"option {key}={value!r} implies more weights than the {n_scalars} stored in the file"
                )
    for key, kind in (("history", dict), ("validation", dict), ("standardize", dict), ("columns", list)):
        if cfg.get(key) is not None and not isinstance(cfg[key], kind):
            raise bad(f"{key} must be a JSON {'object' if kind is dict else 'array'} or null")


def _check_weights(flow: Flow, tensors: dict[str, torch.Tensor], preset: str, path: Path) -> None:
    """The flow's state must have exactly the file's tensor names and shapes."""
    want = {k: tuple(v.shape) for k, v in flow.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in tensors.items()}
    if want == have:
        return
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
    else:
        k = next(k for k in sorted(want) if want[k] != have[k])
        detail = f"{k} has shape {list(have[k])} in the file but the config implies {list(want[k])}"
    raise ModelFileError(f"{path}: the weights do not fit preset {preset!r}: {detail}")


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Flow, dict]:
    """Read a model file: rebuild the flow from its config and load the weights (never unpickles).

    Returns:
        ``(flow, config)``, the flow in eval mode.

    Raises:
        FileNotFoundError: No such file.
        ModelFileError: Truncated, tampered, wrong format, unknown preset or mismatched weights.
    """
    from safetensors.torch import load

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such model file")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a directory, not a model file")
    raw = p.read_bytes()
    header = _read_header(raw, p)
    meta = header.get("__metadata__") or {}
    if _KEY not in meta:
        raise ModelFileError(f"{p}: not a pushforward model file (no '{_KEY}' config in the header)")
    try:
        cfg = json.loads(meta[_KEY])
    except (TypeError, json.JSONDecodeError):
        raise ModelFileError(f"{p}: the config is corrupted (not valid JSON)") from None
    if not isinstance(cfg, dict) or cfg.get("format") != "pushforward-model":
        raise ModelFileError(f"{p}: not a pushforward model file")
    table = _tensor_table(header, p)
    _check_config(cfg, table, p)  # before anything is built or any weight is read
    try:
        tensors = load(raw)
    except Exception as e:  # safetensors raises its own error type for damaged payloads
        raise ModelFileError(f"{p}: corrupted or truncated weights ({str(e).splitlines()[0]})") from None
    if cfg.get("sha256") != _digest(cfg, tensors):
        raise ModelFileError(f"{p}: checksum mismatch; the file was modified or corrupted")
    try:
        flow = build_flow(
            cfg["preset"],
            tuple(cfg["event_shape"]),
            context=cfg.get("context", 0),
            options=cfg.get("options"),
        )
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        raise ModelFileError(f"{p}: {_one_line(e)}") from None
    _check_weights(flow, tensors, cfg["preset"], p)
    flow = flow.to(MODEL_DTYPES[cfg.get("dtype", "float32")])
    try:
        flow.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise ModelFileError(f"{p}: the weights do not fit preset {cfg['preset']!r}: {first}") from None
    flow.to(map_location).eval()
    return flow, cfg
