"""Sphinx configuration of the pushforward documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (from the repository root, with
``pip install -e ".[docs]"``). Everything the pages need is copied into the build: MathJax comes from the
``sphinx-mathjax-offline`` package, and nothing is fetched from the network (no intersphinx).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import shutil
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "src"))

import pushforward  # noqa: E402

project = "pushforward"
author = "the pushforward authors"
copyright = "the pushforward authors, MIT License"
release = version = pushforward.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx-mathjax-offline",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = [
    "_build",
    "tutorials/GALLERY_HEADER.rst",
    "generated/tutorials/*.ipynb",
    "generated/tutorials/*.py",
]
templates_path: list[str] = []

html_theme = "furo"
html_title = f"pushforward {version}"
html_static_path: list[str] = []
html_show_sourcelink = False

# API reference: docstrings in Google style, type hints shown in the parameter descriptions.
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True
add_module_names = False
myst_heading_anchors = 3

# Tutorials: sphinx-gallery scripts, executed at every build (they are small enough for a CPU).
# A tutorial that raises fails the build.
sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "generated/tutorials",
    "filename_pattern": r"/\d\d_",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "show_signature": False,
    "remove_config_comments": True,
    "min_reported_time": 1_000_000,
    "reset_modules": ("matplotlib", "seaborn"),
    "first_notebook_cell": None,
    "write_computation_times": False,
}
os.environ.setdefault("PUSHFORWARD_DOCS_BUILD", "1")


# A warning a tutorial prints shows its category and message, not the path of the file on the machine that
# built the site (tests/test_docs_site.py checks that no page shows one).
def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"{category.__name__}: {message}\n"


warnings.formatwarning = _format_warning


# One reference page per package (and per top-level module), regenerated at every build so that a new
# module is documented without touching the docs.
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def generate_api_pages() -> None:
    out = DOCS / "generated" / "api"
    shutil.rmtree(out, ignore_errors=True)  # pages of modules that moved or went away must not linger
    packages: list[str] = []
    modules: list[str] = []
    for info in pkgutil.iter_modules(pushforward.__path__):
        if info.name.startswith("_"):
            continue
        (packages if info.ispkg else modules).append(info.name)
    pages = []
    top = [_title("pushforward"), ".. automodule:: pushforward\n   :no-members:\n"]
    top.append(
        "\nThe names exported at the top level are documented on the page of the module that defines them:"
    )
    top.append(" :class:`~pushforward.flows.core.Flow`, :func:`~pushforward.train.fit.fit`,")
    top.append(
        " :func:`~pushforward.inference.vi.fit_vi`, :func:`~pushforward.inference.montecarlo.expectation`,"
    )
    top.append(" :class:`~pushforward.sklearn.FlowDensity`, :func:`~pushforward.checks.set_validation`.\n")
    _write(out / "pushforward.rst", "".join(top))
    pages.append("pushforward")
    for name in sorted(packages):
        full = f"pushforward.{name}"
        package = __import__(full, fromlist=["_"])
        subs = [i.name for i in pkgutil.iter_modules(package.__path__) if not i.name.startswith("_")]
        text = [_title(full), f".. automodule:: {full}\n   :no-members:\n"]
        for attr in sorted(getattr(package, "__all__", [])):  # what the package's own __init__ defines
            obj = getattr(package, attr, None)
            if getattr(obj, "__module__", None) == full and callable(obj):
                kind = "autoclass" if isinstance(obj, type) else "autofunction"
                text.append(f"\n.. {kind}:: {full}.{attr}\n")
        for sub in sorted(subs):
            text.append(f"\n{_title(f'{full}.{sub}', '-')}\n.. automodule:: {full}.{sub}\n")
        _write(out / f"{full}.rst", "".join(text))
        pages.append(full)
    for name in sorted(modules):
        full = f"pushforward.{name}"
        facade = getattr(importlib.import_module(full), "__facade_of__", None)
        options = f"   :no-members:\n\nEvery name is documented in :mod:`{facade}`.\n" if facade else ""
        _write(out / f"{full}.rst", f"{_title(full)}\n.. automodule:: {full}\n{options}")
        pages.append(full)
    index = [_title("API reference"), "\nOne page per package of ``pushforward`` and per top-level module.\n"]
    index.append("\n.. toctree::\n   :maxdepth: 1\n\n")
    index += [f"   {p}\n" for p in pages]
    _write(out / "index.rst", "".join(index))


generate_api_pages()


# Names are written in the docs as users import them (``pushforward.fit``, ``pushforward.flows.NSF``,
# ``pushforward.FlowDensity``), while each object's API entry lives on the page of the module that defines it
# (``pushforward.train.fit.fit``). A reference that Sphinx cannot find under its public path is resolved to the
# defining module's entry here, so every name on a tutorial or guide page links to its API page
# (tests/test_docs_site.py checks that none is left unlinked).
def _public_to_defined(target: str) -> list[str]:
    """The documented full names an importable ``pushforward.`` name may have (its defining module's)."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return []
        break
    else:
        return []
    if isinstance(obj, type(sys)):
        return [obj.__name__]
    owner = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if owner and qualname:
        return [f"{owner}.{qualname}"]
    if cut < len(parts):  # a plain attribute (e.g. a constant): its module's entry for that name
        parent = importlib.import_module(".".join(parts[:cut]))
        return [f"{getattr(parent, '__name__', '')}.{parts[-1]}"]
    return []


def _resolve_public_names(app, env, node, contnode):
    if node.get("refdomain") != "py" or not str(node.get("reftarget", "")).startswith("pushforward."):
        return None
    domain = env.get_domain("py")
    for name in _public_to_defined(node["reftarget"]):
        if name != node["reftarget"] and name in domain.objects:
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
            )
    return None


def setup(app):
    app.connect("missing-reference", _resolve_public_names)
