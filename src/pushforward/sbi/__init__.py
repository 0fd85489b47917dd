"""Simulation-based inference: amortised posteriors from simulations (neural posterior estimation).

:class:`Posterior` wraps any conditional flow with z-scoring, an embedding network and a bijection onto the
prior's support; :class:`NPE` trains one on simulations by maximum likelihood, :class:`FMPE` by flow
matching (one estimator shape, :class:`PosteriorEstimator`, and one engine);
:mod:`~pushforward.sbi.diagnostics` checks its calibration (SBC ranks, expected coverage). pushforward does not
depend on the ``sbi`` package.
"""

from .diagnostics import (
    CoverageResult,
    SBCResult,
    expected_coverage,
    plot_calibration,
    rank_uniformity,
    sbc_ranks,
)
from .estimator import SBI_DEFAULTS, PosteriorEstimator
from .fmpe import FMPE
from .npe import NPE
from .posterior import Posterior, prior_support, support_bijection, z_score_stats

__all__ = [
    "FMPE",
    "NPE",
    "SBI_DEFAULTS",
    "CoverageResult",
    "Posterior",
    "PosteriorEstimator",
    "SBCResult",
    "expected_coverage",
    "plot_calibration",
    "prior_support",
    "rank_uniformity",
    "sbc_ranks",
    "support_bijection",
    "z_score_stats",
]
