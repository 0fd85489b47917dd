r"""The class registry behind model files: every class a file may name, and the arguments it was built with.

A class that inherits :class:`Registered` (every :class:`~pushforward.transforms.Transform`,
:class:`~pushforward.transformers.Transformer`, :class:`~pushforward.distributions.Distribution`,
:class:`~pushforward.Flow` and preset, the user-facing conditioner and embedding networks, and every subclass
anyone writes of these) is entered in :data:`REGISTRY` under :func:`registry_key` when Python creates the
class, and each instance remembers the arguments of its outermost constructor call
(:func:`init_arguments`). The rule that makes this enough: a module is rebuilt by calling its class with
those arguments, and everything it learned or fitted lives in its ``state_dict``.

:mod:`pushforward.io` writes that call as JSON next to the weights and, when reading, looks class names up
in :data:`REGISTRY` only: a name in a file is never imported, and a class nobody has imported cannot be
built from a file.

Example:
    >>> from pushforward.transforms import Shift
    >>> init_arguments(Shift(3))
    ((), {'shape': 3})
    >>> lookup(registry_key(Shift)) is Shift
    True
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["REGISTRY", "Registered", "init_arguments", "lookup", "registry_key"]

#: Registry key → class, for every subclass of :class:`Registered` created so far.
REGISTRY: dict[str, type] = {}

_ARGS = "_registered_init_arguments"


def registry_key(cls: type) -> str:
    """The name a model file uses for ``cls``: its module (without the leading ``pushforward.``) and
    qualified name, e.g. ``"flows.autoregressive.MAF"``."""
    module = cls.__module__.removeprefix("pushforward.")
    return f"{module}.{cls.__qualname__}"


def lookup(key: str) -> type:
    """The registered class named ``key``; ``KeyError`` naming it when there is none."""
    try:
        return REGISTRY[key]
    except (KeyError, TypeError):
        raise KeyError(f"no registered class {key!r}") from None


def _recording(cls: type, init: Callable[..., None]) -> Callable[..., None]:
    """``init`` that records, on the outermost call only, the positional and keyword arguments."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: object, *args: Any, **kwargs: Any) -> None:
        if _ARGS in self.__dict__:  # an inner ``super().__init__`` call: the outer one records
            init(self, *args, **kwargs)
            return
        object.__setattr__(self, _ARGS, None)
        # a one-shot iterator (``Compose(t for t in ...)``) is read once, here, so it can also be recorded
        args = tuple(list(a) if isinstance(a, Iterator) else a for a in args)
        kwargs = {k: list(a) if isinstance(a, Iterator) else a for k, a in kwargs.items()}
        try:
            init(self, *args, **kwargs)
        except BaseException:
            self.__dict__.pop(_ARGS, None)
            raise
        object.__setattr__(self, _ARGS, _normalise(signature, args, kwargs))

    __init__.records_arguments = True  # type: ignore[attr-defined]
    return __init__


def _normalise(signature: inspect.Signature, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """``(args, kwargs)`` with every argument that can be passed by name passed by name."""
    try:
        bound = signature.bind(None, *args, **kwargs)
    except TypeError:  # the call succeeded, so this cannot happen for a plain signature
        return tuple(args), dict(kwargs)
    positional: list[Any] = []
    keyword: dict[str, Any] = {}
    params = list(signature.parameters.values())[1:]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    for p in params:
        if p.name not in bound.arguments:
            continue
        value = bound.arguments[p.name]
        if p.kind is p.POSITIONAL_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and has_varargs):
            positional.append(value)
        elif p.kind is p.VAR_POSITIONAL:
            positional.extend(value)
        elif p.kind is p.VAR_KEYWORD:
            keyword.update(value)
        else:
            keyword[p.name] = value
    return tuple(positional), keyword


class Registered:
    """Mixin: subclasses are entered in :data:`REGISTRY` and their instances remember their constructor
    arguments (see the module documentation). Put it first among the bases: ``class X(Registered, nn.Module)``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__", cls.__init__)  # an inherited ``nn.Module.__init__`` records too
        if not getattr(init, "records_arguments", False):
            cls.__init__ = _recording(cls, init)  # type: ignore[method-assign]
        REGISTRY[registry_key(cls)] = cls


def init_arguments(obj: object) -> tuple[tuple, dict] | None:
    """``(args, kwargs)`` of the outermost constructor call that built ``obj``; None for an object whose
    class is not :class:`Registered` (or whose constructor has not returned yet)."""
    return obj.__dict__.get(_ARGS) if hasattr(obj, "__dict__") else None
