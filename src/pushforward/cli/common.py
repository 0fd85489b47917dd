"""What every subcommand of the ``pushforward`` command shares: the one-line-error parser, argument types,
reading data and model files, matching columns by name, the context of conditional models, writing rows.

Nothing here imports torch at module level: ``pushforward --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "PROG",
    "CLIError",
    "Parser",
    "UsageError",
    "add_context_arguments",
    "context_for_rows",
    "flow_columns",
    "flow_context",
    "flow_rows",
    "flow_samples",
    "flow_scores",
    "ints",
    "is_tabular",
    "load_data",
    "load_model",
    "model_rows",
    "n_columns",
    "option",
    "scored",
    "split_columns",
    "write_rows",
]

PROG = "pushforward"


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


class UsageError(Exception):
    """A command-line usage error: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that reports errors as one line and names the valid options of an unknown one.

    ``build``, when given, adds the parser's arguments the first time they are needed (parsing, help, the
    list of valid options), so that a subcommand whose options need heavy imports (``fit`` reads its training
    options from :class:`pushforward.train.config.TrainConfig`) costs nothing until it is used.
    """

    def __init__(self, *args, build: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._build = build

    def ensure_built(self) -> Parser:
        """Add the deferred arguments now (once); returns ``self``."""
        build, self._build = self._build, None
        if build is not None:
            build(self)
        return self

    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")

    def format_help(self) -> str:
        self.ensure_built()
        return super().format_help()

    def format_usage(self) -> str:
        self.ensure_built()
        return super().format_usage()

    def parse_known_args(self, args=None, namespace=None):
        self.ensure_built()
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):  # unknown options: name the valid ones
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self.subcommand(getattr(ns, "command", None)) or self
            self.error(f"unrecognized arguments: {' '.join(extras)}; valid options: {valid_options(parser)}")
        return ns

    def subcommand(self, command: str | None) -> argparse.ArgumentParser | None:
        """The parser of subcommand ``command`` (``None`` if there is none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and command in action.choices:
                return action.choices[command]
        return None


def valid_options(parser: argparse.ArgumentParser) -> str:
    """The long option strings ``parser`` accepts, sorted and comma-separated."""
    if isinstance(parser, Parser):
        parser.ensure_built()
    names = [o for act in parser._actions for o in act.option_strings if o.startswith("--")]
    return ", ".join(sorted(set(names)))


# ---------------------------------------------------------------------------------------------- argument types
def ints(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive integers such as ``64,64``."""
    try:
        vals = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum`` (``what`` names the range in the error)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {v}")
        return v

    return parse


positive_int = int_at_least(1, "positive")


def float_where(accept: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse type: a number for which ``accept`` holds (``expected`` describes it in the error)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not accept(v):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return v

    return parse


positive_float = float_where(lambda v: v > 0 and v != float("inf"), "a positive finite number")
fraction = float_where(lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
quantile = float_where(lambda v: 0.0 < v < 1.0, "a quantile in (0, 1)")


def option(text: str) -> tuple[str, object]:
    """An argparse type: ``KEY=VALUE`` with the value parsed as JSON (a bare word stays a string)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip().replace("-", "_")
    if not key.isidentifier():
        raise argparse.ArgumentTypeError(f"bad option name {key!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as activation=tanh
    return key, value


def add_context_arguments(parser: argparse.ArgumentParser, *, sample: bool = False) -> None:
    """``--context FILE`` and ``--context-columns A,B`` of the commands that use a fitted model."""
    if sample:
        parser.add_argument(
            "--context",
            default=None,
            metavar="FILE",
            help="conditional models: a file of context rows; -n rows are drawn for each, labelled with the "
            "0-based context_row and the context values",
        )
        parser.add_argument(
            "--context-columns",
            default=None,
            metavar="A,B",
            help="the columns of --context FILE that hold the context (header names or 0-based indices; "
            "default: the model's context columns by name, else every column)",
        )
        return
    parser.add_argument(
        "--context-columns",
        default=None,
        metavar="A,B",
        help="conditional models: these columns of the data file are the context (header names or 0-based "
        "indices), the others the modelled columns",
    )
    parser.add_argument(
        "--context",
        default=None,
        metavar="FILE",
        help="conditional models: the context rows in a separate file instead, one per data row",
    )


# ---------------------------------------------------------------------------------------------- files
def load_data(path: str, delimiter: str | None = None):
    """``(rows, column names or None)`` of a ``.csv/.tsv/.txt/.npy`` file."""
    from ..data.csv import load_table

    return load_table(path, delimiter=delimiter)


def load_model(path: str):
    """The model in a model file, by what the file holds: a :class:`~pushforward.tabular.FlowModel` for a
    tabular model file (``pushforward fit``), a :class:`~pushforward.tabular.FlowModelEnsemble` for a saved
    ``FlowDensity(ensemble=K)``, else the flow :func:`pushforward.io.load` rebuilds (a
    :class:`~pushforward.sbi.Posterior`, a preset, a hand-built :class:`~pushforward.Flow`)."""
    from ..flows.core import Flow
    from ..io import load_with_config
    from ..tabular import FlowModelEnsemble, load_model_file

    model, cfg = load_with_config(path)
    # preset fields: a tabular model file (columns, supports, scores); an ensemble of such models
    if isinstance(model, FlowModelEnsemble) or isinstance(cfg.get("preset"), str):
        return load_model_file(path)
    if not isinstance(model, Flow):
        raise CLIError(f"{path} holds a {type(model).__name__}, not a flow: sample and score take flows")
    return model


def check_output_dir(path: Path) -> None:
    """Refuse an output file whose directory does not exist."""
    if str(path.parent) and not path.parent.exists():
        raise CLIError(f"output directory {path.parent} does not exist")


def write_rows(path: str | None, x, columns: list[str] | None) -> None:
    """Write rows to ``path`` (``.csv/.tsv/.txt/.npy``) or, for ``None``, as CSV on stdout."""
    import numpy as np

    from ..data.csv import header_line, save_table

    if path is None:
        if columns:
            print(header_line(columns))
        np.savetxt(sys.stdout, x, delimiter=",", fmt="%.9g")
        return
    p = Path(path)
    if p.suffix.lower() not in (".csv", ".tsv", ".txt", ".npy"):
        raise CLIError(f"--out must end in .csv, .tsv, .txt or .npy, got {p.name}")
    check_output_dir(p)
    save_table(p, x, columns)


# ---------------------------------------------------------------------------------------------- columns
def _pick(spec: str, names: list[str], option_name: str) -> list[int]:
    picked = []
    for key in filter(None, (k.strip() for k in spec.split(","))):
        if key in names:
            j = names.index(key)
        elif key.isdigit() and int(key) < len(names):
            j = int(key)
        else:
            raise CLIError(f"{option_name} names an unknown column {key!r}; columns: {', '.join(names)}")
        if j not in picked:
            picked.append(j)
    if not picked:
        raise CLIError(f"{option_name} names no column")
    return picked


def split_columns(x, columns: list[str] | None, spec: str | None):
    """Split a table into modelled and context columns (``spec``: comma-separated names or indices).

    Returns ``(x, columns, context, context_columns)``; ``context`` is ``None`` when ``spec`` is empty."""
    if not spec:
        return x, columns, None, None
    names = columns or [str(j) for j in range(x.shape[1])]
    picked = _pick(spec, names, "--context-columns")
    rest = [j for j in range(x.shape[1]) if j not in picked]
    if not rest:
        raise CLIError("--context-columns leaves no column to model")
    kept = [names[j] for j in rest] if columns else None
    return x[:, rest], kept, x[:, picked], [names[j] for j in picked]


def _by_name(x, columns: list[str] | None, wanted: list[str] | None, k: int, path: str, what: str):
    """Columns of ``x`` in the order of ``wanted`` when both are named (a missing or unknown column is an
    error); else ``x`` as it is, with its column count checked against ``k``."""
    if columns and wanted and set(columns) != set(wanted):
        missing = [c for c in wanted if c not in columns]
        unknown = [c for c in columns if c not in wanted]
        parts = [
            f"missing {', '.join(missing)}" if missing else "",
            f"unknown {', '.join(unknown)}" if unknown else "",
        ]
        raise CLIError(
            f"{path}: the {what} columns do not match the model's ({', '.join(wanted)}): "
            + "; ".join(p for p in parts if p)
        )
    if columns and wanted and len(columns) == len(wanted):
        return x[:, [columns.index(c) for c in wanted]]
    if x.shape[1] != k:
        if what == "data":
            raise CLIError(f"{path} has {x.shape[1]} columns but the model was fitted on {k}")
        raise CLIError(f"{path} has {x.shape[1]} context columns but the model's context has {k}")
    return x


def n_columns(model) -> int:
    """The number of columns of one data row of ``model`` (its ``n_columns`` where it has one)."""
    return int(getattr(model, "n_columns", None) or model.features)


def scored(model, x, context=None):
    """``model.log_prob`` of the rows ``x``; the warnings about rows scoring ``-inf`` are left to the command
    (it names those rows), any other warning is printed as one line."""
    from ..report.checks import score_rows

    scores, others = score_rows(model, x, context)
    for w in others:
        print(f"warning: {w.message}", file=sys.stderr)
    return scores


def _context_hint(model, path: str) -> str:
    names = ",".join(model.context_columns or []) or "A,B"
    return (
        f"the model is conditional on {model.flow.context_features} context column(s) ({names}): pass "
        f"--context-columns {names} naming those columns of {path}, or --context FILE"
    )


def model_rows(model, path: str, a: argparse.Namespace):
    """The data rows and context rows of ``path`` for ``model`` (``score`` and ``report``).

    Columns are matched by name when the file has a header and the model stores names; the context comes
    from ``--context-columns`` (columns of the same file) or ``--context FILE``. Returns ``(x, context)``
    (``context`` is ``None`` for an unconditional model)."""
    table, columns = load_data(path, getattr(a, "delimiter", None))
    k = model.flow.context_features
    spec = getattr(a, "context_columns", None)
    if spec and a.context:
        raise CLIError("give --context-columns or --context, not both")
    if k == 0 and (spec or a.context):
        raise CLIError("the model is unconditional: drop --context-columns / --context")
    x, columns, context, context_names = split_columns(table, columns, spec)
    if k and context is None and not a.context:
        raise CLIError(_context_hint(model, path))
    x = _by_name(x, columns, model.columns, n_columns(model), path, "data")
    if context is not None:
        names = context_names if columns else None
        context = _by_name(context, names, model.context_columns, k, path, "context")
    elif a.context:
        context = context_for_rows(model, a.context, getattr(a, "delimiter", None), x.shape[0])
    return x, context


def context_for_rows(model, path: str, delimiter: str | None, rows: int | None, spec: str | None = None):
    """The context rows in file ``path`` (``spec`` picks its columns); ``rows`` checks their number."""
    c, columns = load_data(path, delimiter)
    if spec:
        names = columns or [str(j) for j in range(c.shape[1])]
        picked = _pick(spec, names, "--context-columns")
        c, columns = c[:, picked], ([names[j] for j in picked] if columns else None)
    elif columns and model.context_columns and set(model.context_columns) <= set(columns):
        c, columns = c[:, [columns.index(n) for n in model.context_columns]], list(model.context_columns)
    c = _by_name(c, columns, model.context_columns, model.flow.context_features, path, "context")
    if rows is not None and c.shape[0] != rows:
        raise CLIError(f"{path} has {c.shape[0]} context rows but the data has {rows}")
    return c


# ---------------------------------------------------------------------------------------------- flow files
def is_tabular(model) -> bool:
    """Whether ``model`` is a tabular model or an ensemble of them (columns, supports and scores in the
    user's units)."""
    from ..tabular import FlowModel, FlowModelEnsemble

    return isinstance(model, (FlowModel, FlowModelEnsemble))


def flow_columns(model) -> list[str]:
    """Names of the modelled columns of a flow file: ``theta_0, ...`` for a posterior, ``x0, ...`` else."""
    from ..sbi.posterior import Posterior

    prefix = "theta_" if isinstance(model, Posterior) else "x"
    return [f"{prefix}{j}" for j in range(model.features)]


def _context_hint_flow(model, what: str) -> str:
    kind = "observation" if type(model).__name__ == "Posterior" else "context"
    return (
        f"the model is conditional on one {kind} of {model.context_features} values per row (shape "
        f"{model.context_shape}): {what}"
    )


def flow_context(model, path: str, delimiter: str | None, rows: int | None, spec: str | None = None):
    """The context rows in file ``path`` for a flow (``spec`` picks its columns), one context of
    ``model.context_features`` values per row, as ``float64`` ``(m, context_features)``; ``rows`` checks
    their number."""
    c, columns = load_data(path, delimiter)
    if spec:
        picked = _pick(spec, columns or [str(j) for j in range(c.shape[1])], "--context-columns")
        c = c[:, picked]
    if c.shape[1] != model.context_features:
        raise CLIError(
            f"{path} has {c.shape[1]} context columns but "
            + _context_hint_flow(model, "give one per value, in order")
        )
    if rows is not None and c.shape[0] != rows:
        raise CLIError(f"{path} has {c.shape[0]} context rows but the data has {rows}")
    return c


def flow_rows(model, path: str, a: argparse.Namespace):
    """The data rows and context rows of ``path`` for a flow file (``score``): the context comes from
    ``--context-columns`` (columns of the same file) or ``--context FILE``, as for tabular models."""
    table, columns = load_data(path, getattr(a, "delimiter", None))
    spec = getattr(a, "context_columns", None)
    if spec and a.context:
        raise CLIError("give --context-columns or --context, not both")
    conditional = model.context_shape is not None
    if not conditional and (spec or a.context):
        raise CLIError("the model is unconditional: drop --context-columns / --context")
    x, _, context, _ = split_columns(table, columns, spec)
    if conditional and context is None and not a.context:
        raise CLIError(
            _context_hint_flow(model, f"pass --context FILE or --context-columns naming them in {path}")
        )
    if x.shape[1] != model.features:
        raise CLIError(f"{path} has {x.shape[1]} columns but the model has {model.features}")
    if context is not None and context.shape[1] != model.context_features:
        hint = _context_hint_flow(model, "name them all")
        raise CLIError(f"--context-columns gives {context.shape[1]} columns; {hint}")
    if a.context:
        context = flow_context(model, a.context, getattr(a, "delimiter", None), x.shape[0])
    return x, context


def _as_context(model, context):
    """``float64`` context rows as a tensor of the model's dtype and context shape (None stays None)."""
    import torch

    if context is None:
        return None
    c = torch.from_numpy(context).to(model.dtype or torch.float32)
    return c.reshape(c.shape[0], *model.context_shape)


def flow_scores(model, x, context=None, batch_size: int = 4096):
    """``log_prob`` of the rows ``x`` given ``context`` (``float64`` numpy), in batches, with the non-finite
    rows described: ``(scores, rows)``, ``rows`` as :func:`~pushforward.report.checks.nonfinite_rows` gives
    them (the parameters outside a posterior's support named). Other warnings are printed as one line."""
    import warnings

    import numpy as np
    import torch

    dtype = model.dtype or torch.float32
    c_all = _as_context(model, context)
    out = []
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        for i in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(x[i : i + batch_size]).to(dtype)
            cb = None if c_all is None else c_all[i : i + batch_size]
            out.append(model.log_prob(xb, cb).double().numpy())
    for w in caught:
        if "reported as -inf" not in str(w.message):
            print(f"warning: {w.message}", file=sys.stderr)
    scores = np.concatenate(out) if out else np.zeros(0)
    return scores, _flow_nonfinite(model, x, scores)


def _flow_nonfinite(model, x, scores) -> list[dict]:
    import numpy as np

    bad = np.flatnonzero(~np.isfinite(scores))
    bounds = getattr(model, "_bounds", None)
    names = flow_columns(model)
    rows = []
    for i in bad:
        cols = []
        if bounds is not None:
            lower, upper = (b.double().numpy() for b in bounds())
            for j in np.flatnonzero(~((x[i] > lower) & (x[i] < upper))):
                cols.append(
                    {"column": names[j], "value": float(x[i, j]), "support": f"({lower[j]:g}, {upper[j]:g})"}
                )
        rows.append({"row": int(i), "score": float(scores[i]), "columns": cols})
    return rows


def flow_samples(model, n: int, seed: int | None, context=None):
    """``n`` draws of a flow (``float64`` numpy ``(n, features)``), or ``n`` for each of the ``m`` context rows,
    grouped by context row (``(m * n, features)``)."""
    import torch

    c = _as_context(model, context)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        draws = model.sample((n,), c)
    if c is not None:
        draws = draws.transpose(0, 1)
    return draws.reshape(-1, model.features).double().cpu().numpy()
