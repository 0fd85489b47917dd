"""``pushforward score MODEL DATA``: the log-likelihood of every row, in nats, in the units of the data.

Rows that score ``-inf`` are named on stderr with the columns that lie outside the model's support (or with
the reason when none does); the mean over the finite rows is printed next to the overall mean. A posterior
file scores parameter rows given observations: ``pushforward score POSTERIOR THETA_FILE --context OBS_FILE``
(one observation per row) or ``--context-columns`` naming the observation columns of ``THETA_FILE``, the
convention of conditional tabular models.
"""

from __future__ import annotations

import argparse
import sys

from .common import (
    CLIError,
    add_context_arguments,
    flow_rows,
    flow_scores,
    is_tabular,
    load_model,
    model_rows,
    quantile,
    scored,
    write_rows,
)

__all__ = ["add_parser", "run"]

NAME = "score"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``score`` subcommand."""
    c = subparsers.add_parser(
        NAME,
        help="per-row log-likelihood of a data file, optionally flagging anomalies",
        description="Print (or write) the log-likelihood of every row, in nats, in the units of the data. "
        "Rows scoring -inf are named, with the columns outside the model's support. "
        "With --anomalies Q, rows below the Q-quantile of the validation log-likelihoods stored in the model "
        "are flagged (about a fraction Q of normal rows will be). With --typicality, rows whose "
        "log-likelihood is atypically high or low (Nalisnick et al. 2019) are flagged too.",
    )
    c.add_argument(
        "model", help="model file written by 'pushforward fit' or pushforward.io.save (a posterior, a flow)"
    )
    c.add_argument("data", help="data file (.csv/.tsv/.txt/.npy) with the training columns")
    c.add_argument(
        "--anomalies",
        type=quantile,
        default=None,
        metavar="Q",
        help="flag rows below the Q-quantile of validation scores, e.g. 0.01",
    )
    c.add_argument("--typicality", action="store_true", help="add a per-row two-sided typicality flag")
    add_context_arguments(c)
    c.add_argument("--out", default=None, help="output .csv/.npy (default: CSV on stdout)")
    c.add_argument("--delimiter", default=None, help="column delimiter of text files (default: sniffed)")
    return c


def run(a: argparse.Namespace) -> int:
    """Score the rows, write the table, and say on stderr what the scores mean."""
    import numpy as np

    from ..report.checks import nonfinite_rows

    model = load_model(a.model)
    if not is_tabular(model):
        return _run_flow(model, a)
    x, context = model_rows(model, a.data, a)
    scores = scored(model, x, context)  # non-finite rows are explained below, row by row
    cols, names = [scores], ["log_likelihood"]
    if a.anomalies is not None:
        threshold = model.validation_quantile(a.anomalies)
        flags = ~np.isfinite(scores) | (scores < threshold)
        cols.append(flags.astype(np.float64))
        names.append("anomaly")
        print(
            f"threshold {threshold:.4f} ({a.anomalies:g}-quantile of {model.validation.get('source')} "
            f"scores{_threshold_uncertainty(model, a.anomalies)}): {int(flags.sum())} of {len(flags)} rows "
            "flagged",
            file=sys.stderr,
        )
    if a.typicality:
        from ..analysis.anomaly import TypicalityTest

        test = TypicalityTest(batch_size=1).fit(np.asarray(model.validation["quantiles"]))
        flags = test.test_rows(scores)
        cols.append(flags.astype(np.float64))
        names.append("atypical")
        print(
            f"typicality: entropy estimate {test.entropy_:.4f} nats, epsilon {test.epsilon_:.4f}: "
            f"{int(flags.sum())} rows atypical",
            file=sys.stderr,
        )
    print(_mean_line(scores), file=sys.stderr)
    for line in describe_nonfinite(nonfinite_rows(model, x, scores), a.data):
        print(line, file=sys.stderr)
    write_rows(a.out, np.stack(cols, 1), names)
    return 0


def _run_flow(model, a: argparse.Namespace) -> int:
    """``score`` for a flow file (a posterior, a preset, a hand-built flow)."""
    if a.anomalies is not None or a.typicality:
        raise CLIError(
            "--anomalies and --typicality need the validation scores a tabular model file stores ('pushforward "
            "fit'); this file holds a flow without them"
        )
    x, context = flow_rows(model, a.data, a)
    scores, bad = flow_scores(model, x, context)
    print(_mean_line(scores), file=sys.stderr)
    for line in describe_nonfinite(bad, a.data):
        print(line, file=sys.stderr)
    write_rows(a.out, scores[:, None], ["log_likelihood"])
    return 0


def _mean_line(scores) -> str:
    import numpy as np

    finite = np.isfinite(scores)
    text = f"mean log-likelihood {float(np.mean(scores)):.4f} nats over {len(scores)} rows"
    if not finite.all():
        kept = scores[finite]
        mean = f"{float(kept.mean()):.4f}" if kept.size else "undefined"
        text += f" ({int((~finite).sum())} rows -inf; mean of the {kept.size} finite rows {mean})"
    return text


#: At most this many -inf rows are named one by one.
MAX_LISTED = 10


def describe_nonfinite(rows: list[dict], path: str) -> list[str]:
    """Lines naming each ``-inf`` row (0-based) and why: the columns outside the support, or none."""
    if not rows:
        return []
    out = [f"warning: {len(rows)} rows of {path} scored -inf (rows numbered from 0):"]
    for r in rows[:MAX_LISTED]:
        if r["columns"]:
            why = "; ".join(
                f"{c['column']} = {c['value']:.6g} is outside its support {c['support']}"
                for c in r["columns"]
            )
        else:
            why = (
                "no column is outside the support: the row lies far outside the data the model was fitted on"
            )
        out.append(f"  row {r['row']}: {why}")
    if len(rows) > MAX_LISTED:
        out.append(f"  ... and {len(rows) - MAX_LISTED} more (write the scores with --out to find them all)")
    return out


def _threshold_uncertainty(model, q: float) -> str:
    """``, 90% interval [lo, hi] over N rows`` for a stored validation quantile; warns when N is too small."""
    from ..analysis.anomaly import quantile_levels_interval, threshold_warning

    n = int((model.validation or {}).get("n", 0))
    if n < 2:
        return ""
    lo, hi = (model.validation_quantile(level) for level in quantile_levels_interval(n, q))
    message = threshold_warning(n, q)
    if message:
        print(f"warning: {message}", file=sys.stderr)
    return f", 90% interval [{lo:.4f}, {hi:.4f}] from {n} rows"
