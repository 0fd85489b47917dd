"""Anomaly detection: thresholds calibrated on held-out data, and the typicality test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pushforward.analysis.anomaly import AnomalyDetector, TypicalityTest, calibrate_threshold, log_likelihood
from pushforward.flows import RealNVP

D = 20


def gauss_log_prob(x):
    x = np.asarray(x, dtype=np.float64)
    return -0.5 * (x**2).sum(1) - 0.5 * x.shape[1] * np.log(2 * np.pi)


def test_threshold_false_positive_rate():
    rng = np.random.default_rng(0)
    det = AnomalyDetector(gauss_log_prob, quantile=0.05).calibrate(rng.normal(size=(4000, D)))
    flagged = det.predict(rng.normal(size=(4000, D))).mean()
    assert 0.03 < flagged < 0.07
    assert det.predict(np.full((1, D), 4.0))[0]


def test_typicality_catches_what_likelihood_misses():
    """Out-of-distribution data near the mode has *higher* likelihood than the training data (Nalisnick
    et al., 2019): the likelihood threshold lets it through, the typicality test flags it."""
    rng = np.random.default_rng(1)
    det = AnomalyDetector(gauss_log_prob, quantile=0.01, typicality_batch=10).calibrate(
        rng.normal(size=(4000, D))
    )
    ood = 0.1 * rng.normal(size=(10, D))
    assert not det.predict(ood).any()
    res = det.typicality(ood)
    assert res.atypical and res.p_value < 0.01
    assert det.atypical_rows(ood).all()
    # in-distribution batches pass at about the nominal rate
    rejections = np.mean([det.typicality(rng.normal(size=(10, D))).atypical for _ in range(300)])
    assert rejections < 0.05


def test_typicality_test_errors():
    with pytest.raises(ValueError, match="not fitted"):
        TypicalityTest().test([1.0])
    with pytest.raises(ValueError, match="alpha"):
        TypicalityTest(alpha=2.0)
    with pytest.raises(ValueError, match="NaN"):
        TypicalityTest().fit([np.nan, 1.0])
    with pytest.raises(ValueError, match="quantile"):
        calibrate_threshold([1.0, 2.0], 1.5)
    with pytest.raises(ValueError, match="not calibrated"):
        AnomalyDetector(gauss_log_prob).predict(np.zeros((1, D)))


def test_log_likelihood_accepts_a_flow():
    torch.manual_seed(0)
    flow = RealNVP(2, layers=2, hidden=(8,))
    x = np.random.default_rng(0).normal(size=(5, 2))
    s = log_likelihood(flow, x)
    np.testing.assert_allclose(s, flow.log_prob(torch.from_numpy(x).float()).detach().numpy(), rtol=1e-6)


def test_quantile_interval_covers_the_true_quantile():
    from scipy.stats import norm

    from pushforward.analysis.anomaly import quantile_levels_interval

    rng = np.random.default_rng(0)
    n, q = 60, 0.05
    lo_level, hi_level = quantile_levels_interval(n, q)
    hits = 0
    for _ in range(400):
        s = rng.normal(size=n)
        hits += np.quantile(s, lo_level) <= norm.ppf(q) <= np.quantile(s, hi_level)
    assert 0.85 <= hits / 400 <= 0.99
    with pytest.raises(ValueError, match="at least 2"):
        quantile_levels_interval(1, q)
