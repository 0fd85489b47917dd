"""UCI / MAF benchmark loaders, on small generated files in the published formats."""

from __future__ import annotations

import numpy as np
import pytest

from pushforward.data import uci


def test_power(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", rng.normal(size=(1000, 8)))
    s = uci.load("power", tmp_path)
    assert s.features == 6
    assert (s.train.shape[0], s.val.shape[0], s.test.shape[0]) == (810, 90, 100)
    tv = np.vstack([s.train, s.val])
    np.testing.assert_allclose(tv.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(tv.std(0), 1, atol=1e-4)
    assert s.train.dtype == np.float32


def test_gas_drops_correlated_columns(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(500, 16))
    base[:, 5] = base[:, 4] + 1e-3 * rng.normal(size=500)  # a near-duplicate sensor
    table = np.hstack([rng.normal(size=(500, 3)), base])
    (tmp_path / "gas").mkdir()
    lines = ["Time (seconds), CO conc (ppm), Ethylene conc (ppm), sensor readings (16 channels)"]
    lines += ["  ".join(f"{v:.6f}" for v in row) for row in table]
    (tmp_path / "gas" / "ethylene_CO.txt").write_text("\n".join(lines) + "\n")
    s = uci.load("gas", tmp_path)
    assert s.features == 15
    assert (s.train.shape[0], s.val.shape[0], s.test.shape[0]) == (405, 45, 50)


def test_hepmass_keeps_signal_and_drops_discrete_features(tmp_path):
    rng = np.random.default_rng(2)

    def table(n, extra):
        label = rng.integers(0, 2, n).astype(float)
        feats = rng.normal(size=(n, 4))
        mass = rng.choice([500.0, 750.0, 1000.0], n)  # discrete: many repeats of the smallest value
        cols = [label[:, None], feats, mass[:, None]] + ([np.zeros((n, 1))] if extra else [])
        return np.hstack(cols)

    (tmp_path / "hepmass").mkdir()
    tr, te = table(400, False), table(100, True)
    np.savetxt(
        tmp_path / "hepmass" / "1000_train.csv",
        tr,
        delimiter=",",
        header="# label,f0,f1,f2,f3,mass",
        comments="",
    )
    np.savetxt(
        tmp_path / "hepmass" / "1000_test.csv",
        te,
        delimiter=",",
        header="# label,f0,f1,f2,f3,mass,x",
        comments="",
    )
    s = uci.load("hepmass", tmp_path)
    n_signal = int((tr[:, 0] == 1).sum())
    assert s.features == 4
    assert s.train.shape[0] + s.val.shape[0] == n_signal and s.val.shape[0] == int(0.1 * n_signal)
    assert s.test.shape[0] == int((te[:, 0] == 1).sum())


def test_miniboone(tmp_path):
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", np.random.default_rng(3).normal(size=(300, 43)))
    s = uci.load("miniboone", tmp_path)
    assert s.features == 43 and s.test.shape[0] == 30


def test_bsds300_hdf5_and_npy(tmp_path):
    rng = np.random.default_rng(4)
    (tmp_path / "BSDS300").mkdir()
    parts = {k: rng.normal(size=(n, 63)) for k, n in (("train", 50), ("validation", 10), ("test", 20))}
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for k, v in parts.items():
            f[k] = v
    s = uci.load("bsds300", tmp_path)
    assert s.features == 63 and s.test.shape == (20, 63)
    (tmp_path / "BSDS300" / "BSDS300.hdf5").unlink()
    for k, v in parts.items():
        np.save(tmp_path / "BSDS300" / f"{k}.npy", v)
    np.testing.assert_allclose(uci.load("bsds300", tmp_path).val, parts["validation"], rtol=1e-6)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown UCI dataset"):
        uci.load("mnist", tmp_path)
    with pytest.raises(FileNotFoundError, match="power"):
        uci.load("power", tmp_path)


def test_published_table_is_complete():
    for model, row in uci.PUBLISHED.items():
        assert set(uci.DATASETS) <= set(row), model
        assert row["source"]
    assert uci.PUBLISHED["MAF (5)"]["power"][0] == 0.14
