"""Presets by name: :func:`build_flow` (the CLI, the tabular models) and the checks of the preset fields of a
model file's config (``preset``, ``event_shape``, ``context``, ``options``), which files of format 1 build
from."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

from ..flows import PRESETS
from ..flows.core import Flow
from ..flows.preset import Preset
from .bounds import check_tree

__all__ = ["build_flow", "check_preset_fields", "json_safe"]

_MAX_FEATURES = 2**24


def json_safe(value: Any, name: str) -> Any:
    """Options must survive JSON: numbers, strings, booleans, None, lists and string-keyed dicts."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"option {name} must be finite, got {value}")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [json_safe(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v, f"{name}.{k}") for k, v in value.items()}
    raise TypeError(
        f"option {name} has type {type(value).__name__}; model files only hold numbers, strings, booleans, "
        "lists and dicts"
    )


def _restore_option(value: Any) -> Any:
    return tuple(_restore_option(v) for v in value) if isinstance(value, list) else value


def _preset_options(preset: type[Preset]) -> list[str]:
    """The keyword options a preset accepts (besides ``features`` and ``context``)."""
    params = inspect.signature(preset.__init__).parameters.values()
    return [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.name != "context"]


def build_flow(
    preset: str, event_shape: int | tuple[int, ...], *, context: int = 0, options: dict | None = None
) -> Flow:
    """Build ``PRESETS[preset]`` for data of ``event_shape`` (an int for vectors) with JSON-style options.

    Lists in ``options`` become tuples (e.g. ``hidden``). Raises ``ValueError`` naming the problem for an
    unknown preset or options the preset does not accept (the type errors of the preset's checks become
    ``ValueError`` exceptions naming the preset).

    Example:
        >>> flow = build_flow("maf", 3, options={"layers": 2, "hidden": [8]})
        >>> type(flow).__name__, flow.hyperparameters()["hidden"]
        ('MAF', (8,))
    """
    name = str(preset).lower()
    if name not in PRESETS:
        raise ValueError(f"unknown flow preset {preset!r}; available: {', '.join(sorted(PRESETS))}")
    cls = PRESETS[name]
    shape = tuple(event_shape) if isinstance(event_shape, (tuple, list)) else (event_shape,)
    features: Any = shape[0] if len(shape) == 1 else shape
    if not isinstance(options or {}, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    kwargs = {k: _restore_option(v) for k, v in (options or {}).items()}
    if "base" in kwargs:  # takes a Distribution object, which JSON cannot describe
        raise ValueError(
            "option 'base' cannot be set here: it takes a Distribution object; build the flow in Python"
        )
    unknown = sorted(set(kwargs) - set(_preset_options(cls)))
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    if unknown and not has_var_kw:
        raise ValueError(
            f"preset {name!r} rejected its options {unknown}; valid options: {', '.join(_preset_options(cls))}"
        )
    try:
        return cls(features, context=context, **kwargs)
    except (TypeError, ValueError, RuntimeError, IndexError, KeyError, ZeroDivisionError, OverflowError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot build preset {name!r} for event shape {shape}: {msg}") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_preset_fields(cfg: dict, n_scalars: int, n_tensors: int, *, required: bool) -> None:
    """Type-check ``preset``, ``event_shape``, ``context`` and ``options`` and bound them by the stored weights
    (``ValueError`` naming the first problem). ``required``: the fields must be present (format 1)."""
    present = [k for k in ("preset", "event_shape") if k in cfg]
    if (required or present) and len(present) < 2:  # the preset fields come together
        raise ValueError(f"the config lacks {'preset' if 'preset' not in cfg else 'event_shape'!r}")
    if not present:
        return
    if not isinstance(cfg.get("preset"), str):
        raise ValueError(f"preset must be a name, got {str(cfg.get('preset'))[:40]!r}")
    shape = cfg.get("event_shape")
    if not isinstance(shape, list) or not shape or not all(_is_int(d) and 0 < d <= 2**16 for d in shape):
        raise ValueError(
            f"event_shape must be a list of positive integers (at most 65536), got {str(shape)[:60]}"
        )
    if math.prod(shape) > min(_MAX_FEATURES, max(n_scalars, 1)):
        raise ValueError(f"event_shape {shape} has more values than the file's weights can describe")
    context = cfg.get("context", 0)
    if not _is_int(context) or not 0 <= context <= max(n_scalars, 1):
        raise ValueError(
            f"context must be a non-negative integer the weights can describe, got {str(context)[:40]}"
        )
    options = cfg.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"options must be a JSON object, got {type(options).__name__}")
    for key, value in options.items():
        if isinstance(value, list) and len(value) > max(n_tensors, 1):
            raise ValueError(
                f"option {key} has {len(value)} entries, more than the {n_tensors} tensors in the file"
            )
    tree = {"module": {"class": "", "args": [shape], "kwargs": {"context": context, **options}}}
    check_tree(tree, n_scalars, n_tensors)
