"""FlowDensity: the scikit-learn estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import check_estimator

from pushforward import FlowDensity
from pushforward.flows import PRESETS

torch.set_num_threads(1)


def tiny(**kw):
    params = dict(flow="realnvp", layers=2, hidden=(8,), steps=5, batch_size=32, random_state=0)
    params.update(kw)
    return FlowDensity(**params)


def test_sklearn_estimator_checks():
    failures = [
        (r["check_name"], str(r["exception"])[:200])
        for r in check_estimator(tiny(), on_fail=None)
        if r["status"] == "failed"
    ]
    assert not failures


def test_default_flow_is_nsf_when_available():
    X = np.random.default_rng(0).normal(size=(100, 2))
    est = FlowDensity(layers=1, hidden=(8,), steps=2, random_state=0).fit(X)
    assert est.flow is None
    assert est.flow_ == ("nsf" if "nsf" in PRESETS else "realnvp")


def test_densities_are_in_original_units():
    X = np.random.default_rng(0).normal(size=(400, 3))
    a = tiny(steps=30).fit(X)
    b = tiny(steps=30).fit(X * 10.0 + 5.0)
    # same standardised data, same seed → same flow; the change of units costs exactly 3·log(10)
    np.testing.assert_allclose(
        a.score_samples(X[:50]) - 3 * np.log(10.0), b.score_samples(X[:50] * 10 + 5), rtol=1e-5, atol=1e-4
    )


def test_fit_improves_score_sample_shape_and_params():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 2)) * [3.0, 0.2]
    est = tiny(steps=150, hidden=(32,)).fit(X)
    gauss = -0.5 * (2 * np.log(2 * np.pi) + np.log(9.0 * 0.04) + 2)
    assert est.score(X) > gauss - 0.3
    assert est.sample(11).shape == (11, 2)
    assert est.get_params()["layers"] == 2
    est2 = clone(est).set_params(layers=3)
    assert est2.layers == 3 and not hasattr(est2, "model_")


def test_pipeline_and_grid_search():
    X = np.random.default_rng(2).normal(size=(150, 2))
    pipe = Pipeline([("id", FunctionTransformer()), ("flow", tiny())])
    pipe.fit(X)
    assert np.isfinite(pipe.score_samples(X)).all()
    search = GridSearchCV(tiny(), {"layers": [1, 2]}, cv=2).fit(X)
    assert search.best_params_["layers"] in (1, 2)


def test_save_load(tmp_path):
    X = np.random.default_rng(3).normal(size=(100, 2))
    est = tiny().fit(X)
    est.save(tmp_path / "m.safetensors")
    est2 = FlowDensity.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(est.score_samples(X), est2.score_samples(X))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"flow": "nope"}, "unknown flow preset"),
        ({"steps": 0}, "steps"),
        ({"validation_fraction": 1.5}, "validation"),
    ],
)
def test_bad_params(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw).fit(np.zeros((10, 2)) + np.arange(10)[:, None])
