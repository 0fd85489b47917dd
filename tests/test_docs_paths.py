"""Every ``pushforward.`` name the tutorials and guides mention exists at that path, and that path is the
canonical one: not a deprecated alias (a module with ``__moved_to__``, or a name that warns on look-up)."""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
# Tutorials and guides (CONTRIBUTING.md describes the design, including names still being built).
SOURCES = sorted([*DOCS.glob("*.rst"), DOCS / "cli.md", *(DOCS / "tutorials").glob("*.py")])
NAME = re.compile(r"(?<![\w/])pushforward(?:\.[A-Za-z_]\w*)+")


def _resolve(dotted: str) -> object:
    """The object at ``dotted``; ``DeprecationWarning`` (a moved name) is raised as an error."""
    parts = dotted.split(".")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
            if getattr(obj, "__moved_to__", None):
                raise DeprecationWarning(f"{dotted} is an alias of {obj.__moved_to__}")
            return obj
    raise ModuleNotFoundError(dotted)


def _mentions() -> list[tuple[str, str]]:
    found = []
    for path in SOURCES:
        for name in sorted(set(NAME.findall(path.read_text(encoding="utf-8")))):
            found.append((path.name, name.rstrip(".")))
    return found


def test_the_docs_mention_library_names():
    assert len(_mentions()) > 30  # the regular expression finds them


@pytest.mark.parametrize(("page", "name"), _mentions())
def test_each_name_in_the_docs_exists_at_its_canonical_path(page, name):
    try:
        _resolve(name)
    except (AttributeError, ModuleNotFoundError, DeprecationWarning) as e:
        pytest.fail(f"{page} names {name}: {type(e).__name__}: {e}")
