"""Headless Chromium for the tests that look at pages as a person would (the docs site, the HTML report).

Debian's ``chromium`` package; without it the tests skip, except with ``CI`` set, where they fail (CI must
not pass without looking).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

#: Headless, no sandbox (root), and none of the background connections this closed network refuses.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium() -> str:
    """The Chromium executable; skips the test without one (fails it when ``CI`` is set)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.environ.get("CI"):
        pytest.fail("CI is set but headless Chromium is missing (apt-get install -y chromium)")
    pytest.skip("headless Chromium (Debian package 'chromium') is not installed")
    raise AssertionError  # unreachable


def run_chromium(
    browser: str, profile: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``browser`` headless with a fresh ``profile`` directory and the extra ``args``."""
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
