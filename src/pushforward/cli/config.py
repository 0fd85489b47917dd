"""The training options of ``pushforward fit``, generated from the fields of
:class:`pushforward.train.config.TrainConfig`: a new training setting is added there, once, and appears here
as ``--its-name`` with its ``metadata["help"]``.

The command line differs from ``TrainConfig`` only in its defaults: the steps, batch size, learning rate and
evaluation interval are sized from the data unless given (:func:`sized_settings`), Adam's weight decay is
``1e-4`` and early stopping waits 10 evaluations (``--patience 0`` disables it).
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from .common import CLIError

__all__ = ["add_train_options", "train_config", "train_settings"]

#: Defaults of the command line where they differ from TrainConfig's.
CLI_DEFAULTS = {"weight_decay": 1e-4, "patience": 10, "seed": 0}
#: What ``--patience 0`` and ``--OPTION none`` parse to: the setting is switched off (``None``).
DISABLED = "none"
#: Settings sized from the data when not given (see :func:`sized_settings`).
DATA_SIZED = {
    "steps": "from the data: 100 epochs, clipped to [1000, 5000] steps",
    "batch_size": "rows/8 clipped to [32, 256]",
    "lr": "3e-3 for the data-sized default NSF, else 1e-3",
    "eval_every": "one epoch, at least 5 steps",
}
#: What a setting means beyond TrainConfig's help, on the command line.
CLI_NOTES = {
    "seed": "; also seeds the validation split and the initial weights",
    "patience": "; 0 disables",
    "batch_size": " (global, over all ranks)",
}


def _base_type(field: dataclasses.Field) -> tuple[type, bool]:
    """``(int | float | str, optional)`` from a field's annotation (a string: the module defers them)."""
    parts = str(field.type).replace(" ", "").split("|")
    kinds = {"int": int, "float": float, "str": str}
    named = [p for p in parts if p != "None"]
    if sorted(named) == ["bool", "str"]:  # e.g. compile: True, False or "auto"
        return _bool_or_word, "None" in parts
    if len(named) != 1 or named[0] not in kinds:
        raise TypeError(f"TrainConfig.{field.name}: cannot make an option of type {field.type}")
    return kinds[named[0]], "None" in parts


def _bool_or_word(text: str) -> bool | str:
    """``true``/``false`` (also yes/no, on/off) as a bool, any other word as itself."""
    word = text.strip().lower()
    return True if word in ("true", "yes", "on") else False if word in ("false", "no", "off") else word


def _parser_for(field: dataclasses.Field, config_type: type):
    """An argparse type that parses one value and validates it with ``TrainConfig.validate``."""
    kind, optional = _base_type(field)

    def parse(text: str):
        if field.name == "patience" and text.strip().lower() in ("0", "none"):
            return DISABLED  # 0 disables early stopping
        if optional and text.strip().lower() == "none":
            return DISABLED
        try:
            value = kind(text)
        except ValueError:
            article = "an integer" if kind is int else "a number" if kind is float else "a word"
            raise argparse.ArgumentTypeError(f"expected {article}, got {text!r}") from None
        try:
            config_type(**{field.name: value}).validate()
        except (TypeError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    return parse


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """Add one ``--option`` per field of :class:`~pushforward.train.config.TrainConfig` to ``parser``."""
    from ..train.config import TrainConfig

    group = parser.add_argument_group("training options (the fields of pushforward.train.config.TrainConfig)")
    for field in dataclasses.fields(TrainConfig):
        help_text = field.metadata.get("help", field.name)
        if field.name in DATA_SIZED:  # the command line's default replaces the one the help states
            help_text = help_text.split("; default")[0] + ")" if "; default" in help_text else help_text
            help_text = help_text.split(" (default")[0]
            default_text = DATA_SIZED[field.name]
        else:
            default = CLI_DEFAULTS.get(field.name, field.default)
            default_text = "none" if default is None else str(default)
        choices = _choices(field)
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            type=_parser_for(field, TrainConfig),
            default=None,
            metavar="|".join(choices) if choices else field.name.upper(),
            help=f"{help_text}{CLI_NOTES.get(field.name, '')} (default: {default_text})".replace("%", "%%"),
        )


def _choices(field: dataclasses.Field) -> tuple:
    if field.name == "schedule":
        from ..train.config import SCHEDULES

        return SCHEDULES
    if field.name == "compile":
        return ("auto", "true", "false")
    return ()


def sized_settings(a: argparse.Namespace, preset: str, options: dict, n: int) -> dict:
    """Steps, batch size, learning rate and evaluation interval from ``n`` rows (values the user gave win).

    For the default preset without ``--layers``/``--hidden`` the NSF is sized by
    :func:`pushforward.tabular.sizing.default_size` (``options`` gains its layers, widths and bins)."""
    from ..tabular.sizing import DEFAULT_LR, default_size

    def given(name: str):
        value = getattr(a, name, None)
        return None if value is DISABLED else value

    data_sized_nsf = a.flow is None and preset == "nsf" and a.layers is None and a.hidden is None
    if data_sized_nsf:
        for key, value in default_size(n).items():
            options.setdefault(key, value)
    batch = given("batch_size") or min(256, max(32, n // 8))
    per_epoch = math.ceil(n * (1 - a.val_fraction) / batch)
    steps = given("steps") if given("steps") or given("epochs") else min(5000, max(1000, 100 * per_epoch))
    lr = given("lr") if given("lr") is not None else (DEFAULT_LR if data_sized_nsf else 1e-3)
    every = given("eval_every") or max(per_epoch, 5)
    return {"batch_size": batch, "steps": steps, "eval_every": every, "lr": lr}


def train_config(a: argparse.Namespace, sized: dict):
    """The :class:`~pushforward.train.config.TrainConfig` of a ``fit`` command, validated: the options given,
    else the data-sized values ``sized``, else the command line's defaults, else TrainConfig's."""
    from ..train.config import TrainConfig

    values = {}
    for field in dataclasses.fields(TrainConfig):
        given = getattr(a, field.name, None)
        if given is DISABLED:
            values[field.name] = None  # e.g. --patience 0, --clip-grad none
        elif given is not None:
            values[field.name] = given
        elif field.name in sized and not (field.name == "steps" and getattr(a, "epochs", None)):
            values[field.name] = sized[field.name]  # (epochs given: no data-sized step count)
        elif field.name in CLI_DEFAULTS:
            values[field.name] = CLI_DEFAULTS[field.name]
    try:
        return TrainConfig(**values).validate()
    except (TypeError, ValueError) as e:
        raise CLIError(str(e)) from None


def train_settings(config) -> dict:
    """``config`` (a :class:`~pushforward.train.config.TrainConfig`) as the keyword settings of
    :meth:`FlowModel.fit <pushforward.tabular.FlowModel.fit>`, which hands them to the training engine."""
    return dataclasses.asdict(config)
