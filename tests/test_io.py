"""Model files (safetensors + JSON config): rebuilt from the config, never unpickled; tamper-evident."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from pushforward.distributions import DiagNormal
from pushforward.flows import MAF, PRESETS, Flow
from pushforward.io import ModelFileError, build_flow, load, load_with_config, save
from pushforward.tabular import FlowModel
from pushforward.transformers import AffineTransformer
from pushforward.transforms import ActNorm, AffineCoupling, Compose, LULinear, half_mask

from .flows.test_preset_properties import OPTIONS, SHAPES
from .registry import REGISTRY as CASES

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


def _rewrite_config(path, edit, rehash=False):
    from safetensors.torch import load

    from pushforward.io.files import digest

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    cfg = json.loads(header["__metadata__"]["pushforward"])
    edit(cfg)
    if rehash:
        cfg["sha256"] = digest(cfg, load(raw))
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
    save(flow, p)
    _rewrite_config(p, lambda c: c["model"]["module"].__setitem__("class", "flows.coupling.NoSuchFlow"), True)
    with pytest.raises(ModelFileError, match=r"unknown class 'flows\.coupling\.NoSuchFlow'"):
        load_with_config(p)
    save(flow, p)
    _rewrite_config(p, lambda c: c["model"]["module"]["kwargs"].__setitem__("layers", 4), True)
    with pytest.raises(ModelFileError, match="do not fit the model"):
        load_with_config(p)


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


def _correlated(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    x = z @ np.array([[1.0, 0.9, -0.5], [0.0, 0.4, 0.3], [0.0, 0.0, 0.2]])
    return x * [2.0, 0.1, 30.0] + [5.0, -1.0, 100.0]


@pytest.fixture(scope="module")
def whitened():
    x = _correlated()
    m = FlowModel.train(
        x, "maf", options={"layers": 2, "hidden": [16]}, steps=60, whiten=True, progress=False
    )
    return m, x


def test_whitening_matrix_decorrelates_and_survives_collinear_columns():
    from pushforward.tabular import whitening_matrix

    x = _correlated(2000)
    u = (x - x.mean(0)) / x.std(0)
    w = whitening_matrix(u)
    assert np.allclose(np.tril(w), w) and (np.diag(w) > 0).all()
    # barely shrunk for a tall table (exact without shrinkage): the whitened rows are uncorrelated
    np.testing.assert_allclose(np.cov((u @ w.T).T, bias=True), np.eye(3), atol=0.1)
    w0 = whitening_matrix(u, shrinkage=0.0)
    np.testing.assert_allclose(np.cov((u @ w0.T).T, bias=True), np.eye(3), atol=1e-9)
    dup = np.concatenate([u, u[:, :1]], axis=1)  # an exact copy of a column
    w2 = whitening_matrix(dup)
    assert np.isfinite(w2).all() and np.linalg.cond(w2) < 1e4
    with pytest.raises(ValueError, match="shrinkage"):
        whitening_matrix(u, shrinkage=2.0)


def test_whitened_model_density_matches_the_change_of_variables(whitened):
    m, x = whitened
    assert m.whiten is not None and m.whiten.shape == (3, 3)
    rows = x[:7]
    u = ((rows - m.mean) / m.scale) @ m.whiten.T
    with torch.no_grad():
        flow_lp = m.flow.log_prob(torch.as_tensor(u, dtype=torch.float32)).double().numpy()
    expected = flow_lp - np.log(m.scale).sum() + np.log(np.diag(m.whiten)).sum()
    np.testing.assert_allclose(m.log_prob(rows), expected, rtol=1e-5, atol=1e-5)
    # the preprocessing layers of the chain are the same map
    with torch.no_grad():
        pre = m.preprocessing(torch.as_tensor(rows, dtype=torch.float32))[0].double().numpy()
    np.testing.assert_allclose(pre, u, rtol=1e-5, atol=1e-5)


def test_whitened_model_samples_invert_the_map_and_round_trip_the_file(whitened, tmp_path):
    m, x = whitened
    torch.manual_seed(0)
    with torch.no_grad():
        u = m.flow.sample((5,)).double().numpy()
    with torch.no_grad():
        back = m.preprocessing.double()(m.preprocessing.double().inverse(torch.as_tensor(u))[0])[0]
    m.float()
    np.testing.assert_allclose(back.numpy(), u, atol=1e-9)
    s = m.sample(2000, seed=1)
    # samples carry the data's correlation: the whitening is undone, not forgotten
    assert np.corrcoef(s.T)[0, 1] > 0.5 and abs(s[:, 2].mean() - x[:, 2].mean()) < 0.2 * x[:, 2].std()
    m.save(tmp_path / "w.safetensors")
    m2 = FlowModel.load(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(m2.whiten, m.whiten)
    np.testing.assert_array_equal(m.log_prob(x[:20]), m2.log_prob(x[:20]))
    np.testing.assert_array_equal(m.sample(4, seed=2), m2.sample(4, seed=2))


def test_whitening_helps_on_strongly_correlated_columns():
    """The reason whitening exists: with the same budget, the whitened flow is better on held-out rows."""
    x = _correlated(1200, seed=1)
    tr, te = x[:1000], x[1000:]
    opts = {"layers": 1, "hidden": [8]}
    scores = {
        w: FlowModel.train(tr, "maf", options=opts, steps=150, whiten=w, seed=0, progress=False)
        .log_prob(te)
        .mean()
        for w in (False, True)
    }
    assert scores[True] > scores[False] + 0.2, scores


def test_whiten_needs_standardize_and_flat_rows():
    x = _correlated(50)
    with pytest.raises(ValueError, match="standardize"):
        FlowModel.train(
            x, "maf", options={"layers": 1, "hidden": [4]}, steps=1, whiten=True, standardize=False
        )
    with pytest.raises(ValueError, match="flat rows"):
        FlowModel.train(
            np.random.default_rng(0).normal(size=(50, 4)),
            "glow",
            event_shape=(1, 2, 2),
            options={"levels": 1, "steps": 1, "hidden": [4]},
            steps=1,
            whiten=True,
        )


# ------------------------------------------------------------------------------ one format for every model
CONDITIONAL = {"nice", "realnvp", "maf", "iaf", "nsf", "naf", "bnaf", "residual", "ffjord"}


def _perturb(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def _round_trip(flow, path, x, context=None):
    flow.eval()
    save(flow, path)
    again = load(path)
    assert type(again) is type(flow) and not again.training
    _assert_same_state(flow, again)
    with torch.no_grad():
        torch.testing.assert_close(again.log_prob(x, context), flow.log_prob(x, context), rtol=0, atol=0)
    return again


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_exactly(name, dtype, tmp_path):
    torch.manual_seed(0)
    shape = SHAPES.get(name, (3,))
    context = 2 if name in CONDITIONAL else 0
    features = shape if len(shape) > 1 else shape[0]
    flow = _perturb(PRESETS[name](features, context=context, **OPTIONS[name]).to(dtype))
    x = (
        torch.rand(5, *shape, dtype=dtype).clamp(0.05, 0.95)
        if len(shape) > 1
        else torch.randn(5, 3, dtype=dtype)
    )
    c = torch.randn(5, 2, dtype=dtype) if context else None
    again = _round_trip(flow, tmp_path / "f.safetensors", x, c)
    assert repr(again) == repr(flow) and isinstance(again, PRESETS[name])


def test_hand_built_composition_round_trips(tmp_path):
    torch.manual_seed(1)
    transform = Compose(
        [
            AffineCoupling(half_mask(4), context=3, hidden=(8,)),
            LULinear(4),
            ActNorm(4),
            AffineCoupling(~half_mask(4), context=3, hidden=(8, 8), clamp=None),
        ]
    )
    flow = _perturb(Flow(transform, DiagNormal(4)).double(), seed=3)
    x, c = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    again = _round_trip(flow, tmp_path / "h.safetensors", x, c)
    assert isinstance(again.base, DiagNormal) and isinstance(again.transform[1], LULinear)


def test_transformer_instances_and_nested_modules_round_trip(tmp_path):
    torch.manual_seed(2)
    flow = _perturb(MAF(3, context=1, layers=2, hidden=(8,), transformer=AffineTransformer(clamp=2.0)))
    again = _round_trip(flow, tmp_path / "t.safetensors", torch.randn(4, 3), torch.randn(4, 1))
    assert again.hyperparameters()["transformer"].clamp == 2.0


def test_augmented_ffjord_round_trips(tmp_path):
    torch.manual_seed(3)
    flow = PRESETS["ffjord"](2, hidden=(4,), augment=1, trace="exact")
    flow.eval()
    save(flow, tmp_path / "a.safetensors")
    again = load(tmp_path / "a.safetensors")
    assert type(again) is type(flow) and again.augment == 1
    _assert_same_state(flow, again)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_registered_transform_round_trips(name, tmp_path):
    """Every exported transform of the contract registry saves and loads with no extra code."""
    torch.manual_seed(0)
    t = CASES[name].factory()
    save(t, tmp_path / "t.safetensors")
    again = load(tmp_path / "t.safetensors")
    assert type(again) is type(t)
    _assert_same_state(t, again)


def test_unsavable_arguments_are_named():
    flow = MAF(3, layers=1, hidden=(4,), transformer=lambda: AffineTransformer())
    with pytest.raises(TypeError, match=r"transformer.*function"):
        save(flow, "never.safetensors")
    with pytest.raises(TypeError, match="module"):
        save({"not": "a module"}, "never.safetensors")
    with pytest.raises(TypeError, match="not a registered class"):
        save(torch.nn.Linear(2, 2), "never.safetensors")


def test_tabular_file_loads_as_a_flow_and_a_plain_flow_is_not_a_tabular_model(model, tmp_path):
    m, _ = model
    m.save(tmp_path / "m.safetensors")
    flow = load(tmp_path / "m.safetensors")
    _assert_same_state(flow, m.flow)
    save(MAF(3, layers=1, hidden=(4,)), tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="not a tabular model file"):
        FlowModel.load(tmp_path / "plain.safetensors")


def test_format_1_preset_files_still_load(tmp_path):
    """A file of format 1 (preset, event_shape, context, options; no model tree) builds from the preset."""
    from safetensors.torch import save as save_tensors

    from pushforward.io.files import digest

    torch.manual_seed(4)
    flow = _perturb(MAF(3, context=1, layers=2, hidden=(8,))).eval()
    tensors = {k: v.contiguous() for k, v in flow.state_dict().items()}
    cfg = {
        "format": "pushforward-model",
        "format_version": 1,
        "preset": "maf",
        "event_shape": [3],
        "context": 1,
        "options": {"layers": 2, "hidden": [8]},
        "dtype": "float32",
    }
    cfg["sha256"] = digest(cfg, tensors)
    (tmp_path / "v1.safetensors").write_bytes(
        save_tensors(tensors, metadata={"pushforward": json.dumps(cfg)})
    )
    again = load(tmp_path / "v1.safetensors")
    assert isinstance(again, MAF)
    _assert_same_state(flow, again)


def test_dequantized_image_model_round_trips(tmp_path):
    from pushforward.flows import Glow
    from pushforward.flows.dequantization import DequantizedFlow, VariationalDequantizer

    torch.manual_seed(5)
    deq = VariationalDequantizer((1, 4, 4), levels=17, layers=1, hidden=4)
    model = DequantizedFlow(Glow((1, 4, 4), levels=1, steps=1, hidden=(4,)), levels=17, dequantizer=deq)
    _perturb(model)
    save(model, tmp_path / "d.safetensors")
    again = load(tmp_path / "d.safetensors")
    assert isinstance(again, DequantizedFlow) and isinstance(again.flow, Glow) and again.levels == 17
    _assert_same_state(model, again)


def test_a_model_changed_after_construction_is_refused_at_save(tmp_path):
    from pushforward.transforms import Shift

    flow = Flow(Compose([Shift(3), Shift(3)]))
    flow.transform.transforms.append(Shift(3))  # the constructor call no longer describes it
    with pytest.raises(ValueError, match="changed after construction"):
        save(flow, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    maf = MAF(3, layers=1, hidden=(4,))
    state = torch.random.get_rng_state()
    save(maf, tmp_path / "y.safetensors")
    assert torch.equal(torch.random.get_rng_state(), state)  # the check does not consume random numbers


def test_iterators_and_module_lists_as_arguments_round_trip(tmp_path):
    from pushforward.transforms import Shift

    torch.manual_seed(6)
    flow = _perturb(Flow(Compose(Shift(2) for _ in range(3))))  # a generator, read once
    again = _round_trip(flow, tmp_path / "g.safetensors", torch.randn(4, 2))
    assert len(again.transform) == 3
    flow = _perturb(Flow(Compose(torch.nn.ModuleList([Shift(2), Shift(2)]))))
    again = _round_trip(flow, tmp_path / "l.safetensors", torch.randn(4, 2))
    assert len(again.transform) == 2


def test_preset_fields_that_describe_another_model_are_refused_at_save(tmp_path):
    flow = MAF(3, layers=2, hidden=(8,))
    with pytest.raises(ValueError, match="lacks 'event_shape'"):
        save(flow, tmp_path / "x.safetensors", config={"preset": "maf"})
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        save(
            flow,
            tmp_path / "x.safetensors",
            config={"preset": "maf", "event_shape": [3], "options": {"layers": 3}},
        )
    save(
        flow,
        tmp_path / "x.safetensors",
        config={"preset": "maf", "event_shape": [3], "options": {"layers": 2, "hidden": [8]}},
    )
    assert isinstance(load(tmp_path / "x.safetensors"), MAF)
