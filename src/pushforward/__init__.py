"""pushforward: normalizing flows on PyTorch.

``forward`` maps data → latent and returns ``(z, ladj)``; ``log_prob(x) = base.log_prob(f(x)) + ladj``.
See :mod:`pushforward.transforms.base` for the full contract.
"""

from . import distributions, flows, nets, transformers, transforms
from .checks import set_validation
from .flows.core import Flow
from .train.fit import History, fit

__version__ = "0.1.0"

__all__ = ["Flow", "History", "distributions", "fit", "flows", "nets", "set_validation", "transformers", "transforms"]
