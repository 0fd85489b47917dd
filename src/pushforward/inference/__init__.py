"""Inference with flows: variational inference (:func:`fit_vi`), Monte Carlo integration
(:func:`expectation`) and NeuTra MCMC (:mod:`pushforward.inference.mcmc`, needs Pyro)."""

from .montecarlo import Estimate, expectation
from .vi import VIResult, fit_vi

__all__ = ["Estimate", "VIResult", "expectation", "fit_vi"]
