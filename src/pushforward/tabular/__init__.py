"""Tabular data: :class:`FlowModel` (a flow whose chain starts with the table's preprocessing)."""

from .model import FlowModel, OutOfSupportWarning
from .preprocessing import gaussian_dependence, whitening_matrix

__all__ = ["FlowModel", "OutOfSupportWarning", "gaussian_dependence", "whitening_matrix"]
