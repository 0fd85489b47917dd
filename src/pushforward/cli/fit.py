"""``pushforward fit DATA --out MODEL``: fit a flow preset to the rows of a table and write a model file.

The training options (``--steps``, ``--lr``, ``--batch-size``, ``--clip-grad``, ``--patience``, ...) are the
fields of :class:`pushforward.train.config.TrainConfig` (see :mod:`pushforward.cli.config`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .common import CLIError, fraction, ints, load_data, option, positive_float, positive_int, split_columns
from .config import add_train_options, sized_settings, train_config, train_settings

__all__ = ["add_parser", "cleanup", "lock_output", "run"]

NAME = "fit"


def _presets_text() -> str:
    from ..flows import PRESETS

    return ", ".join(sorted(PRESETS))


def default_preset() -> str:
    """``"nsf"`` when that preset is registered, else ``"realnvp"``."""
    from ..flows import PRESETS

    return "nsf" if "nsf" in PRESETS else "realnvp"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``fit`` subcommand (its arguments are added when it is used: they need torch)."""
    return subparsers.add_parser(
        NAME,
        help="fit a flow to a .csv/.tsv/.txt/.npy table and save a model file",
        description="Fit a flow preset to the rows of a numeric table (columns are standardised; a seeded "
        "validation split drives early stopping and anomaly thresholds) and write a model file "
        "(safetensors weights + JSON config).",
        build=_add_arguments,
    )


def _add_arguments(f: argparse.ArgumentParser) -> None:
    f.add_argument("data", help="data file: .csv/.tsv/.txt (optional header line) or .npy (2-D numeric)")
    f.add_argument(
        "--flow",
        default=None,
        help=f"flow preset (default nsf if available, else realnvp); available: {_presets_text()}",
    )
    f.add_argument(
        "--out", default="model.safetensors", help="model file to write (default model.safetensors)"
    )
    f.add_argument("--layers", type=positive_int, default=None, help="number of layers (preset default)")
    f.add_argument(
        "--hidden", type=ints, default=None, help="hidden units per conditioner layer, e.g. 128,128"
    )
    f.add_argument(
        "--option",
        type=option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="family option passed to the preset, value parsed as JSON (repeatable), e.g. "
        "--option clamp=2.0 --option activation=tanh",
    )
    f.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.1,
        help="fraction of rows held out for validation (default 0.1; 0 disables)",
    )
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
        metavar="A,B",
        help="fit the conditional density p(x | c) of the other columns given these (comma-separated header "
        "names or 0-based indices); score, sample and report then take the same --context-columns",
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
        type=ints,
        default=None,
        help="shape of one event when rows are flattened, e.g. 1,8,8",
    )
    f.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint file (default: MODEL.ckpt, deleted once the model is written)",
    )
    f.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        help="steps between checkpoints (default: evaluations)",
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
        help="check invertibility (reconstruction and ladj errors) on validation",
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
        type=positive_float,
        default=1e5,
        help="robust z-score (median/MAD) above which a value is an extreme outlier (default 1e5)",
    )
    f.add_argument(
        "--max-memory-gb",
        type=positive_float,
        default=None,
        help="refuse a fit whose estimated training memory exceeds this (default: half the machine's memory)",
    )
    add_train_options(f)


# ---------------------------------------------------------------------------------------------- the command
def run(a: argparse.Namespace) -> int:
    """Fit, write the model file and print the one held-out figure."""
    preset = (a.flow or default_preset()).lower()
    options = dict(a.option)
    if a.layers is not None:
        options["layers"] = a.layers
    if a.hidden is not None:
        options["hidden"] = list(a.hidden)
    rank, device = _rank_and_device(a)
    log = print if rank == 0 else (lambda *_, **__: None)
    out = Path(a.out)
    _check_output_path(out)
    x, columns = load_data(a.data, a.delimiter)
    x, columns, context, context_columns = split_columns(x, columns, a.context_columns)
    if x.shape[0] < 2:
        raise CLIError(f"{a.data}: need at least 2 rows to fit, got {x.shape[0]}")
    x, kept = _screen_rows(a, x, columns, log)
    if kept is not None and context is not None:
        context = context[kept]
    sized = sized_settings(a, preset, options, x.shape[0])
    config = train_config(a, sized)
    settings = train_settings(config)
    _check_cost(a, preset, options, x.shape, sized, log)
    from ..io import build_flow

    build_flow(preset, tuple(a.event_shape) if a.event_shape else x.shape[1], options=options)  # fail early
    support = _fit_support(a, x, columns, log)
    checkpoint = a.checkpoint or str(out) + ".ckpt"
    fingerprint = _run_fingerprint(a, config, x, columns, preset, options, context)
    if rank == 0:
        lock_output(out)
    if a.resume and not Path(checkpoint).exists():
        log(f"no checkpoint at {checkpoint}; starting from scratch", file=sys.stderr)
    elif a.resume:
        log(_resume_message(checkpoint, fingerprint), file=sys.stderr)
    log(
        f"fitting {preset} to {a.data}: {x.shape[0]} rows x {x.shape[1]} columns on {device}", file=sys.stderr
    )
    try:
        model = _train(a, x, preset, options, settings, columns, device, support, context, context_columns,
                       checkpoint=checkpoint, fingerprint=fingerprint)  # fmt: skip
    finally:
        if a.distributed and rank:
            from ..train import distributed

            distributed.cleanup()
    if rank == 0:
        model.save(out)
        _log_result(model, preset, out, log)
        if a.checkpoint is None and Path(checkpoint).exists():
            Path(checkpoint).unlink()  # the model file is written: the default checkpoint has served
        if a.distributed:
            from ..train import distributed

            distributed.cleanup()
    return 0


def _rank_and_device(a: argparse.Namespace):
    if a.distributed:
        from ..train import distributed

        rank, _, device = distributed.init(a.device)
        return rank, device
    return 0, _device(a.device)


def _train(a, x, preset, options, settings, columns, device, support, context, context_columns, **kwargs):
    """:meth:`FlowModel.train <pushforward.tabular.FlowModel.train>` with the command's settings."""
    import torch

    from ..tabular import FlowModel

    return FlowModel.train(
        x,
        preset,
        options=options,
        val_fraction=a.val_fraction,
        standardize=not a.no_standardize,
        whiten=bool(a.whiten),
        columns=columns,
        event_shape=a.event_shape,
        device=device,
        dtype=getattr(torch, a.dtype),
        support=support,
        context=context,
        context_columns=context_columns,
        progress=not a.no_progress,
        checkpoint_every=a.checkpoint_every,
        resume=a.resume,
        distributed=a.distributed,
        diagnostics=a.diagnostics,
        **settings,
        **kwargs,
    )


def _log_result(model, preset: str, out: Path, log) -> None:
    """What the fit did, on stderr: the file, size, steps and time, then the held-out figure."""
    h = model.history or {}
    n_params = sum(p.numel() for p in model.flow.parameters())
    log(
        f"wrote {out} ({preset}, {n_params:,} parameters, {(h.get('steps') or [0])[-1]} "
        f"steps, {h.get('seconds', 0.0):.1f} s)",
        file=sys.stderr,
    )
    v = model.validation or {}
    where = "validation" if v.get("source") == "validation" else "training"
    best = f" (restored best step {h['best_step']})" if h.get("best_step", -1) > 0 else ""
    mean = v.get("mean", float("nan"))
    log(
        f"{where} log-likelihood {mean:.4f} nats per row (NLL {-mean:.4f}), in the data's original units{best}",
        file=sys.stderr,
    )
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


def lock_output(out: Path) -> None:
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


def cleanup() -> None:
    """Release the locks taken by :func:`lock_output` (the dispatcher calls this when a command ends)."""
    while _LOCKS:
        f = _LOCKS.pop()
        Path(f.name).unlink(missing_ok=True)
        f.close()


def _run_fingerprint(a, config, x, columns, preset: str, options: dict, context=None) -> str:
    """SHA-256 of the command, the data (and context columns) and every setting that shapes the run."""
    import dataclasses
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    settings = {
        "command": NAME,
        "preset": preset,
        "options": options,
        "columns": columns,
        "shape": list(x.shape),
        "train": dataclasses.asdict(config),
        **{
            k: getattr(a, k)
            for k in (
                "val_fraction",
                "no_standardize",
                "whiten",
                "event_shape",
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
