r"""A scikit-learn density estimator backed by any pushforward flow preset.

Example:
    >>> import numpy as np
    >>> from pushforward import FlowDensity
    >>> X = np.random.default_rng(0).normal(size=(500, 3))
    >>> est = FlowDensity(flow="realnvp", layers=2, hidden=(16,), steps=50, ensemble=1).fit(X)
    >>> est.score_samples(X[:2]).shape, est.sample(4).shape
    ((2,), (4, 3))
"""

from __future__ import annotations

import math
import numbers
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils import RegressorTags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from .tabular.sizing import DEFAULT_LR, default_size, default_steps

__all__ = ["FlowDensity"]


class FlowDensity(DensityMixin, BaseEstimator):
    r"""Normalizing-flow density estimation with the scikit-learn API, with defaults sized to the data:
    :math:`p(x)` from ``fit(X)``, or the conditional density :math:`p(y \mid x)` from ``fit(X, y)``.

    ``fit`` screens the rows like ``pushforward fit`` (:func:`~pushforward.data.screen.screen_for_fit`:
    constant columns, identical rows, no more rows than columns and extreme outliers are refused unless
    ``allow_degenerate`` / ``outliers`` say otherwise), detects each modelled column's measure (see
    :mod:`pushforward.data.support`: real, positive, point mass at zero, shares and percentages, counts,
    categorical, compositions) and trains a :class:`~pushforward.tabular.FlowModel`, a flow whose chain
    starts with the column maps, standardisation and (see ``whiten``) whitening, by maximum likelihood. With
    ``ensemble=K > 1`` it cross-fits ``K`` flows (flow :math:`k` early-stopped on fold :math:`k`) and the
    density is their mixture :math:`p = \frac1K \sum_k p_k`; each row's score under the flow that did not see
    it (``oof_scores_``) calibrates anomaly thresholds. Scores are log-likelihoods on each column's measure,
    in the units of the data: log-densities of continuous values, log-probabilities of discrete levels and
    point masses; a value outside its column's support scores :math:`-\infty` with an
    :class:`~pushforward.tabular.OutOfSupportWarning` naming row and column.

    **Conditional densities.** ``fit(X, y)`` (``y`` of shape ``(n,)`` or ``(n, k)``) models :math:`p(y \mid
    x)` with ``X`` as the flow's context (standardised inside the model); ``score_samples(X, y)``,
    ``score(X, y)``, ``sample(X, n_samples)``, ``predict_quantiles(X, quantiles)`` and ``predict(X)`` (the
    predictive median). ``conditional="auto"`` does this whenever ``y`` is given; ``False`` ignores ``y``
    (unsupervised pipelines); ``True`` requires it (the strict regressor form scikit-learn's checks run).

    **How the default fit is sized** (budget: at most 5 CPU-seconds per 1,000 rows of 10 columns on one
    core): one NSF (autoregressive rational-quadratic splines; :func:`default_size`: 3 layers of width
    :math:`\mathrm{clip}(2^{\mathrm{round}(\log_2 1.5\sqrt{n})}, 16, 128)`, 4 spline bins below 1000 rows,
    8 above), a 10 % validation split for early stopping (``patience`` evaluations, one per epoch) with the
    best weights restored, at most :func:`default_steps` steps, batches of :math:`\mathrm{clip}(n/8, 32,
    256)` rows, Adam at rate :data:`DEFAULT_LR` with weight decay :math:`10^{-4}`; whitening when the
    columns' Gaussian dependence exceeds :data:`~pushforward.tabular.preprocessing.WHITEN_THRESHOLD`. After
    fitting the flows are kept in ``float64`` so that a row's score does not depend on the rows it is
    scored with.

    Args:
        flow: Preset name from :data:`pushforward.flows.PRESETS` (``None``: ``"nsf"``; stored in ``flow_``).
        layers, hidden: Size of the flow (``None``: chosen from the data as above).
        options: Extra family options for the preset (a dict), e.g. ``{"bins": 8}``.
        steps: Maximum training steps per flow (``None``: :func:`default_steps`).
        batch_size: Rows per batch (``None``: from the data).
        lr, weight_decay: Adam settings.
        validation_fraction: Held-out fraction when ``ensemble == 1`` (0 disables early stopping).
        patience: Early stopping patience in evaluation rounds (``None`` disables).
        ensemble: Number of cross-fitted flows ``K`` (``None``: :func:`default_ensemble`, one flow).
        support: ``"auto"`` (detected, see :func:`~pushforward.data.support.detect_support`), ``"none"``
            (every column real), or overrides: a dict or ``"col=kind,..."`` string (see
            :func:`~pushforward.data.support.parse_support`; columns by 0-based index or DataFrame name).
        standardize: Standardise the columns before fitting.
        whiten: Also decorrelate the standardised columns (inverse Cholesky factor of their shrunk
            correlation matrix, see :class:`~pushforward.tabular.FlowModel`) so that the flow models what a
            Gaussian cannot. ``"auto"`` (default): when their Gaussian total correlation per column
            (:func:`~pushforward.tabular.gaussian_dependence`) exceeds 0.35 nats, the rule that separates
            the tables of ``benchmarks/tabular_defaults.py`` where whitening won (diabetes, breast_cancer)
            from the one where it lost (wine). ``True``/``False`` force it. Needs ``standardize``.
        conditional: ``"auto"`` (``fit(X, y)`` models :math:`p(y \mid x)`, ``fit(X)`` :math:`p(x)`),
            ``True`` (``y`` required) or ``False`` (``y`` ignored).
        allow_degenerate: Fit data with constant columns, identical rows or no more rows than columns
            (with a warning) instead of refusing them (the command line's ``--allow-degenerate``).
        outliers, outlier_z: Rows with a robust z-score above ``outlier_z``: ``"refuse"`` (default),
            ``"drop"`` or ``"keep"`` (the command line's ``--outliers`` and ``--outlier-z``).
        random_state: Seed (``int``, default 0) for folds, initial weights and batches; ``None`` for a random one.
        device: ``"auto"`` (CUDA when available, as in the command line), ``"cpu"``, ``"cuda"``, ...
        progress: Show a progress bar.

    Attributes:
        flow_: The resolved preset.
        models_: The fitted :class:`~pushforward.tabular.FlowModel` objects (``model_``: the first).
        support_: The column supports.
        history_: The first flow's training history.
        oof_scores_: Out-of-fold log-likelihood of each training row (``ensemble > 1``).
        whiten_: Whether the columns were whitened.
        conditional_: Whether the fit models the conditional density of ``y`` given ``X``.

    Reference: Papamakarios et al., "Normalizing Flows for Probabilistic Modeling and Inference", JMLR 2021;
    Durkan et al., "Neural Spline Flows", NeurIPS 2019.

    Example:
        >>> import numpy as np
        >>> from sklearn.model_selection import GridSearchCV
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> search = GridSearchCV(FlowDensity(hidden=(8,), steps=5), {"layers": [1, 2]}, cv=2)
        >>> sorted(search.fit(X).best_params_)
        ['layers']
    """

    def __init__(
        self,
        flow: str | None = None,
        *,
        layers: int | None = None,
        hidden: tuple[int, ...] | None = None,
        options: dict | None = None,
        steps: int | None = None,
        batch_size: int | None = None,
        lr: float = DEFAULT_LR,
        weight_decay: float = 1e-4,
        validation_fraction: float = 0.1,
        patience: int | None = 10,
        ensemble: int | None = None,
        support: str | dict | None = "auto",
        standardize: bool = True,
        whiten: bool | str = "auto",
        conditional: bool | str = "auto",
        allow_degenerate: bool = False,
        outliers: str = "refuse",
        outlier_z: float = 1e5,
        random_state: int | None = 0,
        device: str = "auto",
        progress: bool = False,
    ) -> None:
        self.flow = flow
        self.layers = layers
        self.hidden = hidden
        self.options = options
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.ensemble = ensemble
        self.support = support
        self.standardize = standardize
        self.whiten = whiten
        self.conditional = conditional
        self.allow_degenerate = allow_degenerate
        self.outliers = outliers
        self.outlier_z = outlier_z
        self.random_state = random_state
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ helpers
    def _resolve_flow(self) -> str:
        from .flows import PRESETS

        if self.flow is None:
            return "nsf" if "nsf" in PRESETS else "realnvp"
        if not isinstance(self.flow, str):
            raise TypeError(f"flow must be a preset name (str) or None, got {type(self.flow).__name__}")
        if self.flow.lower() not in PRESETS:
            raise ValueError(f"unknown flow preset {self.flow!r}; available: {', '.join(sorted(PRESETS))}")
        return self.flow.lower()

    def _check_params(self) -> None:
        def positive_int(name: str, v: object, allow_none: bool = False) -> None:
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

        positive_int("steps", self.steps, allow_none=True)
        positive_int("batch_size", self.batch_size, allow_none=True)
        positive_int("layers", self.layers, allow_none=True)
        positive_int("patience", self.patience, allow_none=True)
        positive_int("ensemble", self.ensemble, allow_none=True)
        if not isinstance(self.lr, numbers.Real) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.weight_decay, numbers.Real) or not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be a non-negative number, got {self.weight_decay!r}")
        if not isinstance(self.validation_fraction, numbers.Real) or not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        if self.hidden is not None:
            h = (self.hidden,) if isinstance(self.hidden, numbers.Integral) else self.hidden
            if not all(isinstance(u, numbers.Integral) and u > 0 for u in h):
                raise ValueError(f"hidden must be positive integers, got {self.hidden!r}")
        if self.options is not None and not isinstance(self.options, dict):
            raise TypeError(f"options must be a dict, got {type(self.options).__name__}")
        if not isinstance(self.allow_degenerate, (bool, np.bool_)):
            raise TypeError(f"allow_degenerate must be a bool, got {self.allow_degenerate!r}")
        if self.outliers not in ("refuse", "drop", "keep"):
            raise ValueError(f"outliers must be 'refuse', 'drop' or 'keep', got {self.outliers!r}")
        if (
            isinstance(self.outlier_z, bool)
            or not isinstance(self.outlier_z, numbers.Real)
            or not self.outlier_z > 0
        ):
            raise ValueError(f"outlier_z must be a positive number, got {self.outlier_z!r}")

    def _seed(self) -> int:
        rs = self.random_state
        if rs is None:
            return int(np.random.default_rng().integers(0, 2**31 - 1))
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(0, 2**31 - 1))
        if isinstance(rs, bool) or not isinstance(rs, numbers.Integral):
            raise ValueError(f"random_state must be an int, a RandomState or None, got {rs!r}")
        return int(rs)

    def _device(self):
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"unknown device {self.device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device {self.device!r} requested but CUDA is not available; use 'cpu' or 'auto'"
            )
        return dev

    def _options(self, preset: str, n: int) -> dict:
        options = dict(self.options or {})
        if self.layers is not None:
            options["layers"] = int(self.layers)
        if self.hidden is not None:
            options["hidden"] = (
                [int(self.hidden)]
                if isinstance(self.hidden, numbers.Integral)
                else [int(u) for u in self.hidden]
            )
        if preset == "nsf" and self.flow is None:
            auto = default_size(n)
            for key, value in auto.items():
                if key not in options and not (key == "layers" and self.layers is not None):
                    options[key] = value
        return options

    # ------------------------------------------------------------------ API
    def fit(self, X, y=None) -> FlowDensity:
        r"""Fit the flows to the rows of ``X`` (:math:`p(x)`), or, given targets ``y`` (``(n,)`` or
        ``(n, k)``) and ``conditional`` not ``False``, to :math:`p(y \mid x)` with ``X`` as the context."""
        import torch

        from .data.screen import screen_for_fit
        from .data.support import parse_support
        from .tabular import FlowModel

        self._check_params()
        device = self._device()
        cond = self._conditional(y)
        x_names = _column_names(X)
        if cond:
            X, y = validate_data(
                self,
                X,
                y,
                dtype=np.float64,
                multi_output=True,
                y_numeric=True,
                ensure_min_samples=2,
                reset=True,
            )
            self.target_ndim_ = np.ndim(y)
            data = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
            context, names = X, _column_names(y) or [f"y{j}" for j in range(data.shape[1])]
            if not np.isfinite(data).all():
                raise ValueError("y contains NaN or infinite values")
        else:
            X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2, reset=True)
            data, context, names = X, None, x_names
        n, d = data.shape
        keep, found = screen_for_fit(
            data,
            columns=names,
            allow_degenerate=bool(self.allow_degenerate),
            outliers=self.outliers,
            outlier_z=float(self.outlier_z),
        )
        for msg in found:
            warnings.warn(f"FlowDensity: {msg}", UserWarning, stacklevel=2)
        if keep is not None:
            data, context = data[keep], (None if context is None else context[keep])
            n = data.shape[0]
        preset = self._resolve_flow()
        options = self._options(preset, n)
        support = parse_support(self.support, names or [str(j) for j in range(d)], data)
        if all(s.kind == "real" for s in support):
            support = None
        seed = self._seed()
        k = self.ensemble if self.ensemble is not None else default_ensemble(n, d)
        k = int(min(k, n // 2)) if k > 1 else 1
        batch = int(self.batch_size or min(256, max(32, n // 8)))
        per_epoch = math.ceil(n * (1 - 1 / max(k, 2)) / batch)
        steps = int(self.steps or default_steps(n, d, batch))
        if self.whiten not in (True, False, "auto"):
            raise ValueError(f"whiten must be True, False or 'auto', got {self.whiten!r}")
        common = dict(
            options=options,
            standardize=bool(self.standardize),
            device=device,
            columns=names,
            support=support,
            context_columns=x_names if cond else None,
            whiten=(self.whiten if self.standardize and d >= 2 else False),
            steps=steps,
            batch_size=batch,
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            patience=self.patience,
            eval_every=max(per_epoch, 5),
            progress=bool(self.progress),
        )
        folds = np.random.default_rng(seed).permutation(n) % k if k > 1 else None

        def train(i: int):
            if k == 1:
                return FlowModel.fit(
                    data,
                    preset,
                    context=context,
                    val_fraction=float(self.validation_fraction),
                    seed=seed,
                    **common,
                )
            order = np.concatenate([np.flatnonzero(folds != i), np.flatnonzero(folds == i)])
            return FlowModel.fit(
                data[order],
                preset,
                context=None if context is None else context[order],
                val_fraction=0.0,
                seed=seed + i,
                holdout=int((folds == i).sum()),
                **common,
            )

        try:
            models = [train(i) for i in range(k)]
        except ValueError as e:
            if d == 1 and not cond and "n_features" not in str(e):
                raise ValueError(f"preset {preset!r} cannot model data with n_features = 1: {e}") from None
            raise
        for m in models:  # float64 scoring: a row's score does not depend on the rows it is batched with
            m.to(torch.float64)
        if k > 1:
            oof = np.full(n, np.nan)
            for i, m in enumerate(models):
                rows = folds == i
                oof[rows] = m.log_likelihood(data[rows], None if context is None else context[rows])
            self.oof_scores_ = oof
        self.conditional_ = cond
        self.flow_ = preset
        self.whiten_ = models[0].whiten is not None
        self.models_ = models
        self.model_ = models[0]
        self.support_ = support
        self.history_ = models[0].history
        return self

    def _conditional(self, y) -> bool:
        if self.conditional not in (True, False, "auto"):
            raise ValueError(f"conditional must be True, False or 'auto', got {self.conditional!r}")
        if self.conditional is True and y is None:
            raise ValueError(
                "FlowDensity(conditional=True) requires y to be passed, but the target y is None: fit(X, y) "
                "models p(y | X)"
            )
        return self.conditional is not False and y is not None

    def _rows(self, X, y):
        """Validated ``(rows to score, context)`` for ``score_samples`` and friends."""
        check_is_fitted(self, "model_")
        if self.conditional_:
            if y is None:
                raise ValueError("this FlowDensity models p(y | X): pass y to score it (score_samples(X, y))")
            X = _by_name(self, X)
            t = np.asarray(y, dtype=np.float64).reshape(len(X), -1) if np.ndim(y) else None
            if t is None or t.shape[1] != self.model_.n_columns:
                raise ValueError(
                    f"y must be {len(X)} rows of {self.model_.n_columns} target(s), got shape {np.shape(y)}"
                )
            return t, X
        if y is not None and self.conditional is not False:
            raise ValueError("this FlowDensity models p(X) (fitted without y): call score_samples(X)")
        return _by_name(self, X), None

    def log_likelihood(self, X, y=None) -> np.ndarray:
        """Log-likelihood of each row of ``X`` (of each target row ``y`` given ``X`` for a conditional fit), on
        each column's measure in the units of the data (nats); ``-inf`` with an
        :class:`~pushforward.tabular.OutOfSupportWarning` for values outside a column's support."""
        from .tabular.ensemble import ensemble_log_likelihood

        rows, ctx = self._rows(X, y)
        return ensemble_log_likelihood(self.models_, rows, ctx)

    @available_if(lambda self: self.conditional is not True)
    def score_samples(self, X, y=None) -> np.ndarray:
        """:meth:`log_likelihood` (scikit-learn's name; absent with ``conditional=True``, whose strict
        regressor form scikit-learn calls with ``X`` only: use :meth:`log_likelihood` or :meth:`score`)."""
        return self.log_likelihood(X, y)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per row (nats; higher is better), as in ``GaussianMixture.score``."""
        return float(np.mean(self.log_likelihood(X, y)))

    def sample(self, *args, n_samples=None, random_state=None, X=None) -> np.ndarray:
        """Rows drawn from the fitted model, every value inside its column's support.

        * ``sample(n_samples=1, random_state=None)`` (scikit-learn's form): ``(n_samples, n_features_in_)``.
        * conditional fits, ``sample(X, n_samples=1, random_state=None)``: ``n_samples`` draws of ``y`` for
          each row of ``X``, ``(len(X), n_samples)`` (``(len(X), n_samples, k)`` for ``k > 1`` targets).
        """
        check_is_fitted(self, "model_")
        names = ("X", "n_samples", "random_state") if self.conditional_ else ("n_samples", "random_state")
        if len(args) > len(names):
            raise TypeError(f"sample takes at most {len(names)} positional arguments ({', '.join(names)})")
        given = dict(zip(names, args))
        for key, value in (("n_samples", n_samples), ("random_state", random_state), ("X", X)):
            if value is not None:
                if key in given:
                    raise TypeError(f"sample got multiple values for {key!r}")
                given[key] = value
        n_samples, random_state = given.get("n_samples", 1), given.get("random_state")
        if self.conditional_:
            if given.get("X") is None:
                raise ValueError("this FlowDensity models p(y | X): sample(X, n_samples) needs the rows X")
            return self._sample_conditional(given["X"], n_samples, random_state)
        if "X" in given:
            raise ValueError("this FlowDensity models p(X) (fitted without y): sample(n_samples) takes no X")
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        from .tabular.ensemble import ensemble_rows

        return ensemble_rows(self.models_, int(n_samples), np.random.default_rng(random_state))

    def _sample_conditional(self, X, n_samples, random_state) -> np.ndarray:
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        from .tabular.ensemble import ensemble_rows

        X = _by_name(self, X)
        n, k = int(n_samples), self.model_.n_columns
        out = ensemble_rows(self.models_, n, np.random.default_rng(random_state), X).reshape(len(X), n, k)
        return out[..., 0] if self.target_ndim_ == 1 else out

    def predict_quantiles(
        self, X, quantiles=(0.1, 0.5, 0.9), *, n_samples: int = 1000, random_state=0
    ) -> np.ndarray:
        """Predictive quantiles of ``y`` given each row of ``X`` (conditional fits), estimated from
        ``n_samples`` draws per row: ``(len(X), len(quantiles))`` (``(len(X), len(quantiles), k)`` for
        ``k > 1`` targets)."""
        check_is_fitted(self, "model_")
        if not self.conditional_:
            raise ValueError("predict_quantiles needs a conditional fit: fit(X, y)")
        q = np.asarray(quantiles, dtype=np.float64)
        if q.ndim != 1 or not ((q >= 0) & (q <= 1)).all():
            raise ValueError(f"quantiles must be a list of levels in [0, 1], got {quantiles!r}")
        s = self._sample_conditional(X, n_samples, random_state)
        return np.moveaxis(np.quantile(s, q, axis=1), 0, 1)

    @available_if(lambda self: self.conditional is True or getattr(self, "conditional_", False))
    def predict(self, X) -> np.ndarray:
        """The predictive median of ``y`` given each row of ``X`` (conditional fits; 1000 draws, seeded)."""
        out = self.predict_quantiles(X, (0.5,))
        return out[:, 0]

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        """Write the fitted model as one pushforward model file (see :mod:`pushforward.io`): the flow's model
        file for ``ensemble=1``, else a :class:`~pushforward.tabular.FlowModelEnsemble` of the ``K`` flows
        (with the out-of-fold score summary for anomaly thresholds). ``pushforward sample`` and ``score`` and
        :meth:`load` read either."""
        from .tabular import FlowModelEnsemble
        from .tabular.model import summarize_scores

        check_is_fitted(self, "model_")
        if len(self.models_) == 1:
            self.model_.save(path)
            return
        ensemble = FlowModelEnsemble(self.models_)
        oof = getattr(self, "oof_scores_", None)
        if oof is not None:
            ensemble.validation = {**summarize_scores(oof), "source": "out-of-fold"}
        ensemble.save(path)

    @classmethod
    def load(cls, path: str | Path) -> FlowDensity:
        """A fitted estimator from a model file written by :meth:`save` or ``pushforward fit`` (training
        settings other than the flow and the ensemble size are defaults; ``oof_scores_`` is not restored)."""
        from .tabular import FlowModelEnsemble, load_model_file

        loaded = load_model_file(path)
        models = list(loaded.members) if isinstance(loaded, FlowModelEnsemble) else [loaded]
        model = models[0]
        est = cls(
            flow=model.preset,
            options={k: v for k, v in model.options.items() if k not in ("layers", "hidden")} or None,
            layers=model.options.get("layers"),
            hidden=tuple(model.options["hidden"]) if "hidden" in model.options else None,
            ensemble=len(models),
        )
        est.flow_, est.model_, est.history_ = model.preset, model, model.history
        est.models_, est.support_ = models, model.support
        est.whiten_ = model.whiten is not None
        est.conditional_ = model.context_features > 0
        if est.conditional_:
            est.n_features_in_, est.target_ndim_ = model.context_features, 1 if model.n_columns == 1 else 2
            names = model.context_columns
        else:
            est.n_features_in_, names = model.n_columns, model.columns
        if names is not None and not all(n.isdigit() for n in names):
            est.feature_names_in_ = np.asarray(names, dtype=object)
        return est

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        if self.conditional is True:
            tags.estimator_type = "regressor"
            tags.target_tags.required = True
            tags.target_tags.multi_output = True
            tags.regressor_tags = RegressorTags(poor_score=True)
        return tags


def default_ensemble(n: int, d: int) -> int:
    """Cross-fitted flows for ``n`` rows of ``d`` columns: 1 (a single flow early-stopped on a
    ``validation_fraction`` split), so that the default fit stays within its budget of 5 CPU-seconds per
    1,000 rows of 10 columns (see :func:`default_steps`); ``ensemble=K`` cross-fits ``K`` flows at ``K``
    times the cost."""
    return 1


def _column_names(X) -> list[str] | None:
    cols = getattr(X, "columns", None)
    return [str(c) for c in cols] if cols is not None else None


def _by_name(est: FlowDensity, X) -> np.ndarray:
    """``X`` validated against the fit, a ``DataFrame``'s columns matched by name (a reordered frame gives
    the same rows; a missing or unknown column is a ``ValueError``)."""
    names = _column_names(X)
    fitted = getattr(est, "feature_names_in_", None)
    if names is not None and fitted is not None:
        fitted = [str(c) for c in fitted]
        missing = [c for c in fitted if c not in names]
        unknown = [c for c in names if c not in fitted]
        if missing or unknown:
            raise ValueError(
                "X's columns do not match the fit: "
                + "; ".join(
                    t
                    for t in (
                        f"missing {', '.join(missing)}" if missing else "",
                        f"unknown {', '.join(unknown)}" if unknown else "",
                    )
                    if t
                )
            )
        X = X[fitted]
    return validate_data(est, X, dtype=np.float64, reset=False)
