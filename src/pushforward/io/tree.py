"""The JSON form of a module: its registered class and the constructor call that rebuilds it.

Values are encoded as JSON with one-key tagged objects for what JSON lacks::

    null, true, 3, 2.5, "relu", [..]                  themselves (floats finite)
    {"tuple": [...]}                                  a tuple
    {"dict": {"key": ...}}                            a dict with string keys
    {"tensor": {"dtype": "bool", "shape": [4], "data": [1, 0, 1, 0]}}
    {"module": {"class": "flows.autoregressive.MAF", "args": [...], "kwargs": {...}}}
    {"ref": 2}                                        the module encoded third (shared modules stay shared)

Decoding looks classes up in :data:`pushforward.registry.REGISTRY` only and calls nothing else.

Example:
    >>> from pushforward.transforms import Shift
    >>> encode(Shift(2))
    {'module': {'class': 'transforms.elementwise.Shift', 'args': [], 'kwargs': {'shape': 2}}}
    >>> type(decode(encode(Shift(2)))).__name__
    'Shift'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..registry import REGISTRY, init_arguments, registry_key

__all__ = ["MAX_DEPTH", "decode", "encode", "walk"]

#: Deepest nesting of values a file may hold (a flow of flows of composes stays far below).
MAX_DEPTH = 48
#: Tensor dtypes an argument may have.
ARG_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "int64": torch.int64,
    "int32": torch.int32,
    "bool": torch.bool,
}
_TAGS = ("tuple", "dict", "tensor", "module", "ref")


def encode(obj: Any) -> Any:
    """The JSON value of ``obj`` (a registered module with everything it was built from).

    Raises:
        TypeError: Something in the constructor arguments that a file cannot hold (a function, a lambda, an
            unregistered class), naming where it is.
    """
    return _encode(obj, "model", {}, 0)


def _encode(v: Any, where: str, seen: dict[int, int], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise TypeError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            raise ValueError(f"{where} is {float(v)}; model files hold finite numbers only")
        return float(v)
    if isinstance(v, torch.nn.ModuleList):  # a container argument: its modules, as a list
        return [_encode(x, f"{where}[{i}]", seen, depth + 1) for i, x in enumerate(v)]
    if isinstance(v, torch.nn.Module):
        return _encode_module(v, where, seen, depth)
    if isinstance(v, torch.Tensor):
        return _encode_tensor(v, where)
    if isinstance(v, (list, tuple)):
        items = [_encode(x, f"{where}[{i}]", seen, depth + 1) for i, x in enumerate(v)]
        return items if isinstance(v, list) else {"tuple": items}
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            raise TypeError(f"{where}: dict keys must be strings to go into a model file")
        return {"dict": {k: _encode(x, f"{where}.{k}", seen, depth + 1) for k, x in v.items()}}
    what = getattr(v, "__qualname__", type(v).__name__)
    raise TypeError(
        f"{where} is {what!r} ({type(v).__name__}); a model file holds numbers, strings, booleans, None, "
        "lists, tuples, dicts, tensors and registered modules (pass a name such as 'relu' or an instance "
        "instead of a function or a class)"
    )


def _encode_module(m: torch.nn.Module, where: str, seen: dict[int, int], depth: int) -> Any:
    if id(m) in seen:
        return {"ref": seen[id(m)]}
    recorded = init_arguments(m)
    key = registry_key(type(m))
    if recorded is None or REGISTRY.get(key) is not type(m):
        raise TypeError(
            f"{where} is a {type(m).__name__}, which is not a registered class: subclass a pushforward Transform, "
            "Transformer, Distribution or Flow (or pushforward.registry.Registered) so that it can be saved"
        )
    seen[id(m)] = len(seen)
    args, kwargs = recorded
    return {
        "module": {
            "class": key,
            "args": [
                _encode(a, f"{where}({type(m).__name__} argument {i})", seen, depth + 1)
                for i, a in enumerate(args)
            ],
            "kwargs": {
                k: _encode(a, f"{where}({type(m).__name__}.{k})", seen, depth + 1) for k, a in kwargs.items()
            },
        }
    }


def _encode_tensor(t: torch.Tensor, where: str) -> Any:
    name = str(t.dtype).removeprefix("torch.")
    if name not in ARG_DTYPES:
        raise TypeError(f"{where}: tensors of dtype {name} cannot go into a model file")
    data = t.detach().cpu().reshape(-1)
    if t.is_floating_point() and not bool(torch.isfinite(data).all()):
        raise ValueError(f"{where}: the tensor has non-finite values")
    values = data.int().tolist() if t.dtype is torch.bool else data.tolist()
    return {"tensor": {"dtype": name, "shape": list(t.shape), "data": values}}


def walk(value: Any, visit: Callable[[str, Any], None], key: str = "", depth: int = 0) -> None:
    """Call ``visit(name, value)`` on every JSON scalar of an encoded tree outside tensor data (``name`` is
    the nearest keyword-argument name, ``""`` for positional ones); raises ``ValueError`` past
    :data:`MAX_DEPTH`."""
    if depth > MAX_DEPTH:
        raise ValueError(f"the config is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, list):
        for v in value:
            walk(v, visit, key, depth + 1)
    elif isinstance(value, dict):
        if len(value) == 1 and "tensor" in value:
            return
        if len(value) == 1 and "module" in value and isinstance(value["module"], dict):
            body = value["module"]
            walk(body.get("args"), visit, "", depth + 1)
            kwargs = body.get("kwargs")
            if isinstance(kwargs, dict):
                for k, v in kwargs.items():
                    walk(v, visit, k, depth + 1)
            return
        for k, v in value.items():
            walk(v, visit, key if k in _TAGS else k, depth + 1)
    else:
        visit(key, value)


def decode(value: Any) -> Any:
    """The Python value of an encoded tree, building registered modules bottom-up.

    Raises:
        ValueError: A malformed tree, an unknown class name, a bad tensor, a dangling reference.
        TypeError, ValueError, ...: Whatever a constructor raises for arguments it refuses.
    """
    return _decode(value, [], 0)


def _decode(v: Any, built: list[Any], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"the config is nested more than {MAX_DEPTH} levels deep")
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("non-finite number in the config")
        return v
    if isinstance(v, list):
        return [_decode(x, built, depth + 1) for x in v]
    if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in _TAGS:
        raise ValueError(f"malformed value in the config: {str(v)[:80]}")
    tag, body = next(iter(v.items()))
    if tag == "tuple":
        if not isinstance(body, list):
            raise ValueError("a tuple must hold a list")
        return tuple(_decode(x, built, depth + 1) for x in body)
    if tag == "dict":
        if not isinstance(body, dict):
            raise ValueError("a dict must hold an object")
        return {k: _decode(x, built, depth + 1) for k, x in body.items()}
    if tag == "tensor":
        return _decode_tensor(body)
    if tag == "ref":
        if (
            isinstance(body, bool)
            or not isinstance(body, int)
            or not 0 <= body < len(built)
            or built[body] is None
        ):
            raise ValueError(f"bad module reference {body!r}")
        return built[body]
    return _decode_module(body, built, depth)


def _decode_module(body: Any, built: list[Any], depth: int) -> Any:
    if not isinstance(body, dict) or set(body) - {"class", "args", "kwargs"}:
        raise ValueError("a module must be an object with class, args and kwargs")
    key, args, kwargs = body.get("class"), body.get("args", []), body.get("kwargs", {})
    if not isinstance(key, str) or key not in REGISTRY:
        raise ValueError(f"unknown class {str(key)[:100]!r} (not a registered pushforward class)")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError(f"bad arguments of {key}")
    slot = len(built)
    built.append(None)
    a = [_decode(x, built, depth + 1) for x in args]
    k = {name: _decode(x, built, depth + 1) for name, x in kwargs.items()}
    module = REGISTRY[key](*a, **k)
    built[slot] = module
    return module


def _decode_tensor(body: Any) -> torch.Tensor:
    if not isinstance(body, dict) or set(body) != {"dtype", "shape", "data"}:
        raise ValueError("a tensor must be an object with dtype, shape and data")
    dtype, shape, data = body["dtype"], body["shape"], body["data"]
    if not isinstance(dtype, str) or dtype not in ARG_DTYPES:
        raise ValueError(f"tensor dtype {str(dtype)[:40]!r} is not allowed")
    if (
        not isinstance(shape, list)
        or len(shape) > 8
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise ValueError("a tensor shape must be a list of non-negative integers")
    if not isinstance(data, list) or len(data) != math.prod(shape):
        raise ValueError("a tensor's data must be a flat list of prod(shape) numbers")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in data):
        raise ValueError("a tensor's data must be finite numbers")
    return torch.tensor(data, dtype=ARG_DTYPES[dtype]).reshape(shape)
