"""Tabular data: :class:`FlowModel` (a flow fitted to a table, with its preprocessing)."""

from .model import FlowModel, whitening_matrix

__all__ = ["FlowModel", "whitening_matrix"]
