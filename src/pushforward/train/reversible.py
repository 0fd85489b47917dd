"""Deprecated alias: :mod:`pushforward.train.reversible` moved to :mod:`pushforward.transforms.reversible`.

Importing a name from here still works and warns once per name.
"""

from __future__ import annotations

from .._moved import moved_module

__moved_to__ = "pushforward.transforms.reversible"

__getattr__, __dir__ = moved_module(__name__, "pushforward.transforms.reversible")
