"""pushforward: normalizing flows on PyTorch.

``forward`` maps data → latent and returns ``(z, ladj)``; ``log_prob(x) = base.log_prob(f(x)) + ladj``.
See :mod:`pushforward.transforms.base` for the full contract.

The names below are imported on first use (PEP 562), so that ``import pushforward`` — and the command line's
``--help`` — cost no torch import until a name is needed.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from ._version import __version__ as __version__

#: Public name -> (module, attribute or None for the module itself).
_LAZY = {
    "Estimate": (".inference.montecarlo", "Estimate"),
    "Flow": (".flows.core", "Flow"),
    "FlowDensity": (".sklearn", "FlowDensity"),  # needs scikit-learn
    "History": (".train.engine", "History"),
    "TrainConfig": (".train.config", "TrainConfig"),
    "TrainingDiverged": (".train.step", "TrainingDiverged"),
    "distributions": (".distributions", None),
    "expectation": (".inference.montecarlo", "expectation"),
    "fit": (".train.fit", "fit"),
    "fit_vi": (".inference.vi", "fit_vi"),
    "flows": (".flows", None),
    "manifolds": (".manifolds", None),
    "nets": (".nets", None),
    "set_max_memory": (".checks", "set_max_memory"),
    "set_validation": (".checks", "set_validation"),
    "transformers": (".transformers", None),
    "transforms": (".transforms", None),
}

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
    "set_max_memory",
    "set_validation",
    "transformers",
    "transforms",
]

if TYPE_CHECKING:  # for type checkers and IDEs: the eager imports
    from . import distributions, flows, manifolds, nets, transformers, transforms
    from .checks import set_max_memory, set_validation
    from .flows.core import Flow
    from .inference.montecarlo import Estimate, expectation
    from .inference.vi import fit_vi
    from .sklearn import FlowDensity
    from .train.config import TrainConfig
    from .train.engine import History
    from .train.fit import fit
    from .train.step import TrainingDiverged


def __getattr__(name: str):
    if name not in _LAZY:
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f".{name}", __name__)  # a subpackage, e.g. pushforward.train
        raise AttributeError(f"module 'pushforward' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
