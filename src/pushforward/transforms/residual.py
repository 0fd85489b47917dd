r"""Invertible residual blocks :math:`x \mapsto x + g(x)` with :math:`\operatorname{Lip}(g) < 1`.

Forward (data → latent) is one network pass; the inverse solves :math:`x = y - g(x)` by fixed-point
iteration, which converges globally and geometrically (rate :math:`\operatorname{Lip}(g)`) by Banach's
fixed-point theorem (Behrmann et al., "Invertible Residual Networks", ICML 2019). The log-determinant is

.. math:: \log\left|\det\left(I + J_g(x)\right)\right| = \sum_{k=1}^{\infty} \frac{(-1)^{k+1}}{k}
    \operatorname{tr}\left(J_g(x)^k\right),

the power series of :math:`\log(I + J)` (convergent because :math:`\|J_g\|_2 < 1`; the determinant is
positive since every eigenvalue of :math:`I+J_g` has positive real part).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..estimators import (
    PROBES,
    logdet_identity_plus,
    residual_logdet,
    residual_logdet_exact,
    roulette_terms,
    sample_probe,
    series_terms,
)
from ..inversion import fixed_point, rounding_scale, rounding_tolerance
from ..nets.lipschitz import LipschitzMLP
from .base import Transform

__all__ = ["LADJ_MODES", "ResidualBlock", "finite_variance_p"]

LADJ_MODES = ("exact", "series", "roulette")


def finite_variance_p(lipschitz: float) -> float:
    r"""A Russian-roulette parameter with finite variance for a residual map of Lipschitz bound
    :math:`L < 1`: :math:`p = \min\big(0.5, (1 - L^2)/2\big)`, so that :math:`L^2 < 1 - p` (the
    :math:`k`-th reweighted term is :math:`O\big(L^k/(1-p)^{k}\big)` and its square summable).

    Reference: Chen, Behrmann, Duvenaud & Jacobsen, "Residual Flows for Invertible Generative Modeling",
    NeurIPS 2019 (Sec. 3.1, finite variance of the Russian-roulette estimator).

    Example:
        >>> round(finite_variance_p(0.97**3), 3)
        0.084
    """
    if not 0.0 <= lipschitz < 1.0:
        raise ValueError(f"the Lipschitz bound must lie in [0, 1), got {lipschitz}")
    return min(0.5, 0.5 * (1.0 - lipschitz**2))


class ResidualBlock(Transform):
    r"""Invertible residual block :math:`f(x) = x + g(x; c)`, :math:`g` a spectrally normalised
    :class:`~pushforward.nets.lipschitz.LipschitzMLP` with :math:`\operatorname{Lip}_x(g) \le` ``coeff``
    :math:`^{L} < 1` (in eval mode exactly, whatever the weights: the layers use the exact spectral norm, see
    :class:`~pushforward.nets.lipschitz.SpectralLinear`).

    **Inverse.** :math:`x_{k+1} = y - g(x_k)`, from :math:`x_0 = y - g(y)`, until successive iterates differ
    by at most ``atol`` or by a few ulps of the dtype relative to the largest of :math:`|y|`, :math:`|g|`,
    :math:`|x|` in the sample (:func:`~pushforward.inversion.rounding_scale`), so float32 converges;
    :class:`~pushforward.inversion.ConvergenceError` (a ``ValueError``) if ``max_iter``
    is reached. Gradients through the inverse are exact (implicit function theorem): the incoming gradient
    :math:`\bar x` is replaced by :math:`a = (I + J_g)^{-\top}\bar x`, itself solved by the fixed point
    :math:`a = \bar x - J_g^\top a`.

    **Log-determinant** (``ladj_mode``):

    * ``"exact"``: :math:`\log|\det(I+J_g)|` from the full Jacobian of :math:`g`, propagated in forward mode
      through the MLP (:mod:`pushforward.nets.tangent`; about ``D`` extra passes and a first-order graph),
      or from ``D`` autograd backward passes when an activation has no known derivative. Small ``D``; used
      by the tests.
    * ``"series"``: the power series truncated after ``n_terms`` terms, each trace estimated with
      Hutchinson probes :math:`v^\top J^k v` (biased by the truncation,
      ≈ :math:`\operatorname{Lip}^{n+1}/(n+1)`
      per dimension) — i-ResNet (Behrmann et al. 2019).
    * ``"roulette"``: the unbiased Russian-roulette estimator :math:`\sum_{k=1}^{N} \frac{(-1)^{k+1}}{k}
      \frac{v^\top J^k v}{P(N\ge k)}`, :math:`N = \max(` ``n_exact`` :math:`+\ \mathrm{Geometric}(p), 1)`
      (Chen et al. 2019). Its variance is finite when :math:`\operatorname{Lip}(g)^2 < 1-p`; the default
      ``p=None`` picks :math:`p = \min\big(0.5, (1 - c^{2L})/2\big)` from the bound :math:`c^L` of
      :math:`\operatorname{Lip}(g)` (``L`` linear layers), which guarantees it (e.g. ``coeff=0.97``, two
      hidden layers: :math:`p \approx 0.084`, on average ``n_exact + 11`` terms). An explicit ``p`` is used
      as given.

    With ``neumann_grad=True`` (stochastic modes), training backpropagates Chen et al.'s Neumann-series
    gradient estimator instead of the ``N`` vector–Jacobian products (memory independent of ``N``).

    **Evaluation.** ``eval_ladj_mode`` replaces ``ladj_mode`` in eval mode. Its default, ``"exact"``, makes
    ``log_prob`` after ``eval()`` exact and deterministic, at the cost of the ``D``-column Jacobian (about
    ``D`` extra network passes per block, so meant for low and moderate ``D``); pass
    ``eval_ladj_mode="roulette"`` (or ``"series"``) to evaluate with the estimator, or ``None`` to keep
    ``ladj_mode``.

    Args:
        features: Event size ``D``.
        hidden: Hidden sizes of :math:`g`.
        context: Context features (concatenated to :math:`g`'s input).
        coeff: Spectral-norm bound per layer, in ``(0, 1)``.
        iterations: Power-iteration steps per training call.
        activation: 1-Lipschitz activation (default LipSwish).
        ladj_mode, eval_ladj_mode: See above.
        n_terms: Series length for ``"series"``.
        n_exact, p: Roulette settings (always-computed terms, geometric parameter).
        probes: Number of Hutchinson probes per call; ``probe``: ``"gaussian"`` or ``"rademacher"``.
        neumann_grad: Memory-efficient gradient (stochastic modes).
        atol, max_iter: Fixed-point inverse tolerance and cap.

    Reference: Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen, "Invertible Residual Networks", ICML 2019;
    Chen, Behrmann, Duvenaud & Jacobsen, "Residual Flows for Invertible Generative Modeling", NeurIPS 2019.

    Example:
        >>> block = ResidualBlock(2, hidden=(32, 32), ladj_mode="roulette")
        >>> z, ladj = block(torch.randn(8, 2))
        >>> x, _ = block.inverse(z)
    """

    analytic_inverse = False

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (64, 64),
        *,
        context: int = 0,
        coeff: float = 0.97,
        iterations: int = 1,
        activation: str | Callable[[], nn.Module] = "lipswish",
        ladj_mode: str = "roulette",
        eval_ladj_mode: str | None = "exact",
        n_terms: int = 10,
        n_exact: int = 2,
        p: float | None = None,
        probes: int = 1,
        probe: str = "gaussian",
        neumann_grad: bool = True,
        atol: float = 1e-10,
        max_iter: int = 1000,
    ) -> None:
        if not isinstance(features, int) or features <= 0:
            raise ValueError(f"features must be a positive int, got {features!r}")
        if not 0.0 < coeff < 1.0:
            raise ValueError(f"coeff must lie in (0, 1) for an invertible block, got {coeff}")
        for name, mode in (("ladj_mode", ladj_mode), ("eval_ladj_mode", eval_ladj_mode)):
            if mode is not None and mode not in LADJ_MODES:
                raise ValueError(f"{name} must be one of {LADJ_MODES}, got {mode!r}")
        if probe not in PROBES:
            raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
        if probes < 1:
            raise ValueError(f"probes must be >= 1, got {probes}")
        if n_terms < 1:
            raise ValueError(f"n_terms must be >= 1, got {n_terms}")
        if p is not None and not 0.0 < p < 1.0:
            raise ValueError(f"p must lie in (0, 1), got {p}")
        if atol <= 0 or max_iter < 1:
            raise ValueError(f"need atol > 0 and max_iter >= 1, got atol={atol}, max_iter={max_iter}")
        super().__init__(features, context)
        self.net = LipschitzMLP(
            features, hidden, context=context, coeff=coeff, iterations=iterations, activation=activation
        )
        self.ladj_mode, self.eval_ladj_mode = ladj_mode, eval_ladj_mode
        if p is None:
            linear = len(tuple(hidden)) + 1
            p = finite_variance_p(coeff**linear)
        self.n_terms, self.n_exact, self.p = int(n_terms), int(n_exact), float(p)
        self.probes, self.probe = int(probes), probe
        self.neumann_grad = bool(neumann_grad)
        self.atol, self.max_iter = float(atol), int(max_iter)

    # ------------------------------------------------------------------ helpers

    def current_ladj_mode(self) -> str:
        """The log-det mode used now: ``eval_ladj_mode`` in eval mode when set, else ``ladj_mode``."""
        if not self.training and self.eval_ladj_mode is not None:
            return self.eval_ladj_mode
        return self.ladj_mode

    def _logdet(self, gx: Tensor, x: Tensor, create_graph: bool) -> Tensor:
        mode = self.current_ladj_mode()
        if mode == "exact":
            return residual_logdet_exact(gx, x, create_graph)
        probes = torch.stack([sample_probe(x, self.probe) for _ in range(self.probes)])
        if mode == "series":
            weights, probs = series_terms(self.n_terms), None
        else:
            weights, probs = roulette_terms(self.n_exact, self.p)
        return residual_logdet(
            gx, x, probes, weights, probs, create_graph=create_graph, neumann_grad=self.neumann_grad
        )

    def _map(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.current_ladj_mode() == "exact":
            # Forward-mode Jacobian of g: one first-order graph instead of D double-backward passes.
            fj = self.net.forward_and_jacobian(x, context)
            if fj is not None:
                gx, jac = fj
                return x + gx, logdet_identity_plus(jac)
        grad_on = torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            gx = self.net(xg, context)
            ladj = self._logdet(gx, xg, create_graph=grad_on)
        z = xg + gx
        if not grad_on:
            return z.detach(), ladj.detach()
        return z, ladj

    # ------------------------------------------------------------------ contract
    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._map(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            zd = z.detach()
            g_z = self.net(zd, context)
            start = zd - g_z
            # atol below the rounding error of y - g(x) cannot be met: add a floor relative to the terms
            x_star = fixed_point(
                lambda x: zd - self.net(x, context),
                start,
                atol=self.atol,
                rtol=rounding_tolerance(zd.dtype),
                scale=rounding_scale(zd, g_z, start),
                max_iter=self.max_iter,
            )
        if not torch.is_grad_enabled():
            _, ladj = self._map(x_star, context)
            return x_star, -ladj
        # One differentiable step at the solution, with the implicit-function gradient via a hook.
        leaf = x_star.detach().requires_grad_(True)
        g_star = self.net(leaf, context)
        x = z - g_star
        if x.requires_grad:
            x.register_hook(self._adjoint_hook(g_star, leaf))
            # An alias, so that the Jacobian passes inside ``_map`` stop here and do not trigger the hook,
            # which sees the total gradient (returned x and ladj) in the outer backward pass.
            x = x.view_as(x)
        _, ladj = self._map(x, context)
        return x, -ladj

    def _adjoint_hook(self, g_star: Tensor, leaf: Tensor) -> Callable[[Tensor], Tensor]:
        atol, max_iter = self.atol, self.max_iter

        def hook(grad: Tensor) -> Tensor:
            def step(a: Tensor) -> Tensor:
                (ja,) = torch.autograd.grad(g_star, leaf, a, retain_graph=True)
                return grad - ja

            return fixed_point(
                step,
                grad,
                atol=atol,
                rtol=rounding_tolerance(grad.dtype),
                scale=rounding_scale(grad),
                max_iter=max_iter,
            )

        return hook

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ladj_mode={self.ladj_mode!r}"
