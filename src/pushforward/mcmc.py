"""Deprecated alias: :mod:`pushforward.mcmc` moved to :mod:`pushforward.inference.mcmc`.

Importing a name from here still works and warns once per name; import it from
``pushforward.inference`` (or ``pushforward``) instead.
"""

from __future__ import annotations

from ._moved import moved_module

__moved_to__ = "pushforward.inference.mcmc"

__getattr__, __dir__ = moved_module(__name__, "pushforward.inference.mcmc")
