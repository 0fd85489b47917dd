"""``pushforward report MODEL DATA --out report.html``: one self-contained HTML page on a fitted model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    CLIError,
    add_context_arguments,
    check_output_dir,
    is_tabular,
    load_model,
    model_rows,
    positive_int,
)

__all__ = ["add_parser", "run"]

NAME = "report"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand."""
    r = subparsers.add_parser(
        NAME,
        help="self-contained HTML report: curves, marginals, pair plots, heatmap",
        description="Write one HTML file with embedded PNGs: training curves, the log-likelihoods (rows "
        "scoring -inf listed, not dropped), 1-D marginals and 2-D pair plots of data vs samples with columns "
        "whose model density leaves the support flagged, and a density heatmap for 2-D data.",
    )
    r.add_argument("model", help="model file written by 'pushforward fit'")
    r.add_argument("data", help="data file to compare with (e.g. a test set)")
    r.add_argument("--out", default="report.html", help="output HTML (default report.html)")
    r.add_argument("--samples", type=positive_int, default=None, help="number of model samples")
    r.add_argument("--seed", type=int, default=0, help="random seed of the samples")
    r.add_argument(
        "--pairs", default=None, help="comma-separated columns for the pair plots (default: first 6)"
    )
    add_context_arguments(r)
    r.add_argument("--delimiter", default=None, help="column delimiter of text files (default: sniffed)")
    return r


def run(a: argparse.Namespace) -> int:
    """Write the report."""
    from ..report import write_report

    model = load_model(a.model)
    if not is_tabular(model):
        raise CLIError(
            f"{a.model} holds a {type(model).__name__}: report takes a tabular model file ('pushforward fit'); "
            "use 'pushforward sample' and 'score' for posterior and flow files"
        )
    x, context = model_rows(model, a.data, a)
    out = Path(a.out)
    check_output_dir(out)
    pairs = [c.strip() for c in a.pairs.split(",") if c.strip()] if a.pairs else None
    write_report(
        model,
        x,
        out,
        n_samples=a.samples,
        seed=a.seed,
        pairs=pairs,
        context=context,
        data_name=Path(a.data).name,
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0
