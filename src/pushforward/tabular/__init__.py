"""Tabular data: :class:`FlowModel` (a flow whose chain starts with the table's preprocessing) and
:class:`FlowModelEnsemble` (equally weighted members, one model file)."""

from .ensemble import FlowModelEnsemble, load_model_file
from .model import FlowModel, OutOfSupportWarning
from .preprocessing import gaussian_dependence, whitening_matrix

__all__ = [
    "FlowModel",
    "FlowModelEnsemble",
    "OutOfSupportWarning",
    "gaussian_dependence",
    "load_model_file",
    "whitening_matrix",
]
