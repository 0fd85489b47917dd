"""Seeded fuzz over every preset and every public entry point: bad input gives a correct result or a clear
ValueError / TypeError / ModelFileError, never another exception, a NaN or a hang. The CLI, called in-process,
exits 0 or non-zero with one error line on stderr and no traceback."""

from __future__ import annotations

import contextlib
import io
import random

import numpy as np
import pytest
import torch

from pushforward import fit, fit_vi
from pushforward.cli.main import main
from pushforward.flows import PRESETS
from pushforward.io import ModelFileError
from pushforward.tabular import FlowModel

from .small_presets import IMAGE, SMALL

torch.set_num_threads(1)
CLEAN = (ValueError, TypeError)  # ModelFileError and CheckpointError are ValueErrors


def test_every_preset_is_fuzzed():
    assert set(PRESETS) == set(SMALL) | set(IMAGE)


def _flow(name, context=0):
    torch.manual_seed(0)
    if name in IMAGE:
        return PRESETS[name]((1, 4, 4), context=context, **IMAGE[name]), (1, 4, 4)
    return PRESETS[name](3, context=context, **SMALL[name]), (3,)


def _bad_inputs(rng, event, dtype):
    """Seeded bad and borderline inputs for x: types, shapes, dtypes, NaN/inf, huge, empty."""
    good = torch.rand(4, *event, dtype=dtype) if len(event) > 1 else torch.randn(4, *event, dtype=dtype)
    nan, inf, huge = good.clone(), good.clone(), good.clone()
    nan.view(-1)[rng.randrange(nan.numel())] = float("nan")
    inf.view(-1)[rng.randrange(inf.numel())] = float("-inf")
    huge.view(-1)[0] = 1e30
    wide = torch.randn(4, event[0] + 1, *event[1:], dtype=dtype)
    return [
        good,
        nan,
        inf,
        huge,
        wide,
        good[:0],
        good.numpy(),
        good.tolist(),
        None,
        "x",
        3,
        good.to(torch.int64),
        good.to(torch.float16),
        torch.randn(2, 3, *event, dtype=dtype),
        good.reshape(-1),
        good.to(torch.complex64),
    ]


def _check_result(name, out, batch, latent):
    z, ladj = out
    assert z.shape == (batch, *latent) and ladj.shape == (batch,), name
    assert not torch.isnan(z).any() and not torch.isnan(ladj).any(), f"{name}: NaN out"


def _call(f, *args):
    try:
        return f(*args), None
    except CLEAN as e:
        assert str(e).strip(), "empty error message"
        return None, e


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_flow_entry_points_fuzz(name):
    rng = random.Random(hash(name) % 1000)
    flow, event = _flow(name)
    flow.eval()
    dtype = torch.float32
    for x in _bad_inputs(rng, event, dtype):
        lp, _ = _call(flow.log_prob, x)
        if lp is not None:
            assert isinstance(x, torch.Tensor) and lp.shape == x.shape[: x.dim() - len(event)]
            assert not torch.isnan(lp).any(), f"{name}: NaN log_prob"
        out, _ = _call(flow.transform, x)
        if out is not None:
            _check_result(name, out, x.shape[0], flow.transform.latent_shape)
    for shape in [-1, 2.5, "3", None, (2, -1), True, 10**13, (0,), 2, (2, 1), torch.Size([2]), np.int64(2)]:
        for f in (flow.sample, flow.sample_and_log_prob):
            try:
                out = f(shape)
            except NotImplementedError:  # presets without an inverse say so
                break
            except CLEAN:
                continue
            x = out[0] if isinstance(out, tuple) else out
            assert x.shape[-len(event) :] == event and not torch.isnan(x).any(), f"{name} {shape!r}"


@pytest.mark.parametrize("name", ["realnvp", "maf", "nsf", "glow"])
def test_conditional_entry_points_fuzz(name):
    flow, event = _flow(name, context=2)
    x = torch.randn(4, *event)
    contexts = [
        None,
        torch.randn(4, 3),
        torch.randn(5, 2),
        torch.randn(4, 2).numpy(),
        [[0.0, 1.0]] * 4,
        torch.full((4, 2), float("nan")),
        torch.randn(2),
        torch.randn(4, 2).double(),
        "c",
    ]
    for c in contexts:
        _call(flow.log_prob, x, c)
        _call(flow.transform, x, c)
        for shape in [3, -1, 2.5, 10**13]:
            try:
                flow.sample(shape, c)
            except NotImplementedError:
                break
            except CLEAN:
                pass
    x = torch.rand(4, *event) if len(event) > 1 else x
    lp = flow.log_prob(x, torch.randn(4, 2))
    assert lp.shape == (4,) and torch.isfinite(lp).all()


def test_training_entry_points_fuzz():
    rng = random.Random(19)
    flow = PRESETS["realnvp"](2, layers=1, hidden=(4,))
    x = torch.randn(64, 2)
    kwargs = [
        {"steps": -1},
        {"steps": 0},
        {"epochs": 0},
        {"batch_size": 0},
        {"lr": float("nan")},
        {"lr": -1.0},
        {"schedule": "bogus"},
        {"checkpoint_every": 0},
        {"resume": True},
        {"max_skipped_fraction": 2.0},
        {"steps": 2, "epochs": 2},
        {"steps": 2},
    ]
    data = [x, x.numpy(), x.tolist(), "x", None, torch.randn(64, 3), (x, x), x.double(), x[:0]]
    for _ in range(40):
        kw = dict(rng.choice(kwargs))
        kw.setdefault("steps", 2) if "epochs" not in kw else None
        _call(lambda kw=kw: fit(flow, rng.choice(data), progress=False, **kw))
    for bad in ({"steps": 0}, {"samples": 0}, {"lr": -1.0}, {"schedule": "x"}):
        _call(
            lambda bad=bad: fit_vi(
                flow, lambda z: -(z**2).sum(-1), progress=False, eval_samples=0, **{"steps": 2, **bad}
            )
        )


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    x = np.random.default_rng(0).normal(size=(200, 2))
    m = FlowModel.train(x, "realnvp", options={"layers": 1, "hidden": [4]}, steps=4, progress=False)
    m.save(d / "m.safetensors")
    np.savetxt(d / "d.csv", x, delimiter=",")
    return d


def test_flow_model_entry_points_fuzz(model_file):
    m = FlowModel.load(model_file / "m.safetensors")
    for x in [
        np.zeros((3, 2)),
        np.zeros((3, 3)),
        [[1, 2]],
        "x",
        None,
        np.array([["a", "b"]]),
        np.full((2, 2), np.nan),
        np.full((2, 2), 1e300),
        np.zeros((0, 2)),
        np.zeros(2),
        np.array([[1e30, 0.0]]),
    ]:
        out, _ = _call(m.log_prob, x)
        if out is not None:
            assert out.shape == (np.asarray(x).shape[0],) and not np.isnan(out).any()
    for n in [0, -1, 2.5, "3", None, True, 3]:
        out, _ = _call(m.sample, n)
        assert out is None or out.shape == (3, 2)
    for path in [model_file / "d.csv", model_file, model_file / "none.safetensors"]:
        try:
            FlowModel.load(path)
        except (ModelFileError, FileNotFoundError):
            pass


TOKENS = [
    "fit",
    "sample",
    "score",
    "report",
    "presets",
    "demo",
    "--flow",
    "nope",
    "realnvp",
    "--steps",
    "-1",
    "0",
    "1",
    "2.5",
    "--layers",
    "--hidden",
    "0,0",
    "4",
    "--option",
    'base="x"',
    "base=1",
    "mask=[1,2]",
    "layers=1e999",
    "--out",
    "-n",
    "--num",
    "--lr",
    "nan",
    "inf",
    "--batch-size",
    "--val-fraction",
    "1.5",
    "--anomalies",
    "2",
    "--event-shape",
    "1,1,2",
    "--device",
    "cuda:99",
    "--dtype",
    "float16",
    "--delimiter",
    ";",
    "--resume",
    "--checkpoint",
    "--no-progress",
    "--seed",
    "x",
    "--samples",
    "--epochs",
    "--max-memory-gb",
    "--outliers",
    "MODEL",
    "DATA",
    "DIR",
    "MISSING",
    "BAD",
]


@pytest.mark.slow  # about 8 s: 120 in-process CLI runs (CI runs slow tests too)
def test_cli_fuzz_in_process(model_file, tmp_path, monkeypatch):
    # A random token may follow --out (say "layers=1e999"): whatever the CLI writes must land in tmp_path,
    # never in the checkout.
    monkeypatch.chdir(tmp_path)
    rng = random.Random(1919)
    (tmp_path / "bad.csv").write_text('a,b\n1,"x"\n2,3\n')
    subst = {
        "MODEL": str(model_file / "m.safetensors"),
        "DATA": str(model_file / "d.csv"),
        "DIR": str(tmp_path),
        "MISSING": str(tmp_path / "missing.csv"),
        "BAD": str(tmp_path / "bad.csv"),
    }
    for i in range(120):
        command = rng.choice(["fit", "sample", "score", "report", "presets"])
        head = [command]
        if command == "fit":
            head += [
                rng.choice(["DATA", "BAD", "MISSING", "DIR"]),
                "--steps",
                "1",
                "--layers",
                "1",
                "--hidden",
                "4",
                "--no-progress",
                "--out",
                str(tmp_path / f"o{i}.safetensors"),
            ]
        elif command in ("score", "report"):
            head += [rng.choice(["MODEL", "DATA", "MISSING"]), rng.choice(["DATA", "BAD", "MODEL"])]
            if command == "report":
                head += ["--out", str(tmp_path / f"r{i}.html"), "--samples", "20"]
        elif command == "sample":
            head += [rng.choice(["MODEL", "DATA", "MISSING"]), "-n", rng.choice(["3", "0", "-2", "x"])]
        argv = [subst.get(t, t) for t in head + rng.sample(TOKENS, rng.randint(0, 4))]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(argv)
        text = err.getvalue()
        assert "Traceback" not in text and "internal error" not in text, (argv, text)
        if rc != 0:
            assert rc in (1, 2), (argv, rc)
            errors = [ln for ln in text.splitlines() if ln.startswith("pushforward")]
            assert len(errors) == 1, (argv, text)
