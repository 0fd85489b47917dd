"""The ``pushforward`` command line: every command, one-line errors, every preset reachable."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch

from pushforward.cli.main import build_parser, main
from pushforward.flows import PRESETS
from pushforward.tabular import FlowModel

torch.set_num_threads(1)
TINY = ["--layers", "2", "--hidden", "16", "--no-progress"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)) @ np.array([[2.0, 0.0], [1.0, 0.5]]) + np.array([10.0, -3.0])
    np.savetxt(d / "x.csv", x, delimiter=",", header="alpha,beta", comments="")
    np.save(d / "x.npy", x)
    return d


@pytest.fixture(scope="module")
def model_file(data_dir):
    out = data_dir / "m.safetensors"
    fit = ["fit", str(data_dir / "x.csv"), "--flow", "realnvp", "--steps", "60", *TINY, "--support", "none"]
    rc = main([*fit, "--out", str(out)])
    assert rc == 0
    return out


def one_line_error(capsys, rc: int, expect: str) -> str:
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1, err
    assert expect in err, err
    return err


def test_help_lists_every_command_and_preset(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("fit", "sample", "score", "report", "demo", "presets"):
        assert cmd in out
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out
    for flag in (
        "--flow",
        "--out",
        "--checkpoint",
        "--resume",
        "--distributed",
        "--val-fraction",
        "--patience",
    ):
        assert flag in out
    for cmd in ("sample", "score", "report", "demo"):
        assert main([cmd, "--help"]) == 0
        assert "usage" in capsys.readouterr().out


def test_fit_writes_model_with_standardisation_and_columns(model_file, data_dir):
    model = FlowModel.load(model_file)
    x = np.load(data_dir / "x.npy")
    assert model.columns == ["alpha", "beta"]
    assert model.preset == "realnvp"
    np.testing.assert_allclose(model.mean, x.mean(0), atol=0.3)
    assert model.validation["source"] == "validation" and len(model.validation["quantiles"]) == 1001
    assert len(model.history["train_loss"]) >= 1
    # log-likelihood in original units: roughly the Gaussian entropy of the data (not of standardised data)
    cov = np.cov(x.T)
    gauss_ll = -0.5 * (2 * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1] + 2)
    assert abs(model.log_prob(x).mean() - gauss_ll) < 0.5


def test_fit_whiten_flag_stores_the_whitening_and_keeps_original_units(data_dir, tmp_path):
    out = tmp_path / "w.safetensors"
    fit = ["fit", str(data_dir / "x.csv"), "--flow", "realnvp", "--steps", "60", *TINY, "--support", "none"]
    assert main([*fit, "--whiten", "--out", str(out)]) == 0
    model = FlowModel.load(out)
    assert model.whiten is not None and model.whiten.shape == (2, 2)
    x = np.load(data_dir / "x.npy")
    cov = np.cov(x.T)
    gauss_ll = -0.5 * (2 * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1] + 2)
    assert abs(model.log_prob(x).mean() - gauss_ll) < 0.5
    s = model.sample(3000, seed=0)
    np.testing.assert_allclose(np.corrcoef(s.T)[0, 1], np.corrcoef(x.T)[0, 1], atol=0.1)


def test_sample_and_score(model_file, data_dir, capsys, tmp_path):
    assert main(["sample", str(model_file), "-n", "7", "--out", str(tmp_path / "s.npy"), "--seed", "1"]) == 0
    s = np.load(tmp_path / "s.npy")
    assert s.shape == (7, 2) and np.isfinite(s).all()
    capsys.readouterr()
    assert main(["sample", str(model_file), "-n", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "alpha,beta" and len(lines) == 4

    assert main(["score", str(model_file), str(data_dir / "x.csv"), "--anomalies", "0.05"]) == 0
    out = capsys.readouterr()
    rows = out.out.strip().splitlines()
    assert rows[0] == "log_likelihood,anomaly" and len(rows) == 401
    table = np.array([[float(v) for v in r.split(",")] for r in rows[1:]])
    model = FlowModel.load(model_file)
    np.testing.assert_allclose(table[:, 0], model.log_prob(np.load(data_dir / "x.npy")), rtol=1e-6, atol=1e-6)
    assert 0.0 < table[:, 1].mean() < 0.15  # about 5% of normal rows flagged
    assert "flagged" in out.err


def test_score_flags_outliers(model_file, tmp_path, capsys):
    x = np.array([[10.0, -3.0], [60.0, 40.0]])
    np.save(tmp_path / "o.npy", x)
    assert (
        main(
            [
                "score",
                str(model_file),
                str(tmp_path / "o.npy"),
                "--anomalies",
                "0.01",
                "--typicality",
                "--out",
                str(tmp_path / "o.csv"),
            ]
        )
        == 0
    )
    rows = np.loadtxt(tmp_path / "o.csv", delimiter=",", skiprows=1)
    assert rows[0, 1] == 0 and rows[1, 1] == 1 and rows[1, 2] == 1


def test_report_is_self_contained_html(model_file, data_dir, tmp_path):
    out = tmp_path / "r.html"
    assert (
        main(["report", str(model_file), str(data_dir / "x.csv"), "--out", str(out), "--samples", "300"]) == 0
    )
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("data:image/png;base64,") == 5  # curves, log-likelihoods, marginals, pairs, heatmap
    assert "http://" not in text and "https://" not in text


def test_demo_runs_and_writes_png(tmp_path, capsys):
    out = tmp_path / "demo.png"
    rc = main(
        [
            "demo",
            "--dataset",
            "8gaussians",
            "--steps",
            "30",
            "--n-train",
            "2000",
            "--layers",
            "2",
            "--hidden",
            "16",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "test NLL" in text and "entropy" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_dash_m_entry_point(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pushforward", "presets"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and "realnvp" in r.stdout


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["fit", "missing.csv"], "no such file"),
        (["fit", "{x}", "--flow", "nope"], "unknown flow preset 'nope'"),
        (["fit", "{x}", "--steps", "-3"], "steps must be >= 1"),
        (["fit", "{x}", "--clip-grad", "-1"], "clip_grad must be a positive number"),
        (["fit", "{x}", "--option", "noequals"], "KEY=VALUE"),
        (["fit", "{x}", "--flow", "realnvp", "--option", "bogus=1", "--steps", "2"], "rejected its options"),
        (["sample", "{m}", "-n", "0"], "positive integer"),
        (["sample", "{x}", "-n", "2"], "not a pushforward model file"),
        (["score", "{m}", "{bad}"], "line 3"),
        (["score", "{m}", "{three}"], "3 columns"),
        (["report", "{m}", "{x}", "--out", "/nonexistent/dir/r.html"], "does not exist"),
        (["demo", "--dataset", "nope"], "unknown dataset"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_errors_are_one_clear_line(argv, expect, model_file, data_dir, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,oops\n")
    np.save(tmp_path / "three.npy", np.ones((4, 3)))
    subs = {
        "{x}": str(data_dir / "x.csv"),
        "{m}": str(model_file),
        "{bad}": str(tmp_path / "bad.csv"),
        "{three}": str(tmp_path / "three.npy"),
    }
    rc = main([subs.get(a, a) for a in argv])
    one_line_error(capsys, rc, expect)


def _preset_args(name: str) -> tuple[list[str], list[str]]:
    """Tiny options the preset accepts, and extra data arguments for image presets."""
    params = inspect.signature(PRESETS[name]).parameters
    opts = []
    if "layers" in params:
        opts += ["--layers", "2"]
    if "hidden" in params:
        opts += ["--hidden", "8"]
    if "steps" in params:  # Glow counts flow steps per level
        opts += ["--option", "steps=1"]
    first = next(iter(params))
    image = first == "shape"
    return opts, (["--event-shape", "1,4,4", "--no-standardize"] if image else [])


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_reachable_from_the_cli(name, tmp_path, capsys):
    opts, extra = _preset_args(name)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 0.9, size=(64, 16)) if extra else rng.normal(size=(64, 3))
    np.save(tmp_path / "d.npy", x)
    out = tmp_path / "m.safetensors"
    rc = main(
        [
            "fit",
            str(tmp_path / "d.npy"),
            "--flow",
            name,
            *opts,
            *extra,
            "--steps",
            "2",
            "--batch-size",
            "32",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert main(["score", str(out), str(tmp_path / "d.npy")]) == 0
    scores = np.array([float(v) for v in capsys.readouterr().out.split()[1:]])
    assert scores.shape == (64,) and np.isfinite(scores).all()


def test_parser_builds():
    assert build_parser().prog == "pushforward"


def test_unknown_options_list_the_valid_ones(data_dir, capsys):
    rc = main(["fit", str(data_dir / "x.csv"), "--flow", "realnvp", "--option", "bogus=1"])
    err = one_line_error(capsys, rc, "valid options:")
    assert "hidden" in err and "layers" in err
    rc = main(["fit", str(data_dir / "x.csv"), "--bogus-flag"])
    err = one_line_error(capsys, rc, "valid options:")
    assert "--steps" in err and "--support" in err


def test_presets_print_plain_sentences(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert ":class:" not in out and "``" not in out and ":math:" not in out
    assert all(line.rstrip().endswith(".") for line in out.strip().splitlines())


def test_fit_detects_support_says_one_unit_and_leaves_no_checkpoint(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = np.stack([rng.lognormal(size=300), rng.integers(0, 2, 300), rng.normal(size=300)], 1)
    np.savetxt(tmp_path / "t.csv", x, delimiter=",", header="income,smoker,z", comments="")
    out = tmp_path / "m.safetensors"
    argv = ["fit", str(tmp_path / "t.csv"), "--steps", "30", *TINY, "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "income: positive" in err and "smoker: binary" in err and "z:" not in err
    assert err.count("original units") == 1 and "standardised" not in err
    assert out.exists() and not (tmp_path / "m.safetensors.ckpt").exists()
    s = FlowModel.load(out).sample(500, seed=0)
    assert (s[:, 0] > 0).all() and set(np.unique(s[:, 1])) <= {0.0, 1.0}
    assert main([*argv, "--support", "income=real,smoker=real"]) == 0
    assert "every column real" in capsys.readouterr().err


def test_conditional_fit_score_and_sample(tmp_path, capsys):
    rng = np.random.default_rng(1)
    c = rng.normal(size=(400, 1))
    y = np.hstack([3.0 * c, np.zeros_like(c)]) + 0.3 * rng.normal(size=(400, 2))
    np.savetxt(tmp_path / "t.csv", np.hstack([c, y]), delimiter=",", header="c,y,z", comments="")
    np.savetxt(tmp_path / "ctx.csv", np.array([[-1.0], [1.0]]), delimiter=",", header="c", comments="")
    np.savetxt(
        tmp_path / "y.csv", np.array([[-3.0, 0.0], [-3.0, 0.0]]), delimiter=",", header="y,z", comments=""
    )
    out = tmp_path / "m.safetensors"
    argv = [
        "fit",
        str(tmp_path / "t.csv"),
        "--flow",
        "realnvp",
        "--context-columns",
        "c",
        "--steps",
        "300",
        "--lr",
        "0.01",
    ]
    assert main([*argv, "--layers", "2", "--hidden", "16", "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["score", str(out), str(tmp_path / "y.csv"), "--context", str(tmp_path / "ctx.csv")]) == 0
    ll = np.array([float(v) for v in capsys.readouterr().out.split()[1:]])
    assert ll[0] > ll[1] + 5  # y = -3 is likely given c = -1, not given c = +1
    assert main(["sample", str(out), "-n", "200", "--context", str(tmp_path / "ctx.csv"), "--seed", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "context_row,c,y,z"  # each row labelled with its context row and values
    s = np.loadtxt(lines[1:], delimiter=",")
    assert s.shape == (400, 4) and (s[:200, :2] == [0, -1]).all() and (s[200:, :2] == [1, 1]).all()
    assert s[:200, 2].mean() < -2 and s[200:, 2].mean() > 2
    rc = main(["score", str(out), str(tmp_path / "y.csv")])
    one_line_error(capsys, rc, "pass --context-columns c")
