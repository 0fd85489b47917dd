"""Hostile model files: crafted configs with a recomputed checksum must fail with ModelFileError, fast and
without allocating more than a small multiple of the file's own size (the checksum is no defence)."""

from __future__ import annotations

import json
import math
import os
import random
import resource
import struct
import sys
import time
import tracemalloc

import numpy as np
import pytest
import torch

from pushforward.flows import MAF
from pushforward.io import ModelFileError, build_flow, save
from pushforward.io.files import digest
from pushforward.tabular import FlowModel

torch.set_num_threads(1)

BASES = {
    "realnvp": ([3], {"layers": 2, "hidden": [8]}),
    "maf": ([3], {"layers": 2, "hidden": [8]}),
    "glow": ([1, 4, 4], {"levels": 1, "steps": 1, "hidden": [8]}),
    "planar": ([3], {"layers": 2}),
}


def _base_file(tmp_path, preset):
    shape, options = BASES[preset]
    flow = build_flow(preset, shape if len(shape) > 1 else shape[0], options=options)
    features = math.prod(shape)
    cfg = {
        "preset": preset,
        "event_shape": shape,
        "context": 0,
        "options": options,
        "dtype": "float32",
        "standardize": {"mean": [0.0] * features, "scale": [1.0] * features},
        "columns": [f"c{i}" for i in range(features)],
        "history": {"steps": [1], "train_loss": [1.0], "val_loss": [1.0]},
        "validation": {"quantiles": list(np.linspace(-3, 0, 1001)), "mean": -1.0, "std": 0.5, "n": 10},
    }
    p = tmp_path / f"{preset}.safetensors"
    save(flow, p, config=cfg)
    return p


def _craft(path, edit, out):
    """Apply ``edit`` to the config and recompute the checksum, as a hostile editor would."""
    from safetensors.torch import load

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    cfg = json.loads(header["__metadata__"]["pushforward"])
    edit(cfg)
    cfg["sha256"] = digest(cfg, load(raw))
    header["__metadata__"]["pushforward"] = json.dumps(cfg)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    out.write_bytes(struct.pack("<Q", len(h)) + h + raw[8 + n :])
    return out


def _set(key, value):
    def edit(cfg):
        cfg[key] = value

    return edit


def _opt(key, value):
    def edit(cfg):
        cfg["options"][key] = value

    return edit


# The cases of the issue, each a bomb or a crash before the fix.
NAMED = {
    "hidden_1e9": ("realnvp", _opt("hidden", [10**9])),
    "layers_1e9": ("maf", _opt("layers", 10**9)),
    "hidden_wide_pair": ("realnvp", _opt("hidden", [3000, 3000])),
    "glow_65536": ("glow", _set("event_shape", [1, 65536, 65536])),
    "glow_bigger": ("glow", _set("event_shape", [1, 64, 64])),
    "dtype_inductor": ("realnvp", _set("dtype", "_inductor")),
    "dtype_module": ("realnvp", _set("dtype", "nn")),
    "format_version_inf": ("realnvp", _set("format_version", 1e999)),
    "format_version_str": ("realnvp", _set("format_version", "1")),
    "context_inf": ("realnvp", _set("context", 1e999)),
    "context_negative": ("realnvp", _set("context", -1)),
    "options_list": ("realnvp", _set("options", [1, 2])),
    "history_string": ("realnvp", _set("history", "abc")),
    "history_steps_string": ("realnvp", _set("history", {"steps": "abc", "train_loss": [1.0]})),
    "validation_string": ("realnvp", _set("validation", "abc")),
    "validation_bad_quantiles": ("realnvp", _set("validation", {"quantiles": "x", "mean": 1, "std": 1})),
    "columns_wrong_length": ("realnvp", _set("columns", ["a"])),
    "columns_not_strings": ("realnvp", _set("columns", [1, 2, 3])),
    "event_shape_zero": ("realnvp", _set("event_shape", [0])),
    "event_shape_str": ("realnvp", _set("event_shape", "3")),
    "event_shape_float": ("realnvp", _set("event_shape", [3.5])),
    "preset_number": ("realnvp", _set("preset", 5)),
    "preset_other": ("realnvp", _set("preset", "maf")),
    "standardize_list": ("realnvp", _set("standardize", [1, 2])),
    "scale_zero": ("realnvp", _set("standardize", {"mean": [0, 0, 0], "scale": [0, 1, 1]})),
    "mask_bad": ("realnvp", _opt("mask", [1, 2])),
    "whiten_wrong_shape": (
        "realnvp",
        _set("standardize", {"mean": [0] * 3, "scale": [1] * 3, "whiten": [[1]]}),
    ),
    "whiten_upper": (
        "realnvp",
        _set("standardize", {"mean": [0] * 3, "scale": [1] * 3, "whiten": [[1, 5, 0], [0, 1, 0], [0, 0, 1]]}),
    ),
    "whiten_negative_diagonal": (
        "realnvp",
        _set(
            "standardize", {"mean": [0] * 3, "scale": [1] * 3, "whiten": [[-1, 0, 0], [0, 1, 0], [0, 0, 1]]}
        ),
    ),
    "whiten_string": ("realnvp", _set("standardize", {"mean": [0] * 3, "scale": [1] * 3, "whiten": "x"})),
}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    d = tmp_path_factory.mktemp("bases")
    return {k: _base_file(d, k) for k in BASES}


def _peak_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (2**20 if sys.platform == "darwin" else 2**10)


def _load_bounded(path):
    """Load ``path``: success or ModelFileError only, within bounded time and memory."""
    before, start = _peak_mb(), time.perf_counter()
    try:
        FlowModel.load(path)
        ok = True
    except ModelFileError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        ok = False
    # bounds, not speed claims: a bomb runs for minutes or allocates gigabytes
    assert time.perf_counter() - start < 20.0
    assert _peak_mb() - before < 300.0
    return ok


def test_bases_load(bases):
    for p in bases.values():
        assert _load_bounded(p)


@pytest.mark.parametrize("case", sorted(NAMED))
def test_crafted_config_is_refused(bases, tmp_path, case):
    preset, edit = NAMED[case]
    p = _craft(bases[preset], edit, tmp_path / "x.safetensors")
    assert not _load_bounded(p)


VALUES = [
    None,
    True,
    -1,
    0,
    1,
    2,
    3,
    10**6,
    10**18,
    1e999,
    -1e999,
    0.5,
    "x",
    "float64",
    [],
    [1, 2],
    [10**7],
    {},
    {"a": 1},
    [[1]],
    "_inductor",
]
KEYS = [
    "preset",
    "event_shape",
    "context",
    "options",
    "dtype",
    "standardize",
    "columns",
    "history",
    "validation",
    "format_version",
    "format",
]
OPTIONS = ["layers", "hidden", "bins", "levels", "steps", "mask", "clamp", "activation", "zz"]


def test_random_config_edits_give_model_or_model_file_error(bases, tmp_path):
    rng = random.Random(19)
    for i in range(150):
        preset = rng.choice(sorted(bases))
        edits = []
        for _ in range(rng.randint(1, 3)):
            value = rng.choice(VALUES)
            if rng.random() < 0.5:
                edits.append(_set(rng.choice(KEYS), value))
            else:
                edits.append(_opt(rng.choice(OPTIONS), value))

        def edit(cfg, edits=edits):
            for e in edits:
                if not isinstance(cfg.get("options"), dict):
                    cfg["options"] = {}
                e(cfg)

        _load_bounded(_craft(bases[preset], edit, tmp_path / f"r{i}.safetensors"))


# ------------------------------------------------------------------ crafted files of the general format (issue 30.1)
def _measured_refusal(path, loader=None):
    """``loader(path)`` must raise ModelFileError within 1 s and 100 MB (Python heap and resident memory)."""
    from pushforward.io import load

    loader = loader or load
    tracemalloc.start()
    rss, start = _peak_mb(), time.process_time()  # CPU time: other processes do not inflate it
    try:
        with pytest.raises(ModelFileError) as e:
            loader(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    elapsed = time.process_time() - start
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert elapsed < 1.0, f"refused after {elapsed:.2f} s of CPU time"
    assert peak < 100 and _peak_mb() - rss < 100, f"Python heap peak {peak:.0f} MB"
    return str(e.value)


@pytest.fixture(scope="module")
def maf_file(tmp_path_factory):
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("v2") / "maf.safetensors"
    save(MAF(3, layers=2, hidden=(8,)), p)
    return p


def _craft_v2(base, out, edit=None, tensors_edit=None):
    from safetensors.torch import load
    from safetensors.torch import save as save_tensors

    raw = base.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    cfg = json.loads(json.loads(raw[8 : 8 + n])["__metadata__"]["pushforward"])
    tensors = load(raw)
    if tensors_edit is not None:
        tensors = tensors_edit(tensors)
    if edit is not None:
        edit(cfg)
    cfg["sha256"] = digest(cfg, tensors)
    out.write_bytes(save_tensors(tensors, metadata={"pushforward": json.dumps(cfg)}))
    return out


def _kw(key, value):
    def edit(cfg):
        cfg["model"]["module"]["kwargs"][key] = value

    return edit


def _padded(count, size):
    def edit(tensors):
        return {**tensors, **{f"pad.{i}": torch.zeros(size) for i in range(count)}}

    return edit


def _nan_weight(tensors):
    tensors = dict(tensors)
    name = sorted(k for k, t in tensors.items() if t.is_floating_point() and t.numel())[-1]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    return tensors


_TANH = {"module": {"class": "transforms.elementwise.Tanh", "args": [3], "kwargs": {}}}
CRAFTED = {
    "layers_string": (_kw("layers", "3"), None, "integer"),
    "layers_float_1e5": (_kw("layers", 1e5), None, "integer"),
    "layers_float_1e300": (_kw("layers", 1e300), None, "integer"),
    "layers_int_1e5": (_kw("layers", 10**5), None, "exceeds"),
    "layers_bool": (_kw("layers", True), None, "integer"),
    "hidden_string": (_kw("hidden", "16"), None, "sequence"),
    "hidden_1e9": (_kw("hidden", {"tuple": [10**9]}), None, "exceeds"),
    "hidden_wide_pair": (_kw("hidden", {"tuple": [3000, 3000]}), None, "more weights"),
    "hidden_800_past_static_checks": (
        _kw("hidden", {"tuple": [800] * 4}),
        _padded(100, 10**4),
        "parameter and buffer",
    ),
    "hidden_2000_with_2000_empty_tensors": (
        _kw("hidden", {"tuple": [1000] * 2000}),
        _padded(2000, 0),
        "entries",
    ),
    "hidden_2000_with_2000_tiny_tensors": (
        _kw("hidden", {"tuple": [1000] * 2000}),
        _padded(2000, 1),
        "more weights",
    ),
    "nan_weight": (None, _nan_weight, "non-finite"),
    "9000_parameterless_modules": (
        _kw(
            "base",
            {"module": {"class": "transforms.base.Compose", "args": [[_TANH] * 9_000], "kwargs": {}}},
        ),
        None,
        "more modules",
    ),
    "unknown_class": (
        lambda c: c["model"]["module"].__setitem__("class", "os.system"),
        None,
        "unknown class",
    ),
    "malformed_tag": (_kw("hidden", {"eval": "1"}), None, "malformed"),
    "tensor_argument_bomb": (
        _kw("hidden", {"tensor": {"dtype": "float32", "shape": [10**6, 10**6], "data": []}}),
        None,
        "prod(shape)",
    ),
    "dangling_reference": (_kw("base", {"ref": 7}), None, "reference"),
    "model_missing": (lambda c: c.pop("model"), None, "lacks 'model'"),
    "dtype_not_allowed": (lambda c: c.__setitem__("dtype", "torch.float32"), None, "dtype"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_model_tree_is_refused_fast_and_small(maf_file, tmp_path, case):
    edit, tensors_edit, message = CRAFTED[case]
    p = _craft_v2(maf_file, tmp_path / "x.safetensors", edit, tensors_edit)
    assert message in _measured_refusal(p)


_HEAD = '{"format": "pushforward-model", "format_version": 2, "model": '


def _raw_config_file(base, out, config_text):
    raw = base.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"] = {"pushforward": config_text}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    out.write_bytes(struct.pack("<Q", len(h)) + h + raw[8 + n :])
    return out


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '{"format": "pushforward-model", "format_version": 2, "model": '
            + "[" * 100_000
            + "]" * 100_000
            + "}",
            "deep",
        ),
        ('{"format": "pushforward-model", "format_version": 2, "model": NaN}', "JSON"),
        ('{"format": "pushforward-model", "format_version": 2, "bound": 1e999, "model": null}', "non-finite"),
        ('{"format": "pushforward-model", "format_version": 2, "model": 1' + "0" * 5000 + "}", "JSON"),
        ("[" * 100_000, "deep"),
        ('{"format": "pushforward-model", "pad": "' + "x" * 2**21 + '"}', "out of proportion"),
    ],
    ids=[
        "nested_100000",
        "nan_literal",
        "infinite_bound",
        "huge_integer_literal",
        "unterminated",
        "huge_header",
    ],
)
def test_crafted_config_text_is_refused(maf_file, tmp_path, text, message):
    p = _raw_config_file(maf_file, tmp_path / "x.safetensors", text)
    assert message in _measured_refusal(p)


def test_deeply_nested_header_is_refused(tmp_path):
    p = tmp_path / "deep.safetensors"
    body = ("[" * 100_000 + "]" * 100_000).encode()
    p.write_bytes(struct.pack("<Q", len(body)) + body)
    assert "deep" in _measured_refusal(p)


def test_empty_truncated_and_padded_files_are_refused(maf_file, tmp_path):
    raw = maf_file.read_bytes()
    for name, data, message in [
        ("empty", b"", "empty"),
        ("seven", raw[:7], "truncated"),
        ("truncated", raw[:-10], "declare"),
        ("padded", raw + b"\0" * 16, "declare"),
        ("header_only", raw[: 8 + struct.unpack("<Q", raw[:8])[0]], "bad shape"),
    ]:
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(data)
        assert message in _measured_refusal(p), name


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")
def test_special_files_are_refused_unread(tmp_path):
    link = tmp_path / "zero.safetensors"
    link.symlink_to("/dev/zero")
    assert "not a regular file" in _measured_refusal(link)
    assert "not a regular file" in _measured_refusal(link, FlowModel.load)  # the CLI's path
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    assert "not a regular file" in _measured_refusal(fifo)  # used to hang
    assert "directory" in _measured_refusal(tmp_path)


def test_size_is_checked_before_reading(tmp_path):
    sparse = tmp_path / "sparse.safetensors"
    with open(sparse, "wb") as f:
        f.truncate(5 * 2**30)  # 5 GiB, no disk blocks
    assert "max_bytes" in _measured_refusal(sparse)
    with open(sparse, "wb") as f:
        f.truncate(2**30)  # under the limit: refused from its first 8 bytes, not read in full
    assert "header" in _measured_refusal(sparse)
    sparse.unlink()


def test_max_bytes_is_a_limit(maf_file):
    from pushforward.io import load

    size = maf_file.stat().st_size
    assert isinstance(load(maf_file, max_bytes=size), MAF)
    with pytest.raises(ModelFileError, match="max_bytes"):
        load(maf_file, max_bytes=size - 1)


def test_allocation_budget_refuses_before_allocating():
    from pushforward.io.bounds import BudgetExceeded, allocation_budget
    from pushforward.nets import MLP

    with pytest.raises(BudgetExceeded, match="tensor of"), allocation_budget(1000):
        torch.empty(10**12)  # 4 TB: refused before the allocator is asked
    with pytest.raises(BudgetExceeded), allocation_budget(1000):
        torch.zeros((10**6, 10**6))
    with pytest.raises(BudgetExceeded, match="parameter and buffer"), allocation_budget(1000):
        MLP(512, 1, hidden=(512,) * 20)  # each layer fits, all of them do not
    with allocation_budget(10**6):
        MLP(8, 2, hidden=(16, 16))  # within budget
    torch.empty(10**4)  # and the guard is gone afterwards
