"""Inference with flows: variational inference (:func:`fit_vi`), Monte Carlo integration
(:func:`expectation`) and NeuTra MCMC (:mod:`pushforward.inference.mcmc`, needs Pyro)."""

from .montecarlo import Estimate, expectation
from .vi import ReverseKL, fit_vi

__all__ = ["Estimate", "ReverseKL", "expectation", "fit_vi"]
