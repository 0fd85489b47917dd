"""Deprecated alias: :mod:`pushforward.vi` moved to :mod:`pushforward.inference.vi`.

Importing a name from here still works and warns once per name; import it from
``pushforward.inference`` (or ``pushforward``) instead.
"""

from __future__ import annotations

from ._moved import moved_module

__moved_to__ = "pushforward.inference.vi"

__getattr__, __dir__ = moved_module(__name__, "pushforward.inference.vi")
