"""TrainConfig.compile: "auto" stays eager for short runs, the compiled and eager paths agree, a compiler
failure falls back to eager with a warning, and the command line takes the option."""

from __future__ import annotations

import copy

import pytest
import torch

from pushforward.cli import config as cli_config
from pushforward.cli.common import UsageError
from pushforward.cli.main import build_parser
from pushforward.flows import MAF, RealNVP
from pushforward.train import compiling
from pushforward.train.compiling import CompilePlan, model_path
from pushforward.train.config import TrainConfig
from pushforward.train.engine import train
from pushforward.train.losses import MaximumLikelihood


def _data(n: int = 70, d: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, d, generator=g) @ torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, -0.3], [0.0, 0.0, 0.7]])


def _perturbed(flow: torch.nn.Module, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(3)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return flow.to(dtype)


def _forbid_compiling(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("compiled although the run is short")

    monkeypatch.setattr(compiling, "compile_loss", refuse)


@pytest.mark.parametrize("gain", [None, 0.5])
def test_auto_stays_eager_for_short_runs(monkeypatch, gain):
    """The default ("auto") never compiles a short run, even for a path measured 50 % faster."""
    _forbid_compiling(monkeypatch)
    flow = _perturbed(MAF(3, layers=2, hidden=(8,)))
    if gain is not None:
        monkeypatch.setitem(compiling.MEASURED_GAIN, model_path(flow), gain)
    history = train(flow, MaximumLikelihood(), _data(), config=TrainConfig(steps=30, batch_size=16, seed=0))
    assert "compile_seconds" not in history.extras
    assert TrainConfig().compile == "auto"


def test_auto_compiles_only_long_runs_on_measured_paths(monkeypatch):
    flow = MAF(2, layers=1, hidden=(8,))
    loss = MaximumLikelihood()
    monkeypatch.setattr(compiling, "MEASURED_GAIN", {})
    assert CompilePlan.choose(flow, loss, "auto", steps=10**9).mode == "eager"  # never measured faster
    monkeypatch.setattr(compiling, "MEASURED_GAIN", {model_path(flow): 0.2})
    assert CompilePlan.choose(flow, loss, False, steps=10**9).mode == "eager"
    other = lambda model, batch: -model(*batch).mean()  # noqa: E731 - an objective never measured
    assert CompilePlan.choose(flow, other, "auto", steps=10**9).mode == "eager"
    assert CompilePlan.choose(flow, loss, True, steps=1).mode == "compiled"
    bound = compiling.COMPILE_SECONDS_BOUND
    for step_seconds, steps, expected in ((0.01, 10**4, "eager"), (0.01, 10**6, "compiled")):
        # saved = remaining steps x step time x gain, against the compile-time bound
        assert (steps * step_seconds * 0.2 > bound) == (expected == "compiled")
        plan = CompilePlan.choose(flow, loss, "auto", steps=steps)
        assert plan.mode == "probe"
        for i in range(compiling.PROBE_STEPS):
            assert plan.mode == "probe"
            plan.after_step(i + 1, step_seconds)
        assert plan.mode == expected


def test_only_the_full_batch_shape_is_compiled(monkeypatch):
    """After "auto" decides, a partial batch runs eagerly; the full batch shape is compiled once."""
    compiled_rows = []

    def recording(model, loss):
        def fn(batch):
            compiled_rows.append(batch[0].shape[0])
            return loss(model, batch)

        return fn

    monkeypatch.setattr(compiling, "compile_loss", recording)
    flow = _perturbed(RealNVP(3, layers=1, hidden=(8,)))
    monkeypatch.setattr(compiling, "MEASURED_GAIN", {model_path(flow): 0.5})
    plan = CompilePlan.choose(flow, MaximumLikelihood(), "auto", steps=10**9)
    full, part = (_data(32),), (_data(6),)
    for i in range(compiling.PROBE_STEPS):
        plan.loss(full)
        plan.after_step(i + 1, 1.0)
    assert plan.mode == "compiled" and not compiled_rows
    eager = MaximumLikelihood()(flow, part)
    assert torch.equal(plan.loss(part), eager) and not compiled_rows  # partial: eager, nothing compiled
    plan.loss(full)
    plan.loss(full)
    assert set(compiled_rows) == {32} and plan.compile_seconds is not None
    plan.loss(part)
    assert set(compiled_rows) == {32}


def test_compile_setting_is_validated():
    for bad in ("yes", 1, 0, 1.0, None):
        with pytest.raises(ValueError, match="compile must be"):
            TrainConfig(compile=bad).validate()
    for good in ("auto", True, False):
        assert TrainConfig(compile=good).validate().compile == good


def test_command_line_option():
    def parsed(*argv):
        a = build_parser().parse_args(["fit", "data.csv", *argv])
        return cli_config.train_config(
            a, {"steps": 10, "batch_size": 32, "lr": 1e-3, "eval_every": 5}
        ).compile

    assert parsed() == "auto"
    assert parsed("--compile", "false") is False
    assert parsed("--compile", "true") is True
    with pytest.raises(UsageError, match="compile must be 'auto', True or False"):
        parsed("--compile", "sometimes")


def _run(flow, setting, steps=6):
    losses = []
    cfg = TrainConfig(
        steps=steps, batch_size=32, seed=0, compile=setting, clip_grad=None, schedule="constant"
    )
    history = train(flow, MaximumLikelihood(), _data(), config=cfg, callback=lambda s, v: losses.append(v))
    return losses, history


def test_a_failing_compiler_falls_back_to_eager(monkeypatch):
    def broken(model, loss):
        def fn(batch):
            raise RuntimeError("no compiler here")

        return fn

    monkeypatch.setattr(compiling, "compile_loss", broken)
    flow = _perturbed(RealNVP(3, layers=2, hidden=(8,)))
    other = copy.deepcopy(flow)
    eager_losses, _ = _run(flow, False)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        losses, history = _run(other, True)
    assert losses == eager_losses
    assert "compile_seconds" not in history.extras


@pytest.mark.slow
def test_compiled_and_eager_training_agree():
    """Six steps (batches of 32, 32 and a partial 6 rows, run eagerly) give the same losses and weights
    within float32 rounding."""
    torch.compiler.reset()
    eager = _perturbed(RealNVP(3, layers=2, hidden=(8,)))
    compiled, initial = copy.deepcopy(eager), copy.deepcopy(eager)
    eager_losses, _ = _run(eager, False)
    compiled_losses, history = _run(compiled, True)
    assert history.extras["compile_seconds"] > 0
    torch.testing.assert_close(
        torch.tensor(compiled_losses), torch.tensor(eager_losses), rtol=1e-5, atol=1e-5
    )
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    moved = [not torch.equal(a, b) for a, b in zip(eager.parameters(), initial.parameters())]
    assert all(moved)  # the steps were applied
