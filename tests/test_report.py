"""The HTML report: every column reachable, best step marked, rendered in headless Chromium.

The browser test needs Debian's ``chromium`` (``apt-get install -y chromium``); it is skipped without it,
unless the environment variable ``CI`` is set, in which case a missing browser fails the test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pushforward.data.support import detect_support
from pushforward.report import write_report
from pushforward.tabular import FlowModel

from .browser import find_chromium, run_chromium

torch.set_num_threads(1)
COLUMNS = 18


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, COLUMNS))
    x[:, 0] = rng.lognormal(size=300)
    x[:, 1] = rng.integers(0, 2, 300)
    names = [f"col_{j}" for j in range(COLUMNS)]
    model = FlowModel.train(
        x,
        "realnvp",
        options={"layers": 2, "hidden": [8]},
        steps=30,
        eval_every=5,
        progress=False,
        columns=names,
        support=detect_support(x),
    )
    out = tmp_path_factory.mktemp("report") / "r.html"
    write_report(model, x, out, n_samples=1000, pairs=["col_0", "col_17", "col_5"])
    return out, model


def test_every_column_has_a_row_a_link_and_a_marginal(report):
    out, model = report
    text = out.read_text()
    for j in range(COLUMNS):
        assert f"href='#col-{j}'" in text and f"id='col-{j}'" in text
    assert "binary" in text and "positive" in text
    assert text.count('alt="marginals') == 2  # 16 + 2 columns
    assert "restored best step" in text and "Log-likelihoods" in text
    with pytest.raises(ValueError, match="unknown pair columns"):
        write_report(model, np.zeros((5, COLUMNS)) + 0.5, out.with_name("x.html"), pairs=["nope"])


@pytest.mark.slow
def test_report_renders_full_width_in_headless_chromium(report, tmp_path):
    from PIL import Image

    browser = find_chromium()
    out, _ = report
    shot = tmp_path / "shot.png"
    r = run_chromium(
        browser,
        tmp_path / "profile",
        "--window-size=1400,2400",
        f"--screenshot={shot}",
        out.as_uri(),
        timeout=180,
    )
    assert shot.exists(), r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape[1] == 1400
    ink = img < 200  # non-background pixels
    cols = np.flatnonzero(ink.any(0))
    assert cols.size and (cols[-1] - cols[0]) > 0.85 * img.shape[1]  # figures use the page width
    rows = np.flatnonzero(ink.any(1))
    assert (rows[-1] - rows[0]) > 0.9 * img.shape[0]  # content fills the page, not a blank render
