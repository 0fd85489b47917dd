"""Every ``>>>`` example in the package runs, and a failing example fails the suite.

Each module of ``pushforward`` is one test: its docstring examples run with :mod:`doctest` in a fresh
temporary working directory (examples that write files leave nothing behind) and a fixed seed. A module
whose optional dependency is missing is skipped with the reason. ``# doctest: +SKIP`` is not allowed:
an example that cannot run in a second or two is rewritten until it can.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import types
from pathlib import Path

import pytest
import torch

import pushforward

SRC = Path(pushforward.__file__).resolve().parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    names = [pushforward.__name__]
    for info in pkgutil.walk_packages(pushforward.__path__, prefix="pushforward."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # running it would start the command-line program
        names.append(info.name)
    return sorted(names)


MODULES = _module_names()
# Modules whose examples train a small model or run a sampler: a few seconds each.
SLOW = {
    "pushforward.analysis.anomaly",
    "pushforward.sklearn",
    "pushforward.report",
    "pushforward.inference.mcmc",
    "pushforward.flows.continuous",
}


def test_every_module_is_collected():
    files = {p.relative_to(SRC).with_suffix("") for p in SRC.rglob("*.py") if p.stem != "__main__"}
    dotted = {".".join(("pushforward", *f.parts)).removesuffix(".__init__") for f in files}
    assert dotted <= set(MODULES), sorted(dotted - set(MODULES))


def test_no_skipped_examples():
    skipped = [
        f"{p.relative_to(SRC)}:{i}"
        for p in sorted(SRC.rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"doctest:.*\+SKIP", line)
    ]
    assert not skipped, f"examples marked +SKIP (make them run instead): {skipped}"


def _failures(module, name: str) -> list[str] | None:
    """The report of every failing example of ``module`` (``None`` when it has no examples)."""
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]
    if not tests:
        return None
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    failures = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the examples are tiny; one thread avoids contention on a shared machine
    try:
        for test in sorted(tests, key=lambda t: t.lineno or 0):
            torch.manual_seed(0)
            out: list[str] = []
            if runner.run(test, out=out.append, clear_globs=True).failed:
                failures.append("".join(out))
    finally:
        torch.set_num_threads(threads)
    return failures


def test_a_wrong_example_is_reported():
    module = types.ModuleType("fake")
    exec('def add(a, b):\n    """>>> add(1, 2)\n    4\n    """\n    return a + b\n', module.__dict__)
    failures = _failures(module, "fake")
    assert failures and "Expected:" in failures[0] and "Got:" in failures[0], failures


@pytest.mark.parametrize(
    "name", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m for m in MODULES]
)
def test_docstring_examples(name, tmp_path, monkeypatch):
    try:
        module = importlib.import_module(name)
    except ImportError as err:  # an optional extra that is not installed
        pytest.skip(f"{name} needs an optional dependency: {err}")
    monkeypatch.chdir(tmp_path)
    failures = _failures(module, name)
    if failures is None:
        pytest.skip(f"{name} has no examples")
    assert not failures, "\n".join(failures)
