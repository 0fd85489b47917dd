"""Training loops: maximum likelihood (:func:`fit`) and memory-saving reversible backprop."""

from .fit import History, evaluate_nll, fit
from .reversible import ReversibleCompose, saved_tensor_bytes
from .step import TrainingDiverged, skip_nonfinite_step

__all__ = [
    "History",
    "ReversibleCompose",
    "TrainingDiverged",
    "evaluate_nll",
    "fit",
    "saved_tensor_bytes",
    "skip_nonfinite_step",
]
