"""Model files (safetensors + JSON config): rebuilt from the config, never unpickled; tamper-evident."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from pushforward.io import FlowModel, ModelFileError, build_flow, load_model, save_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    x = np.random.default_rng(0).normal(size=(300, 3)) * [1.0, 5.0, 0.1] + [0.0, 100.0, -2.0]
    return FlowModel.train(x, "realnvp", options={"layers": 2, "hidden": [16]}, steps=20, progress=False), x


def test_round_trip_is_exact(model, tmp_path):
    m, x = model
    m.save(tmp_path / "m.safetensors")
    m2 = FlowModel.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(m.log_prob(x), m2.log_prob(x))
    np.testing.assert_array_equal(m.sample(5, seed=3), m2.sample(5, seed=3))
    assert m2.preset == "realnvp" and m2.options == {"layers": 2, "hidden": [16]}
    np.testing.assert_array_equal(m2.scale, m.scale)


def test_file_is_safetensors_with_json_config(model, tmp_path):
    from safetensors import safe_open

    m, _ = model
    m.save(tmp_path / "m.safetensors")
    with safe_open(tmp_path / "m.safetensors", "pt") as f:
        cfg = json.loads(f.metadata()["pushforward"])
        assert set(f.keys()) == set(m.flow.state_dict())
    assert cfg["preset"] == "realnvp" and cfg["event_shape"] == [3]
    assert cfg["pushforward_version"] and len(cfg["standardize"]["mean"]) == 3 and len(cfg["sha256"]) == 64
    assert b"\x80\x04" not in (tmp_path / "m.safetensors").read_bytes()[:16]  # no pickle protocol header


def _rewrite_config(path, edit):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    cfg = json.loads(header["__metadata__"]["pushforward"])
    edit(cfg)
    header["__metadata__"]["pushforward"] = json.dumps(cfg)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + raw[8 + n :])


@pytest.mark.parametrize(
    "damage",
    ["flip_weight_byte", "truncate", "truncate_header", "empty", "edit_config", "garbage", "bad_json"],
)
def test_damaged_files_give_clear_errors(model, tmp_path, damage):
    m, _ = model
    p = tmp_path / "m.safetensors"
    m.save(p)
    raw = bytearray(p.read_bytes())
    if damage == "flip_weight_byte":
        raw[-3] ^= 0xFF
        p.write_bytes(bytes(raw))
    elif damage == "truncate":
        p.write_bytes(bytes(raw[: len(raw) - 100]))
    elif damage == "truncate_header":
        p.write_bytes(bytes(raw[:50]))
    elif damage == "empty":
        p.write_bytes(b"")
    elif damage == "garbage":
        p.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    elif damage == "bad_json":
        p.write_bytes(struct.pack("<Q", 8) + b"{not js}")
    else:
        _rewrite_config(p, lambda c: c["standardize"]["scale"].__setitem__(0, 1e9))
    with pytest.raises(ModelFileError) as e:
        FlowModel.load(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_unknown_preset_and_mismatched_weights(tmp_path):
    p = tmp_path / "m.safetensors"
    flow = build_flow("realnvp", 3, options={"layers": 2, "hidden": [16]})
    save_model(p, flow, {"preset": "no_such_flow", "event_shape": [3], "options": {}})
    with pytest.raises(ModelFileError, match="unknown flow preset 'no_such_flow'"):
        load_model(p)
    save_model(p, flow, {"preset": "realnvp", "event_shape": [3], "options": {"layers": 4, "hidden": [16]}})
    with pytest.raises(ModelFileError, match="do not fit preset"):
        load_model(p)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        FlowModel.load("/nonexistent/m.safetensors")


def test_build_flow_errors():
    with pytest.raises(ValueError, match="unknown flow preset"):
        build_flow("nope", 2)
    with pytest.raises(ValueError, match="rejected its options"):
        build_flow("realnvp", 2, options={"bogus": 1})


@pytest.mark.parametrize("preset", ["realnvp", "maf"])
def test_log_prob_far_from_the_data_is_finite_where_float64_is(preset):
    x = np.random.default_rng(0).normal(size=(300, 2))
    m = FlowModel.train(x, preset, options={"layers": 2, "hidden": [8]}, steps=10, progress=False)
    far = np.array([[1e30, 0.0], [1e6, -1e6], [0.1, 0.2]])
    lp = m.log_prob(far)  # float32 overflowed to -inf here before
    assert np.isfinite(lp).all() and lp[0] < lp[1] < lp[2]
    with pytest.warns(RuntimeWarning, match="non-finite"):
        beyond = m.log_prob(np.array([[1e300, 0.0], [0.0, 0.0]]))  # the square overflows even float64
    assert beyond[0] == -np.inf and np.isfinite(beyond[1])
