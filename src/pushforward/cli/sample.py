"""``pushforward sample MODEL -n N``: draw rows from a model file, in the units of the training data.

For a conditional model ``-n`` rows are drawn for each context row of ``--context FILE``; every output row
starts with ``context_row`` (the 0-based row of the context file) and that row's context values. A posterior
file (:func:`pushforward.io.save` of a :class:`~pushforward.sbi.Posterior`) is a conditional model whose
context is the observation: ``pushforward sample POSTERIOR -n N --context OBS_FILE`` draws ``N`` parameter
vectors ``theta_0, ...`` per observation row (an observation of shape ``x_shape`` flattened into one row).
"""

from __future__ import annotations

import argparse
import sys

from .common import (
    add_context_arguments,
    context_for_rows,
    flow_columns,
    flow_context,
    flow_samples,
    is_tabular,
    load_model,
    n_columns,
    positive_int,
    write_rows,
)

__all__ = ["add_parser", "run"]

NAME = "sample"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sample`` subcommand."""
    s = subparsers.add_parser(
        NAME,
        help="draw rows from a model file",
        description="Draw rows from a fitted model, in the units of the training data. For a conditional "
        "model, -n rows per context row of --context FILE, each labelled with its context row.",
    )
    s.add_argument(
        "model", help="model file written by 'pushforward fit' or pushforward.io.save (a posterior, a flow)"
    )
    s.add_argument("-n", "--num", type=positive_int, required=True, help="rows to draw (per context row)")
    s.add_argument("--out", default=None, help=".csv/.tsv/.npy output (default: CSV on stdout)")
    s.add_argument("--seed", type=int, default=None, help="random seed")
    s.add_argument(
        "--delimiter", default=None, help="column delimiter of the context file (default: sniffed)"
    )
    add_context_arguments(s, sample=True)
    return s


def run(a: argparse.Namespace) -> int:
    """Draw the rows and write them."""

    from .common import CLIError

    model = load_model(a.model)
    if not is_tabular(model):
        return _run_flow(model, a)
    k = model.flow.context_features
    if k == 0 and (a.context or a.context_columns):
        raise CLIError("the model is unconditional: drop --context / --context-columns")
    if k and not a.context:
        names = ",".join(model.context_columns or []) or "A,B"
        raise CLIError(
            f"the model is conditional on {k} context column(s) ({names}): pass --context FILE with one "
            f"row per context (and --context-columns {names} if FILE has other columns too)"
        )
    context = context_for_rows(model, a.context, a.delimiter, None, a.context_columns) if k else None
    x = model.sample(a.num, seed=a.seed, context=context)
    names = list(model.columns) if model.columns else None
    if context is not None:
        context_names = list(model.context_columns or [f"context_{j}" for j in range(k)])
        names = [*context_names, *(names or [f"x{j}" for j in range(n_columns(model))])]
    return _write(a, x, names, context)


def _write(a: argparse.Namespace, x, names: list[str] | None, context) -> int:
    """Write the drawn rows; with a context, ``a.num`` rows per context row, each prefixed by ``context_row``
    and that row's context values (``names`` then already lists the context columns first)."""
    import numpy as np

    if context is not None:
        row = np.repeat(np.arange(context.shape[0], dtype=np.float64), a.num)[:, None]
        x = np.hstack([row, np.repeat(context, a.num, axis=0), x])
        names = ["context_row", *names]
    write_rows(a.out, x, names)
    per = f" for each of {context.shape[0]} context rows ({x.shape[0]} rows)" if context is not None else ""
    if a.out:
        print(f"wrote {a.num} samples{per} to {a.out}", file=sys.stderr)
    elif per:
        print(f"{a.num} samples{per}", file=sys.stderr)
    return 0


def _run_flow(model, a: argparse.Namespace) -> int:
    """``sample`` for a flow file (a posterior, a preset, a hand-built flow): the same rows and labels."""

    from .common import CLIError

    conditional = model.context_shape is not None
    if not conditional and (a.context or a.context_columns):
        raise CLIError("the model is unconditional: drop --context / --context-columns")
    if conditional and not a.context:
        raise CLIError(
            f"the model is conditional on one observation of {model.context_features} values per row (shape "
            f"{model.context_shape}): pass --context FILE with one observation per row"
        )
    context = flow_context(model, a.context, a.delimiter, None, a.context_columns) if conditional else None
    x = flow_samples(model, a.num, a.seed, context)
    names = flow_columns(model)
    if context is not None:
        names = [*[f"context_{j}" for j in range(context.shape[1])], *names]
    return _write(a, x, names, context)
