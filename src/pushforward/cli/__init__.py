"""The ``pushforward`` command line: ``fit``, ``sample``, ``score``, ``report``, ``demo``, ``presets``."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
