"""The package's layering, as ``docs/CONTRIBUTING.md`` draws it, checked on the source.

* every module imports on its own, first, in a fresh interpreter (no "partially initialised module");
* no module imports a module of a higher layer (function-level imports count too: a lazy import that
  reaches upwards is still a dependency upwards);
* there is no import cycle between modules, whatever their layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "pushforward"

# Lowest first; a module may import modules of its own layer or of lower layers only. Keys are module
# names relative to ``pushforward`` (a package name covers everything below it). Keep in sync with the
# diagram in docs/CONTRIBUTING.md.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundations", ["checks", "inversion", "estimators", "registry", "_version"]),
    ("building blocks", ["nets", "transformers"]),
    ("transforms", ["transforms", "manifolds"]),
    ("distributions", ["distributions"]),
    ("data", ["data"]),
    ("flows", ["flows"]),
    ("analysis", ["analysis"]),
    ("training", ["train"]),
    ("inference", ["inference", "sbi"]),
    ("applications", ["io", "report", "sklearn", "tabular", "codec"]),
    ("command line", ["cli", "__main__"]),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The pushforward modules that ``name`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("pushforward"):
                continue
            # ``from pkg import sub`` depends on the submodule, ``from mod import name`` on the module.
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            found.update(subs or [target])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pushforward"))
    return {m for m in found if m in MODULES and m != name}


def _layer(name: str) -> int | None:
    """The layer index of a module; ``None`` for the top-level facade ``pushforward`` itself."""
    rel = name.removeprefix("pushforward").lstrip(".")
    if not rel:
        return None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if rel == prefix or rel.startswith(prefix + "."):
                return index
    raise AssertionError(f"module {name} is in no layer: add it to LAYERS and to docs/CONTRIBUTING.md")


def test_every_module_has_a_layer():
    for name in MODULES:
        _layer(name)


def test_no_lower_layer_imports_a_higher_one():
    violations = []
    for name, path in MODULES.items():
        mine = _layer(name)
        if mine is None:
            continue
        for dep in sorted(_imports(name, path)):
            theirs = _layer(dep)
            if theirs is None:
                violations.append(f"{name} imports the top-level facade {dep}")
            elif theirs > mine:
                violations.append(f"{name} ({LAYERS[mine][0]}) imports {dep} ({LAYERS[theirs][0]})")
    assert not violations, "layering violations:\n" + "\n".join(violations)


def test_no_import_cycles():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    # A package's __init__ re-exports its submodules; edges from a submodule up to its own package are
    # what makes a cycle, so they are kept and __init__ edges down are kept too: only real cycles remain
    # once we drop the facade edges of the package onto its own children.
    for name in graph:
        graph[name] = {d for d in graph[name] if not d.startswith(name + ".")}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_layer_check_can_fail():
    """The checker sees an upward import: flows are above transforms."""
    assert _layer("pushforward.transforms.base") < _layer("pushforward.flows.core")
    assert "pushforward.transforms.base" in _imports(
        "pushforward.flows.core", MODULES["pushforward.flows.core"]
    )


@pytest.mark.slow
def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module is imported first, with no pushforward module loaded before it."""
    script = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        f"for name in {sorted(MODULES)!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'pushforward' or m.startswith('pushforward.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "old",
    [
        "pushforward.vi",
        "pushforward.mcmc",
        "pushforward.montecarlo",
        "pushforward.diagnostics",
        "pushforward.anomaly",
        "pushforward.train.reversible",
        "pushforward._moved",
    ],
)
def test_one_canonical_path_per_name(old):
    """The deprecation aliases are gone (never released): each name has one import path."""
    import importlib

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("pushforward.data.images", "DequantizedFlow"),
        ("pushforward.data.images", "fit_images"),
        ("pushforward.data.images", "save_image_grid"),
        ("pushforward.data", "VariationalDequantizer"),
    ],
)
def test_moved_names_are_not_reexported(module, name):
    import importlib

    assert not hasattr(importlib.import_module(module), name)
