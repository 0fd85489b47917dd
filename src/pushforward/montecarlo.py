"""Deprecated alias: :mod:`pushforward.montecarlo` moved to :mod:`pushforward.inference.montecarlo`.

Importing a name from here still works and warns once per name; import it from
``pushforward.inference`` (or ``pushforward``) instead.
"""

from __future__ import annotations

from ._moved import moved_module

__moved_to__ = "pushforward.inference.montecarlo"

__getattr__, __dir__ = moved_module(__name__, "pushforward.inference.montecarlo")
