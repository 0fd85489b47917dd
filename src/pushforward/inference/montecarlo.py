r"""Monte Carlo integration under a flow: plain Monte Carlo and self-normalised importance sampling.

For a flow :math:`q` (cheap to sample, e.g. :func:`pushforward.flows.PlanarFlow` or any flow whose
``inverse`` is one pass) and a function :math:`f`:

* **Plain Monte Carlo** estimates :math:`\mathbb{E}_q[f] \approx \bar f = \frac1n \sum_i f(x_i)`,
  :math:`x_i \sim q`, with standard error :math:`s_f/\sqrt n` and effective sample size :math:`n`.
* **Self-normalised importance sampling** towards an unnormalised target :math:`\tilde p`: with
  :math:`\log w_i = \log\tilde p(x_i) - \log q(x_i)` and :math:`\bar w_i = w_i / \sum_j w_j`,

  .. math:: \mathbb{E}_p[f] \approx \hat\mu = \sum_i \bar w_i f(x_i), \qquad
      \widehat{\mathrm{SE}} = \sqrt{\textstyle\sum_i \bar w_i^2 (f(x_i) - \hat\mu)^2}, \qquad
      \mathrm{ESS} = 1 / \textstyle\sum_i \bar w_i^2

  (delta-method standard error and Kish's effective sample size; Owen, "Monte Carlo theory, methods and
  examples", 2013, ch. 9). The same weights give the normalising constant
  :math:`\log Z \approx \log \frac1n\sum_i w_i` (:func:`log_mean_exp`), used by :func:`pushforward.fit_vi`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..flows.core import Flow

__all__ = ["Estimate", "expectation", "kish_ess", "log_mean_exp", "self_normalised_mean"]


# ---------------------------------------------------------------------------------- pure formulas
def log_mean_exp(log_w: Tensor) -> tuple[float, float]:
    r""":math:`\log \frac1n \sum_i e^{\log w_i}` and its delta-method standard error
    :math:`\mathrm{sd}(w) / (\sqrt n\, \bar w)`, computed stably from log-weights of shape ``(n,)``."""
    log_w = log_w.detach().double().reshape(-1)
    n = log_w.numel()
    if n == 0:
        raise ValueError("log_mean_exp needs at least one weight")
    if bool(torch.isnan(log_w).any()):
        raise ValueError("log-weights contain NaN")
    m = log_w.max()
    if not bool(torch.isfinite(m)):
        return float(m), math.nan
    w = torch.exp(log_w - m)
    mean = w.mean()
    se = float(w.std(unbiased=True) / (math.sqrt(n) * mean)) if n > 1 else math.inf
    return float(m + mean.log()), se


def kish_ess(log_w: Tensor) -> float:
    r"""Kish's effective sample size :math:`(\sum_i w_i)^2 / \sum_i w_i^2` from log-weights."""
    log_w = log_w.detach().double().reshape(-1)
    return float(torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)))


def self_normalised_mean(values: Tensor, log_w: Tensor) -> tuple[Tensor, Tensor, float]:
    r"""Self-normalised importance-sampling mean of ``values`` ``(n, *shape)`` with log-weights ``(n,)``.

    Returns ``(estimate, standard error, ESS)`` (formulas in the module documentation).
    """
    log_w = log_w.detach().double().reshape(-1)
    wbar = torch.softmax(log_w, 0).reshape(-1, *([1] * (values.dim() - 1)))
    v = values.double()
    mu = (wbar * v).sum(0)
    se = torch.sqrt((wbar * wbar * (v - mu) ** 2).sum(0))
    return mu, se, kish_ess(log_w)


@dataclass
class Estimate:
    """A Monte Carlo estimate: value, standard error, effective sample size and number of draws.

    ``estimate`` and ``stderr`` have the shape of one value of ``f`` (a scalar tensor for scalar ``f``).
    """

    estimate: Tensor
    stderr: Tensor
    ess: float
    n: int

    def __iter__(self):
        return iter((self.estimate, self.stderr, self.ess))


def _values(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    v = f(x)
    if not isinstance(v, Tensor):
        raise TypeError(f"f must return a torch.Tensor, got {type(v).__name__}")
    if v.dim() == 0 or v.shape[0] != x.shape[0]:
        raise ValueError(
            f"f must return one value per sample (leading dimension {x.shape[0]}), got {tuple(v.shape)}"
        )
    return v


def _log_density(target: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    lp = target(x)
    if not isinstance(lp, Tensor) or lp.shape != (x.shape[0],):
        shape = tuple(lp.shape) if isinstance(lp, Tensor) else type(lp).__name__
        raise ValueError(f"target_log_density must return shape ({x.shape[0]},), got {shape}")
    return lp


@torch.no_grad()
def expectation(
    f: Callable[[Tensor], Tensor],
    flow: Flow,
    n: int,
    target_log_density: Callable[[Tensor], Tensor] | None = None,
    *,
    batch_size: int = 8192,
) -> Estimate:
    r"""Estimate :math:`\mathbb{E}[f(X)]` with ``n`` samples of ``flow``.

    Without ``target_log_density``: plain Monte Carlo under the flow, :math:`X \sim q`. With it:
    self-normalised importance sampling towards the (possibly unnormalised) target :math:`\tilde p`,
    :math:`X \sim p`.
    Formulas in the module documentation. ``f`` maps a batch ``(m, *event_shape)`` to ``(m,)`` or
    ``(m, *value_shape)``; samples are drawn in batches of ``batch_size``.

    Returns:
        An :class:`Estimate` (unpacks as ``estimate, stderr, ess``).

    Example:
        >>> from pushforward.flows import PlanarFlow
        >>> flow = PlanarFlow(2, layers=2)
        >>> est, se, ess = expectation(lambda x: (x**2).sum(-1), flow, 10_000)
    """
    if not callable(f):
        raise TypeError("f must be callable")
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a pushforward Flow, got {type(flow).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    values, log_ws = [], []
    done = 0
    while done < n:
        m = min(batch_size, n - done)
        if target_log_density is None:
            x = flow.sample((m,))
        else:
            x, log_q = flow.sample_and_log_prob((m,))
            log_ws.append((_log_density(target_log_density, x) - log_q).double())
        values.append(_values(f, x).double())
        done += m
    v = torch.cat(values)
    if target_log_density is None:
        mu = v.mean(0)
        return Estimate(mu, v.std(0, unbiased=True) / math.sqrt(n), float(n), n)
    log_w = torch.cat(log_ws)
    if bool(torch.isnan(log_w).any()) or not bool(torch.isfinite(log_w).any()):
        raise ValueError("importance weights are NaN or all zero: does the flow cover the target's support?")
    mu, se, ess = self_normalised_mean(v, log_w)
    return Estimate(mu, se, ess, n)
