"""torchrun + DistributedDataParallel (gloo, 2 CPU processes) matches single-process training."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pushforward.cli.main import main
from pushforward.tabular import FlowModel

torch.set_num_threads(1)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_processes_match_one(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(640, 3)) * [1.0, 2.0, 0.5]
    np.save(tmp_path / "x.npy", x)
    args = [
        "fit",
        str(tmp_path / "x.npy"),
        "--flow",
        "realnvp",
        "--layers",
        "2",
        "--hidden",
        "16",
        "--steps",
        "25",
        "--batch-size",
        "64",
        "--val-fraction",
        "0.1",
        "--patience",
        "0",
        "--seed",
        "5",
        "--no-progress",
        "--device",
        "cpu",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "pushforward",
            *args,
            "--distributed",
            "--out",
            str(tmp_path / "ddp.safetensors"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert main([*args, "--out", str(tmp_path / "one.safetensors")]) == 0
    ddp = FlowModel.load(tmp_path / "ddp.safetensors")
    one = FlowModel.load(tmp_path / "one.safetensors")
    for (k, a), b in zip(one.flow.state_dict().items(), ddp.flow.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    np.testing.assert_allclose(ddp.history["train_loss"], one.history["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(ddp.log_prob(x[:50]), one.log_prob(x[:50]), rtol=1e-4, atol=1e-4)
    assert not (tmp_path / "ddp.safetensors.ckpt.tmp").exists()
