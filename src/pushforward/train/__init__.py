"""Training loops."""

from .fit import History, evaluate_nll, fit

__all__ = ["History", "evaluate_nll", "fit"]
