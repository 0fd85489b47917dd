"""Flows and ready-made presets. Every preset shares one signature:
``Preset(features, *, context=0, layers=..., hidden=(...), **family_options) -> Flow``.

:data:`PRESETS` maps lower-case names (used by the CLI, the scikit-learn estimator and model files) to
preset constructors.
"""

from collections.abc import Callable

from .core import Flow
from .coupling import NICE, RealNVP, coupling_masks

#: Preset name → constructor with the shared preset signature.
PRESETS: dict[str, Callable[..., Flow]] = {
    "nice": NICE,
    "realnvp": RealNVP,
}

__all__ = ["NICE", "PRESETS", "Flow", "RealNVP", "coupling_masks"]
