r"""Numerical inversion: bisection, Newton–Raphson and fixed-point iteration, vectorised over the batch.

Flows without a closed-form inverse (neural autoregressive flows, planar flows, residual flows, …) invert
with these solvers. They are pure functions of a callable; each works on every element at once, stops when
every element has converged, and raises :class:`ConvergenceError` — never returns a silently wrong
answer — when the iteration cap is reached first.

The solvers run without autograd. :func:`implicit_gradient` re-attaches the exact first-order gradient of a
root of an elementwise equation (implicit function theorem), for reparameterised sampling through a
numerical inverse.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "ConvergenceError",
    "bisection",
    "check_round_trip",
    "fixed_point",
    "implicit_gradient",
    "newton",
    "round_trip_tolerance",
    "rounding_scale",
    "rounding_tolerance",
]

Fn = Callable[[Tensor], Tensor]


class ConvergenceError(ValueError):
    """A numerical inverse did not reach its tolerance within its iteration cap."""


def _as(t: Tensor | float, like: Tensor) -> Tensor:
    return torch.as_tensor(t, dtype=like.dtype, device=like.device).expand_as(like).clone()


@torch.no_grad()
def _expand_bracket(f: Fn, y: Tensor, low: Tensor, high: Tensor, max_expand: int) -> tuple[Tensor, Tensor]:
    """Widen ``[low, high]`` geometrically until ``f(low) ≤ y ≤ f(high)`` elementwise."""
    width = (high - low).clamp_min(1.0)
    for _ in range(max_expand):
        below = f(low) > y
        above = f(high) < y
        if not bool(below.any() or above.any()):
            return low, high
        low = torch.where(below, low - width, low)
        high = torch.where(above, high + width, high)
        width = width * 2
    raise ConvergenceError(
        f"could not bracket the root after {max_expand} expansions "
        f"(bracket reached [{float(low.min()):.3g}, {float(high.max()):.3g}]); is f increasing and onto?"
    )


@torch.no_grad()
def bisection(
    f: Fn,
    y: Tensor,
    low: Tensor | float,
    high: Tensor | float,
    *,
    atol: Tensor | float = 1e-10,
    max_iter: int = 200,
    expand: bool = True,
    max_expand: int = 64,
) -> Tensor:
    r"""Solve :math:`f(x) = y` elementwise for an elementwise increasing ``f`` by bisection.

    Args:
        f: Elementwise increasing map (``f(x)[i]`` depends on ``x[i]`` only and increases with it).
        y: Targets.
        low, high: Initial bracket (scalars or tensors broadcastable to ``y``).
        atol: Stop when every bracket is narrower than ``atol`` (or than a few ulps of its midpoint,
            :func:`rounding_tolerance`, below which no bracket can shrink); a scalar or a tensor
            broadcastable to ``y`` (one tolerance per element).
        max_iter: Iteration cap; :class:`ConvergenceError` if reached first.
        expand: Widen the bracket geometrically when it does not contain the root.
        max_expand: Cap on the number of widenings.

    Example:
        >>> import torch
        >>> x = bisection(torch.sinh, torch.tensor([2.0, -30.0], dtype=torch.float64), -1.0, 1.0)
    """
    lo, hi = _as(low, y), _as(high, y)
    if bool((hi <= lo).any()):
        raise ValueError("bisection needs low < high")
    if expand:
        lo, hi = _expand_bracket(f, y, lo, hi, max_expand)
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        go_right = f(mid) < y
        lo = torch.where(go_right, mid, lo)
        hi = torch.where(go_right, hi, mid)
        if bool(((hi - lo) <= _floor(atol, mid)).all()):
            return 0.5 * (lo + hi)
    worst = float((hi - lo).max())
    raise ConvergenceError(
        f"bisection did not converge in {max_iter} iterations (widest bracket {worst:.3g})"
    )


def _floor(atol: Tensor | float, x: Tensor) -> Tensor:
    """``atol`` plus a few ulps of ``|x|``: the narrowest bracket around ``x`` the dtype can represent."""
    return atol + rounding_tolerance(x.dtype) * x.abs()


def _derivative(f: Fn, x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        fx = f(x)
        (d,) = torch.autograd.grad(fx.sum(), x)
    return fx.detach(), d


@torch.no_grad()
def newton(
    f: Fn,
    y: Tensor,
    x0: Tensor | float = 0.0,
    *,
    df: Fn | None = None,
    low: Tensor | float | None = None,
    high: Tensor | float | None = None,
    atol: Tensor | float = 1e-10,
    max_iter: int = 100,
    max_expand: int = 64,
) -> Tensor:
    r"""Solve :math:`f(x) = y` elementwise by Newton–Raphson safeguarded with bisection.

    ``f`` must be elementwise increasing. A bracket ``[low, high]`` is kept (found by expansion around
    ``x0`` when not given); a Newton step that leaves it, or a step taken while neither the bracket nor the residual has
    halved in two iterations, is replaced by a bisection step, so the bracket shrinks geometrically (global
    convergence) and Newton's quadratic convergence takes over near the root.

    Args:
        f: Elementwise increasing map.
        y: Targets.
        x0: Starting point.
        df: Elementwise derivative of ``f``; by default computed with autograd.
        low, high: Optional initial bracket.
        atol: Stop when ``|f(x) − y| ≤ atol`` or the bracket is narrower than ``atol`` (or than a few ulps
            of ``x``), for every element; a tensor broadcastable to ``y`` gives each element its own.
        max_iter: Iteration cap; :class:`ConvergenceError` if reached first.

    Example:
        >>> x = newton(lambda t: t + t**3, torch.tensor([2.0, 10.0]))
    """
    x = _as(x0, y)
    lo = x - 1.0 if low is None else _as(low, y)
    hi = x + 1.0 if high is None else _as(high, y)
    lo, hi = _expand_bracket(f, y, lo, hi, max_expand)
    x = x.clamp(lo, hi) if isinstance(x0, Tensor) else 0.5 * (lo + hi)
    w1 = w2 = hi - lo  # bracket widths one and two iterations ago
    r1 = r2 = torch.full_like(x, float("inf"))  # residuals one and two iterations ago
    for _ in range(max_iter):
        if df is None:
            fx, d = _derivative(f, x)
        else:
            fx, d = f(x), df(x)
        r = fx - y
        done = (r.abs() <= atol) | ((hi - lo) <= _floor(atol, x))
        if bool(done.all()):
            return x
        lo = torch.where(r < 0, x, lo)
        hi = torch.where(r > 0, x, hi)
        # a Newton step must stay inside the bracket, and the bracket or the residual must halve every two
        # iterations (Newton crawling along a saturated, nearly flat stretch does neither): else bisect
        step = x - r / d
        progress = (hi - lo <= 0.5 * w2) | (r.abs() <= 0.5 * r2)
        ok = torch.isfinite(step) & (step > lo) & (step < hi) & progress
        x = torch.where(done, x, torch.where(ok, step, 0.5 * (lo + hi)))
        w1, w2, r1, r2 = hi - lo, w1, r.abs(), r1
    worst = float((f(x) - y).abs().max())
    raise ConvergenceError(f"Newton did not converge in {max_iter} iterations (max residual {worst:.3g})")


def rounding_scale(*terms: Tensor) -> Tensor:
    r"""Per-sample magnitude :math:`\max_i \max_t |t_i|` of the tensors ``terms`` (``(batch, ...)``), shaped
    ``(batch, 1, ..., 1)`` to broadcast against them: the size of the largest number a computation
    involving these terms rounds, hence the scale of its rounding error."""
    mags = [t.detach().abs().flatten(1).amax(1) if t.dim() > 1 else t.detach().abs() for t in terms]
    out = torch.stack(mags).amax(0)
    return out.reshape(out.shape[0], *([1] * (terms[0].dim() - 1)))


def rounding_tolerance(dtype: torch.dtype, ulps: float = 16.0) -> float:
    """``ulps`` units of roundoff of ``dtype``: the smallest relative step an iteration in that dtype can be
    asked to reach (``16 · eps``: 1.9e-6 in float32, 3.6e-15 in float64)."""
    return ulps * torch.finfo(dtype).eps


@torch.no_grad()
def fixed_point(
    g: Fn,
    x0: Tensor,
    *,
    atol: float = 1e-8,
    rtol: float | None = None,
    scale: Tensor | float | None = None,
    max_iter: int = 1000,
) -> Tensor:
    r"""Iterate :math:`x_{k+1} = g(x_k)` until :math:`|x_{k+1} - x_k| \le atol + rtol \max(|x_{k+1}|, s)`
    everywhere.

    ``scale`` :math:`s` (broadcastable to ``x``) is the magnitude of the other terms that ``g`` adds up, e.g.
    :func:`rounding_scale` of ``y`` and ``h(y)`` for ``g(x) = y - h(x)``: the iterates cannot get closer than
    the rounding error of those terms, so a tolerance relative to :math:`|x|` alone is unreachable when
    :math:`|x| \ll |y|` or :math:`|h|`. ``rtol`` defaults to a few ulps of the dtype
    (:func:`rounding_tolerance`).

    Converges globally when ``g`` is a contraction (Banach), e.g. ``g(x) = y − h(x)`` with Lip(h) < 1 for
    residual flows. Raises :class:`ConvergenceError` when the cap is reached or the iterates blow up.

    Example:
        >>> import torch
        >>> x = fixed_point(lambda x: 1.0 - 0.5 * torch.sin(x), torch.zeros(3, dtype=torch.float64))
    """
    if rtol is None:
        rtol = rounding_tolerance(x0.dtype)
    x = x0
    for _ in range(max_iter):
        x_new = g(x)
        if not bool(torch.isfinite(x_new).all()):
            raise ConvergenceError("fixed-point iteration diverged (non-finite iterate); is g a contraction?")
        mag = x_new.abs() if scale is None else torch.maximum(x_new.abs(), torch.as_tensor(scale).to(x_new))
        if bool(((x_new - x).abs() <= atol + rtol * mag).all()):
            return x_new
        x = x_new
    gap = float((g(x) - x).abs().max())
    raise ConvergenceError(
        f"fixed-point iteration did not converge in {max_iter} iterations (step {gap:.3g})"
    )


def implicit_gradient(f: Fn, y: Tensor, x: Tensor) -> Tensor:
    r"""Attach the implicit-function gradient to a root ``x`` of the elementwise equation ``f(x) = y``.

    Returns :math:`\hat x = x + (y - f(x)) / f'(x)` with :math:`f'(x)` detached: numerically equal to
    ``x`` at a root, with :math:`\partial \hat x/\partial y = 1/f'` and
    :math:`\partial \hat x/\partial\theta = -(\partial f/\partial\theta)/f'` for the parameters ``θ`` of ``f``.
    """
    x = x.detach()
    _, d = _derivative(f, x)
    return x + (y - f(x)) / d


def round_trip_tolerance(z: Tensor) -> Tensor:
    r"""The largest round-trip residual :math:`|f(f^{-1}(z)) - z|` a numerical inverse may leave, per element:
    :math:`\sqrt{\epsilon}\,\max(1, |z|)` with :math:`\epsilon` the dtype's machine epsilon (3.5e-4 relative in
    float32, 1.5e-8 in float64) — half the digits of the dtype, the accuracy a root of a well-conditioned
    equation solved in that dtype reaches."""
    return torch.finfo(z.dtype).eps ** 0.5 * z.detach().abs().clamp_min(1.0)


@torch.no_grad()
def check_round_trip(forward: Fn, x: Tensor, z: Tensor, *, name: str = "the numerical inverse") -> None:
    r"""Raise :class:`ConvergenceError` unless :math:`x` maps back onto :math:`z`:
    :math:`|f(x) - z| \le` :func:`round_trip_tolerance` ``(z)`` everywhere.

    This checks a numerical inverse in the space its caller sees. Each inner solve can meet its own
    tolerance and the composition still miss: an error left in one layer or one autoregressive dimension is
    multiplied by the slopes of everything applied after it, and in float32 a map whose intermediate values
    reach :math:`10^6` cannot be evaluated to better than their rounding. No wrong sample is returned
    silently.

    Example:
        >>> z = torch.tensor([0.5, 2.0])
        >>> check_round_trip(torch.sinh, torch.asinh(z), z)  # passes silently
    """
    if torch.compiler.is_compiling() or z.numel() == 0:
        return
    err = (forward(x.detach()) - z.detach()).abs()
    bad = ~(err <= round_trip_tolerance(z))  # NaN counts as bad
    if bool(bad.any()):
        rows = int(bad.reshape(bad.shape[0], -1).any(1).sum()) if bad.dim() else 1
        worst = float(torch.nan_to_num(err, nan=float("inf")).max())
        raise ConvergenceError(
            f"{name} is inaccurate in {z.dtype}: {rows} of {z.shape[0] if z.dim() else 1} rows map back with an "
            f"error up to {worst:.3g} (tolerance sqrt(eps)·max(1, |z|)); the map is too ill-conditioned there "
            f"(largest |x| {float(x.detach().abs().max()):.3g}) — use float64, or smaller latents; "
            "no wrong sample is returned"
        )
