"""The numerical inversion helpers: accuracy, bracket expansion, clear failures, implicit gradients."""

import pytest
import torch

from pushforward.inversion import (
    ConvergenceError,
    bisection,
    fixed_point,
    implicit_gradient,
    newton,
    rounding_scale,
    rounding_tolerance,
)

torch.set_default_dtype(torch.float32)


def cubic(x):
    return x + x**3


@pytest.mark.parametrize("solver", ["bisection", "newton"])
def test_solves_monotone_equation_with_expanding_bracket(solver):
    y = torch.tensor([-1e4, -2.0, 0.0, 0.5, 3.0, 1e5], dtype=torch.float64)
    if solver == "bisection":
        x = bisection(cubic, y, -1.0, 1.0, atol=1e-12)
    else:
        x = newton(cubic, y, atol=1e-12)
    torch.testing.assert_close(cubic(x), y, atol=1e-8, rtol=1e-12)


def test_newton_with_explicit_derivative_and_bracket():
    y = torch.linspace(-5, 5, 11, dtype=torch.float64)
    x = newton(torch.sinh, y, df=torch.cosh, low=-10.0, high=10.0, atol=1e-13)
    torch.testing.assert_close(x, torch.asinh(y), atol=1e-10, rtol=0)


def test_bisection_reports_failure_instead_of_wrong_answer():
    y = torch.tensor([5.0], dtype=torch.float64)
    with pytest.raises(ConvergenceError, match="bracket"):
        bisection(torch.tanh, y, -1.0, 1.0, max_expand=10)  # tanh never reaches 5
    with pytest.raises(ConvergenceError, match="did not converge"):
        bisection(cubic, y, -1.0, 2.0, atol=1e-14, max_iter=5)


def test_newton_reports_failure():
    with pytest.raises(ConvergenceError):
        newton(cubic, torch.tensor([3.0], dtype=torch.float64), atol=1e-300, max_iter=3)


def test_fixed_point_contraction_and_divergence():
    y = torch.randn(20, 3, dtype=torch.float64)
    x = fixed_point(lambda x: y - 0.5 * torch.tanh(x), torch.zeros_like(y), atol=1e-13)
    torch.testing.assert_close(x + 0.5 * torch.tanh(x), y, atol=1e-12, rtol=0)
    with pytest.raises(ConvergenceError):
        fixed_point(lambda x: 2.0 * x + 1.0, torch.ones(3), max_iter=2000)
    with pytest.raises(ConvergenceError, match="did not converge"):
        fixed_point(lambda x: y - 0.99 * torch.tanh(x), torch.zeros_like(y), atol=1e-15, max_iter=3)


def test_implicit_gradient_matches_analytic():
    a = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.3, 2.0], dtype=torch.float64, requires_grad=True)

    def f(x):
        return a * x + x**3

    x = newton(f, y.detach(), atol=1e-14)
    xh = implicit_gradient(f, y, x)
    torch.testing.assert_close(xh, x, atol=1e-12, rtol=0)
    gy, ga = torch.autograd.grad(xh.sum(), (y, a))
    d = a.detach() + 3 * x**2
    torch.testing.assert_close(gy, 1 / d)
    torch.testing.assert_close(ga, (-x / d).sum())


def test_fixed_point_tolerance_follows_the_size_of_the_terms():
    # float32, g(x) = y - h(x) with |x| << |y|, |h|: the step cannot fall below the rounding error of y - h,
    # so a tolerance relative to |x| alone is never met; one relative to max(|x|, |y|, |h|) is.
    torch.manual_seed(0)
    y = 1000.0 + torch.randn(64, 2)
    shift = y - 1e-3 * torch.randn(64, 2)  # the root is x* = y - shift, tiny next to y and h

    def g(x):
        return y - (shift + 0.5 * torch.tanh(x))

    start = g(y)
    x = fixed_point(
        g, start, atol=1e-10, rtol=rounding_tolerance(torch.float32), scale=rounding_scale(y, shift, start)
    )
    assert bool((x - g(x)).abs().max() <= 1e-3)
    with pytest.raises(ConvergenceError):
        fixed_point(g, start, atol=1e-10, rtol=rounding_tolerance(torch.float32), max_iter=200)


def test_rounding_scale_is_per_sample():
    a = torch.tensor([[1.0, -3.0], [0.5, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, -0.25]])
    torch.testing.assert_close(rounding_scale(a, b), torch.tensor([[3.0], [0.5]]))
    assert rounding_tolerance(torch.float64) < rounding_tolerance(torch.float32) < 1e-5


def test_default_tolerances_are_reachable_in_float32():
    # absolute defaults (1e-8, 1e-10) are below float32's resolution of |x| ~ 1..30: the solvers used to
    # run to their caps and raise
    x = fixed_point(lambda x: 1.0 - 0.5 * torch.sin(x), torch.zeros(3))
    torch.testing.assert_close(x, 1.0 - 0.5 * torch.sin(x))
    y = torch.tensor([2.0, -30.0])
    torch.testing.assert_close(torch.sinh(bisection(torch.sinh, y, -1.0, 1.0)), y)
    torch.testing.assert_close(torch.sinh(newton(torch.sinh, y, atol=1e-12)), y)
