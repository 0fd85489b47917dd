"""The code base passes ruff's lint rules configured in pyproject.toml."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str] | None:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    return [exe] if Path(exe).exists() else None


def test_ruff_check_is_clean():
    cmd = _ruff()
    if cmd is None:
        pytest.skip("ruff is not installed (it is part of the [test] extra)")
    paths = [p for p in ("src", "tests", "benchmarks", "examples") if (ROOT / p).exists()]
    out = subprocess.run([*cmd, "check", *paths], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
