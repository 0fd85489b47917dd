"""Simplex calibration flows: the seed's formulas, temperature scaling, the A1 = λ1 parameterisation and
the group law of generalised calibration."""

from __future__ import annotations

import math

import torch

from pushforward.transforms import CalibrationTransform, GeneralizedCalibration
from pushforward.transforms.simplex import generalized_calibration, sum_one_basis

torch.set_num_threads(1)
G = torch.Generator().manual_seed(0)


def _points(k: int, n: int) -> torch.Tensor:
    return torch.softmax(torch.randn(k, n, generator=G, dtype=torch.float64), -1)


def _admissible(n: int, lam: float) -> torch.Tensor:
    """A random A with A1 = λ1."""
    A = torch.randn(n, n, generator=G, dtype=torch.float64)
    return A - (A.sum(1, keepdim=True) - lam) / n  # fix every row sum to λ


def test_temperature_scaling_and_seed_ratio():
    n, a = 4, 1.7
    t = CalibrationTransform(n, temperature=a, shift=False).double()
    p = _points(5, n)
    q, ladj = t(p)
    torch.testing.assert_close(q, torch.softmax(p.log() / a, -1))
    torch.testing.assert_close(ladj, (1 - n) * math.log(a) + (q / p).log().sum(-1))  # |a|^(1-n) ∏ q/p
    torch.testing.assert_close(t.inverse(q)[0], torch.softmax(a * q.log(), -1))


def test_calibration_with_shift_inverse():
    n = 3
    t = CalibrationTransform(n, temperature=0.6).double()
    with torch.no_grad():
        t.shift.copy_(torch.tensor([0.5, -1.0, 0.2]))
    p = _points(4, n)
    q, _ = t(p)
    torch.testing.assert_close(q, torch.softmax(p.log() / 0.6 + t.shift, -1))
    torch.testing.assert_close(torch.softmax(0.6 * q.log() - 0.6 * t.shift, -1), p)  # the seed's inverse


def test_generalized_ratio_with_any_admissible_matrix():
    n = 4
    A, c = _admissible(n, 2.5), torch.randn(n, generator=G, dtype=torch.float64)
    p = _points(5, n)
    q, ladj = generalized_calibration(p, A, c, 2.5)
    torch.testing.assert_close(q, torch.softmax(p.log() @ A.T + c, -1))
    expected = torch.linalg.slogdet(A)[1] - math.log(2.5) + (q / p).log().sum(-1)
    torch.testing.assert_close(ladj, expected)
    # inverse: f(·; A⁻¹, -A⁻¹c) with eigenvalue 1/λ
    A_inv = torch.linalg.inv(A)
    p_rec, ladj_inv = generalized_calibration(q, A_inv, -A_inv @ c, 1 / 2.5)
    torch.testing.assert_close(p_rec, p)
    torch.testing.assert_close(ladj_inv, -ladj)


def test_group_law():
    """f(·; A1, c1) ∘ f(·; A2, c2) = f(·; A1 A2, c1 + A1 c2) (volume-ratio composition)."""
    n = 3
    A1, A2 = _admissible(n, 1.5), _admissible(n, -0.7)
    c1, c2 = (
        torch.randn(n, generator=G, dtype=torch.float64),
        torch.randn(n, generator=G, dtype=torch.float64),
    )
    p = _points(4, n)
    inner, l2 = generalized_calibration(p, A2, c2, -0.7)
    outer, l1 = generalized_calibration(inner, A1, c1, 1.5)
    both, l12 = generalized_calibration(p, A1 @ A2, c1 + A1 @ c2, 1.5 * -0.7)
    torch.testing.assert_close(outer, both)
    torch.testing.assert_close(l1 + l2, l12)


def test_generalized_parameterisation():
    n = 5
    t = GeneralizedCalibration(n, init="orthogonal", seed=3).double()
    A = t.matrix()
    ones = torch.ones(n, dtype=torch.float64)
    torch.testing.assert_close(A @ ones, ones)  # A1 = λ1 with λ = 1
    torch.testing.assert_close(torch.linalg.slogdet(A)[1], t.lu.logabsdet())
    V = sum_one_basis(n, torch.float64)
    torch.testing.assert_close(V.T @ V, torch.eye(n - 1, dtype=torch.float64))
    torch.testing.assert_close(V.sum(0), torch.zeros(n - 1, dtype=torch.float64), atol=1e-14, rtol=0)
    p = _points(3, n)
    torch.testing.assert_close(GeneralizedCalibration(n).double()(p)[0], p)  # identity at init


def test_two_classes_generalized_is_a_calibration():
    """For n = 2 both transforms give a straight line in log-odds space."""
    t = GeneralizedCalibration(2).double()
    with torch.no_grad():
        t.lu.log_diag.fill_(math.log(0.5))
        t.shift.copy_(torch.tensor([0.3, -0.1]))
    p = _points(6, 2)
    q, _ = t(p)
    lo_p, lo_q = (p[:, 0] / p[:, 1]).log(), (q[:, 0] / q[:, 1]).log()
    torch.testing.assert_close(lo_q, 0.5 * lo_p + 0.4)
