"""Training loops: maximum likelihood (:func:`fit`), flow matching for continuous flows
(:func:`fit_flow_matching`) and memory-saving reversible backprop."""

from ..transforms.reversible import ReversibleCompose, saved_tensor_bytes
from .fit import History, evaluate_nll, fit
from .flow_matching import FlowMatchingHistory, fit_flow_matching
from .step import TrainingDiverged, skip_nonfinite_step

__all__ = [
    "FlowMatchingHistory",
    "History",
    "ReversibleCompose",
    "TrainingDiverged",
    "evaluate_nll",
    "fit",
    "fit_flow_matching",
    "saved_tensor_bytes",
    "skip_nonfinite_step",
]
