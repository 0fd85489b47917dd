"""``pushforward compress`` / ``decompress``: PNG, PGM and .npy files restored bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("constriction")
Image = pytest.importorskip("PIL.Image")

from pushforward.cli.main import main  # noqa: E402
from pushforward.flows import IDF  # noqa: E402
from pushforward.io import save  # noqa: E402

OPTIONS = {"levels": 2, "layers": 1, "hidden": [8], "components": 2}


def _model(path, seed: int = 0):
    torch.manual_seed(seed)
    flow = IDF((1, 6, 6), levels=2, layers=1, hidden=(8,), components=2)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save(flow, path)
    return path


def test_compress_decompress_roundtrip(tmp_path, capsys):
    model = _model(tmp_path / "m.safetensors")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    b = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.pgm")
    arr = rng.integers(-1000, 1000, (3, 36)).astype(np.int32)
    np.save(tmp_path / "c.npy", arr)
    out = tmp_path / "all.pfz"
    args = ["compress", str(model), str(tmp_path / "a.png"), str(tmp_path / "b.pgm"), str(tmp_path / "c.npy")]
    assert main([*args, "-o", str(out)]) == 0
    assert "bits per value" in capsys.readouterr().out
    dest = tmp_path / "restored"
    assert main(["decompress", str(model), str(out), "-o", str(dest)]) == 0
    assert np.array_equal(np.asarray(Image.open(dest / "a.png")), a)
    assert np.array_equal(np.asarray(Image.open(dest / "b.pgm")), b)
    back = np.load(dest / "c.npy")
    assert back.dtype == arr.dtype and np.array_equal(back, arr)
    # a second decompress refuses to overwrite
    assert main(["decompress", str(model), str(out), "-o", str(dest)]) == 1
    assert "exists" in capsys.readouterr().err


def test_cli_refuses_wrong_model_corruption_and_bad_inputs(tmp_path, capsys):
    model = _model(tmp_path / "m.safetensors")
    other = _model(tmp_path / "o.safetensors", seed=1)
    Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "a.pfz"
    assert main(["compress", str(model), str(tmp_path / "a.png"), "-o", str(out)]) == 0
    assert main(["decompress", str(other), str(out), "-o", str(tmp_path / "x")]) == 1
    assert "another model" in capsys.readouterr().err
    data = bytearray(out.read_bytes())
    data[-6] ^= 0x10
    out.write_bytes(bytes(data))
    assert main(["decompress", str(model), str(out), "-o", str(tmp_path / "y")]) == 1
    assert "corrupted" in capsys.readouterr().err
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(tmp_path / "small.png")
    assert main(["compress", str(model), str(tmp_path / "small.png"), "-o", str(out)]) == 1
    assert "36 values" in capsys.readouterr().err
    np.save(tmp_path / "f.npy", np.zeros(36))
    assert main(["compress", str(model), str(tmp_path / "f.npy"), "-o", str(out)]) == 1
    assert "integers" in capsys.readouterr().err
    (tmp_path / "t.txt").write_text("1")
    assert main(["compress", str(model), str(tmp_path / "t.txt"), "-o", str(out)]) == 1
    assert "unsupported" in capsys.readouterr().err
