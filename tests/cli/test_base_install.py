"""The command line on the base install: no optional package on the fit/sample/score/report path, and a
``--help`` that imports neither torch nor matplotlib (lazy imports keep it fast)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

SRC = str(Path(__file__).resolve().parents[2] / "src")

#: Packages that are extras, not base dependencies (pyproject.toml): the CLI must not need them.
OPTIONAL = ("sklearn", "scipy", "pandas", "torchdiffeq", "pyro", "h5py")

# As if they were not installed: ``import`` fails, ``importlib.util.find_spec`` answers None (torch probes some).
BLOCKER = f"""
import sys
for name in {OPTIONAL!r}:
    sys.modules[name] = None
"""


def python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env_code = textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", env_code],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )


def test_help_imports_neither_torch_nor_matplotlib():
    r = python(
        """
        import sys
        from pushforward.cli.main import main
        for argv in (["--help"], ["--version"]):
            assert main(argv) == 0
        heavy = [m for m in ("torch", "matplotlib", "numpy", "sklearn", "scipy") if m in sys.modules]
        print("HEAVY", heavy)
        """
    )
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout, r.stdout[-500:]
    assert "fit" in r.stdout and "score" in r.stdout


def test_fit_sample_score_report_need_no_optional_package(tmp_path):
    rng = np.random.default_rng(0)
    x = np.hstack([rng.lognormal(size=(200, 1)), rng.normal(size=(200, 2))])
    np.savetxt(tmp_path / "d.csv", x, delimiter=",", header="amount,b,c", comments="")
    r = python(
        BLOCKER
        + """
import sklearn  # noqa: the blocker must work, or the test proves nothing
"""
    )
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr
    r = python(
        BLOCKER
        + """
from pushforward.cli.main import main
tiny = ["--layers", "1", "--hidden", "8", "--steps", "5", "--no-progress"]
for argv in (
    ["fit", "d.csv", *tiny, "--out", "m.safetensors"],
    ["fit", "d.csv", *tiny, "--out", "c.safetensors", "--context-columns", "c"],
    ["sample", "m.safetensors", "-n", "5", "--out", "s.csv"],
    ["score", "m.safetensors", "d.csv", "--anomalies", "0.05", "--typicality", "--out", "scores.csv"],
    ["score", "c.safetensors", "d.csv", "--context-columns", "c", "--out", "cs.csv"],
    ["report", "m.safetensors", "d.csv", "--out", "r.html", "--samples", "200"],
):
    rc = main(argv)
    assert rc == 0, argv
print("ALL OK")
""",
        cwd=tmp_path,
    )
    assert r.returncode == 0 and "ALL OK" in r.stdout, r.stderr[-3000:]
    assert (tmp_path / "r.html").exists()


def test_import_pushforward_is_lazy_and_every_public_name_resolves():
    r = python(
        """
        import sys
        import pushforward
        assert "torch" not in sys.modules, "import pushforward imported torch"
        for name in pushforward.__all__:
            if name != "FlowDensity":  # needs scikit-learn, an extra
                assert getattr(pushforward, name) is not None, name
        assert "torch" in sys.modules and set(pushforward.__all__) <= set(dir(pushforward))
        assert pushforward.fit is pushforward.train.fit  # subpackages load on first use too
        try:
            pushforward.no_such_name
        except AttributeError as e:
            print("OK", e)
        """
    )
    assert r.returncode == 0 and "OK module 'pushforward' has no attribute 'no_such_name'" in r.stdout, (
        r.stderr
    )
