"""``pushforward presets``: the flow presets ``fit --flow`` accepts, one sentence each."""

from __future__ import annotations

import argparse
import re

__all__ = ["add_parser", "run"]

NAME = "presets"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``presets`` subcommand."""
    return subparsers.add_parser(
        NAME,
        help="list the available flow presets",
        description="List the flow presets 'fit --flow' accepts.",
    )


def run(a: argparse.Namespace) -> int:
    """Print each preset's name and the first sentence of its docstring."""
    from ..flows import PRESETS

    for name in sorted(PRESETS):
        print(f"{name:16s} {summary(PRESETS[name].__doc__ or '')}")
    return 0


def summary(doc: str) -> str:
    """The first sentence of a docstring as plain text (Sphinx roles, literals and maths unwrapped).

    Example:
        >>> summary("A :class:`~pushforward.Flow` with ``k`` layers. More text.")
        "A pushforward.Flow with 'k' layers."
    """
    para = " ".join(doc.strip().split("\n\n")[0].split())
    para = re.sub(r":(?:math|class|func|meth|mod|attr|data):`~?([^`]*)`", r"\1", para)
    para = re.sub(r"``([^`]*)``", r"'\1'", para).replace("`", "")
    para = re.sub(r"\\operatorname\{(\w+)\}", r"\1", para).replace("\\,", " ")
    para = re.sub(r"\\(\w+)", r"\1", para)
    m = re.search(r"^(.+?[.])(\s|$)", para)
    return (m.group(1) if m else para).rstrip(":.") + "."
