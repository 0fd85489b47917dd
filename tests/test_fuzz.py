"""Fuzzing: malformed arrays and files thrown at the estimator and the CLI must give clean errors only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pushforward import FlowDensity, TrainingDiverged
from pushforward.cli.main import main

torch.set_num_threads(1)
FAST = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))

floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
arrays = st.one_of(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5), elements=floats),
    hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)),
    st.lists(st.lists(st.one_of(floats, st.text(max_size=3), st.none()), max_size=4), max_size=5),
    st.just(np.array(["a", "b"])),
    st.just(np.array([[1.0, np.nan], [2.0, 3.0]])),
)


def tiny():
    return FlowDensity(flow="realnvp", layers=1, hidden=(4,), steps=2, batch_size=8, random_state=0)


@FAST
@given(arrays)
def test_estimator_fit_accepts_or_rejects_cleanly(x):
    try:
        est = tiny().fit(x)
    except (ValueError, TypeError, TrainingDiverged):  # a clear, named refusal
        return
    a = np.asarray(x, dtype=np.float64)
    assert a.ndim == 2 and np.isfinite(a).all()
    assert np.isfinite(est.score_samples(a)).all()


@pytest.fixture(scope="module")
def fitted():
    return tiny().fit(np.random.default_rng(0).normal(size=(40, 2)))


@FAST
@given(x=arrays)
def test_estimator_scoring_rejects_cleanly(fitted, x):
    try:
        s = fitted.score_samples(x)
    except (ValueError, TypeError):
        return
    assert s.shape == (np.asarray(x).shape[0],)


cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 5).map(str),
    st.sampled_from(["", "abc", "1e400", "  ", "nan", "\t", "1,5", '"2"', "−1"]),
)
rows = st.lists(st.lists(cells, min_size=0, max_size=4).map(",".join), min_size=0, max_size=6)


@FAST
@given(lines=rows, newline=st.booleans())
def test_cli_rejects_malformed_files_with_one_line(tmp_path_factory, lines, newline):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "x.csv").write_text("\n".join(lines) + ("\n" if newline else ""))
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(
            [
                "fit",
                str(d / "x.csv"),
                "--flow",
                "realnvp",
                "--layers",
                "1",
                "--hidden",
                "4",
                "--steps",
                "1",
                "--no-progress",
                "--out",
                str(d / "m.safetensors"),
            ]
        )
    text = err.getvalue().strip()
    if rc == 0:
        assert (d / "m.safetensors").exists()
    else:
        assert rc in (1, 2)
        assert len(text.splitlines()) == 1 and "error:" in text, text
        assert "Traceback" not in text
