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
    est = tiny(steps=150, hidden=(32,), ensemble=1).fit(X)
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
    with pytest.raises(ValueError, match="ensemble"):
        tiny().fit(X).save(tmp_path / "e.safetensors")
    est = tiny(ensemble=1).fit(X)
    est.save(tmp_path / "m.safetensors")
    est2 = FlowDensity.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(est.score_samples(X), est2.score_samples(X))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"flow": "nope"}, "unknown flow preset"),
        ({"steps": 0}, "steps"),
        ({"validation_fraction": 1.5}, "validation"),
        ({"whiten": "yes"}, "whiten"),
    ],
)
def test_bad_params(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw).fit(np.zeros((10, 2)) + np.arange(10)[:, None])


def test_defaults_seeded_early_stopping_auto_device():
    p = FlowDensity().get_params()
    assert p["random_state"] == 0 and p["patience"] == 10 and p["device"] == "auto"
    assert p["support"] == "auto" and p["weight_decay"] > 0 and p["whiten"] == "auto"
    from pushforward.sklearn import DEFAULT_LR

    assert p["lr"] == DEFAULT_LR


def test_default_size_grows_with_rows():
    from pushforward.sklearn import default_size

    small, big = default_size(140), default_size(50_000)
    assert small["hidden"][0] < big["hidden"][0] <= 128 and small["bins"] < big["bins"]


def test_score_does_not_depend_on_the_rows_batched_together():
    X = np.random.default_rng(4).normal(size=(120, 3))
    est = FlowDensity(steps=20, ensemble=2).fit(X)
    whole = est.score_samples(X)
    parts = np.concatenate([est.score_samples(X[i : i + 7]) for i in range(0, 120, 7)])
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-12)


def test_samples_stay_in_detected_support_and_densities_integrate_out():
    rng = np.random.default_rng(5)
    n = 300
    X = np.stack([rng.lognormal(size=n), rng.integers(0, 2, n), rng.normal(size=n)], 1)
    est = FlowDensity(steps=60, ensemble=2).fit(X)
    assert [s.kind for s in est.support_] == ["positive", "interval", "real"]
    s = est.sample(2000, random_state=0)
    assert (s[:, 0] > 0).all() and set(np.unique(s[:, 1])) <= {0.0, 1.0}
    assert np.isneginf(est.score_samples(np.array([[-1.0, 0.0, 0.0]]))).all()
    ones = est.score_samples(np.ones((1, 3)))
    assert np.isfinite(ones).all()


def test_cross_fitted_scores_calibrate_anomaly_thresholds():
    from pushforward.analysis.anomaly import AnomalyDetector

    X = np.random.default_rng(6).normal(size=(200, 2))
    est = FlowDensity(steps=40, ensemble=3).fit(X)
    assert est.oof_scores_.shape == (200,) and np.isfinite(est.oof_scores_).all()
    det = AnomalyDetector(est, quantile=0.05).calibrate()
    lo, hi = det.threshold_interval_
    assert lo <= det.threshold_ <= hi
    with pytest.warns(UserWarning, match="very uncertain"):
        AnomalyDetector(est, quantile=0.01).calibrate(X[:20])


@pytest.mark.slow
def test_sklearn_estimator_checks_default_flow():
    # the default NSF ensemble, shortened: a row's score must not depend on the rows scored with it
    failures = [
        (r["check_name"], str(r["exception"])[:200])
        for r in check_estimator(FlowDensity(steps=8), on_fail=None)
        if r["status"] == "failed"
    ]
    assert not failures


def test_two_default_fits_agree():
    X = np.random.default_rng(7).normal(size=(80, 2))
    a = FlowDensity(steps=10, ensemble=2).fit(X).score_samples(X)
    b = FlowDensity(steps=10, ensemble=2).fit(X).score_samples(X)
    np.testing.assert_array_equal(a, b)


def _correlated_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    return z @ np.array([[1.0, 0.95, -0.6], [0.0, 0.3, 0.3], [0.0, 0.0, 0.15]]) * [1.0, 3.0, 10.0]


def test_whiten_auto_keeps_the_better_of_two_first_flows():
    X = _correlated_rows(400, 8)
    opts = dict(flow="maf", layers=1, hidden=(8,), steps=120, ensemble=3)
    est = FlowDensity(**opts).fit(X)
    assert set(est.whiten_scores_) == {True, False}
    assert est.whiten_ == max(est.whiten_scores_, key=est.whiten_scores_.get)
    # strongly correlated columns and a small flow: whitening wins, and every flow of the ensemble is whitened
    assert est.whiten_ and all(m.whiten is not None for m in est.models_)
    forced = FlowDensity(**opts, whiten=False).fit(X)
    assert forced.whiten_scores_ == {} and all(m.whiten is None for m in forced.models_)
    # the kept first flow is the one that scored whiten_scores_[True] on fold 0
    folds = np.random.default_rng(0).permutation(len(X)) % 3
    first = est.models_[0].log_prob(X[folds == 0]).mean()
    assert abs(first - est.whiten_scores_[True]) < 1e-3


def test_whiten_auto_with_a_single_flow_uses_the_validation_split():
    X = _correlated_rows(300, 9)
    est = FlowDensity(flow="maf", layers=1, hidden=(8,), steps=60, ensemble=1).fit(X)
    assert set(est.whiten_scores_) == {True, False} and len(est.models_) == 1
    assert est.whiten_scores_[est.whiten_] == est.models_[0].validation["mean"]
