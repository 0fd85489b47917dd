r"""Calibration diagnostics for amortised posteriors: simulation-based calibration and expected coverage.

**Simulation-based calibration (SBC).** Draw :math:`\theta^* \sim p(\theta)`, :math:`x \sim p(x \mid
\theta^*)` and :math:`L` posterior samples :math:`\theta_1, \dots, \theta_L \sim q(\theta \mid x)`. If
:math:`q` is the exact posterior, the rank :math:`r = \#\{l : \theta_{l,i} < \theta^*_i\}` of each
coordinate is uniform on :math:`\{0, \dots, L\}` (Talts et al. 2018). A ∪-shaped rank histogram means an
over-confident posterior, a ∩ shape an under-confident one, a slope a bias.

**Expected coverage.** With :math:`\alpha(\theta^*, x) = \Pr_{\theta \sim q(\cdot \mid x)}[q(\theta \mid
x) > q(\theta^* \mid x)]`, :math:`\theta^*` lies in the highest-posterior-density region of credibility
:math:`\gamma` iff :math:`\alpha \le \gamma`; the expected coverage :math:`\Pr[\alpha \le \gamma]` equals
:math:`\gamma` for a calibrated posterior, is below it for an over-confident one and above it for a
conservative one (Hermans et al. 2022).

Reference: Talts, Betancourt, Simpson, Vehtari & Gelman, "Validating Bayesian Inference Algorithms with
Simulation-Based Calibration", arXiv:1804.06788, 2018; Hermans, Delaunoy, Rozet, Wehenkel, Begy & Louppe,
"A Crisis In Simulation-Based Inference? Beware, Your Approximation Can Be Unfaithful", TMLR 2022.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

__all__ = [
    "CoverageResult",
    "SBCResult",
    "expected_coverage",
    "plot_calibration",
    "rank_uniformity",
    "sbc_ranks",
]


class _Sampler(Protocol):
    def sample(self, sample_shape: tuple[int, ...], context: Tensor | None = None) -> Tensor: ...


@dataclass
class SBCResult:
    """SBC ranks ``(N, d)`` (integers in ``0..num_posterior_samples``) and the per-dimension p-values of a
    chi-square test of their uniformity (small p: miscalibrated)."""

    ranks: Tensor
    num_posterior_samples: int
    p_values: Tensor


@dataclass
class CoverageResult:
    """Credibility levels and the expected coverage of the HPD regions at those levels."""

    levels: Tensor
    coverage: Tensor
    alphas: Tensor


def _batches(theta: Tensor, x: Tensor, batch: int):
    if theta.dim() != 2:
        raise ValueError(f"theta must have shape (N, d), got {tuple(theta.shape)}")
    if x.shape[0] != theta.shape[0]:
        raise ValueError(f"theta has {theta.shape[0]} rows but x has {x.shape[0]}")
    if theta.shape[0] < 1:
        raise ValueError("need at least one (theta, x) pair")
    for i in range(0, theta.shape[0], batch):
        yield theta[i : i + batch], x[i : i + batch]


def _posterior_draws(posterior: _Sampler, n: int, x: Tensor) -> Tensor:
    """``(n, B, d)`` samples for a batch of ``B`` observations."""
    draws = posterior.sample((n,), context=x)
    if draws.dim() != 3 or draws.shape[:2] != (n, x.shape[0]):
        raise ValueError(
            f"posterior.sample((n,), context=x) for {x.shape[0]} observations returned shape "
            f"{tuple(draws.shape)}"
        )
    return draws


def rank_uniformity(ranks: Tensor, num_posterior_samples: int, bins: int | None = None) -> Tensor:
    r"""p-values ``(d,)`` of a chi-square test that each column of ``ranks`` is uniform on
    :math:`\{0, \dots, L\}`, after grouping the :math:`L + 1` values into ``bins`` equal bins (default: about
    ``N / 10`` bins, at most 20, and a divisor of :math:`L + 1`'s range)."""
    if ranks.dim() != 2:
        raise ValueError(f"ranks must have shape (N, d), got {tuple(ranks.shape)}")
    n = ranks.shape[0]
    values = num_posterior_samples + 1
    if bins is None:
        bins = max(2, min(20, n // 10, values))
    if not 2 <= bins <= values:
        raise ValueError(f"bins must be in [2, {values}], got {bins}")
    # bin b holds ranks r with floor(r * bins / values) == b; its expected probability is its share of values
    which = torch.div(ranks.long() * bins, values, rounding_mode="floor")
    width = torch.bincount(
        torch.div(torch.arange(values) * bins, values, rounding_mode="floor"), minlength=bins
    )
    expected = n * width.double() / values
    counts = torch.stack(
        [torch.bincount(which[:, j], minlength=bins) for j in range(ranks.shape[1])], 1
    ).double()
    stat = ((counts - expected[:, None]) ** 2 / expected[:, None]).sum(0)
    dof = torch.tensor(float(bins - 1), dtype=torch.float64)
    return torch.special.gammaincc(dof / 2, stat / 2)  # chi-square survival function


@torch.no_grad()
def sbc_ranks(
    posterior: _Sampler, theta: Tensor, x: Tensor, num_posterior_samples: int = 100, batch: int = 100
) -> SBCResult:
    r"""Simulation-based calibration ranks of ``theta (N, d)`` (drawn from the prior) among
    ``num_posterior_samples`` draws of ``posterior.sample((L,), context=x_batch) -> (L, B, d)`` (the
    :class:`~pushforward.sbi.Posterior` convention) for their simulations ``x (N, ...)``.

    Example:
        >>> class Exact:  # N(0, 1) prior, x = θ + N(0, 1): posterior N(x / 2, 1 / 2)
        ...     def sample(self, sample_shape, context=None):
        ...         return context / 2 + 0.5**0.5 * torch.randn(*sample_shape, *context.shape)
        >>> theta = torch.randn(200, 1)
        >>> result = sbc_ranks(Exact(), theta, theta + torch.randn(200, 1), num_posterior_samples=50)
        >>> result.ranks.shape
        torch.Size([200, 1])
    """
    if num_posterior_samples < 1:
        raise ValueError(f"num_posterior_samples must be positive, got {num_posterior_samples}")
    ranks = []
    for th, xb in _batches(theta, x, batch):
        draws = _posterior_draws(posterior, num_posterior_samples, xb)
        ranks.append((draws < th.to(draws)).sum(0))
    r = torch.cat(ranks)
    return SBCResult(r, num_posterior_samples, rank_uniformity(r, num_posterior_samples))


@torch.no_grad()
def expected_coverage(
    posterior: object,
    theta: Tensor,
    x: Tensor,
    num_posterior_samples: int = 200,
    levels: Tensor | None = None,
    batch: int = 50,
) -> CoverageResult:
    r"""Expected coverage of the highest-posterior-density regions (see the module documentation).

    ``posterior`` needs ``sample((L,), context=x_batch) -> (L, B, d)`` and ``log_prob(theta, context=x)``
    (``theta (L, B, d)`` scored against ``x (B, ...)``, broadcast as a :class:`~pushforward.Flow` does).
    Returns the coverage at ``levels`` (default 0, 0.05, ..., 1).
    """
    if levels is None:
        levels = torch.linspace(0, 1, 21, dtype=torch.float64)
    alphas = []
    for th, xb in _batches(theta, x, batch):
        draws = _posterior_draws(posterior, num_posterior_samples, xb)  # (L, B, d)
        th = th.to(draws)
        lp_draws = posterior.log_prob(draws, context=xb)  # (L, B): each observation embedded once
        lp_true = posterior.log_prob(th, context=xb)
        alphas.append((lp_draws > lp_true).double().mean(0))
    alpha = torch.cat(alphas)
    coverage = (alpha[None, :] <= levels.to(alpha)[:, None]).double().mean(1)
    return CoverageResult(levels.to(alpha), coverage, alpha)


def plot_calibration(
    sbc: SBCResult | None = None,
    coverage: CoverageResult | None = None,
    path: str | Path | None = None,
    names: list[str] | None = None,
):
    """Plot SBC rank histograms (one panel per dimension, with the 99 % band of a uniform histogram)
    and/or the expected-coverage curve against the diagonal. Returns the matplotlib figure; writes it to
    ``path`` when given."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    if sbc is None and coverage is None:
        raise ValueError("give sbc ranks, a coverage result, or both")
    d = sbc.ranks.shape[1] if sbc is not None else 0
    panels = d + (coverage is not None)
    fig = Figure(figsize=(3.2 * panels, 3.0))
    axes = fig.subplots(1, panels, squeeze=False)
    axes = axes[0]
    if sbc is not None:
        n = sbc.ranks.shape[0]
        bins = max(2, min(20, n // 10, sbc.num_posterior_samples + 1))
        mean = n / bins
        band = 2.576 * (mean * (1 - 1 / bins)) ** 0.5
        for j in range(d):
            ax = axes[j]
            ax.hist(
                sbc.ranks[:, j].cpu().numpy(), bins=bins, range=(0, sbc.num_posterior_samples + 1), color="C0"
            )
            ax.axhspan(max(mean - band, 0), mean + band, color="0.8", zorder=0)
            title = names[j] if names is not None else f"θ{j + 1}"
            ax.set_title(f"{title}  (p={float(sbc.p_values[j]):.2g})")
            ax.set_xlabel("rank")
    if coverage is not None:
        ax = axes[-1]
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.plot(coverage.levels.cpu().numpy(), coverage.coverage.cpu().numpy(), "C1-o", ms=3)
        ax.set_xlabel("credibility level")
        ax.set_ylabel("expected coverage")
        ax.set_title("HPD coverage")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
