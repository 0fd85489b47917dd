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


def _overlapping_labels(fig) -> list[tuple[str, str]]:
    """Pairs of visible tick labels of one axis whose drawn boxes overlap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    clashes = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            boxes = [t.get_window_extent(renderer) for t in labels]
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    if boxes[i].overlaps(boxes[j]):
                        clashes.append((labels[i].get_text(), labels[j].get_text()))
    return clashes


def test_marginal_and_pair_plots_have_readable_axes():
    from pushforward.report import _marginals, _pairs
    from pushforward.report.checks import column_bounds, support_flags

    rng = np.random.default_rng(0)
    x = np.stack(
        [rng.lognormal(size=500) * 123456.789, rng.normal(size=500) * 1e-5, rng.uniform(size=500)], 1
    )
    s = x + rng.normal(size=x.shape) * x.std(0) * 0.3
    names = ["a rather long column name in dollars", "tiny", "share"]
    bounds = column_bounds(x, None)
    fig = _marginals(x, s, names, bounds, support_flags(s, bounds))
    assert _overlapping_labels(fig) == []
    assert all(len(ax.get_xticks()) <= 6 for ax in fig.axes)
    fig = _pairs(x, s, names)
    assert _overlapping_labels(fig) == []
    bottom = fig.axes[-3:]
    assert [ax.get_xlabel() for ax in bottom] == names  # the outer axes name their columns
    assert all(any(t.get_text() for t in ax.get_xticklabels()) for ax in bottom)


def test_columns_whose_model_density_leaves_the_support_are_flagged():
    from pushforward.report.checks import column_bounds, support_flags

    rng = np.random.default_rng(1)
    x = np.stack([rng.uniform(size=400), rng.exponential(size=400), rng.normal(size=400)], 1)
    assert [b[:2] for b in column_bounds(x, None)] == [(0.0, 1.0), (0.0, np.inf), (-np.inf, np.inf)]
    inside = np.stack([rng.uniform(size=400), rng.exponential(size=400), rng.normal(size=400) * 2], 1)
    assert support_flags(inside, column_bounds(x, None)) == ["", "", ""]
    leaky = inside.copy()
    leaky[:40, 0] = 1.5  # 10% of the shares above 1
    leaky[:20, 1] = -0.5  # 5% of the amounts below 0
    flags = support_flags(leaky, column_bounds(x, None))
    assert "10% of model samples outside (every data value in [0, 1])" == flags[0]
    assert flags[1].startswith("5% of model samples outside") and flags[2] == ""
    from pushforward.data.support import ColumnSupport

    declared = column_bounds(x, [ColumnSupport(), ColumnSupport(), ColumnSupport("positive", low=-10.0)])
    assert declared[2][:2] == (-10.0, np.inf) and support_flags(leaky, declared)[2] == ""
    leaky[0, 2] = -11.0  # one sample in 400 outside a declared support: flagged, whatever the tolerance
    assert support_flags(leaky, declared)[2] == "0.25% of model samples outside (declared positive (> -10))"


def test_report_names_the_file_and_flags_a_leaking_column(tmp_path):
    rng = np.random.default_rng(2)
    x = np.stack([rng.exponential(size=300) * 5, rng.normal(size=300)], 1)  # amounts piled near zero
    model = FlowModel.train(x, "realnvp", options={"layers": 1, "hidden": [4]}, steps=3, progress=False)
    assert model.support is None  # an unconstrained model of a non-negative column
    out = write_report(model, x, tmp_path / "r.html", n_samples=2000, data_name="amounts.csv")
    text = out.read_text()
    assert "<title>pushforward report: realnvp on amounts.csv</title>" in text
    assert "Columns where the model's density leaves the support" in text
    assert "every data value &gt;= 0" in text  # the unconstrained model puts mass below zero
