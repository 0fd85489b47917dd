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
        for r in check_estimator(tiny(conditional=False), on_fail=None)
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
    from pushforward.tabular.sizing import DEFAULT_LR

    assert p["lr"] == DEFAULT_LR


def test_default_size_grows_with_rows():
    from pushforward.tabular.sizing import default_size

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
    assert [s.kind for s in est.support_] == ["positive", "categorical", "real"]
    s = est.sample(2000, random_state=0)
    assert (s[:, 0] > 0).all() and set(np.unique(s[:, 1])) <= {0.0, 1.0}
    with pytest.warns(UserWarning, match="outside"):
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
        for r in check_estimator(FlowDensity(steps=8, conditional=False), on_fail=None)
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


def test_whiten_auto_follows_the_gaussian_dependence_rule():
    from pushforward.tabular import gaussian_dependence
    from pushforward.tabular.preprocessing import WHITEN_THRESHOLD

    X = _correlated_rows(400, 8)
    assert gaussian_dependence((X - X.mean(0)) / X.std(0)) > WHITEN_THRESHOLD
    opts = dict(flow="maf", layers=1, hidden=(8,), steps=60, ensemble=2)
    est = FlowDensity(**opts).fit(X)
    assert est.whiten_ and all(m.whiten is not None for m in est.models_)
    indep = FlowDensity(**opts).fit(np.random.default_rng(8).normal(size=(400, 3)))
    assert not indep.whiten_ and all(m.whiten is None for m in indep.models_)
    forced = FlowDensity(**opts, whiten=False).fit(X)
    assert not forced.whiten_ and all(m.whiten is None for m in forced.models_)


# ---------------------------------------------------------------------------------- conditional p(y | x)
def _regression(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = 2 * X[:, 0] + np.exp(0.5 * X[:, 1]) * rng.normal(size=n) * 0.5
    return X, y


def test_fit_with_y_models_the_conditional_density():
    X, y = _regression()
    est = tiny(flow="nsf", steps=200, ensemble=1, hidden=(16,)).fit(X, y)
    assert est.conditional_ and est.model_.context_features == 3
    s = est.score_samples(X[:50], y[:50])
    assert s.shape == (50,) and np.isfinite(s).all()
    # the conditional model beats the marginal of y by a wide margin (x explains most of y)
    marginal = tiny(flow="nsf", steps=200, ensemble=1, hidden=(16,)).fit(y[:, None])
    assert est.score(X, y) > marginal.score(y[:, None]) + 0.5
    q = est.predict_quantiles(X[:100], (0.1, 0.5, 0.9), n_samples=400)
    assert q.shape == (100, 3) and (np.diff(q, axis=1) > 0).all()
    inside = ((y[:100] > q[:, 0]) & (y[:100] < q[:, 2])).mean()
    assert 0.6 < inside < 0.97, inside
    draws = est.sample(X[:4], 7)
    assert draws.shape == (4, 7)
    assert est.predict(X[:5]).shape == (5,)
    with pytest.raises(ValueError, match="pass y"):
        est.score_samples(X[:5])


def test_conditional_two_targets_and_supports():
    X, y = _regression(300, 1)
    Y = np.column_stack([y, np.exp(y / 3)])  # a positive second target
    est = tiny(steps=40, ensemble=1).fit(X, Y)
    assert [s.kind for s in est.support_] == ["real", "positive"]
    d = est.sample(X[:3], 50, random_state=0)
    assert d.shape == (3, 50, 2) and (d[..., 1] > 0).all()
    assert est.predict_quantiles(X[:3], (0.5,)).shape == (3, 1, 2)


def test_conditional_false_ignores_y_and_true_requires_it():
    X, y = _regression(100, 2)
    est = tiny(conditional=False).fit(X, y)
    assert not est.conditional_ and est.score_samples(X).shape == (100,)
    with pytest.raises(ValueError, match="requires y"):
        tiny(conditional=True).fit(X)


def test_sklearn_estimator_checks_conditional():
    failures = [
        (r["check_name"], str(r["exception"])[:200])
        for r in check_estimator(tiny(flow="nsf", conditional=True), on_fail=None)
        if r["status"] == "failed"
    ]
    assert not failures


# ---------------------------------------------------------------------------------- screening, devices, names
def test_screening_refuses_degenerate_data_with_the_cli_overrides():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(200, 3))
    const = X.copy()
    const[:, 1] = 4.0
    with pytest.raises(ValueError, match=r"constant column.*allow_degenerate"):
        tiny().fit(const)
    with pytest.warns(UserWarning, match="constant column"):
        tiny(allow_degenerate=True).fit(const)
    with pytest.raises(ValueError, match="identical"):
        tiny().fit(np.ones((50, 2)))
    with pytest.raises(ValueError, match="2 rows x 3 columns"):
        tiny().fit(X[:2])
    out = X.copy()
    out[7, 0] = 1e30
    with pytest.raises(ValueError, match="outliers='drop'"):
        tiny().fit(out)
    with pytest.warns(UserWarning, match="dropped 1 rows"):
        tiny(outliers="drop").fit(out)


def test_cuda_without_cuda_is_a_value_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        tiny(device="cuda").fit(np.random.default_rng(0).normal(size=(50, 2)))


def test_dataframe_columns_are_matched_by_name():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(np.random.default_rng(11).normal(size=(120, 3)), columns=["a", "b", "c"])
    est = tiny(ensemble=1).fit(X)
    np.testing.assert_array_equal(est.score_samples(X[["c", "a", "b"]]), est.score_samples(X))
    with pytest.raises(ValueError, match="missing b"):
        est.score_samples(X[["a", "c"]])
    with pytest.raises(ValueError, match="unknown d"):
        est.score_samples(X.assign(d=1.0))


def test_values_outside_the_support_score_minus_inf_with_a_report():
    from pushforward.tabular import OutOfSupportWarning

    rng = np.random.default_rng(12)
    X = np.column_stack([rng.poisson(5, 200), rng.lognormal(size=200)]).astype(float)
    est = tiny(ensemble=1).fit(X)
    with pytest.warns(OutOfSupportWarning, match="row 1 column 1"):
        s = est.score_samples(np.array([[3.0, 1.0], [3.0, -1.0], [60.0, 2.0]]))
    assert np.isneginf(s[1]) and np.isfinite(s[[0, 2]]).all()
