r"""The preset base class and the one set of hyperparameter checks every preset runs before building.

A preset is a :class:`~pushforward.Flow` subclass whose constructor takes the data shape and a few
hyperparameters (``MAF(3, context=2, layers=5, hidden=(64, 64))``), so ``isinstance(flow, MAF)`` works,
``repr(flow)`` shows the options and a model file stores the constructor call (see
:mod:`pushforward.registry`). The checks refuse a bad value before anything is allocated, with a
``TypeError`` for a wrong type and a ``ValueError`` for a value out of range, each naming the preset and the
option: ``bool`` is not an int (``layers=True``), a float is not a count (``layers=2.5``), a string is not a
sequence of sizes (``hidden='16'``), and sizes are positive (``hidden=(0,)``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any

from ..registry import init_arguments
from .core import Flow

__all__ = [
    "MAX_SIZE",
    "Preset",
    "check_activation",
    "check_choice",
    "check_count",
    "check_flag",
    "check_image_shape",
    "check_number",
    "check_sizes",
]

#: Upper bound of every count and size a preset accepts (features, layers, hidden widths, bins, ...).
MAX_SIZE = 2**31 - 1


def check_count(owner: str, name: str, value: Any, *, low: int = 1, high: int = MAX_SIZE) -> int:
    """``value`` as an ``int`` in ``[low, high]``: ``TypeError`` for a bool, float, string or anything that
    is not an integer, ``ValueError`` out of range.

    Example:
        >>> check_count("MAF", "layers", 3)
        3
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{owner}: {name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{owner}: {name} must lie in [{low}, {high}], got {value}")
    return value


def check_sizes(
    owner: str, name: str, value: Any, *, low: int = 1, empty: bool = False, high: int = MAX_SIZE
) -> tuple[int, ...]:
    """``value`` as a tuple of sizes, each an integer in ``[low, high]``; a string (``'16'``) or a single
    number is not a sequence of sizes. ``empty`` allows ``()``.

    Example:
        >>> check_sizes("MAF", "hidden", [16, 16])
        (16, 16)
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(
            f"{owner}: {name} must be a sequence of integer sizes such as (64, 64), got "
            f"{type(value).__name__} {value!r}"
        )
    if len(value) > high:
        raise ValueError(f"{owner}: {name} has {len(value)} entries, more than {high}")
    sizes = tuple(check_count(owner, f"{name}[{i}]", v, low=low, high=high) for i, v in enumerate(value))
    if not sizes and not empty:
        raise ValueError(f"{owner}: {name} must not be empty")
    return sizes


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    open_low: bool = False,
    none: bool = False,
) -> float | None:
    """``value`` as a finite ``float`` in ``[low, high]`` (``(low, high]`` with ``open_low``); None is
    allowed with ``none``. Booleans and strings are refused.

    Example:
        >>> check_number("MAF", "clamp", 3, low=0.0, open_low=True, none=True)
        3.0
    """
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value}")
    if value < low or value > high or (open_low and value == low):
        interval = f"{'(' if open_low else '['}{low}, {high}]"
        raise ValueError(f"{owner}: {name} must lie in {interval}, got {value}")
    return value


def check_flag(owner: str, name: str, value: Any) -> bool:
    """``value`` must be a ``bool`` (not ``0``/``1``, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` must be one of ``choices`` (compared with ``==``, only against values of the same kind)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        shown = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{owner}: {name} must be one of {shown}; got {value!r}")
    return value


def check_activation(owner: str, value: Any) -> str | Callable[..., Any]:
    """An activation is a name (``"relu"``) or a callable returning a module."""
    if isinstance(value, str) or callable(value):
        return value
    raise TypeError(f"{owner}: activation must be a name or a callable, got {type(value).__name__}")


def check_image_shape(owner: str, value: Any) -> tuple[int, int, int]:
    """``(C, H, W)`` of positive integers."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3:
        raise TypeError(f"{owner}: shape must be (channels, height, width), got {value!r}")
    c, h, w = check_sizes(owner, "shape", value)
    return c, h, w


class Preset(Flow):
    r"""Base class of the ready-made flows (:data:`~pushforward.flows.PRESETS`): a :class:`Flow` whose
    constructor arguments are its options.

    ``repr`` shows the constructor call with every option (defaults filled in); the layers are in
    ``flow.transform``. Subclasses validate their options with the ``check_*`` helpers of this module before
    building, then call ``super().__init__(transform, base)``.

    Example:
        >>> from pushforward.flows import MAF
        >>> flow = MAF(3, layers=2, hidden=(16,))
        >>> isinstance(flow, Preset), flow.hyperparameters()["layers"]
        (True, 2)
    """

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's arguments by name, defaults filled in (``features`` or ``shape`` first)."""
        recorded = init_arguments(self)
        args, kwargs = recorded if recorded is not None else ((), {})
        signature = inspect.signature(type(self).__init__)
        bound = signature.bind_partial(None, *args, **kwargs)
        bound.apply_defaults()
        out = dict(list(bound.arguments.items())[1:])
        extra = out.pop(
            next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), ""), {}
        )
        return {**out, **extra}

    def __repr__(self) -> str:
        items = list(self.hyperparameters().items())
        if not items:
            return f"{type(self).__name__}()"
        (_, first), rest = items[0], items[1:]
        shown = ", ".join([repr(first), *(f"{k}={v!r}" for k, v in rest)])
        return f"{type(self).__name__}({shown})"
