"""Bounds on what a model file may make the loader build, computed from the bytes the file carries.

Two layers, both before and during construction:

1. :func:`check_tree`: every integer in the config (outside tensor data) is at most
   ``max(stored scalars, 2**16)`` in magnitude, counts of repeated blocks (``layers``, ``levels``,
   ``scales``, ``blocks``) and the length of ``hidden`` are at most the number of non-empty stored tensors,
   and the product of the two largest sizes (a weight matrix), like the weights implied by consecutive
   ``hidden`` sizes, is at most ``4 * stored scalars + 2**20``; the config describes at most
   ``4 * stored tensors + 256`` modules.
2. :func:`allocation_budget`: while the model is built, a request to allocate one tensor larger than the stored
   scalars (plus ``2**20``) is refused *before* it is allocated (a :class:`~torch.overrides.TorchFunctionMode`
   sees every factory call), and the parameters and buffers registered so far may not exceed twice the stored
   scalars (plus ``2**20``). The built model must then have exactly the stored tensor names and shapes.

Example:
    >>> tree = {"module": {"class": "flows.autoregressive.MAF", "args": [3], "kwargs": {"layers": 500}}}
    >>> try:
    ...     check_tree(tree, n_scalars=1000, n_tensors=10)
    ... except ValueError as e:
    ...     print(e)
    layers=500 asks for more blocks than the 10 tensors in the file
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_parameter_registration_hook,
)
from torch.overrides import TorchFunctionMode

from .tree import walk

__all__ = ["BudgetExceeded", "allocation_budget", "check_tree"]

#: Keyword arguments that count repeated blocks: each block stores at least one tensor.
COUNT_NAMES = {"layers", "levels", "scales", "blocks"}
#: Keyword arguments listing layer sizes: each layer stores at least one tensor.
LIST_NAMES = {"hidden"}
#: Modules a config may describe: this many per stored tensor, plus a floor (parameterless transforms exist).
MODULES_PER_TENSOR, MODULES_FLOOR = 4, 256
#: Keyword arguments that are not sizes (never bounded by the weights).
NOT_SIZES = {"seed"}
#: Classes whose ``levels`` is a number of pixel values, not of blocks (bounded like any integer).
PIXEL_LEVELS = ("DequantizedFlow", "VariationalDequantizer")
SLACK = 2**20
INT_FLOOR = 2**16


class BudgetExceeded(ValueError):
    """Building the model asked for more memory than the file's weights can fill."""


def check_tree(tree: Any, n_scalars: int, n_tensors: int) -> None:
    """Refuse (``ValueError``) a config whose integers ask for more than ``n_scalars`` stored scalars in
    ``n_tensors`` non-empty tensors can fill (see the module documentation)."""
    bound = max(n_scalars, INT_FLOOR)
    sizes: list[int] = []

    def visit(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or name in NOT_SIZES:
            return
        if abs(value) > bound:
            raise ValueError(
                f"{name or 'an argument'}={value} exceeds the {n_scalars} scalars stored in the file"
            )
        if name in COUNT_NAMES and value > max(n_tensors, 1):
            raise ValueError(f"{name}={value} asks for more blocks than the {n_tensors} tensors in the file")
        if value > 0:
            sizes.append(value)

    walk(_pixel_levels_renamed(tree), visit)
    _check_lists(tree, n_scalars, n_tensors)
    top = sorted(sizes)[-2:]
    if len(top) == 2 and top[0] * top[1] > 4 * n_scalars + SLACK:
        raise ValueError(
            f"sizes {top[1]} x {top[0]} imply more weights than the {n_scalars} stored in the file"
        )


def _pixel_levels_renamed(tree: Any, depth: int = 0) -> Any:
    """``tree`` with the ``levels`` keyword of the :data:`PIXEL_LEVELS` classes renamed ``pixel_levels``."""
    if depth > 64:  # walk refuses deeper trees with a clear error
        return tree
    if isinstance(tree, list):
        return [_pixel_levels_renamed(v, depth + 1) for v in tree]
    if not isinstance(tree, dict):
        return tree
    out = {k: _pixel_levels_renamed(v, depth + 1) for k, v in tree.items()}
    body = out.get("module")
    if isinstance(body, dict) and str(body.get("class", "")).endswith(PIXEL_LEVELS):
        kwargs = body.get("kwargs")
        if isinstance(kwargs, dict) and "levels" in kwargs:
            body = {
                **body,
                "kwargs": {("pixel_levels" if k == "levels" else k): v for k, v in kwargs.items()},
            }
            out["module"] = body
    return out


def _check_lists(tree: Any, n_scalars: int, n_tensors: int) -> None:
    """Lists of layer sizes (``hidden``) are no longer than the stored tensors (each layer stores one), and
    the weights between consecutive layers, summed, fit in the stored scalars."""
    stack, modules = [tree], 0
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            body = v.get("module") if len(v) == 1 else None
            modules += body is not None
            if modules > MODULES_PER_TENSOR * n_tensors + MODULES_FLOOR:
                raise ValueError(f"the config describes more modules than its {n_tensors} tensors can hold")
            kwargs = body.get("kwargs") if isinstance(body, dict) else None
            for name in LIST_NAMES & set(kwargs if isinstance(kwargs, dict) else ()):
                value = kwargs[name]
                items = value.get("tuple") if isinstance(value, dict) else value
                if not isinstance(items, list):
                    continue
                if len(items) > max(n_tensors, 1):
                    raise ValueError(
                        f"{name} has {len(items)} entries, more than the {n_tensors} tensors in the file"
                    )
                sizes = [i for i in items if isinstance(i, int) and not isinstance(i, bool) and i > 0]
                if sum(a * b for a, b in zip(sizes, sizes[1:])) > 4 * n_scalars + SLACK:
                    raise ValueError(f"{name} implies more weights than the {n_scalars} stored in the file")
            stack.extend(v.values())


_active = threading.local()


def _numel(size: Sequence[Any]) -> int:
    if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
        size = size[0]
    n = 1
    for s in size:
        if isinstance(s, torch.Tensor):
            s = int(s)
        if not isinstance(s, int):
            return 0
        n *= max(s, 0)
    return n


_SIZED = {
    torch.empty,
    torch.zeros,
    torch.ones,
    torch.rand,
    torch.randn,
}


def _requested(func: Any, args: tuple, kwargs: dict) -> int:
    """Number of elements a factory call will allocate (0 when it cannot tell beforehand)."""
    if func in _SIZED:
        return _numel(kwargs["size"] if "size" in kwargs else args)
    if func is torch.full:
        return _numel(kwargs.get("size", args[0] if args else ()))
    if func is torch.randint:
        size = kwargs.get("size", next((a for a in args if isinstance(a, (tuple, list, torch.Size))), ()))
        return _numel(size)
    if func is torch.randperm:
        return int(args[0]) if args and isinstance(args[0], int) else 0
    if func is torch.eye:
        ints = [a for a in args if isinstance(a, int)]
        return ints[0] * (ints[1] if len(ints) > 1 else ints[0]) if ints else 0
    if func is torch.arange:
        numbers = [a for a in args if isinstance(a, (int, float))]
        if len(numbers) == 1:
            return int(max(numbers[0], 0))
        if len(numbers) >= 2:
            step = numbers[2] if len(numbers) > 2 else kwargs.get("step", 1)
            return int(max((numbers[1] - numbers[0]) / step, 0)) if step else 0
        return 0
    if func is torch.linspace:
        steps = args[2] if len(args) > 2 else kwargs.get("steps", 0)
        return int(steps) if isinstance(steps, int) else 0
    name = getattr(func, "__name__", "")
    if name in ("new_empty", "new_zeros", "new_ones", "new_full") and len(args) > 1:
        return _numel(args[1:2] if name == "new_full" else args[1:])
    if name == "repeat" and args and isinstance(args[0], torch.Tensor):
        return args[0].numel() * _numel(args[1:])
    return 0


class _Guard(TorchFunctionMode):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        n = _requested(func, args, kwargs)
        if n > self.limit:
            raise BudgetExceeded(
                f"building the model asks for a tensor of {n} values, more than the file's weights can fill"
            )
        return func(*args, **kwargs)


def _count(module: torch.nn.Module, name: str, tensor: Any) -> None:
    state = getattr(_active, "budget", None)
    if state is None or not isinstance(tensor, torch.Tensor):
        return
    state[0] += tensor.numel()
    if state[0] > state[1]:
        raise BudgetExceeded(
            f"the model being built has more than {state[1]} parameter and buffer values, more than the "
            "file's weights can fill"
        )


@contextlib.contextmanager
def allocation_budget(n_scalars: int) -> Iterator[None]:
    """Build modules under a memory budget computed from the ``n_scalars`` stored in the file."""
    if getattr(_active, "budget", None) is not None:
        raise RuntimeError("allocation_budget is not re-entrant")
    _active.budget = [0, 2 * n_scalars + SLACK]
    handles = [
        register_module_parameter_registration_hook(_count),
        register_module_buffer_registration_hook(_count),
    ]
    try:
        with _Guard(n_scalars + SLACK):
            yield
    finally:
        for h in handles:
            h.remove()
        _active.budget = None
