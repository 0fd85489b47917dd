"""Deprecation aliases for modules that moved: the old import path keeps working and warns."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable


def moved_module(old: str, new: str) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for an alias module ``old`` of the module ``new``.

    Every attribute is looked up in ``new`` (imported on first use) with a ``DeprecationWarning`` naming
    the new home.
    """

    def __getattr__(name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        target = importlib.import_module(new)
        if not hasattr(target, name):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old} moved to {new}; import {name} from there", DeprecationWarning, stacklevel=2)
        return getattr(target, name)

    def __dir__() -> list[str]:
        return sorted(getattr(importlib.import_module(new), "__all__", []))

    return __getattr__, __dir__


def moved_names(old: str, homes: dict[str, str]) -> Callable[[str], object]:
    """Module-level ``__getattr__`` for the names of module ``old`` that moved: ``homes`` maps each name to
    its new module. Looking one up imports it from there, with a ``DeprecationWarning``."""

    def __getattr__(name: str) -> object:
        if name not in homes:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old}.{name} moved to {homes[name]}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__
