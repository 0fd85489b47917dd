"""Hostile model files: time, Python-heap peak and resident-memory growth of ``pushforward.io.load`` on each
crafted file (each must be refused with one ModelFileError), and on the untouched file (loaded).

Usage: ``PYTHONPATH=src python benchmarks/model_file_bounds.py`` (a few seconds; writes only to a temporary
directory). The tests in ``tests/test_model_file_fuzz.py`` assert the same bounds (1 s of CPU, 100 MB).
"""

from __future__ import annotations

import json
import os
import resource
import struct
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from pushforward.flows import MAF
from pushforward.io import ModelFileError, load, save
from pushforward.io.files import digest


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def craft(base: Path, out: Path, edit=None, tensors_edit=None) -> Path:
    """Edit the config (and tensors) of ``base`` and recompute the checksum, as a hostile editor would."""
    raw = base.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    cfg = json.loads(json.loads(raw[8 : 8 + n])["__metadata__"]["pushforward"])
    tensors = load_tensors(raw)
    if tensors_edit is not None:
        tensors = tensors_edit(tensors)
    if edit is not None:
        edit(cfg)
    cfg["sha256"] = digest(cfg, tensors)
    out.write_bytes(save_tensors(tensors, metadata={"pushforward": json.dumps(cfg)}))
    return out


def raw_config(base: Path, out: Path, text: str) -> Path:
    raw = base.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"] = {"pushforward": text}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    out.write_bytes(struct.pack("<Q", len(h)) + h + raw[8 + n :])
    return out


def kw(key, value):
    def edit(cfg):
        cfg["model"]["module"]["kwargs"][key] = value

    return edit


def padded(count, size):
    return lambda t: {**t, **{f"pad.{i}": torch.zeros(size) for i in range(count)}}


def nan_weight(t):
    t = {k: v.clone() for k, v in t.items()}
    next(v for v in t.values() if v.is_floating_point() and v.numel()).view(-1)[0] = float("nan")
    return t


def measure(name: str, path: Path) -> None:
    tracemalloc.start()
    rss, wall, cpu = _rss_mb(), time.perf_counter(), time.process_time()
    try:
        load(path)
        result = "LOADED"
    except ModelFileError as e:
        result = "refused: " + str(e).split(": ", 1)[-1][:80]
    except Exception as e:  # anything else is a bug
        result = f"UGLY {type(e).__name__}: {e}"[:100]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    grown = _rss_mb() - rss
    print(
        f"{name:34s} {wall:6.3f} s wall {cpu:6.3f} s cpu {peak:6.1f} MB heap +{grown:6.1f} MB rss  {result}"
    )


def main() -> None:
    torch.set_num_threads(1)
    d = Path(tempfile.mkdtemp())
    base = d / "base.safetensors"
    torch.manual_seed(0)
    save(MAF(3, layers=2, hidden=(8,)), base)
    x = d / "x.safetensors"
    measure("untouched file", base)
    cases = {
        "layers = '3' (string)": (kw("layers", "3"), None),
        "layers = 1e5 (float)": (kw("layers", 1e5), None),
        "layers = 1e300": (kw("layers", 1e300), None),
        "layers = 10**5": (kw("layers", 10**5), None),
        "hidden = [3000, 3000]": (kw("hidden", {"tuple": [3000, 3000]}), None),
        "hidden = [1e9]": (kw("hidden", {"tuple": [10**9]}), None),
        "hidden = [1000]*2000 + 2000 empty": (kw("hidden", {"tuple": [1000] * 2000}), padded(2000, 0)),
        "hidden = [1000]*2000 + 2000 tiny": (kw("hidden", {"tuple": [1000] * 2000}), padded(2000, 1)),
        "hidden = [800]*4 + 1e6 padding": (kw("hidden", {"tuple": [800] * 4}), padded(100, 10**4)),
        "NaN weight": (None, nan_weight),
        "class os.system": (lambda c: c["model"]["module"].__setitem__("class", "os.system"), None),
    }
    for name, (edit, tensors_edit) in cases.items():
        measure(name, craft(base, x, edit, tensors_edit))
    head = '{"format": "pushforward-model", "format_version": 2, "model": '
    measure("nested 100,000 deep", raw_config(base, x, head + "[" * 100_000 + "]" * 100_000 + "}"))
    measure("bound 1e999", raw_config(base, x, head + '{"tuple": [1e999]}}'))
    x.write_bytes(b"")
    measure("empty file", x)
    x.write_bytes(base.read_bytes()[:-10])
    measure("truncated file", x)
    link = d / "zero.safetensors"
    link.symlink_to("/dev/zero")
    measure("symlink to /dev/zero", link)
    fifo = d / "fifo.safetensors"
    os.mkfifo(fifo)
    measure("FIFO", fifo)
    with open(x, "wb") as f:
        f.truncate(5 * 2**30)
    measure("sparse 5 GiB", x)
    with open(x, "wb") as f:
        f.truncate(2**30)
    measure("sparse 1 GiB (zero header)", x)
    x.unlink()


if __name__ == "__main__":
    main()
