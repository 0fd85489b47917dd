"""Simulation-based inference: amortised posteriors from simulations (neural posterior estimation).

:class:`Posterior` wraps any conditional flow with z-scoring, an embedding network and a bijection onto the
prior's support. pushforward does not depend on the ``sbi`` package.
"""

from .posterior import Posterior, prior_support, support_bijection, z_score_stats

__all__ = ["Posterior", "prior_support", "support_bijection", "z_score_stats"]
