r"""Model files: the one file format for everything a user can build, never a pickle.

A model file is one `safetensors <https://huggingface.co/docs/safetensors>`_ file. Its tensors are the
model's ``state_dict``; its header metadata holds, under the key ``"pushforward"``, a JSON config::

    {"format": "pushforward-model", "format_version": 2, "pushforward_version": "0.1.0",
     "dtype": "float32",
     "model": {"module": {"class": "flows.autoregressive.MAF", "args": [3],
                          "kwargs": {"context": 2, "layers": 4, "hidden": {"tuple": [64, 64]}}}},
     ...application fields (a tabular model's "columns", "standardize", "history", ...)...,
     "sha256": "..."}

``model`` is the constructor call that rebuilds the object: a registered class (see
:mod:`pushforward.registry`: every transform, transformer, distribution, flow and preset, the user-facing
networks, and every subclass of these anyone writes) with its arguments, which are JSON values, tuples,
string-keyed dicts, small tensors (``{"tensor": {"dtype", "shape", "data"}}``) or other such modules
(:mod:`pushforward.io.tree` documents the encoding). So a preset, a hand-built
``Flow(Compose([...]), base)``, a conditional flow and anything built from registered parts saves and loads
with :func:`save` / :func:`load`. Format 1 files (``"preset"``, ``"event_shape"``, ``"context"``,
``"options"`` instead of ``"model"``) still load, through :func:`build_flow`; those four fields are reserved
for preset-built flows and, where a file has them (tabular model files do), they define the model.

Loading never unpickles and never imports or calls a name from the file except through the registry
(classes) and allow-lists (dtypes). It is bounded by construction, before and independently of the checksum
(``sha256`` is an unkeyed checksum over the config and every tensor's name, dtype, shape and bytes: it detects
corruption, not tampering, so every file is treated as hostile):

* only a regular file is opened (symlinks resolved, then the opened target checked; devices, FIFOs and
  sockets are refused unread), its size is checked against ``max_bytes`` before reading, and at most that
  is read;
* the header is bounded (100 MiB), JSON with NaN/Infinity literals or deep nesting is refused, tensor
  dtypes are allow-listed and the declared tensors must tile the data section exactly;
* every integer in the config is bounded by the scalars the file stores, block counts by its tensors, and
  the largest implied weight matrix by its scalars (:mod:`pushforward.io.bounds`), all before anything is
  built; while building, any single allocation larger than the stored weights is refused before it
  happens, and so is a model whose parameters outgrow them;
* non-finite weights are refused, and the built model must have exactly the stored tensor names and
  shapes.

Every failure raises the one :class:`ModelFileError` (a ``ValueError``) with a one-line reason naming the file
(``FileNotFoundError`` for a missing path).

Example:
    >>> import torch
    >>> from pushforward.flows import MAF
    >>> flow = MAF(3, context=2, layers=2, hidden=(16,))
    >>> save(flow, "maf.safetensors")
    >>> again = load("maf.safetensors")
    >>> x, c = torch.randn(4, 3), torch.randn(4, 2)
    >>> bool((again.log_prob(x, c) == flow.eval().log_prob(x, c)).all()), type(again).__name__
    (True, 'MAF')
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from .bounds import MODULES_FLOOR, MODULES_PER_TENSOR, BudgetExceeded, allocation_budget, check_tree
from .files import (
    KEY,
    MAX_FILE_BYTES,
    ModelFileError,
    digest,
    parse_json,
    read_bounded,
)
from .files import write_file as _write_file
from .presets import build_flow, check_preset_fields
from .presets import json_safe as _json_safe
from .tree import decode, encode

__all__ = [
    "FORMAT_VERSION",
    "MAX_FILE_BYTES",
    "MODEL_DTYPES",
    "ModelFileError",
    "build_flow",
    "load",
    "load_with_config",
    "save",
]

FORMAT_VERSION = 2
#: Floating dtypes a model file may declare for its model (an allow-list: nothing else is looked up).
MODEL_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_RESERVED = {"format", "format_version", "pushforward_version", "model", "dtype", "sha256"}
_EXTRAS = (("history", dict), ("validation", dict), ("standardize", dict), ("columns", list))


def _model_dtype(module: nn.Module) -> str:
    for t in [*module.parameters(), *module.buffers()]:
        if t.is_floating_point():
            name = str(t.dtype).removeprefix("torch.")
            if name not in MODEL_DTYPES:
                raise TypeError(f"model files hold float32 or float64 models, not {name}")
            return name
    return "float32"


def save(obj: nn.Module, path: str | Path, *, config: dict | None = None) -> None:
    """Write ``obj`` (any module built from registered classes) to a model file at ``path``, atomically.

    Args:
        obj: The model: a preset, a hand-built :class:`~pushforward.Flow`, a conditional flow, anything whose
            classes are registered and whose constructor arguments a file can hold.
        path: Where to write (a ``.safetensors`` file).
        config: Extra JSON fields stored in the config (an application's column names, history, ...); the
            format's own keys (``format``, ``model``, ``dtype``, ...) cannot be set.

    Raises:
        TypeError: ``obj`` is not a module, or something it was built from cannot go into a file (a function,
            an unregistered class); the message says where.
        ValueError: Non-finite numbers in the arguments or the config, or a model that its constructor
            arguments no longer describe (a module swapped or resized after construction).
    """
    if not isinstance(obj, nn.Module):
        raise TypeError(f"save takes a module (a Flow, a preset, ...), got {type(obj).__name__}")
    extra = dict(config or {})
    dtype = _model_dtype(obj)
    if extra.get("dtype", dtype) != dtype:
        raise ValueError(f"config dtype {extra['dtype']!r} differs from the model's {dtype}")
    clash = sorted(_RESERVED & set(extra) - {"dtype"})
    if clash:
        raise ValueError(f"config keys {clash} are reserved by the file format")
    cfg = _json_safe(extra, "config")
    cfg.update(
        format="pushforward-model",
        format_version=FORMAT_VERSION,
        pushforward_version=__version__,
        dtype=dtype,
        model=encode(obj),
    )
    # a fresh dense copy: a one-element buffer made by ``expand(...).clone()`` keeps stride 0, which the
    # byte view of the checksum refuses
    tensors = {
        k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in obj.state_dict().items()
    }
    _check_rebuilds(obj, cfg)
    _write_file(path, tensors, cfg)


def _check_rebuilds(obj: nn.Module, cfg: dict) -> None:
    """Refuse to write a file that could not be loaded: the config must rebuild, as :func:`load` will, a model
    with the same tensor names and shapes (it does not when a module was swapped or resized after
    construction, or when preset fields describe another model). The global random state is left as it was."""
    state = obj.state_dict()
    n_scalars = sum(t.numel() for t in state.values())
    _check_config(cfg, n_scalars, sum(1 for t in state.values() if t.numel()))
    with torch.random.fork_rng(devices=[]):
        rebuilt = _build(cfg, n_scalars, Path("(being saved)"))
    want = {k: tuple(v.shape) for k, v in obj.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if want != got:
        diff = sorted(set(want) ^ set(got)) or sorted(k for k in want if want[k] != got[k])
        raise ValueError(
            f"{type(obj).__name__} cannot be rebuilt from its constructor arguments (it was changed after "
            f"construction: {', '.join(diff[:3])} differ); build the changed model through constructors instead"
        )


def load(
    path: str | Path, map_location: str | torch.device = "cpu", *, max_bytes: int = MAX_FILE_BYTES
) -> nn.Module:
    """Read a model file written by :func:`save` (or a format-1 preset file): the rebuilt module, in eval mode.

    Raises:
        FileNotFoundError: No such file.
        ModelFileError: Anything else that is wrong with the file (see the module documentation).
    """
    return load_with_config(path, map_location, max_bytes=max_bytes)[0]


def load_with_config(
    path: str | Path, map_location: str | torch.device = "cpu", *, max_bytes: int = MAX_FILE_BYTES
) -> tuple[nn.Module, dict]:
    """:func:`load`, also returning the file's JSON config (with the application fields given to
    :func:`save`)."""
    from safetensors.torch import load as load_tensors

    p = Path(path)
    header, table, raw = read_bounded(p, max_bytes)
    n_scalars = sum(_prod(s) for _, s in table.values())
    n_tensors = sum(1 for _, s in table.values() if _prod(s))
    cfg = _config(header, n_tensors, p)
    try:
        _check_config(cfg, n_scalars, n_tensors)
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{p}: {_one_line(e)}") from None
    try:
        tensors = load_tensors(raw)
    except Exception as e:  # safetensors raises its own error type for damaged payloads
        raise ModelFileError(f"{p}: corrupted or truncated weights ({_one_line(e)})") from None
    if cfg.get("sha256") != digest(cfg, tensors):
        raise ModelFileError(f"{p}: checksum mismatch; the file was modified or corrupted")
    bad = next(
        (k for k, t in sorted(tensors.items()) if t.is_floating_point() and not torch.isfinite(t).all()), None
    )
    if bad is not None:
        raise ModelFileError(f"{p}: tensor {bad!r} has non-finite values")
    model = _build(cfg, n_scalars, p)
    _check_weights(model, tensors, p)
    model = model.to(MODEL_DTYPES[cfg.get("dtype", "float32")])
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ModelFileError(f"{p}: the weights do not fit the model: {_one_line(e)}") from None
    return model.to(map_location).eval(), cfg


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


def _config(header: dict, n_tensors: int, p: Path) -> dict:
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not isinstance(meta.get(KEY), str):
        raise ModelFileError(f"{p}: not a pushforward model file (no '{KEY}' config in the header)")
    if meta[KEY].count('"module"') > MODULES_PER_TENSOR * n_tensors + MODULES_FLOOR:  # before parsing
        raise ModelFileError(f"{p}: the config describes more modules than its {n_tensors} tensors can hold")
    cfg = parse_json(meta[KEY], "the config", p)
    if not isinstance(cfg, dict) or cfg.get("format") != "pushforward-model":
        raise ModelFileError(f"{p}: not a pushforward model file")
    _check_finite(cfg, p)
    return cfg


def _check_finite(cfg: dict, p: Path) -> None:
    """Every number in the config is finite (JSON's ``1e999`` parses as infinity); iterative, so deep
    nesting costs no recursion."""
    stack: list[Any] = [cfg]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise ModelFileError(f"{p}: the config holds a non-finite number ({v})")
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def _check_config(cfg: dict, n_scalars: int, n_tensors: int) -> None:
    """Types and bounds of every field, before anything is built or any weight is read."""
    version = cfg.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"format_version must be a positive integer, got {str(version)[:40]}")
    if version > FORMAT_VERSION:
        raise ValueError(f"written by a newer pushforward (format {version}); please upgrade")
    dtype = cfg.get("dtype", "float32")
    if not isinstance(dtype, str) or dtype not in MODEL_DTYPES:
        raise ValueError(
            f"dtype {str(dtype)[:40]!r} is not allowed; model files use one of {sorted(MODEL_DTYPES)}"
        )
    if version >= 2:
        if "model" not in cfg:
            raise ValueError("the config lacks 'model'")
        check_tree(cfg["model"], n_scalars, n_tensors)
    check_preset_fields(cfg, n_scalars, n_tensors, required=version < 2)
    for key, kind in _EXTRAS:
        if cfg.get(key) is not None and not isinstance(cfg[key], kind):
            raise ValueError(f"{key} must be a JSON {'object' if kind is dict else 'array'} or null")


def _build(cfg: dict, n_scalars: int, p: Path) -> nn.Module:
    """The model the config describes, built under the allocation budget of the stored weights."""
    try:
        with allocation_budget(n_scalars):
            if "preset" not in cfg:
                model = decode(cfg["model"])
            else:  # a preset-built flow (format 1, tabular models): the preset fields define it
                model = build_flow(
                    cfg["preset"],
                    tuple(cfg["event_shape"]),
                    context=cfg.get("context", 0),
                    options=cfg.get("options"),
                )
    except BudgetExceeded as e:
        raise ModelFileError(f"{p}: {_one_line(e)}") from None
    except (MemoryError, RecursionError):
        raise ModelFileError(f"{p}: the config describes a model too large or too deep to build") from None
    except Exception as e:  # a constructor refusing its arguments: any type, one message
        raise ModelFileError(f"{p}: cannot build the model: {_one_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise ModelFileError(f"{p}: the config describes a {type(model).__name__}, not a model")
    return model


def _check_weights(model: nn.Module, tensors: dict[str, torch.Tensor], p: Path) -> None:
    """The model's state must have exactly the file's tensor names and shapes."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in tensors.items()}
    if want == have:
        return
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
    else:
        k = next(k for k in sorted(want) if want[k] != have[k])
        detail = f"{k} has shape {list(have[k])} in the file but the config implies {list(want[k])}"
    raise ModelFileError(f"{p}: the weights do not fit the model: {detail}")
