r"""Anomaly and out-of-distribution detection with flows: likelihood thresholds and a typicality test.

**Likelihood thresholds.** Score each row by its log-likelihood :math:`\log p(x)`; calibrate a threshold
:math:`\tau_q` as the :math:`q`-quantile of the scores of held-out *normal* data, and flag rows with
:math:`\log p(x) < \tau_q`. By construction a fraction :math:`\approx q` of normal data is flagged.

**Why that is not enough.** Flows are known to assign *higher* likelihood to some out-of-distribution data
than to their training data (Nalisnick et al., "Do Deep Generative Models Know What They Don't Know?",
ICLR 2019; Nalisnick et al., "Detecting Out-of-Distribution Inputs to Deep
Generative Models Using Typicality", 2019): in high dimension, samples of a distribution concentrate in its *typical
set*, a shell where :math:`-\log p(x) \approx H`, the entropy, which need not contain the density's mode.
Simple, low-entropy inputs can land in the high-density region outside the typical set.

**Typicality test** (Nalisnick, Matsukawa, Teh & Lakshminarayanan, "Detecting Out-of-Distribution Inputs to
Deep Generative Models Using Typicality", 2019). For a batch :math:`x_{1:M}` the statistic is

.. math:: T(x_{1:M}) = \left| -\frac{1}{M}\sum_{i=1}^M \log p(x_i) - \hat H \right|,

with :math:`\hat H` the mean negative log-likelihood of held-out normal data. The batch is *atypical*
(flagged as OOD) when :math:`T > \epsilon_\alpha`, where :math:`\epsilon_\alpha` is the :math:`1-\alpha`
quantile of :math:`T` over bootstrap batches of size :math:`M` resampled from held-out normal data. It flags
inputs that are too *likely* as well as too unlikely. With :math:`M = 1` it is a per-row two-sided test; it
gets much more powerful for batches (:math:`M \geq 2`) known to come from one source.

Example:
    >>> import numpy as np
    >>> from pushforward.tabular import FlowModel
    >>> rng = np.random.default_rng(0)
    >>> x, x_val, x_new = rng.normal(size=(300, 2)), rng.normal(size=(200, 2)), rng.normal(size=(5, 2))
    >>> model = FlowModel.train(x, "realnvp", options={"layers": 2, "hidden": [8]}, steps=5, progress=False)
    >>> detector = AnomalyDetector(model, quantile=0.01).calibrate(x_val)
    >>> flags = detector.predict(x_new)            # low-likelihood rows
    >>> result = detector.typicality(x_new)        # is this batch in-distribution?
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "AnomalyDetector",
    "TypicalityResult",
    "TypicalityTest",
    "calibrate_threshold",
    "log_likelihood",
    "quantile_levels_interval",
    "threshold_warning",
]


def log_likelihood(model: Any, x: Any) -> np.ndarray:
    """Per-row log-likelihood (``float64``) of ``x`` under ``model``.

    ``model`` is a :class:`~pushforward.tabular.FlowModel`, a :class:`~pushforward.FlowDensity`, a
    :class:`~pushforward.Flow` (unconditional) or any callable mapping an array to log-densities.
    """
    if hasattr(model, "log_likelihood"):  # FlowModel: the log-likelihood on each column's measure
        return model.log_likelihood(x)
    if hasattr(model, "score_samples"):  # FlowDensity and other scikit-learn density estimators
        return np.asarray(model.score_samples(x), dtype=np.float64)
    if isinstance(model, torch.nn.Module) and hasattr(model, "log_prob"):
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        dtype = next((p.dtype for p in model.parameters()), torch.get_default_dtype())
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                return model.log_prob(t.to(device=device, dtype=dtype)).double().cpu().numpy()
        finally:
            model.train(was)
    if callable(model):
        return np.asarray(model(x), dtype=np.float64)
    raise TypeError(
        f"cannot score with a {type(model).__name__}; pass a FlowModel, FlowDensity, Flow or callable"
    )


def _scores(scores: Any, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(s).any():
        raise ValueError(f"{name} contains NaN")
    return s


def calibrate_threshold(val_scores: Any, quantile: float = 0.01) -> float:
    """The ``quantile`` of held-out log-likelihoods: rows scoring below it are anomalies.

    A fraction of about ``quantile`` of normal data falls below the threshold (false-positive rate).
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    return float(np.quantile(_scores(val_scores, "val_scores"), quantile))


def binomial_quantile(level: float, n: int, p: float) -> int:
    r"""The smallest :math:`k` with :math:`P(K \le k) \ge` ``level`` for :math:`K \sim \mathrm{Bin}(n, p)`,
    from the log-probabilities :math:`\log\binom{n}{k} + k \log p + (n - k)\log(1 - p)` (numpy only).

    Example:
        >>> binomial_quantile(0.5, 10, 0.5), binomial_quantile(0.95, 100, 0.1)
        (5, 15)
    """
    k = np.arange(n + 1)
    log_choose = np.concatenate([[0.0], np.cumsum(np.log((n - k[1:] + 1) / k[1:]))])
    log_pmf = log_choose + k * math.log(p) + (n - k) * math.log1p(-p)
    cdf = np.cumsum(np.exp(log_pmf - log_pmf.max()))
    return int(np.searchsorted(cdf / cdf[-1], level * (1 - 1e-10)))


def quantile_levels_interval(n: int, quantile: float, level: float = 0.9) -> tuple[float, float]:
    r"""Distribution-free interval for the ``quantile`` of the law behind ``n`` held-out scores, as two levels
    of their empirical quantile function.

    The number of the ``n`` scores below the true :math:`q`-quantile is :math:`K \sim \mathrm{Bin}(n, q)`, so
    the order statistics of ranks :math:`k_\pm`, the :math:`(1 \mp \text{level})/2` quantiles of :math:`K`
    (plus one for the upper), bracket the true quantile with probability about ``level`` (Hahn & Meeker,
    "Statistical Intervals", 1991, ch. 5). Returns the empirical-quantile levels
    :math:`(k_\pm - 1)/(n - 1)`, to pass to ``np.quantile`` or a stored quantile grid.

    Example:
        >>> lo, hi = quantile_levels_interval(14, 0.01)
        >>> lo, round(hi, 3)
        (0.0, 0.077)
    """
    if n < 2:
        raise ValueError(f"need at least 2 held-out scores, got {n}")
    if not 0.0 < quantile < 1.0 or not 0.0 < level < 1.0:
        raise ValueError(f"quantile and level must lie in (0, 1), got {quantile} and {level}")
    tail = (1.0 - level) / 2
    k_lo = max(binomial_quantile(tail, n, quantile), 1)
    k_hi = min(binomial_quantile(1.0 - tail, n, quantile) + 1, n)
    return (k_lo - 1) / (n - 1), (k_hi - 1) / (n - 1)


def threshold_warning(n: int, quantile: float) -> str | None:
    """A warning when fewer than 5 of ``n`` held-out rows are expected below the ``quantile`` threshold."""
    if n * quantile >= 5:
        return None
    return (
        f"the {quantile:g}-quantile threshold rests on {n} held-out rows (about {n * quantile:.2g} below it): "
        "it is very uncertain; hold out more rows or use cross-fitted scores (FlowDensity.oof_scores_)"
    )


@dataclass
class TypicalityResult:
    """Outcome of a typicality test on one batch."""

    statistic: float
    epsilon: float
    p_value: float
    atypical: bool
    mean_nll: float
    entropy: float


class TypicalityTest:
    r"""The bootstrap typicality test of Nalisnick et al. (2019) for batches of ``batch_size`` inputs.

    Fit it on log-likelihoods of held-out normal data; :meth:`test` then says whether a batch of scores is
    atypical: :math:`|\overline{-\log p} - \hat H| > \epsilon_\alpha` (see the module documentation).

    Args:
        batch_size: ``M``, the number of inputs tested together (1 for per-row tests).
        alpha: False-positive rate on normal batches.
        n_bootstrap: Bootstrap batches used to estimate :math:`\epsilon_\alpha`.
        seed: Seeds the bootstrap.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> test = TypicalityTest(batch_size=10).fit(rng.normal(-3, 1, 2000))
        >>> test.test(np.full(10, -3.0)).atypical, test.test(np.full(10, 0.0)).atypical
        (False, True)
    """

    def __init__(
        self, batch_size: int = 1, alpha: float = 0.01, n_bootstrap: int = 2000, seed: int = 0
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if int(n_bootstrap) < 10:
            raise ValueError(f"n_bootstrap must be >= 10, got {n_bootstrap}")
        self.batch_size, self.alpha, self.n_bootstrap, self.seed = (
            int(batch_size),
            alpha,
            int(n_bootstrap),
            seed,
        )

    def fit(self, val_scores: Any) -> TypicalityTest:
        """Estimate :math:`\\hat H` and the bootstrap distribution of the statistic from normal data."""
        s = _scores(val_scores, "val_scores")
        s = s[np.isfinite(s)]
        if s.size < 2:
            raise ValueError("need at least 2 finite held-out scores to calibrate the typicality test")
        self.entropy_ = float(-s.mean())
        rng = np.random.default_rng(self.seed)
        idx = rng.integers(0, s.size, (self.n_bootstrap, self.batch_size))
        self.bootstrap_ = np.sort(np.abs(-s[idx].mean(1) - self.entropy_))
        self.epsilon_ = float(np.quantile(self.bootstrap_, 1.0 - self.alpha))
        return self

    def statistic(self, scores: Any) -> float:
        """:math:`|-\\text{mean}(\\text{scores}) - \\hat H|`."""
        self._check_fitted()
        return float(abs(-_scores(scores).mean() - self.entropy_))

    def test(self, scores: Any) -> TypicalityResult:
        """Test one batch of log-likelihoods (any size; calibrated for ``batch_size``)."""
        self._check_fitted()
        s = _scores(scores)
        t = float(abs(-s.mean() - self.entropy_)) if np.isfinite(s).all() else float("inf")
        greater = self.bootstrap_.size - np.searchsorted(self.bootstrap_, t, side="left")
        p = (1.0 + greater) / (1.0 + self.bootstrap_.size)
        return TypicalityResult(
            t, self.epsilon_, float(p), bool(t > self.epsilon_), float(-s.mean()), self.entropy_
        )

    def test_rows(self, scores: Any) -> np.ndarray:
        """Per-row two-sided test (batch size 1 semantics): ``True`` where a row is atypical."""
        self._check_fitted()
        s = _scores(scores)
        return ~np.isfinite(s) | (np.abs(-s - self.entropy_) > self.epsilon_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "epsilon_"):
            raise ValueError("the typicality test is not fitted; call fit(val_scores) first")


class AnomalyDetector:
    """Likelihood-threshold anomaly detector with a typicality test, around any flow model.

    Args:
        model: What :func:`log_likelihood` accepts (FlowModel, FlowDensity, Flow or callable).
        quantile: Target false-positive rate of :meth:`predict` on normal data.
        alpha: False-positive rate of the typicality test.
        typicality_batch: Batch size ``M`` the typicality test is calibrated for.

    Example:
        >>> gauss = lambda x: -0.5 * (np.asarray(x) ** 2).sum(1)
        >>> det = AnomalyDetector(gauss).calibrate(np.random.randn(500, 2))
        >>> det.predict(np.array([[0.0, 0.0], [8.0, 8.0]])).tolist()
        [False, True]
    """

    def __init__(
        self, model: Any, quantile: float = 0.01, alpha: float = 0.01, typicality_batch: int = 1
    ) -> None:
        self.model = model
        self.quantile = quantile
        self.alpha = alpha
        self.typicality_batch = typicality_batch

    def score(self, x: Any) -> np.ndarray:
        """Per-row log-likelihood (higher is more normal)."""
        return log_likelihood(self.model, x)

    def calibrate(self, x_val: Any = None, *, scores: Any = None) -> AnomalyDetector:
        """Set the threshold and fit the typicality test on held-out normal data (or its scores).

        With neither, a fitted :class:`~pushforward.FlowDensity` ensemble's cross-fitted training scores
        (``oof_scores_``: each row scored by the flow that did not train on it) are used. Sets
        ``threshold_interval_``, a 90% interval for the threshold (:func:`quantile_levels_interval`), and
        warns when the held-out set is too small for the quantile.
        """
        if x_val is None and scores is None:
            scores = getattr(self.model, "oof_scores_", None)
            if scores is None:
                raise ValueError("pass held-out data x_val or scores (this model has no cross-fitted scores)")
        s = self.score(x_val) if scores is None else _scores(scores)
        self.threshold_ = calibrate_threshold(s, self.quantile)
        if 0.0 < self.quantile < 1.0 and s.size >= 2:
            levels = quantile_levels_interval(s.size, self.quantile)
            self.threshold_interval_ = tuple(float(np.quantile(s, q)) for q in levels)
            message = threshold_warning(s.size, self.quantile)
            if message:
                warnings.warn(message, stacklevel=2)
        self.typicality_ = TypicalityTest(self.typicality_batch, self.alpha).fit(s)
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise ValueError("the detector is not calibrated; call calibrate(x_val) first")

    def predict(self, x: Any) -> np.ndarray:
        """``True`` for rows whose log-likelihood is below the calibrated threshold (or not finite)."""
        self._fitted()
        s = self.score(x)
        return ~np.isfinite(s) | (s < self.threshold_)

    def typicality(self, x: Any) -> TypicalityResult:
        """Typicality test of the batch ``x`` as a whole."""
        self._fitted()
        return self.typicality_.test(self.score(x))

    def atypical_rows(self, x: Any) -> np.ndarray:
        """Per-row typicality flags: too unlikely *or too likely* compared with normal data."""
        self._fitted()
        return self.typicality_.test_rows(self.score(x))
