"""Checkpoints: atomic writes, exact resume (also after kill -9), non-finite batches skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pushforward import fit
from pushforward.cli.main import main
from pushforward.data import toy
from pushforward.flows import RealNVP
from pushforward.tabular import FlowModel
from pushforward.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

torch.set_num_threads(1)
X, V = toy("moons", 1000, seed=0), toy("moons", 200, seed=1)
KW = dict(steps=60, batch_size=64, seed=3, progress=False, checkpoint_every=7)


def new_flow(seed=0):
    torch.manual_seed(seed)
    return RealNVP(2, layers=2, hidden=(16,))


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    p = tmp_path / "c.ckpt"
    save_checkpoint({"step": 1}, p)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_checkpoint({"step": 2}, p)
    monkeypatch.undo()
    assert load_checkpoint(p)["step"] == 1
    assert [f.name for f in tmp_path.iterdir()] == ["c.ckpt"]  # no temporary left behind


def test_damaged_checkpoint(tmp_path):
    p = tmp_path / "c.ckpt"
    save_checkpoint({"step": 1, "w": torch.ones(100)}, p)
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(p)


def test_empty_checkpoint_file_is_refused_with_a_clear_error(tmp_path):
    p = tmp_path / "empty.ckpt"
    p.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(p)


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    ref = new_flow()
    h_ref = fit(ref, X, V, checkpoint=tmp_path / "ref.ckpt", **KW)

    class Crash(Exception):
        pass

    def crash(step, loss):
        if step == 40:
            raise Crash

    with pytest.raises(Crash):
        fit(new_flow(), X, V, checkpoint=tmp_path / "c.ckpt", callback=crash, **KW)
    flow = new_flow(seed=99)  # different initial weights: everything must come from the checkpoint
    h = fit(flow, X, V, checkpoint=tmp_path / "c.ckpt", resume=True, **KW)
    assert h.resumed_from_step == 35
    assert h.train_loss == h_ref.train_loss and h.val_loss == h_ref.val_loss
    for a, b in zip(ref.parameters(), flow.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resume_after_kill_9(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent("""
        import os, signal, sys, torch
        torch.set_num_threads(1)
        from pushforward import fit
        from pushforward.data import toy
        from pushforward.flows import RealNVP
        torch.manual_seed(0)
        flow = RealNVP(2, layers=2, hidden=(16,))
        def die(step, loss):
            if step == 45 and sys.argv[1] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
        h = fit(flow, toy("moons", 1000, seed=0), toy("moons", 200, seed=1), steps=60, batch_size=64, seed=3,
                progress=False, checkpoint_every=7, checkpoint=sys.argv[2], resume=True, callback=die)
        print(repr(h.val_loss[-1]), repr(h.train_loss[-1]))
    """)
    )
    killed = subprocess.run(
        [sys.executable, str(script), "kill", str(tmp_path / "c.ckpt")], capture_output=True, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "c.ckpt")["step"] == 42
    resumed = subprocess.run(
        [sys.executable, str(script), "resume", str(tmp_path / "c.ckpt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    torch.manual_seed(0)
    flow = RealNVP(2, layers=2, hidden=(16,))
    h = fit(flow, X, V, checkpoint=tmp_path / "ref.ckpt", **KW)
    assert resumed.stdout.split() == [repr(h.val_loss[-1]), repr(h.train_loss[-1])]


def test_cli_resume(tmp_path, capsys):
    np.save(tmp_path / "x.npy", X.numpy())
    args = [
        "fit",
        str(tmp_path / "x.npy"),
        "--flow",
        "realnvp",
        "--layers",
        "2",
        "--hidden",
        "8",
        "--steps",
        "30",
        "--batch-size",
        "64",
        "--checkpoint-every",
        "10",
        "--no-progress",
        "--patience",
        "0",
    ]
    # an explicit --checkpoint is kept after success (the default MODEL.ckpt is deleted)
    ckpt = ["--checkpoint", str(tmp_path / "a.safetensors.ckpt")]
    assert main([*args, *ckpt, "--out", str(tmp_path / "a.safetensors")]) == 0
    # resuming from the finished run's checkpoint: nothing left to do, the same model is written
    assert (
        main(
            [
                *args,
                "--steps",
                "30",
                "--out",
                str(tmp_path / "b.safetensors"),
                "--resume",
                "--checkpoint",
                str(tmp_path / "a.safetensors.ckpt"),
            ]
        )
        == 0
    )
    a = FlowModel.load(tmp_path / "a.safetensors")
    b = FlowModel.load(tmp_path / "b.safetensors")
    np.testing.assert_array_equal(a.log_prob(X.numpy()[:20]), b.log_prob(X.numpy()[:20]))
    assert b.history["resumed_from_step"] == 30


def test_nonfinite_batches_are_skipped_and_counted():
    x = torch.randn(64, 2)
    bad = x.clone()
    bad[:32] = 1e25  # finite input whose log-density overflows: one poisoned batch per epoch
    loader = DataLoader(TensorDataset(torch.cat([x, bad[:32]])), batch_size=32, shuffle=False)
    flow = new_flow()
    seen = []
    h = fit(flow, loader, steps=9, progress=False, callback=lambda s, loss: seen.append(loss))
    assert h.skipped_batches == 3
    assert len(seen) == 6 and all(np.isfinite(seen))
    assert all(torch.isfinite(p).all() for p in flow.parameters())


def test_resume_refuses_a_checkpoint_with_another_fingerprint(tmp_path):
    from pushforward import fit
    from pushforward.data import toy
    from pushforward.flows import RealNVP
    from pushforward.train.checkpoint import CheckpointError

    x = toy("moons", 128, seed=0)
    ck = tmp_path / "run.ckpt"

    def run(fingerprint, resume):
        flow = RealNVP(2, layers=1, hidden=(4,))
        return fit(flow, x, steps=3, progress=False, checkpoint=ck, resume=resume, fingerprint=fingerprint)

    run("a", False)
    with pytest.raises(CheckpointError, match="fingerprint"):
        run("b", True)
    assert run("a", True).resumed_from_step == 3
