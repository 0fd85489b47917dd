"""Simulation-based inference: amortised posteriors from simulations (neural posterior estimation).

:class:`Posterior` is a conditional flow on θ whose chain starts with the map of the prior's support and the
z-scoring of θ, and whose context path z-scores the observations before an optional embedding network (it
saves with :func:`pushforward.io.save`); :class:`NPE` trains one on simulations by maximum likelihood,
:class:`FMPE` by flow matching (one estimator shape, :class:`PosteriorEstimator`, and one engine);
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
from .posterior import ObservationEmbedding, Posterior, prior_support, support_map, z_score_stats

__all__ = [
    "FMPE",
    "NPE",
    "SBI_DEFAULTS",
    "CoverageResult",
    "ObservationEmbedding",
    "Posterior",
    "PosteriorEstimator",
    "SBCResult",
    "expected_coverage",
    "plot_calibration",
    "prior_support",
    "rank_uniformity",
    "sbc_ranks",
    "support_map",
    "z_score_stats",
]
