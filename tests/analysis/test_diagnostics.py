"""Invertibility diagnostics."""

from __future__ import annotations

import torch

from pushforward import Flow, fit
from pushforward.analysis.diagnostics import invertibility
from pushforward.flows import RealNVP
from pushforward.transforms import Transform

torch.set_num_threads(1)


class BrokenScale(Transform):
    """z = 2x, but the inverse returns z / 3 and a wrong log-determinant: a deliberately broken bijection."""

    def __init__(self, d: int) -> None:
        super().__init__(d)

    def forward(self, x, context=None):
        return 2 * x, torch.full(x.shape[:1], float(x.shape[1]) * 0.6931471805599453)

    def inverse(self, z, context=None):
        return z / 3, torch.zeros(z.shape[:1])


def test_good_flow_passes():
    torch.manual_seed(0)
    report = invertibility(RealNVP(3, layers=4, hidden=(16,)), torch.randn(500, 3))
    assert report.ok and report.rows == 500 and report.max_reconstruction_error < 1e-4
    assert "OK" in str(report)


def test_broken_inverse_is_caught():
    report = invertibility(Flow(BrokenScale(2)), torch.ones(10, 2))
    assert not report.ok
    assert abs(report.max_reconstruction_error - 1 / 3) < 1e-5
    assert abs(report.max_ladj_error - 2 * 0.6931471805599453) < 1e-5


def test_exploding_inverse_counts_nonfinite_rows():
    report = invertibility(Flow(BrokenScale(2)), torch.full((4, 2), 3e38))
    assert report.nonfinite_rows == 4 and not report.ok


def test_fit_runs_diagnostics_on_validation_data():
    torch.manual_seed(0)
    flow = RealNVP(2, layers=2, hidden=(8,))
    h = fit(flow, torch.randn(256, 2), torch.randn(64, 2), steps=5, progress=False, diagnostics=True)
    assert h.diagnostics["rows"] == 64 and h.diagnostics["ok"]
