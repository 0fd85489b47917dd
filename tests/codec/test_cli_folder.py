"""End to end on the command line: train a codec on a folder of images, compress the folder, decompress it,
and get every file back (same names; the same pixels; .npy files and Pillow-written PNGs byte for byte)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("constriction")
Image = pytest.importorskip("PIL.Image")

from pushforward.cli.main import main  # noqa: E402
from pushforward.data.images import load_digits_images  # noqa: E402


def _folder(path, n: int = 12):
    """``n`` 8x8 digits (16 grey levels scaled to 0..240) as PNG and PGM files, plus one .npy stack."""
    x, _ = load_digits_images()
    images = (x[:n, 0].numpy() * 15).astype(np.uint8)
    path.mkdir()
    for i, im in enumerate(images[:-2]):
        Image.fromarray(im).save(path / f"digit_{i:02d}.{'png' if i % 2 else 'pgm'}")
    np.save(path / "stack.npy", images[-2:])
    (path / "notes.txt").write_text("not an image: skipped")
    return images


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("idf", ["--option", "levels=2", "--option", "layers=1", "--option", "hidden=[8]"]),
        ("glow", ["--option", "levels=1", "--option", "steps=1", "--option", "hidden=[8]"]),
    ],
)
def test_fit_compress_decompress_folder(tmp_path, capsys, model, extra):
    _folder(tmp_path / "images")
    codec = tmp_path / "codec.safetensors"
    args = ["fit-codec", str(tmp_path / "images"), "--model", model, *extra, "-o", str(codec)]
    assert main([*args, "--steps", "3", "--no-progress"]) == 0
    assert "bits/dim" in capsys.readouterr().out
    stream = tmp_path / "images.pfz"
    shared = ["--shared-stream"] if model == "glow" else []
    assert main(["compress", str(codec), str(tmp_path / "images"), "-o", str(stream), *shared]) == 0
    assert "11 file(s)" in capsys.readouterr().out
    dest = tmp_path / "restored"
    assert main(["decompress", str(codec), str(stream), "-o", str(dest)]) == 0
    originals = sorted(p.name for p in (tmp_path / "images").iterdir() if p.suffix != ".txt")
    assert sorted(p.name for p in dest.iterdir()) == originals
    for name in originals:
        a, b = tmp_path / "images" / name, dest / name
        if name.endswith(".npy"):
            assert a.read_bytes() == b.read_bytes()
        else:
            assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
            if name.endswith(".png"):  # written by Pillow with its defaults: the same bytes again
                assert a.read_bytes() == b.read_bytes()


def test_fit_codec_refuses_mixed_shapes_and_empty_folders(tmp_path, capsys):
    (tmp_path / "mixed").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "mixed" / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "mixed" / "b.png")
    assert main(["fit-codec", str(tmp_path / "mixed"), "--steps", "1", "-o", str(tmp_path / "c")]) == 1
    assert "differs" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["fit-codec", str(tmp_path / "empty"), "--steps", "1", "-o", str(tmp_path / "c")]) == 1
    assert "no .png" in capsys.readouterr().err
