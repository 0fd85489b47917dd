"""Deprecated alias: :mod:`pushforward.diagnostics` moved to :mod:`pushforward.analysis.diagnostics`.

Importing a name from here still works and warns once per name; import it from
``pushforward.analysis`` (or ``pushforward``) instead.
"""

from __future__ import annotations

from ._moved import moved_module

__moved_to__ = "pushforward.analysis.diagnostics"

__getattr__, __dir__ = moved_module(__name__, "pushforward.analysis.diagnostics")
