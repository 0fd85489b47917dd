"""Self-contained HTML reports of a fitted model: training curves, marginals, pair plots, density heatmap.

All figures are drawn with matplotlib's Agg backend and embedded as base64 PNGs, so the report is a single
file that opens anywhere without network access.

Example:
    >>> from pushforward.io import FlowModel
    >>> write_report(FlowModel.load("model.safetensors"), x, "report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["density_grid", "figure_png", "write_report"]

MAX_MARGINALS = 12
MAX_PAIRS = 5


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


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
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
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


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'


def _curves(history: dict | None):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = (history or {}).get("steps") or []
    tr = [math.nan if v is None else v for v in (history or {}).get("train_nll") or []]
    va = [math.nan if v is None else v for v in (history or {}).get("val_nll") or []]
    if steps and tr:
        ax.plot(steps[: len(tr)], tr, label="train")
    if steps and va:
        ax.plot(steps[: len(va)], va, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("NLL (nats, standardised data)")
    ax.set_title("Training curves")
    if steps:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no training history stored", ha="center", transform=ax.transAxes)
    return fig


def _marginals(x: np.ndarray, s: np.ndarray, names: list[str]):
    plt = _plt()
    d = min(x.shape[1], MAX_MARGINALS)
    cols = min(d, 4)
    rows = math.ceil(d / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False)
    for j in range(rows * cols):
        ax = axes[j // cols][j % cols]
        if j >= d:
            ax.axis("off")
            continue
        lim = _limits(x[:, j], s[:, j])
        bins = np.linspace(*lim, 50)
        ax.hist(x[:, j], bins=bins, density=True, alpha=0.5, label="data")
        ax.hist(s[:, j], bins=bins, density=True, alpha=0.5, label="samples")
        ax.set_title(names[j], fontsize=9)
        if j == 0:
            ax.legend(fontsize=7)
    fig.suptitle("1-D marginals: data vs model samples")
    return fig


def _pairs(x: np.ndarray, s: np.ndarray, names: list[str]):
    plt = _plt()
    d = min(x.shape[1], MAX_PAIRS)
    fig, axes = plt.subplots(d, d, figsize=(2.2 * d, 2.2 * d), squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == j:
                ax.text(0.5, 0.5, names[i], ha="center", va="center", transform=ax.transAxes, fontsize=8)
                continue
            src = x if i > j else s  # data below the diagonal, samples above
            ax.scatter(src[:, j], src[:, i], s=1, alpha=0.3, color="C0" if i > j else "C1")
            ax.set_xlim(*_limits(x[:, j], s[:, j]))
            ax.set_ylim(*_limits(x[:, i], s[:, i]))
    fig.suptitle("Pair plots: data (lower, blue) vs samples (upper, orange)")
    return fig


def _heatmap(model, x: np.ndarray, names: list[str]):
    plt = _plt()
    xlim, ylim = _limits(x[:, 0]), _limits(x[:, 1])
    xs, ys, dens = density_grid(model.log_prob, xlim, ylim)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
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
    model, data: np.ndarray, out: str | Path, *, n_samples: int | None = None, seed: int = 0
) -> Path:
    """Write a self-contained HTML report on ``model`` (a :class:`~pushforward.io.FlowModel`) and ``data``.

    Args:
        model: The fitted model.
        data: Rows to compare with (e.g. the test set), shape ``(N, features)``.
        out: Output ``.html`` path.
        n_samples: Number of model samples to draw (default ``min(N, 5000)``).
        seed: Seeds the samples.
    """
    from . import __version__
    from .train.checkpoint import atomic_write_bytes

    x = model.check_data(data)
    names = [plain_label(n) for n in model.columns] if model.columns else [f"x{j}" for j in range(x.shape[1])]
    scores = model.log_prob(x)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>pushforward report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:2px 10px;"
        "text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>pushforward report: {html.escape(model.preset)}</h1>",
        "<table>",
    ]
    rows = [
        ("preset", model.preset),
        ("options", ", ".join(f"{k}={v}" for k, v in model.options.items()) or "defaults"),
        ("features", str(x.shape[1])),
        ("parameters", f"{sum(p.numel() for p in model.flow.parameters()):,}"),
        ("rows scored", str(x.shape[0])),
        ("mean log-likelihood (nats, original units)", f"{float(np.mean(scores)):.4f}"),
        ("mean log-likelihood per dimension", f"{float(np.mean(scores)) / x.shape[1]:.4f}"),
    ]
    if model.validation:
        rows.append(("validation mean log-likelihood", f"{model.validation['mean']:.4f}"))
    hist = model.history or {}
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
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows]
    parts.append("</table>")
    parts.append("<h2>Training curves</h2>" + _img(figure_png(_curves(model.history)), "training curves"))
    try:
        samples = model.sample(int(n_samples or min(x.shape[0], 5000)), seed=seed)
    except ValueError as e:
        samples = None
        parts.append(f"<p>No samples: {html.escape(str(e))}</p>")
    if samples is not None:
        parts.append("<h2>Marginals</h2>" + _img(figure_png(_marginals(x, samples, names)), "marginals"))
        if x.shape[1] >= 2:
            parts.append("<h2>Pair plots</h2>" + _img(figure_png(_pairs(x, samples, names)), "pair plots"))
    if x.shape[1] == 2:
        parts.append("<h2>Density</h2>" + _img(figure_png(_heatmap(model, x, names)), "density heatmap"))
    if x.shape[1] > MAX_MARGINALS:
        parts.append(f"<p>Showing the first {MAX_MARGINALS} marginals and {MAX_PAIRS} pair columns.</p>")
    parts.append("</body></html>")
    p = Path(out)
    atomic_write_bytes(p, "\n".join(parts).encode("utf-8"))
    return p
