"""pushforward: normalizing flows on PyTorch.

``forward`` maps data → latent and returns ``(z, ladj)``; ``log_prob(x) = base.log_prob(f(x)) + ladj``.
See :mod:`pushforward.transforms.base` for the full contract.
"""

from . import distributions, flows, manifolds, nets, transformers, transforms
from ._version import __version__ as __version__
from .checks import set_validation
from .flows.core import Flow
from .inference.montecarlo import Estimate, expectation
from .inference.vi import fit_vi
from .train.config import TrainConfig
from .train.engine import History, train
from .train.fit import fit
from .train.step import TrainingDiverged


def __getattr__(name: str):
    # FlowDensity is loaded lazily so that importing pushforward does not import scikit-learn.
    if name == "FlowDensity":
        from .sklearn import FlowDensity

        return FlowDensity
    raise AttributeError(f"module 'pushforward' has no attribute {name!r}")


__all__ = [
    "Estimate",
    "Flow",
    "FlowDensity",
    "History",
    "TrainConfig",
    "TrainingDiverged",
    "distributions",
    "expectation",
    "fit",
    "fit_vi",
    "flows",
    "manifolds",
    "nets",
    "set_validation",
    "train",
    "transformers",
    "transforms",
]
