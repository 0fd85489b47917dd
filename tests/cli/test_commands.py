"""The dispatcher and the training options: one module per subcommand, options generated from TrainConfig."""

from __future__ import annotations

import argparse
import dataclasses
import types

import numpy as np
import pytest

from pushforward.cli import config as cli_config
from pushforward.cli.main import COMMANDS, build_parser, main
from pushforward.train import config as train_config_module
from pushforward.train.config import TrainConfig


def fit_parser() -> argparse.ArgumentParser:
    return build_parser().subcommand("fit").ensure_built()


def fit_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["fit", "data.csv", *argv])


def test_every_subcommand_is_a_module_with_add_parser_and_run():
    names = set()
    for module in COMMANDS:
        assert callable(module.add_parser) and callable(module.run), module.__name__
        names.add(module.NAME)
    assert names == {
        "demo",
        "fit",
        "sample",
        "score",
        "report",
        "presets",
        "compress",
        "decompress",
        "fit-codec",
    }


def test_the_dispatcher_runs_the_modules_it_is_given(capsys):
    def add_parser(subparsers):
        p = subparsers.add_parser("hello", help="say hello")
        p.add_argument("--name", default="world")
        return p

    def run(a):
        print(f"hello {a.name}")
        return 3

    hello = types.SimpleNamespace(NAME="hello", add_parser=add_parser, run=run)
    assert main(["hello", "--name", "flows"], commands=[hello]) == 3
    assert capsys.readouterr().out == "hello flows\n"
    assert main(["fit", "x.csv"], commands=[hello]) == 2  # only the modules given exist
    assert "invalid choice" in capsys.readouterr().err


def test_every_trainconfig_field_is_a_fit_option_with_its_help():
    parser = fit_parser()
    actions = {a.dest: a for a in parser._actions}
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        assert field.name in actions and flag in actions[field.name].option_strings, flag
        first_words = " ".join(field.metadata["help"].split()[:3])
        assert first_words in actions[field.name].help, (flag, actions[field.name].help)


def test_a_new_trainconfig_field_becomes_an_option_without_other_changes(monkeypatch):
    @dataclasses.dataclass
    class Wider(TrainConfig):
        label_smoothing: float = dataclasses.field(default=0.0, metadata={"help": "a brand-new knob"})

    monkeypatch.setattr(train_config_module, "TrainConfig", Wider)
    help_text = fit_parser().format_help()
    assert "--label-smoothing" in help_text and "a brand-new knob" in help_text
    a = fit_args("--label-smoothing", "0.25")
    config = cli_config.train_config(a, {"steps": 10, "batch_size": 32, "lr": 1e-3, "eval_every": 5})
    assert isinstance(config, Wider) and config.label_smoothing == 0.25


def test_parsed_options_build_a_validated_trainconfig():
    sized = {"steps": 1234, "batch_size": 64, "lr": 3e-3, "eval_every": 7}
    config = cli_config.train_config(
        fit_args("--clip-grad", "2.5", "--schedule", "constant", "--lr", "0.01"), sized
    )
    assert config == TrainConfig(
        steps=1234, batch_size=64, lr=0.01, eval_every=7, clip_grad=2.5, schedule="constant",
        weight_decay=1e-4, patience=10, seed=0,
    )  # fmt: skip
    off = cli_config.train_config(fit_args("--patience", "0", "--clip-grad", "none", "--epochs", "3"), sized)
    assert off.patience is None and off.clip_grad is None and off.epochs == 3
    settings = cli_config.train_settings(config)
    assert settings["schedule"] == "constant" and settings["clip_grad"] == 2.5 and settings["steps"] == 1234


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["--clip-grad", "0"], "clip_grad must be a positive number"),
        (["--lr", "nan"], "lr must be a positive number"),
        (["--eval-every", "0"], "eval_every must be >= 1"),
        (["--schedule", "linear"], "schedule must be one of"),
        (["--batch-size", "2.5"], "expected an integer"),
        (["--max-skipped-fraction", "2"], "max_skipped_fraction must be in [0, 1]"),
    ],
)
def test_bad_training_options_are_refused_with_trainconfig_messages(argv, expect, capsys):
    assert main(["fit", "missing.csv", *argv]) == 2  # refused while parsing: before the file is read
    err = capsys.readouterr().err
    assert expect in err and len(err.strip().splitlines()) == 1, err


def test_every_trainconfig_option_reaches_the_engine(tmp_path, capsys):
    """Options the old loop could not honour (weight averaging, warm-up, a time budget) now train."""
    np.savetxt(tmp_path / "d.csv", np.random.default_rng(0).normal(size=(50, 2)), delimiter=",")
    out = tmp_path / "m.safetensors"
    argv = [
        "fit",
        str(tmp_path / "d.csv"),
        "--ema",
        "0.99",
        "--warmup",
        "2",
        "--steps",
        "4",
        "--out",
        str(out),
    ]
    rc = main([*argv, "--max-seconds", "600", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert out.exists()
