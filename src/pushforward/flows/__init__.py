"""Flows and ready-made presets. Every preset is a :class:`~pushforward.flows.preset.Preset` (a
:class:`Flow` subclass) sharing one constructor signature:
``Preset(features, *, context=0, layers=..., hidden=(...), **family_options)``.

:data:`PRESETS` maps lower-case names (used by the CLI, the scikit-learn estimator and model files) to
the preset classes.
"""

from .autoregressive import BNAF, IAF, MAF, NAF, NSF
from .continuous import FFJORD, AugmentedFlow, continuous_regularization
from .core import Flow
from .coupling import NICE, RealNVP, coupling_masks
from .discrete import (
    IDF,
    AutoregressiveIDF,
    CategoricalFlow,
    DiscreteFlow,
    FactorOutPrior,
    IntegerDiscreteFlow,
)
from .graphical import GraphicalFlow, plot_adjacency
from .image import Glow, RealNVPImage, ScaleNormal
from .mixture import Ensemble, MixtureFlow, mixture_log_prob
from .planar import PlanarFlow, RadialFlow, SylvesterFlow
from .preset import Preset
from .residual import ResidualFlow

#: Preset name → preset class (constructors share the preset signature).
PRESETS: dict[str, type[Preset]] = {
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

#: Discrete presets (integer and categorical data), kept apart from PRESETS because
#: the continuous tooling (``pushforward fit``, the estimators) trains PRESETS on real-valued data.
DISCRETE_PRESETS: dict[str, type[Preset]] = {
    "idf": IDF,
    "ar-idf": AutoregressiveIDF,
    "discrete": DiscreteFlow,
}

__all__ = [
    "BNAF",
    "DISCRETE_PRESETS",
    "FFJORD",
    "IAF",
    "IDF",
    "MAF",
    "NAF",
    "NICE",
    "NSF",
    "PRESETS",
    "AugmentedFlow",
    "AutoregressiveIDF",
    "CategoricalFlow",
    "DiscreteFlow",
    "Ensemble",
    "FactorOutPrior",
    "Flow",
    "Glow",
    "GraphicalFlow",
    "IntegerDiscreteFlow",
    "MixtureFlow",
    "PlanarFlow",
    "Preset",
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
