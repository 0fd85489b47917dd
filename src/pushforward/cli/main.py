"""The ``pushforward`` command line: a small dispatcher over one module per subcommand.

Commands::

    pushforward demo [--dataset 8gaussians] [--out demo.png]
    pushforward fit DATA.csv|DATA.npy [--flow PRESET --layers N --hidden 64,64 --option K=V ...] --out MODEL
    pushforward sample MODEL -n N [--context FILE] [--out FILE.csv|.npy]
    pushforward score MODEL DATA [--context-columns A,B] [--anomalies Q] [--out FILE]
    pushforward report MODEL DATA [--context-columns A,B] --out report.html
    pushforward presets
    pushforward fit-codec IMAGES... [--model idf|glow|realnvp] --out CODEC
    pushforward compress CODEC IN... -o OUT;  pushforward decompress CODEC OUT -o DIR

Each subcommand module exposes ``add_parser(subparsers)`` and ``run(args) -> int`` (and optionally
``cleanup()``, called when any command ends); :func:`main` takes the list of modules (:data:`COMMANDS` by
default). Errors are reported as one line on stderr (exit status 2 for
usage errors, 1 for failures); set ``PUSHFORWARD_DEBUG=1`` for full tracebacks. ``pushforward --help``
imports neither torch nor matplotlib.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from types import ModuleType

from . import compress, decompress, demo, fit, fit_codec, presets, report, sample, score
from .common import PROG, CLIError, Parser, UsageError

__all__ = ["COMMANDS", "build_parser", "main"]

#: The subcommand modules, in the order ``--help`` lists them.
#:
#: :meta hide-value:
COMMANDS: tuple[ModuleType, ...] = (
    demo,
    fit,
    sample,
    score,
    report,
    presets,
    fit_codec,
    compress,
    decompress,
)


def build_parser(commands: Sequence[ModuleType] = COMMANDS) -> Parser:
    """The argument parser of the ``pushforward`` command, with one subparser per module of ``commands``."""
    from .._version import __version__

    p = Parser(
        prog=PROG,
        description="Normalizing flows on tabular data: fit, sample, score, report; plus a 2-D demo.",
        epilog="Run 'pushforward COMMAND --help' for the options of each command.",
    )
    p.add_argument("--version", action="version", version=f"pushforward {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in commands:
        module.add_parser(sub).set_defaults(run=module.run)
    return p


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) < 500 else text[:497] + "..."


#: Exceptions that are the user's to fix: one line, exit status 1.
USER_ERRORS = (
    CLIError,
    ValueError,
    TypeError,
    OSError,
    ImportError,
    NotImplementedError,
    RuntimeError,
    MemoryError,
)


def main(argv: Sequence[str] | None = None, commands: Sequence[ModuleType] = COMMANDS) -> int:
    """Run the command line; returns the exit status (0 success, 1 failure, 2 usage error)."""
    parser = build_parser(commands)
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except SystemExit as e:  # --help / --version
        return int(e.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    debug = bool(os.environ.get("PUSHFORWARD_DEBUG"))
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            raise
        if isinstance(e, FileNotFoundError) and e.filename and not str(e).startswith(str(e.filename)):
            msg = f"{e.filename}: no such file"
        else:
            msg = _one_line(e)
        print(f"{PROG} {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug, not a user error: still one line, no traceback unless asked for
        if debug:
            raise
        print(
            f"{PROG} {args.command}: internal error: {type(e).__name__}: {_one_line(e)} "
            "(rerun with PUSHFORWARD_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        for module in commands:  # e.g. fit's lock on its output file
            if hasattr(module, "cleanup"):
                module.cleanup()
