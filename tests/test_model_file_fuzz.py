"""Hostile model files: crafted configs with a recomputed checksum must fail with ModelFileError, fast and
without allocating more than a small multiple of the file's own size (the checksum is no defence)."""

from __future__ import annotations

import json
import math
import random
import resource
import struct
import sys
import time

import numpy as np
import pytest
import torch

from pushforward.io import ModelFileError, _digest, build_flow, save_model
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
    save_model(p, flow, cfg)
    return p


def _craft(path, edit, out):
    """Apply ``edit`` to the config and recompute the checksum, as a hostile editor would."""
    from safetensors.torch import load

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    cfg = json.loads(header["__metadata__"]["pushforward"])
    edit(cfg)
    cfg["sha256"] = _digest(cfg, load(raw))
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
