"""Self-contained HTML reports of a fitted model: training curves with the restored best step, every
column's marginal (data histogram with the model's density curve), a per-column fit table, the
distribution of log-likelihoods (data vs samples vs held-out), pair plots and a density heatmap.

All figures are drawn with matplotlib's Agg backend and embedded as base64 PNGs, so the report is a single
file that opens anywhere without network access.

Example:
    >>> import numpy as np
    >>> from pushforward.tabular import FlowModel
    >>> x = np.random.default_rng(0).normal(size=(200, 2))
    >>> model = FlowModel.train(x, "realnvp", options={"layers": 2, "hidden": [8]}, steps=5, progress=False)
    >>> write_report(model, x, "report.html").name
    'report.html'
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .checks import column_bounds, gaussian_kde, ks_distance, nonfinite_rows, score_rows, support_flags

__all__ = ["density_grid", "figure_png", "standalone_subplots", "write_report"]

MARGINALS_PER_FIGURE = 16
MAX_PAIRS = 6


def standalone_subplots(*args, figsize: tuple[float, float], **kwargs):
    """``(figure, axes)`` of a standalone :class:`matplotlib.figure.Figure`: no pyplot, so the user's
    backend and open figures are left alone."""
    from matplotlib.figure import Figure

    layout = kwargs.pop("layout", None)
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*args, **kwargs)


def plain_label(name: str) -> str:
    r"""A column name as literal plot text: ``$`` escaped (no mathtext), line breaks as spaces.

    Example:
        >>> print(plain_label("cost in $"))
        cost in \$
    """
    return " ".join(str(name).splitlines()).replace("$", r"\$")


def figure_png(fig) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _limits(*arrays: np.ndarray, pad: float = 0.05) -> tuple[float, float]:
    data = np.concatenate([np.asarray(a).ravel() for a in arrays])
    data = data[np.isfinite(data)]
    lo, hi = np.quantile(data, [0.002, 0.998]) if data.size else (-1.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    d = (hi - lo) * pad
    return float(lo - d), float(hi + d)


def density_grid(
    log_prob: Callable[[np.ndarray], np.ndarray],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    n: int = 160,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate a 2-D log-density on an ``n x n`` grid; returns ``(xs, ys, density)`` (density, not log)."""
    xs = np.linspace(*xlim, n)
    ys = np.linspace(*ylim, n)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    lp = np.asarray(log_prob(pts), dtype=np.float64).reshape(n, n)
    lp = np.where(np.isfinite(lp), lp, -np.inf)
    return xs, ys, np.exp(lp - (lp.max() if np.isfinite(lp.max()) else 0.0))


def _img(png: bytes, alt: str, max_width: int | None = None) -> str:
    style = f' style="max-width:{max_width}px"' if max_width else ""
    return (
        f'<img alt="{html.escape(alt)}"{style} src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'
    )


def _curve_units(model) -> str:
    """The units of the stored training curves: the data's, when the model's preprocessing is part of the
    flow it trained (a model with ``preprocessing`` layers), else the flow's standardised space."""
    return "original units" if hasattr(model, "preprocessing") else "flow space"


def _curves(history: dict | None, units: str = "flow space"):
    fig, ax = standalone_subplots(figsize=(11, 3.6), layout="constrained")
    steps = (history or {}).get("steps") or []
    tr = [math.nan if v is None else v for v in (history or {}).get("train_loss") or []]
    va = [math.nan if v is None else v for v in (history or {}).get("val_loss") or []]
    if steps and tr:
        ax.plot(steps[: len(tr)], tr, label="train")
    if steps and va:
        ax.plot(steps[: len(va)], va, label="validation")
    best = (history or {}).get("best_step", -1) or -1
    if steps and best > 0:
        ax.axvline(best, color="k", ls="--", lw=1, label=f"restored best step {best}")
    ax.set_xlabel("step")
    ax.set_ylabel(f"NLL per row (nats, {units})")
    ax.set_title("Training curves")
    if steps:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no training history stored", ha="center", transform=ax.transAxes)
    return fig


def _bins(col: np.ndarray, lim: tuple[float, float]) -> np.ndarray:
    """Histogram edges: one per level for few distinct values, else Freedman–Diaconis (10 to 40 bins)."""
    levels = np.unique(col)
    if levels.size <= 20:
        step = np.diff(levels).min() if levels.size > 1 else 1.0
        return np.arange(levels[0] - step / 2, levels[-1] + step, step)
    iqr = np.subtract(*np.quantile(col, [0.75, 0.25]))
    width = 2 * iqr / max(col.size, 1) ** (1 / 3) if iqr > 0 else (lim[1] - lim[0]) / 20
    return np.linspace(*lim, int(np.clip((lim[1] - lim[0]) / width, 10, 40)) + 1)


def _model_curve(s: np.ndarray, lim: tuple[float, float], bounds: tuple[float, float]):
    """The model's marginal density on a grid inside ``bounds``, smoothed from its samples."""
    s = s[np.isfinite(s)]
    if np.unique(s).size < 3:
        return None
    grid = np.linspace(max(lim[0], bounds[0]), min(lim[1], bounds[1]), 200)
    return grid, gaussian_kde(s, grid)


def _readable_ticks(ax, which: str = "both") -> None:
    """At most 4 ticks per axis, labelled with 3 significant digits, so that labels never overlap."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axes = (ax.xaxis, ax.yaxis) if which == "both" else ((ax.xaxis,) if which == "x" else (ax.yaxis,))
    for axis in axes:
        axis.set_major_locator(MaxNLocator(nbins=4))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.tick_params(labelsize=7)


def _marginals(
    x: np.ndarray, s: np.ndarray, names: list[str], bounds: list, flags: list[str], first: int = 0
):
    """Marginals of columns ``first .. first + MARGINALS_PER_FIGURE - 1``; flagged columns are titled in red
    and their bounds drawn as dashed red lines."""
    idx = list(range(first, min(x.shape[1], first + MARGINALS_PER_FIGURE)))
    cols = min(len(idx), 4)
    rows = math.ceil(len(idx) / cols)
    fig, axes = standalone_subplots(rows, cols, figsize=(11, 2.6 * rows), squeeze=False, layout="constrained")
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        if k >= len(idx):
            ax.axis("off")
            continue
        j = idx[k]
        lim = _limits(x[:, j], s[:, j])
        edges = _bins(x[:, j], lim)
        discrete = np.unique(x[:, j]).size <= 20
        ax.hist(x[:, j], bins=edges, density=True, alpha=0.45, color="C0", label="data")
        if discrete:
            ax.hist(s[:, j], bins=edges, density=True, histtype="step", lw=1.5, color="C1", label="model")
        else:
            inside = (-math.inf, math.inf) if flags[j] else bounds[j][:2]  # a leak is drawn, not hidden
            curve = _model_curve(s[:, j], lim, inside)
            if curve is not None:
                ax.plot(*curve, color="C1", lw=1.5, label="model")
        title = names[j] if len(names[j]) <= 30 else names[j][:29] + "…"
        if flags[j]:
            for bound in bounds[j][:2]:
                if math.isfinite(bound) and lim[0] <= bound <= lim[1]:
                    ax.axvline(bound, color="red", ls="--", lw=1)
            title += " — leaves the support"
        ax.set_title(title, fontsize=9, pad=4, color="red" if flags[j] else "black")
        _readable_ticks(ax)
        if k == 0:
            ax.legend(fontsize=7)
    return fig


def _column_table(
    x: np.ndarray, s: np.ndarray, names: list[str], support: list | None, flags: list[str]
) -> str:
    head = (
        "<table class='cols'><tr><th>column</th><th>support</th><th>data mean</th><th>model mean</th>"
        "<th>data sd</th><th>model sd</th><th>KS distance</th><th>model outside the support</th></tr>"
    )
    rows = []
    for j, name in enumerate(names):
        kind = support[j].describe() if support else "real"
        ks = ks_distance(x[:, j], s[:, j])
        cells = [
            html.escape(name),
            html.escape(kind),
            f"{x[:, j].mean():.4g}",
            f"{s[:, j].mean():.4g}",
            f"{x[:, j].std():.4g}",
            f"{s[:, j].std():.4g}",
            f"<span class='{'bad' if ks > 0.15 else 'ok'}'>{ks:.3f}</span>",
            f"<span class='bad'>{html.escape(flags[j])}</span>" if flags[j] else "<span class='ok'>no</span>",
        ]
        rows.append(f"<tr id='col-{j}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return head + "".join(rows) + "</table>"


def _loglik_hist(scores: np.ndarray, sample_scores: np.ndarray, validation: dict | None):
    """Histograms of log-likelihoods; rows scoring ``-inf`` are drawn as a hatched bar left of the axis
    break, labelled with their count, never dropped."""
    fig, ax = standalone_subplots(figsize=(11, 3.6), layout="constrained")
    parts = [(scores, "data (this file)", "C0"), (sample_scores, "model samples", "C1")]
    if validation and validation.get("quantiles"):
        parts.append(
            (np.asarray(validation["quantiles"], dtype=float), f"{validation.get('source')} rows", "C2")
        )
    finite = [p[0][np.isfinite(p[0])] for p in parts]
    lim = _limits(*finite)
    edges = np.linspace(*lim, 40)
    width = edges[1] - edges[0]
    for (values, label, color), v in zip(parts, finite, strict=True):
        n_inf = int(np.sum(~np.isfinite(values)))
        ax.hist(np.clip(v, *lim), bins=edges, density=True, histtype="step", lw=1.8, color=color, label=label)
        if n_inf:
            height = n_inf / values.size / width  # the same density scale as the finite rows
            left = lim[0] - 3 * width
            ax.bar(left, height, width=2 * width, color="none", edgecolor=color, hatch="//", align="edge")
            ax.annotate(
                f"-inf: {n_inf} rows",
                (left + width, height),
                ha="center",
                va="bottom",
                fontsize=8,
                color=color,
            )
    ax.set_xlabel("log-likelihood per row (nats, original units)")
    ax.set_ylabel("density")
    _readable_ticks(ax)
    ax.legend(fontsize=8)
    return fig


def _pairs(x: np.ndarray, s: np.ndarray, names: list[str]):
    """Pair plots, data below the diagonal and samples above; the outer axes carry ticks and column names."""
    d = x.shape[1]
    fig, axes = standalone_subplots(
        d, d, figsize=(2.2 * d + 1, 2.2 * d + 1), squeeze=False, layout="constrained"
    )
    for i in range(d):
        for j in range(d):
            ax = axes[i][j]
            ax.set_xlim(*_limits(x[:, j], s[:, j]))
            if i == j:
                ax.set_yticks([])
                ax.hist(x[:, j], bins=30, density=True, color="C0", alpha=0.45)
                ax.hist(s[:, j], bins=30, density=True, color="C1", histtype="step")
            else:
                src = x if i > j else s  # data below the diagonal, samples above
                ax.scatter(src[:, j], src[:, i], s=1, alpha=0.3, color="C0" if i > j else "C1")
                ax.set_ylim(*_limits(x[:, i], s[:, i]))
            _readable_ticks(ax)
            if i == d - 1:
                ax.set_xlabel(names[j], fontsize=8)
            else:
                ax.tick_params(labelbottom=False)
            if j == 0 and i != 0:
                ax.set_ylabel(names[i], fontsize=8)
            elif j != 0 or i == 0:
                ax.tick_params(labelleft=False)
    return fig


def _heatmap(model, x: np.ndarray, names: list[str]):
    xlim, ylim = _limits(x[:, 0]), _limits(x[:, 1])
    xs, ys, dens = density_grid(model.log_prob, xlim, ylim)
    fig, axes = standalone_subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    axes[0].scatter(x[:, 0], x[:, 1], s=1, alpha=0.3)
    axes[0].set_title("data")
    axes[1].pcolormesh(xs, ys, dens, shading="auto", cmap="viridis")
    axes[1].set_title("learned density")
    for ax in axes:
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    return fig


def write_report(
    model,
    data: np.ndarray,
    out: str | Path,
    *,
    n_samples: int | None = None,
    seed: int = 0,
    pairs: list[str] | None = None,
    context: np.ndarray | None = None,
    data_name: str | None = None,
) -> Path:
    """Write a self-contained HTML report on ``model`` (a :class:`~pushforward.tabular.FlowModel`) and ``data``.

    The page names the data file, uses the full window width, lists every row that scores ``-inf`` (with the
    columns outside the model's support) instead of dropping it, and gives every column its marginal plot
    (data histogram, model density curve) and a row in the per-column table (support, means, standard
    deviations, two-sample Kolmogorov–Smirnov distance, and a flag when the model's samples leave the column's
    support: see :func:`column_bounds` and :func:`support_flags`), linked from a column index.

    Args:
        model: The fitted model.
        data: Rows to compare with (e.g. the test set), shape ``(N, features)``.
        out: Output ``.html`` path.
        n_samples: Number of model samples to draw (default ``min(N, 5000)``, at least 1000); a conditional
            model draws one sample per ``context`` row instead.
        seed: Seeds the samples.
        pairs: Column names for the pair plots (default: the first six).
        context: The context row of each data row, for a conditional model.
        data_name: The name of the data file, shown in the title.

    Example:
        >>> import numpy as np
        >>> from pushforward.tabular import FlowModel
        >>> x = np.random.default_rng(0).normal(size=(200, 2))
        >>> model = FlowModel.train(x, "realnvp", options={"layers": 2, "hidden": [8]}, steps=5, progress=False)
        >>> write_report(model, x, "report.html", pairs=["x0", "x1"], data_name="test.csv").suffix
        '.html'
    """
    import warnings

    from ..train.checkpoint import atomic_write_bytes

    x = model.check_data(data)
    names = [plain_label(n) for n in model.columns] if model.columns else [f"x{j}" for j in range(x.shape[1])]
    pair_idx = list(range(min(x.shape[1], MAX_PAIRS)))
    if pairs:
        unknown = [p for p in pairs if p not in names]
        if unknown:
            raise ValueError(f"unknown pair columns {unknown}; columns: {', '.join(names)}")
        pair_idx = [names.index(p) for p in pairs]
    scores, others = score_rows(model, x, context)  # non-finite rows are listed in the report
    title = f"pushforward report: {model.preset}" + (f" on {data_name}" if data_name else "")
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em 2em}td,th{padding:2px 10px;text-align:left}"
        "img{width:100%;height:auto}table.cols td{font-variant-numeric:tabular-nums}"
        ".bad{color:#b00;font-weight:bold}.ok{color:#070}nav a{margin-right:0.8em}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _summary_table(model, x, scores, data_name),
        "<h2>Training curves</h2>"
        + _img(figure_png(_curves(model.history, _curve_units(model))), "training curves"),
    ]
    try:
        if context is not None:
            samples = model.sample(1, seed=seed, context=context)
        else:
            samples = model.sample(int(n_samples or max(1000, min(x.shape[0], 5000))), seed=seed)
    except ValueError as e:
        samples = None
        parts.append(f"<p>No samples: {html.escape(str(e))}</p>")
    if samples is not None:
        sample_scores, more = score_rows(model, samples, context)
        others += more
        parts.append(
            "<h2>Log-likelihoods</h2>"
            + _img(figure_png(_loglik_hist(scores, sample_scores, model.validation)), "log-likelihoods")
        )
    parts.append(_nonfinite_html(nonfinite_rows(model, x, scores)))
    if samples is not None:
        parts += _column_parts(model, x, samples, names, pair_idx)
    if x.shape[1] == 2 and context is None:
        parts.append("<h2>Density</h2>" + _img(figure_png(_heatmap(model, x, names)), "density heatmap"))
    parts.append("</body></html>")
    for w in others:
        warnings.warn(w.message, stacklevel=2)
    p = Path(out)
    atomic_write_bytes(p, "\n".join(parts).encode("utf-8"))
    return p


def _summary_table(model, x: np.ndarray, scores: np.ndarray, data_name: str | None) -> str:
    from .._version import __version__

    finite = np.isfinite(scores)
    mean = f"{float(np.mean(scores)):.4f}"
    if not finite.all():
        kept = scores[finite]
        mean += f" ({int((~finite).sum())} rows -inf, listed below; mean of the {kept.size} finite rows "
        mean += f"{float(kept.mean()):.4f})" if kept.size else "undefined)"
    hist = model.history or {}
    rows = [
        ("data file", data_name or "(an array)"),
        ("preset", model.preset),
        ("options", ", ".join(f"{k}={v}" for k, v in model.options.items()) or "defaults"),
        ("features", str(x.shape[1])),
        ("parameters", f"{sum(p.numel() for p in model.flow.parameters()):,}"),
        ("rows scored", str(x.shape[0])),
        ("mean log-likelihood of these rows (nats per row, original units)", mean),
    ]
    if model.validation:
        rows.append(
            (
                f"mean log-likelihood of the {model.validation.get('source')} rows",
                f"{model.validation['mean']:.4f}",
            )
        )
    if hist.get("best_step", -1) and hist.get("best_step", -1) > 0:
        rows.append(("restored best step", str(hist["best_step"])))
    if hist.get("skipped_batches"):
        rows.append(("skipped non-finite batches", str(hist["skipped_batches"])))
    if hist.get("diagnostics"):
        dg = hist["diagnostics"]
        rows.append(
            (
                "invertibility",
                f"{'OK' if dg.get('ok') else 'PROBLEM'}: max reconstruction error "
                f"{dg.get('max_reconstruction_error')}, max ladj error {dg.get('max_ladj_error')}",
            )
        )
    rows.append(("pushforward version", __version__))
    return (
        "<table>"
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        + "</table>"
    )


#: At most this many ``-inf`` rows are listed in the report.
MAX_LISTED_ROWS = 200


def _nonfinite_html(rows: list[dict]) -> str:
    if not rows:
        return "<p class='ok' id='nonfinite'>Every row has a finite log-likelihood.</p>"
    items = []
    for r in rows[:MAX_LISTED_ROWS]:
        cols = "; ".join(
            f"{html.escape(plain_label(c['column']))} = {c['value']:.6g} outside {html.escape(c['support'])}"
            for c in r["columns"]
        )
        why = (
            cols
            or "every value inside the support: the row lies far outside the data the model was fitted on"
        )
        items.append(f"<tr><td>{r['row']}</td><td>{why}</td></tr>")
    more = f"<p>... and {len(rows) - MAX_LISTED_ROWS} more.</p>" if len(rows) > MAX_LISTED_ROWS else ""
    return (
        f"<h2 id='nonfinite' class='bad'>{len(rows)} rows score -inf</h2>"
        "<table><tr><th>row (from 0)</th><th>why</th></tr>" + "".join(items) + "</table>" + more
    )


def _column_parts(
    model, x: np.ndarray, samples: np.ndarray, names: list[str], pair_idx: list[int]
) -> list[str]:
    """The column index and table, the marginals (flagged columns first in a list) and the pair plots."""
    support = getattr(model, "support", None)
    bounds = column_bounds(x, support)
    flags = support_flags(samples, bounds)
    parts = ["<h2 id='columns'>Columns</h2><nav>"]
    parts += [f"<a href='#col-{j}'>{html.escape(n)}</a>" for j, n in enumerate(names)]
    parts.append("</nav>")
    flagged = [
        f"<li><a href='#col-{j}'>{html.escape(names[j])}</a>: {html.escape(f)}</li>"
        for j, f in enumerate(flags)
        if f
    ]
    if flagged:
        parts.append(
            "<p class='bad'>Columns where the model's density leaves the support:</p><ul>"
            + "".join(flagged)
            + "</ul>"
        )
    parts.append(_column_table(x, samples, names, support, flags))
    parts.append("<h2>Marginals: data histogram and model density</h2>")
    for first in range(0, x.shape[1], MARGINALS_PER_FIGURE):
        last = min(x.shape[1], first + MARGINALS_PER_FIGURE)
        fig = _marginals(x, samples, names, bounds, flags, first)
        parts.append(_img(figure_png(fig), f"marginals {first + 1}-{last}"))
    if len(pair_idx) >= 2:
        fig = _pairs(x[:, pair_idx], samples[:, pair_idx], [names[j] for j in pair_idx])
        parts.append(
            "<h2>Pair plots: data (lower, blue) vs samples (upper, orange)</h2>"
            + _img(figure_png(fig), "pair plots", max_width=240 * len(pair_idx) + 120)
        )
        if x.shape[1] > len(pair_idx):
            parts.append("<p>Choose other pair columns with <code>--pairs a,b,c</code>.</p>")
    return parts
