"""Flows and ready-made presets. Every preset shares one signature:
``Preset(features, *, context=0, layers=..., hidden=(...), **family_options) -> Flow``.

:data:`PRESETS` maps lower-case names (used by the CLI, the scikit-learn estimator and model files) to
preset constructors.
"""

from collections.abc import Callable

from .autoregressive import BNAF, IAF, MAF, NAF, NSF
from .continuous import FFJORD, AugmentedFlow, continuous_regularization
from .core import Flow
from .coupling import NICE, RealNVP, coupling_masks
from .graphical import GraphicalFlow, plot_adjacency
from .image import Glow, RealNVPImage, ScaleNormal
from .mixture import MixtureFlow, mixture_log_prob
from .planar import PlanarFlow, RadialFlow, SylvesterFlow
from .residual import ResidualFlow

#: Preset name → constructor with the shared preset signature.
PRESETS: dict[str, Callable[..., Flow]] = {
    "nice": NICE,
    "realnvp": RealNVP,
    "maf": MAF,
    "iaf": IAF,
    "nsf": NSF,
    "naf": NAF,
    "bnaf": BNAF,
    "planar": PlanarFlow,
    "radial": RadialFlow,
    "sylvester": SylvesterFlow,
    "realnvp_image": RealNVPImage,
    "glow": Glow,
    "residual": ResidualFlow,
    "ffjord": FFJORD,
}

__all__ = [
    "BNAF",
    "FFJORD",
    "IAF",
    "MAF",
    "NAF",
    "NICE",
    "NSF",
    "PRESETS",
    "AugmentedFlow",
    "Flow",
    "Glow",
    "GraphicalFlow",
    "MixtureFlow",
    "PlanarFlow",
    "RadialFlow",
    "RealNVP",
    "RealNVPImage",
    "ResidualFlow",
    "ScaleNormal",
    "SylvesterFlow",
    "continuous_regularization",
    "coupling_masks",
    "mixture_log_prob",
    "plot_adjacency",
]
