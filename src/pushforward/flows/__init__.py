"""Flows and ready-made presets. Every preset shares one signature:
``Preset(features, *, context=0, layers=..., hidden=(...), **family_options) -> Flow``.
"""

from .core import Flow
from .coupling import NICE, RealNVP, coupling_masks

__all__ = ["NICE", "Flow", "RealNVP", "coupling_masks"]
