"""``pushforward sample`` and ``score`` on posterior files (io.save of a Posterior): θ drawn per observation
row, θ scored given observations, with the context convention of conditional tabular models (issue 26)."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch

from pushforward.cli.main import main
from pushforward.distributions import BoxUniform
from pushforward.flows import NSF
from pushforward.io import save
from pushforward.nets.embedding import MLPEmbedding
from pushforward.sbi import Posterior

torch.set_num_threads(1)


def run(*argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def table(stdout: str) -> tuple[list[str], np.ndarray]:
    lines = stdout.strip().splitlines()
    return lines[0].split(","), np.loadtxt(lines[1:], delimiter=",", ndmin=2)


@pytest.fixture(scope="module", params=[torch.float32, torch.float64], ids=["float32", "float64"])
def posterior_file(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("post")
    torch.manual_seed(0)
    prior = BoxUniform(torch.tensor([-1.0, 0.0]), torch.tensor([2.0, 0.5]))
    flow = NSF(2, context=3, layers=1, hidden=(8,))
    post = Posterior.from_prior(flow, prior, embedding=MLPEmbedding((4,), 3, hidden=(8,))).to(request.param)
    with torch.no_grad():
        for p in post.parameters():
            p.add_(0.2 * torch.randn_like(p))
    theta = prior.sample((100,)).to(request.param)
    post.fit_standardization(theta, torch.randn(100, 4, dtype=request.param))
    path = d / "posterior.safetensors"
    save(post.eval(), path)
    obs = np.array([[0.1, -0.2, 0.3, 0.0], [1.0, 0.5, -0.5, 0.2], [0.0, 0.0, 0.0, 0.0]])
    np.savetxt(d / "obs.csv", obs, delimiter=",", header="a,b,c,e", comments="")
    return d, path, post, obs


def test_sample_draws_n_parameter_vectors_per_observation_row(posterior_file):
    d, path, post, obs = posterior_file
    rc, out, err = run("sample", path, "-n", 5, "--context", d / "obs.csv", "--seed", 3)
    assert rc == 0, err
    names, rows = table(out)
    assert names == ["context_row", "context_0", "context_1", "context_2", "context_3", "theta_0", "theta_1"]
    assert rows.shape == (15, 7) and rows[:, 0].tolist() == [0.0] * 5 + [1.0] * 5 + [2.0] * 5
    assert np.allclose(rows[:, 1:5], np.repeat(obs, 5, axis=0))
    theta = rows[:, 5:]
    assert ((theta > [-1.0, 0.0]) & (theta < [2.0, 0.5])).all()  # inside the prior's box
    again = run("sample", path, "-n", 5, "--context", d / "obs.csv", "--seed", 3)[1]
    assert again == out  # the seed fixes the draws
    with torch.random.fork_rng():
        torch.manual_seed(3)
        direct = post.sample((5,), torch.tensor(obs, dtype=post.dtype)).transpose(0, 1).reshape(-1, 2)
    assert np.allclose(theta, direct.double().numpy(), rtol=1e-6, atol=1e-7)


def test_score_scores_theta_given_observations_and_names_rows_outside_the_support(posterior_file, tmp_path):
    d, path, post, obs = posterior_file
    theta = np.array([[0.5, 0.25], [1.5, 0.1], [3.0, 0.2]])  # the last lies outside the box
    np.savetxt(tmp_path / "theta.csv", theta, delimiter=",", header="t0,t1", comments="")
    rc, out, err = run("score", path, tmp_path / "theta.csv", "--context", d / "obs.csv")
    assert rc == 0, err
    _, scores = table(out)
    expected = post.log_prob(torch.tensor(theta, dtype=post.dtype), torch.tensor(obs, dtype=post.dtype))
    assert np.allclose(scores[:2, 0], expected[:2].detach().double().numpy(), rtol=1e-6)
    assert scores[2, 0] == -math.inf and "row 2: theta_0 = 3 is outside its support (-1, 2)" in err
    # the same with the observations as columns of the parameter file (--context-columns)
    np.savetxt(
        tmp_path / "both.csv", np.hstack([theta, obs]), delimiter=",", header="t0,t1,a,b,c,e", comments=""
    )
    rc, out2, err = run("score", path, tmp_path / "both.csv", "--context-columns", "a,b,c,e")
    assert rc == 0, err and np.array_equal(table(out2)[1], scores)


def test_posterior_files_say_what_is_missing(posterior_file, tmp_path):
    d, path, _, _ = posterior_file
    rc, _, err = run("sample", path, "-n", 2)
    assert rc == 1 and "--context FILE" in err and "4 values" in err
    np.savetxt(tmp_path / "short.csv", np.zeros((2, 3)), delimiter=",")
    rc, _, err = run("sample", path, "-n", 2, "--context", tmp_path / "short.csv")
    assert rc == 1 and "3 context columns" in err
    np.savetxt(tmp_path / "theta.csv", np.zeros((2, 2)), delimiter=",")
    rc, _, err = run("score", path, tmp_path / "theta.csv", "--context", d / "obs.csv")
    assert rc == 1 and "3 context rows but the data has 2" in err
    rc, _, err = run("score", path, tmp_path / "theta.csv", "--context", d / "obs.csv", "--anomalies", 0.1)
    assert rc == 1 and "validation scores" in err


def test_report_says_it_takes_tabular_model_files(posterior_file, tmp_path):
    d, path, _, _ = posterior_file
    rc, _, err = run("report", path, d / "obs.csv", "--out", tmp_path / "r.html")
    assert rc == 1 and "report takes a tabular model file" in err and "Posterior" in err
