"""Training loops: maximum likelihood (:func:`fit`) and memory-saving reversible backprop."""

from .fit import History, evaluate_nll, fit
from .reversible import ReversibleCompose, saved_tensor_bytes

__all__ = ["History", "ReversibleCompose", "evaluate_nll", "fit", "saved_tensor_bytes"]
