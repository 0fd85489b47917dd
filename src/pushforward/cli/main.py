"""The ``pushforward`` command line.

Commands::

    pushforward demo [--dataset 8gaussians] [--out demo.png]
    pushforward fit DATA.csv|DATA.npy --flow PRESET [--layers N --hidden 64,64 --option K=V ...] --out MODEL
    pushforward sample MODEL -n N [--out FILE.csv|.npy]
    pushforward score MODEL DATA [--anomalies Q] [--out FILE]
    pushforward report MODEL DATA --out report.html
    pushforward presets

Errors are reported as one line on stderr (exit status 2 for usage errors, 1 for failures); set
``PUSHFORWARD_DEBUG=1`` for full tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import compress, decompress

__all__ = ["CLIError", "build_parser", "main"]

PROG = "pushforward"


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")

    def parse_args(self, args=None, namespace=None):  # unknown options: name the valid ones
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = _subcommand_parser(self, getattr(ns, "command", None)) or self
            self.error(f"unrecognized arguments: {' '.join(extras)}; valid options: {_valid_options(parser)}")
        return ns


def _subcommand_parser(parser: argparse.ArgumentParser, command: str | None):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return None


def _valid_options(parser: argparse.ArgumentParser) -> str:
    """The long option strings ``parser`` accepts."""
    names = [o for act in parser._actions for o in act.option_strings if o.startswith("--")]
    return ", ".join(sorted(set(names)))


def _presets_text() -> str:
    from ..flows import PRESETS

    return ", ".join(sorted(PRESETS))


def default_preset() -> str:
    """``"nsf"`` when that preset is registered, else ``"realnvp"``."""
    from ..flows import PRESETS

    return "nsf" if "nsf" in PRESETS else "realnvp"


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _int_at_least(minimum: int, what: str):
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


_positive_int = _int_at_least(1, "positive")
_nonneg_int = _int_at_least(0, "non-negative")


def _float_where(accept: Callable[[float], bool], expected: str):
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


_positive_float = _float_where(lambda v: v > 0 and v != float("inf"), "a positive finite number")
_fraction = _float_where(lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
_quantile = _float_where(lambda v: 0.0 < v < 1.0, "a quantile in (0, 1)")


def _option(text: str) -> tuple[str, object]:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pushforward`` command."""
    p = _Parser(
        prog=PROG,
        description="Normalizing flows on tabular data: fit, sample, score, report; plus a 2-D demo.",
        epilog="Run 'pushforward COMMAND --help' for the options of each command.",
    )
    from .._version import __version__

    p.add_argument("--version", action="version", version=f"pushforward {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # demo ---------------------------------------------------------------------------------------
    d = sub.add_parser(
        "demo",
        help="train a neural spline flow on a built-in 2-D density and plot it (about 40 CPU-seconds)",
        description="Train a neural spline flow (NSF, the default flow of 'fit') on a built-in 2-D toy "
        "density, print train/test NLL in nats (and the true entropy where known) and write a PNG with the "
        "data, samples and the learned density. The default run took 40 CPU-seconds on one core of a busy "
        "machine (8gaussians: test NLL 2.843 nats against an entropy of 2.838); it prints its own time.",
    )
    d.add_argument(
        "--dataset",
        default="8gaussians",
        help="toy density: 8gaussians, moons, checkerboard, pinwheel, 2spirals, rings, circles "
        "(default 8gaussians)",
    )
    d.add_argument("--out", default="demo.png", help="output PNG (default demo.png)")
    d.add_argument("--steps", type=_positive_int, default=2000, help="training steps (default 2000)")
    d.add_argument("--layers", type=_positive_int, default=4, help="spline layers (default 4)")
    d.add_argument("--hidden", type=_ints, default=(64, 64), help="hidden units, e.g. 64,64 (default)")
    d.add_argument("--n-train", type=_positive_int, default=20000, help="training points (default 20000)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    d.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch CPU threads (default 1: the small network is fastest, and robust to busy machines, on one)",
    )
    d.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    # fit ----------------------------------------------------------------------------------------
    f = sub.add_parser(
        "fit",
        help="fit a flow to a .csv/.tsv/.txt/.npy table and save a model file",
        description="Fit a flow preset to the rows of a numeric table (columns are standardised; a seeded "
        "validation split drives early stopping and anomaly thresholds) and write a model file "
        "(safetensors weights + JSON config).",
    )
    f.add_argument("data", help="data file: .csv/.tsv/.txt (optional header line) or .npy (2-D numeric)")
    f.add_argument(
        "--flow",
        default=None,
        help=f"flow preset (default nsf if available, else realnvp); available: {_presets_text()}",
    )
    f.add_argument(
        "--out", default="model.safetensors", help="model file to write (default model.safetensors)"
    )
    f.add_argument("--layers", type=_positive_int, default=None, help="number of layers (preset default)")
    f.add_argument(
        "--hidden", type=_ints, default=None, help="hidden units per conditioner layer, e.g. 128,128"
    )
    f.add_argument(
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="family option passed to the preset, value parsed as JSON (repeatable), e.g. "
        "--option clamp=2.0 --option activation=tanh",
    )
    length = f.add_mutually_exclusive_group()
    length.add_argument(
        "--steps", type=_positive_int, default=None, help="maximum training steps (default: from the data)"
    )
    length.add_argument("--epochs", type=_positive_int, default=None, help="training epochs instead of steps")
    f.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="global batch size (default: rows/8 clipped to [32, 256])",
    )
    f.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help="Adam learning rate (default 3e-3 for the data-sized default NSF, as in FlowDensity; else 1e-3)",
    )
    f.add_argument("--weight-decay", type=float, default=1e-4, help="Adam weight decay (default 1e-4)")
    f.add_argument(
        "--val-fraction",
        type=_fraction,
        default=0.1,
        help="fraction of rows held out for validation (default 0.1; 0 disables)",
    )
    f.add_argument(
        "--patience",
        type=_nonneg_int,
        default=10,
        help="early stopping: evaluation rounds without improvement (default 10; 0 disables)",
    )
    f.add_argument("--eval-every", type=_positive_int, default=None, help="steps between evaluations")
    f.add_argument("--no-standardize", action="store_true", help="do not standardise the columns")
    f.add_argument(
        "--whiten",
        action="store_true",
        help="also decorrelate the standardised columns (inverse Cholesky factor of their correlation "
        "matrix) before the flow sees them: worth trying on tables with strong linear relations between "
        "columns; FlowDensity decides this by held-out likelihood",
    )
    f.add_argument(
        "--context-columns",
        default=None,
        help="fit the conditional density p(x | c) of the other columns given these (comma-separated header "
        "names or 0-based indices); score and sample then take --context FILE",
    )
    f.add_argument(
        "--support",
        default="auto",
        help="per-column support: auto (detected and printed; default), none (all real), or overrides "
        "COL=KIND,... with KIND real, positive[:LOW], interval:LOW:HIGH, discrete or integer "
        "(COL a header name or 0-based index), e.g. --support age=positive,sex=discrete",
    )
    f.add_argument(
        "--event-shape",
        type=_ints,
        default=None,
        help="shape of one event when rows are flattened, e.g. 1,8,8 for image presets",
    )
    f.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint file (default: MODEL.ckpt, deleted once the model file is written)",
    )
    f.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=None,
        help="steps between checkpoints (default: every evaluation)",
    )
    f.add_argument("--resume", action="store_true", help="continue from the checkpoint if it exists")
    f.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training under torchrun (gloo on CPU, nccl on GPU)",
    )
    f.add_argument(
        "--diagnostics",
        action="store_true",
        help="check invertibility (reconstruction and ladj errors) on validation data",
    )
    f.add_argument(
        "--seed", type=int, default=0, help="seed for split, initial weights and batches (default 0)"
    )
    f.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    f.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="precision")
    f.add_argument("--delimiter", default=None, help="column delimiter of text files (default: sniffed)")
    f.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    f.add_argument(
        "--allow-degenerate",
        action="store_true",
        help="fit even with constant columns, identical rows or fewer rows than columns (refused by default: "
        "the likelihood has no maximum there)",
    )
    f.add_argument(
        "--outliers",
        choices=("refuse", "drop", "keep"),
        default="refuse",
        help="rows with extreme outliers (robust z-score above --outlier-z): refuse to fit (default), drop "
        "those rows, or keep them",
    )
    f.add_argument(
        "--outlier-z",
        type=_positive_float,
        default=1e5,
        help="robust z-score (median/MAD) above which a value is an extreme outlier (default 1e5)",
    )
    f.add_argument(
        "--max-memory-gb",
        type=_positive_float,
        default=None,
        help="refuse a fit whose estimated training memory exceeds this (default: half the machine's memory)",
    )

    # sample -------------------------------------------------------------------------------------
    s = sub.add_parser(
        "sample",
        help="draw rows from a model file",
        description="Draw rows from a fitted model, in the units of the training data.",
    )
    s.add_argument("model", help="model file written by 'pushforward fit'")
    s.add_argument("-n", "--num", type=_positive_int, required=True, help="number of rows")
    s.add_argument("--out", default=None, help=".csv/.tsv/.npy output (default: CSV on stdout)")
    s.add_argument("--seed", type=int, default=None, help="random seed")
    s.add_argument(
        "--context",
        default=None,
        help="conditional models: a file of context rows; -n rows are drawn for each, grouped by context row",
    )

    # score --------------------------------------------------------------------------------------
    c = sub.add_parser(
        "score",
        help="per-row log-likelihood of a data file, optionally flagging anomalies",
        description="Print (or write) the log-likelihood of every row, in nats, in the units of the data. "
        "With --anomalies Q, rows below the Q-quantile of the validation log-likelihoods stored in the model "
        "are flagged (about a fraction Q of normal rows will be). With --typicality, rows whose "
        "log-likelihood is atypically high or low (Nalisnick et al. 2019) are flagged too.",
    )
    c.add_argument("model", help="model file written by 'pushforward fit'")
    c.add_argument("data", help="data file (.csv/.tsv/.txt/.npy) with the training columns")
    c.add_argument(
        "--anomalies",
        type=_quantile,
        default=None,
        metavar="Q",
        help="flag rows below the Q-quantile of validation scores, e.g. 0.01",
    )
    c.add_argument("--typicality", action="store_true", help="add a per-row two-sided typicality flag")
    c.add_argument(
        "--context", default=None, help="conditional models: a file of context rows, one per data row"
    )
    c.add_argument("--out", default=None, help="output .csv/.npy (default: CSV on stdout)")
    c.add_argument("--delimiter", default=None, help="column delimiter of text files (default: sniffed)")

    # report -------------------------------------------------------------------------------------
    r = sub.add_parser(
        "report",
        help="self-contained HTML report: curves, marginals, pair plots, heatmap",
        description="Write one HTML file with embedded PNGs: training curves, 1-D marginals and 2-D pair "
        "plots "
        "of data vs samples, and a density heatmap for 2-D data.",
    )
    r.add_argument("model", help="model file written by 'pushforward fit'")
    r.add_argument("data", help="data file to compare with (e.g. a test set)")
    r.add_argument("--out", default="report.html", help="output HTML (default report.html)")
    r.add_argument("--samples", type=_positive_int, default=None, help="number of model samples")
    r.add_argument("--seed", type=int, default=0, help="random seed of the samples")
    r.add_argument(
        "--pairs", default=None, help="comma-separated columns for the pair plots (default: first 6)"
    )
    r.add_argument("--delimiter", default=None, help="column delimiter of text files (default: sniffed)")

    sub.add_parser(
        "presets",
        help="list the available flow presets",
        description="List the flow presets 'fit --flow' accepts.",
    )
    compress.add_parser(sub)
    decompress.add_parser(sub)
    return p


# ---------------------------------------------------------------------------------------------- commands
def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise CLIError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("device cuda requested but CUDA is not available")
    return dev


def _load_data(path: str, delimiter: str | None = None):
    from ..data.csv import load_table

    return load_table(path, delimiter=delimiter)


def _load_model(path: str):
    from ..tabular import FlowModel

    return FlowModel.load(path)


def _cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(
        a.dataset,
        a.out,
        steps=a.steps,
        n_train=a.n_train,
        layers=a.layers,
        hidden=a.hidden,
        seed=a.seed,
        progress=not a.no_progress,
        threads=a.threads,
    )
    return 0


def _cmd_fit(a: argparse.Namespace) -> int:
    import torch

    from ..io import build_flow
    from ..tabular import FlowModel

    preset = (a.flow or default_preset()).lower()
    options = dict(a.option)
    if a.layers is not None:
        options["layers"] = a.layers
    if a.hidden is not None:
        options["hidden"] = list(a.hidden)
    rank = 0
    if a.distributed:
        from ..train import distributed

        rank, _, device = distributed.init(a.device)
    else:
        device = _device(a.device)
    out = Path(a.out)
    _check_output_path(out)
    x, columns = _load_data(a.data, a.delimiter)
    x, columns, context, context_columns = _split_context(x, columns, a.context_columns)
    log = print if rank == 0 else (lambda *_, **__: None)
    if x.shape[0] < 2:
        raise CLIError(f"{a.data}: need at least 2 rows to fit, got {x.shape[0]}")
    x, kept = _screen_rows(a, x, columns, log)
    if kept is not None and context is not None:
        context = context[kept]
    sized = _data_sized_settings(a, preset, options, x.shape[0], log)
    _check_cost(a, preset, options, x.shape, sized, log)
    build_flow(preset, tuple(a.event_shape) if a.event_shape else x.shape[1], options=options)  # fail early
    support = _fit_support(a, x, columns, log)
    checkpoint = a.checkpoint or str(out) + ".ckpt"
    fingerprint = _run_fingerprint(a, x, columns, preset, options, context)
    if rank == 0:
        _lock_output(out)
    if a.resume and not Path(checkpoint).exists():
        log(f"no checkpoint at {checkpoint}; starting from scratch", file=sys.stderr)
    elif a.resume:
        log(_resume_message(checkpoint, fingerprint), file=sys.stderr)
    log(
        f"fitting {preset} to {a.data}: {x.shape[0]} rows x {x.shape[1]} columns on {device}", file=sys.stderr
    )
    try:
        model = FlowModel.train(
            x,
            preset,
            options=options,
            val_fraction=a.val_fraction,
            standardize=not a.no_standardize,
            whiten=bool(a.whiten),
            seed=a.seed,
            columns=columns,
            event_shape=a.event_shape,
            device=device,
            dtype=getattr(torch, a.dtype),
            steps=sized["steps"],
            epochs=a.epochs,
            batch_size=sized["batch_size"],
            lr=sized["lr"],
            weight_decay=a.weight_decay,
            patience=a.patience or None,
            eval_every=sized["eval_every"],
            support=support,
            context=context,
            context_columns=context_columns,
            progress=not a.no_progress,
            checkpoint=checkpoint,
            checkpoint_every=a.checkpoint_every,
            resume=a.resume,
            distributed=a.distributed,
            diagnostics=a.diagnostics,
            fingerprint=fingerprint,
        )
    finally:
        if a.distributed:
            from ..train import distributed

            if rank:
                distributed.cleanup()
    if rank == 0:
        model.save(out)
        h = model.history or {}
        n_params = sum(p.numel() for p in model.flow.parameters())
        log(
            f"wrote {out} ({preset}, {n_params:,} parameters, {(h.get('steps') or [0])[-1]} "
            f"steps, {h.get('seconds', 0.0):.1f} s)",
            file=sys.stderr,
        )
        _log_fit_score(model, log)
        if h.get("skipped_batches"):
            log(f"skipped {h['skipped_batches']} batches with non-finite loss or gradient", file=sys.stderr)
        if h.get("stopped_early"):
            log(f"stopped early at step {h['steps'][-1]}", file=sys.stderr)
        if h.get("diagnostics"):
            dg = h["diagnostics"]
            log(
                f"invertibility {'OK' if dg['ok'] else 'PROBLEM'}: max reconstruction error "
                f"{dg['max_reconstruction_error']:.3g}, max ladj error {dg['max_ladj_error']:.3g}, "
                f"non-finite rows {dg['nonfinite_rows']}",
                file=sys.stderr,
            )
        if a.checkpoint is None and Path(checkpoint).exists():
            Path(checkpoint).unlink()  # the model file is written: the default checkpoint has served
        if a.distributed:
            from ..train import distributed

            distributed.cleanup()
    return 0


def _split_context(x, columns, spec: str | None):
    """Split the table into modelled columns and context columns (``spec``: names or indices)."""
    if not spec:
        return x, columns, None, None
    names = columns or [str(j) for j in range(x.shape[1])]
    picked = []
    for key in filter(None, (k.strip() for k in spec.split(","))):
        if key in names:
            picked.append(names.index(key))
        elif key.isdigit() and int(key) < len(names):
            picked.append(int(key))
        else:
            raise CLIError(f"--context-columns names an unknown column {key!r}; columns: {', '.join(names)}")
    rest = [j for j in range(x.shape[1]) if j not in picked]
    if not rest:
        raise CLIError("--context-columns leaves no column to model")
    return x[:, rest], [names[j] for j in rest], x[:, picked], [names[j] for j in picked]


def _context_rows(model, path: str | None, delimiter: str | None, rows: int | None):
    """The ``--context`` file of a conditional model (``None`` for an unconditional one)."""
    k = model.flow.context_features
    if k == 0:
        if path:
            raise CLIError("--context given but the model is unconditional")
        return None
    if not path:
        raise CLIError(
            f"the model is conditional on {', '.join(model.context_columns or [])}: pass --context FILE"
        )
    c, _ = _load_data(path, delimiter)
    if c.shape[1] != k:
        raise CLIError(f"{path} has {c.shape[1]} columns but the model's context has {k}")
    if rows is not None and c.shape[0] != rows:
        raise CLIError(f"{path} has {c.shape[0]} rows but the data has {rows}")
    return c


def _data_sized_settings(a: argparse.Namespace, preset: str, options: dict, n: int, log) -> dict:
    """Steps, batch size and evaluation interval from the data size (user values win); for the default
    preset without --layers/--hidden, the data-sized NSF of :func:`pushforward.sklearn.default_size`."""
    import math

    if a.flow is None and preset == "nsf" and a.layers is None and a.hidden is None:
        from ..sklearn import default_size

        for key, value in default_size(n).items():
            options.setdefault(key, value)
    batch = a.batch_size or min(256, max(32, n // 8))
    per_epoch = math.ceil(n * (1 - a.val_fraction) / batch)
    steps = a.steps if a.steps or a.epochs else min(5000, max(1000, 100 * per_epoch))
    lr = a.lr if a.lr is not None else 1e-3
    if a.lr is None and a.flow is None and preset == "nsf" and a.layers is None and a.hidden is None:
        from ..sklearn import DEFAULT_LR

        lr = DEFAULT_LR
    return {"batch_size": batch, "steps": steps, "eval_every": a.eval_every or max(per_epoch, 5), "lr": lr}


def _fit_support(a: argparse.Namespace, x, columns, log):
    """The per-column supports of ``fit`` (detected or from --support), confirmed on stderr."""
    from ..data.support import describe_support, parse_support

    names = columns or [str(j) for j in range(x.shape[1])]
    if a.event_shape:
        return None
    support = parse_support(a.support, names, x)
    lines = describe_support(support, names)
    if not lines:
        log("support: every column real", file=sys.stderr)
        return None
    log(
        f"support ({'detected' if a.support == 'auto' else 'set'}; change with --support COL=KIND):",
        file=sys.stderr,
    )
    for line in lines:
        log(f"  {line}", file=sys.stderr)
    return support


def _log_fit_score(model, log) -> None:
    """The fit's one figure: held-out log-likelihood per row, original units, from the restored best model."""
    h = model.history or {}
    v = model.validation or {}
    where = "validation" if v.get("source") == "validation" else "training"
    best = f" (restored best step {h['best_step']})" if h.get("best_step", -1) > 0 else ""
    log(
        f"{where} log-likelihood {v.get('mean', float('nan')):.4f} nats per row, in the data's original "
        f"units{best}",
        file=sys.stderr,
    )


def _screen_rows(a: argparse.Namespace, x, columns, log):
    """Refuse degenerate data and extreme outliers (or drop / keep them, as the options say).

    Returns the rows to fit and, when some were dropped, the boolean mask of the kept ones (else None)."""
    from ..data.screen import screen

    rep = screen(x, columns=columns, outlier_z=a.outlier_z)
    degenerate = [p for p in rep.problems if "outlier" not in p]
    if x.shape[0] <= x.shape[1]:
        degenerate.append(
            f"{x.shape[0]} rows x {x.shape[1]} columns: the rows span at most {x.shape[0] - 1} dimensions, "
            "so the likelihood of a density on all columns has no maximum"
        )
    if degenerate and not a.allow_degenerate:
        raise CLIError(f"{a.data}: " + "; ".join(degenerate) + " (use --allow-degenerate to fit anyway)")
    if rep.outlier_rows and a.outliers == "refuse":
        problem = next(p for p in rep.problems if "outlier" in p)
        raise CLIError(f"{a.data}: {problem} (use --outliers drop or --outliers keep)")
    for note in rep.notes:
        log(f"note: {note}", file=sys.stderr)
    for problem in degenerate:
        log(f"warning: {problem}", file=sys.stderr)
    if rep.outlier_rows:
        problem = next(p for p in rep.problems if "outlier" in p)
        if a.outliers == "drop":
            import numpy as np

            keep = np.ones(x.shape[0], dtype=bool)
            keep[rep.outlier_rows] = False
            log(f"dropped {len(rep.outlier_rows)} rows with extreme outliers", file=sys.stderr)
            return x[keep], keep
        log(f"warning: {problem}; kept (--outliers keep)", file=sys.stderr)
    return x, None


def _check_cost(a: argparse.Namespace, preset: str, options: dict, shape, sized: dict, log) -> None:
    """For wide data, estimate the flow's size before building it, and refuse one that would not fit."""
    from ..data.screen import estimate_cost
    from ..io import build_flow

    rows, features = shape
    if features <= 64 or a.event_shape:
        return
    est = estimate_cost(
        lambda d: build_flow(preset, d, options=options), features, rows, sized["batch_size"], sized["steps"]
    )
    limit = a.max_memory_gb * 2**30 if a.max_memory_gb else _physical_memory() / 2
    text = (
        f"{preset} on {features} columns: about {est['parameters']:.3g} weights, "
        f"{est['memory_bytes'] / 2**30:.3g} GiB to train, very roughly {est['seconds']:.0f} s"
    )
    if est["memory_bytes"] > limit:
        raise CLIError(
            f"{text}, over the {limit / 2**30:.3g} GiB limit; use fewer columns (e.g. PCA), fewer --layers "
            "or a smaller --hidden, or raise --max-memory-gb"
        )
    log(f"estimate: {text}", file=sys.stderr)


def _physical_memory() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8.0 * 2**30


def _check_output_path(out: Path) -> None:
    """Refuse an output path that cannot be written, before any training."""
    if out.is_dir():
        raise CLIError(f"--out {out} is a directory; give a file name such as {out / 'model.safetensors'}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise CLIError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise CLIError(f"cannot write {out}: permission denied")


_LOCKS: list = []  # open lock files, held until the process exits


def _lock_output(out: Path) -> None:
    """Hold an exclusive lock on ``OUT.lock`` so that two fits to one ``--out`` cannot both run.

    The lock (``fcntl.flock``) is released by the operating system when the process ends, even on
    ``kill -9``; where ``fcntl`` is missing (Windows) no lock is taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    path = out.with_name(out.name + ".lock")
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise CLIError(
            f"another 'pushforward fit' is writing {out} (lock {path} is held); wait for it"
        ) from None
    _LOCKS.append(f)


def _release_output_lock() -> None:
    while _LOCKS:
        f = _LOCKS.pop()
        Path(f.name).unlink(missing_ok=True)
        f.close()


def _run_fingerprint(a: argparse.Namespace, x, columns, preset: str, options: dict, context=None) -> str:
    """SHA-256 of the command, the data (and context columns) and every setting that shapes the run."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    settings = {
        "command": "fit",
        "preset": preset,
        "options": options,
        "columns": columns,
        "shape": list(x.shape),
        **{
            k: getattr(a, k)
            for k in (
                "steps",
                "epochs",
                "batch_size",
                "lr",
                "weight_decay",
                "val_fraction",
                "patience",
                "eval_every",
                "no_standardize",
                "whiten",
                "event_shape",
                "seed",
                "dtype",
                "context_columns",
                "support",
            )
        },
    }
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    if context is not None:
        h.update(np.ascontiguousarray(context, dtype=np.float64).tobytes())
    return h.hexdigest()


def _resume_message(checkpoint: str, fingerprint: str) -> str:
    """Check that ``checkpoint`` belongs to this run (else ``CLIError``) and say where it resumes."""
    from ..train.checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint)
    if ck.get("fingerprint") != fingerprint:
        raise CLIError(
            f"checkpoint {checkpoint} was written for other data or settings; delete it, or pass --checkpoint "
            "with a new path, or rerun without --resume"
        )
    return f"resuming from {checkpoint} at step {ck.get('step')} of {ck.get('total')}"


def _write_rows(path: str | None, x, columns: list[str] | None) -> None:
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
    if p.parent and not p.parent.exists():
        raise CLIError(f"output directory {p.parent} does not exist")
    save_table(p, x, columns)


def _cmd_sample(a: argparse.Namespace) -> int:
    model = _load_model(a.model)
    x = model.sample(a.num, seed=a.seed, context=_context_rows(model, a.context, None, None))
    _write_rows(a.out, x, model.columns)
    if a.out:
        print(f"wrote {a.num} samples to {a.out}", file=sys.stderr)
    return 0


def _model_and_rows(a: argparse.Namespace):
    """Load the model file and the data file of a command, checking that their column counts agree."""
    model = _load_model(a.model)
    x, _ = _load_data(a.data, a.delimiter)
    if x.shape[1] != model.features:
        raise CLIError(f"{a.data} has {x.shape[1]} columns but the model was fitted on {model.features}")
    return model, x


def _cmd_score(a: argparse.Namespace) -> int:
    import numpy as np

    model, x = _model_and_rows(a)
    scores = model.log_prob(x, context=_context_rows(model, a.context, a.delimiter, x.shape[0]))
    cols = [scores]
    names = ["log_likelihood"]
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

        v = model.validation
        test = TypicalityTest(batch_size=1).fit(np.asarray(v["quantiles"]))
        flags = test.test_rows(scores)
        cols.append(flags.astype(np.float64))
        names.append("atypical")
        print(
            f"typicality: entropy estimate {test.entropy_:.4f} nats, epsilon {test.epsilon_:.4f}: "
            f"{int(flags.sum())} rows atypical",
            file=sys.stderr,
        )
    print(f"mean log-likelihood {float(np.mean(scores)):.4f} nats over {len(scores)} rows", file=sys.stderr)
    _write_rows(a.out, np.stack(cols, 1), names)
    return 0


def _threshold_uncertainty(model, quantile: float) -> str:
    """``, 90% interval [lo, hi] over N rows`` for a stored validation quantile; warns when N is too small."""
    from ..analysis.anomaly import quantile_levels_interval, threshold_warning

    n = int((model.validation or {}).get("n", 0))
    if n < 2:
        return ""
    lo, hi = (model.validation_quantile(q) for q in quantile_levels_interval(n, quantile))
    message = threshold_warning(n, quantile)
    if message:
        print(f"warning: {message}", file=sys.stderr)
    return f", 90% interval [{lo:.4f}, {hi:.4f}] from {n} rows"


def _cmd_report(a: argparse.Namespace) -> int:
    from ..report import write_report

    model, x = _model_and_rows(a)
    out = Path(a.out)
    if out.parent and not out.parent.exists():
        raise CLIError(f"output directory {out.parent} does not exist")
    pairs = [c.strip() for c in a.pairs.split(",") if c.strip()] if a.pairs else None
    write_report(model, x, out, n_samples=a.samples, seed=a.seed, pairs=pairs)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _cmd_presets(a: argparse.Namespace) -> int:
    from ..flows import PRESETS

    for name in sorted(PRESETS):
        print(f"{name:16s} {_summary(PRESETS[name].__doc__ or '')}")
    return 0


def _summary(doc: str) -> str:
    """The first sentence of a docstring as plain text (Sphinx roles, literals and maths unwrapped)."""
    import re

    para = " ".join(doc.strip().split("\n\n")[0].split())
    para = re.sub(r":(?:math|class|func|meth|mod|attr|data):`~?([^`]*)`", r"\1", para)
    para = re.sub(r"``([^`]*)``", r"'\1'", para).replace("`", "")
    para = re.sub(r"\\operatorname\{(\w+)\}", r"\1", para).replace("\\,", " ")
    para = re.sub(r"\\(\w+)", r"\1", para)
    m = re.search(r"^(.+?[.])(\s|$)", para)
    return (m.group(1) if m else para).rstrip(":.") + "."


_COMMANDS = {
    "demo": _cmd_demo,
    "fit": _cmd_fit,
    "sample": _cmd_sample,
    "score": _cmd_score,
    "report": _cmd_report,
    "presets": _cmd_presets,
    "compress": compress.run,
    "decompress": decompress.run,
}


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) < 500 else text[:497] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 failure, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        _err(str(e))
        return 2
    except SystemExit as e:  # --help / --version
        return int(e.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    debug = bool(os.environ.get("PUSHFORWARD_DEBUG"))
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        _err(f"{PROG} {args.command}: interrupted")
        return 130
    except (
        CLIError,
        ValueError,
        TypeError,
        OSError,
        ImportError,
        NotImplementedError,
        RuntimeError,
        MemoryError,
    ) as e:
        if debug:
            raise
        if isinstance(e, FileNotFoundError) and e.filename and not str(e).startswith(str(e.filename)):
            msg = f"{e.filename}: no such file"
        else:
            msg = _one_line(e)
        _err(f"{PROG} {args.command}: error: {msg}")
        return 1
    except Exception as e:  # a bug, not a user error: still one line, no traceback unless asked for
        if debug:
            raise
        _err(
            f"{PROG} {args.command}: internal error: {type(e).__name__}: {_one_line(e)} "
            "(rerun with PUSHFORWARD_DEBUG=1 for the traceback, and please report it)"
        )
        return 1
    finally:
        _release_output_lock()
