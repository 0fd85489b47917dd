r"""The five tabular density-estimation benchmarks of Papamakarios, Pavlakou & Murray, "Masked Autoregressive
Flow for Density Estimation" (NeurIPS 2017): POWER, GAS, HEPMASS, MINIBOONE, BSDS300.

:func:`load` applies the MAF paper's published preprocessing and train / validation / test splits to files
you already have (nothing is downloaded). Expected layout under ``root`` (the layout of the MAF authors'
preprocessed data archive)::

    power/data.npy                    household power consumption, float array (N, 8) [1]
    gas/ethylene_CO.txt               UCI "gas sensor array under dynamic gas mixtures" text file [2]
      (or gas/ethylene_CO.npy: the same 19 columns as an array)
    hepmass/1000_train.csv, hepmass/1000_test.csv    UCI HEPMASS, with their header line
    miniboone/data.npy                MiniBooNE particle identification, float array (N, 43)
    BSDS300/BSDS300.hdf5              datasets "train", "validation", "test" (needs h5py), or
      BSDS300/train.npy, validation.npy, test.npy

[1] columns: global active power, global reactive power, voltage, global intensity, sub-metering 1-3, time.
[2] columns: time, CO concentration, ethylene concentration, 16 sensor readings. The MAF archive ships this
table as a pandas pickle (``ethylene_CO.pickle``); pushforward never unpickles, so convert it once with
``pd.read_pickle(...).to_numpy()`` saved as ``ethylene_CO.npy`` (columns Time, Meth, Eth, 16 sensors).

Preprocessing, as in the MAF paper and its public code:

* **POWER**: shuffle (``RandomState(42)``), drop global intensity and global reactive power, add uniform
  dequantisation noise (``0.001·U`` to active power, ``0.01·U`` to voltage, ``U`` to the three
  sub-meterings, none to time), split 10% test, then 10% of the rest validation; standardise with the
  train+validation mean and std. 6 dimensions.
* **GAS**: drop time and the two concentrations; repeatedly drop the first column correlated above 0.98
  with another; standardise (std with ``ddof=1``); split 10% test, 10% of the rest validation. 8 dims.
* **HEPMASS**: keep signal events (label 1) and drop the label (the test file's extra last column is
  dropped); standardise with the train mean and std (``ddof=1``); drop features whose smallest value occurs
  more than 5 times in train (this removes the discrete mass-like features); 10% of train is validation.
  21 dimensions.
* **MINIBOONE**: split 10% test, 10% of the rest validation; standardise with train+validation statistics.
  43 dimensions.
* **BSDS300**: the provided splits of 8x8 natural-image patches with the last pixel dropped. 63 dimensions.

:data:`PUBLISHED` holds test log-likelihoods (nats per example, higher is better) reported in the
literature, to compare against.

Example:
    >>> import numpy as np
    >>> from pathlib import Path
    >>> Path("maf/power").mkdir(parents=True)  # stand-in for the MAF authors' files
    >>> np.save("maf/power/data.npy", np.random.default_rng(0).normal(size=(1000, 8)))
    >>> splits = load("power", "maf")
    >>> splits.train.shape[1]
    6
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .csv import DataFileError

__all__ = ["DATASETS", "PUBLISHED", "Splits", "load"]

DATASETS = ("power", "gas", "hepmass", "miniboone", "bsds300")

#: Published average test log-likelihood (nats, higher is better) as ``{model: {dataset: (mean, ±2 s.e.)}}``.
#: ``source`` names the paper each row was taken from.
PUBLISHED: dict[str, dict] = {
    "RealNVP (10)": {
        "power": (0.17, 0.01),
        "gas": (8.33, 0.14),
        "hepmass": (-18.71, 0.02),
        "miniboone": (-13.55, 0.49),
        "bsds300": (153.28, 1.78),
        "source": "Papamakarios et al., MAF, NeurIPS 2017, Table 1",
    },
    "MADE MoG": {
        "power": (0.40, 0.01),
        "gas": (8.47, 0.02),
        "hepmass": (-15.15, 0.02),
        "miniboone": (-12.27, 0.47),
        "bsds300": (153.71, 0.28),
        "source": "Papamakarios et al., MAF, NeurIPS 2017, Table 1",
    },
    "MAF (5)": {
        "power": (0.14, 0.01),
        "gas": (9.07, 0.02),
        "hepmass": (-17.70, 0.02),
        "miniboone": (-11.75, 0.44),
        "bsds300": (155.69, 0.28),
        "source": "Papamakarios et al., MAF, NeurIPS 2017, Table 1",
    },
    "MAF MoG (5)": {
        "power": (0.30, 0.01),
        "gas": (9.59, 0.02),
        "hepmass": (-17.39, 0.02),
        "miniboone": (-11.68, 0.44),
        "bsds300": (156.36, 0.28),
        "source": "Papamakarios et al., MAF, NeurIPS 2017, Table 1",
    },
    "Glow": {
        "power": (0.42, None),
        "gas": (12.24, None),
        "hepmass": (-16.99, None),
        "miniboone": (-10.55, None),
        "bsds300": (156.95, None),
        "source": "Grathwohl et al., FFJORD, ICLR 2019, Table 3",
    },
    "FFJORD": {
        "power": (0.46, None),
        "gas": (8.59, None),
        "hepmass": (-14.92, None),
        "miniboone": (-10.43, None),
        "bsds300": (157.40, None),
        "source": "Grathwohl et al., FFJORD, ICLR 2019, Table 3",
    },
    "NAF": {
        "power": (0.62, 0.01),
        "gas": (11.96, 0.33),
        "hepmass": (-15.09, 0.40),
        "miniboone": (-8.86, 0.15),
        "bsds300": (157.73, 0.04),
        "source": "Huang et al., Neural Autoregressive Flows, ICML 2018, Table 2",
    },
    "BNAF": {
        "power": (0.61, 0.01),
        "gas": (12.06, 0.09),
        "hepmass": (-14.71, 0.38),
        "miniboone": (-8.95, 0.07),
        "bsds300": (157.36, 0.03),
        "source": "De Cao et al., Block Neural Autoregressive Flow, UAI 2019, Table 2",
    },
    "RQ-NSF (C)": {
        "power": (0.64, 0.01),
        "gas": (13.09, 0.02),
        "hepmass": (-14.75, 0.03),
        "miniboone": (-9.67, 0.47),
        "bsds300": (157.54, 0.28),
        "source": "Durkan et al., Neural Spline Flows, NeurIPS 2019, Table 2",
    },
    "RQ-NSF (AR)": {
        "power": (0.66, 0.01),
        "gas": (13.09, 0.02),
        "hepmass": (-14.01, 0.03),
        "miniboone": (-9.22, 0.48),
        "bsds300": (157.31, 0.28),
        "source": "Durkan et al., Neural Spline Flows, NeurIPS 2019, Table 2",
    },
}


@dataclass
class Splits:
    """Preprocessed ``float32`` splits of one benchmark."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def features(self) -> int:
        """Number of dimensions."""
        return int(self.train.shape[1])


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (see pushforward.data.uci for the expected layout)")
    return path


def _npy(path: Path) -> np.ndarray:
    try:
        a = np.load(_need(path), allow_pickle=False)
    except ValueError as e:
        raise DataFileError(f"{path}: cannot load without pickle ({e})") from None
    if a.ndim != 2 or a.dtype.kind not in "biuf":
        raise DataFileError(f"{path}: expected a 2-D numeric array, got shape {a.shape} dtype {a.dtype}")
    return a.astype(np.float64)


def _split_tail(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Last 10% test, then the last 10% of the rest validation (MAF's splitting)."""
    n_test = int(0.1 * data.shape[0])
    test = data[-n_test:] if n_test else data[:0]
    rest = data[: data.shape[0] - n_test]
    n_val = int(0.1 * rest.shape[0])
    val = rest[-n_val:] if n_val else rest[:0]
    train = rest[: rest.shape[0] - n_val]
    return train, val, test


def _power(root: Path) -> Splits:
    data = _npy(root / "power" / "data.npy")
    if data.shape[1] != 8:
        raise DataFileError(f"{root / 'power' / 'data.npy'}: expected 8 columns, got {data.shape[1]}")
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)  # global intensity
    data = np.delete(data, 1, axis=1)  # global reactive power
    voltage_noise = 0.01 * rng.rand(n, 1)
    gap_noise = 0.001 * rng.rand(n, 1)
    sm_noise = rng.rand(n, 3)
    time_noise = np.zeros((n, 1))
    data = data + np.hstack((gap_noise, voltage_noise, sm_noise, time_noise))
    train, val, test = _split_tail(data)
    tv = np.vstack((train, val))
    mu, s = tv.mean(0), tv.std(0)
    return Splits((train - mu) / s, (val - mu) / s, (test - mu) / s)


def _gas_table(root: Path) -> np.ndarray:
    npy = root / "gas" / "ethylene_CO.npy"
    if npy.exists():
        data = _npy(npy)
    else:
        path = _need(root / "gas" / "ethylene_CO.txt")
        rows = []
        with open(path) as f:
            for lineno, line in enumerate(f, start=1):
                cells = line.replace(",", " ").split()
                if not cells:
                    continue
                try:
                    rows.append([float(c) for c in cells])
                except ValueError:
                    if lineno == 1:  # header
                        continue
                    raise DataFileError(f"{path}, line {lineno}: not a row of numbers") from None
                if len(rows[-1]) != 19:
                    raise DataFileError(f"{path}, line {lineno}: expected 19 columns, got {len(rows[-1])}")
        data = np.asarray(rows, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 19:
        raise DataFileError(
            f"gas: expected 19 columns (time, 2 concentrations, 16 sensors), got {data.shape}"
        )
    return data[:, 3:]


def _gas(root: Path) -> Splits:
    data = _gas_table(root)
    while True:  # drop the first column that correlates above 0.98 with another, until none does
        c = np.corrcoef(data, rowvar=False)
        b = (c > 0.98).sum(1)
        over = np.where(b > 1)[0]
        if over.size == 0:
            break
        data = np.delete(data, over[0], axis=1)
    data = (data - data.mean(0)) / data.std(0, ddof=1)
    return Splits(*_split_tail(data))


def _read_csv(path: Path) -> np.ndarray:
    with open(_need(path), newline="") as f:
        reader = csv.reader(f)
        next(reader, None)  # header
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                rows.append([float(v) for v in row if v.strip() != ""])
            except ValueError:
                raise DataFileError(f"{path}, line {lineno}: not a row of numbers") from None
            if len(rows[-1]) != len(rows[0]):
                raise DataFileError(
                    f"{path}, line {lineno}: expected {len(rows[0])} columns, got {len(rows[-1])}"
                )
    if not rows:
        raise DataFileError(f"{path}: no data rows")
    return np.asarray(rows, dtype=np.float64)


def _hepmass(root: Path) -> Splits:
    train = _read_csv(root / "hepmass" / "1000_train.csv")
    test = _read_csv(root / "hepmass" / "1000_test.csv")
    train = train[train[:, 0] == 1][:, 1:]
    test = test[test[:, 0] == 1][:, 1:]
    if test.shape[1] == train.shape[1] + 1:  # the published test file has one extra trailing column
        test = test[:, :-1]
    if test.shape[1] != train.shape[1]:
        raise DataFileError(f"hepmass: train has {train.shape[1]} features but test has {test.shape[1]}")
    mu, s = train.mean(0), train.std(0, ddof=1)
    train, test = (train - mu) / s, (test - mu) / s
    keep = []
    for j in range(train.shape[1]):
        counts = Counter(train[:, j].tolist())
        if counts[min(counts)] <= 5:  # count of the smallest value, as in the MAF code
            keep.append(j)
    train, test = train[:, keep], test[:, keep]
    n_val = int(0.1 * train.shape[0])
    val = train[-n_val:] if n_val else train[:0]
    train = train[: train.shape[0] - n_val]
    return Splits(train, val, test)


def _miniboone(root: Path) -> Splits:
    data = _npy(root / "miniboone" / "data.npy")
    train, val, test = _split_tail(data)
    tv = np.vstack((train, val))
    mu, s = tv.mean(0), tv.std(0)
    return Splits((train - mu) / s, (val - mu) / s, (test - mu) / s)


def _bsds300(root: Path) -> Splits:
    folder = root / "BSDS300"
    if not folder.exists() and (root / "bsds300").exists():
        folder = root / "bsds300"
    h5 = folder / "BSDS300.hdf5"
    if h5.exists():
        try:
            import h5py
        except ImportError:
            raise ImportError(
                "reading BSDS300.hdf5 needs h5py (pip install h5py), or provide train.npy, "
                "validation.npy and test.npy"
            ) from None
        with h5py.File(h5, "r") as f:
            missing = [k for k in ("train", "validation", "test") if k not in f]
            if missing:
                raise DataFileError(f"{h5}: missing datasets {missing}")
            parts = [np.asarray(f[k], dtype=np.float64) for k in ("train", "validation", "test")]
    else:
        parts = [_npy(folder / f"{k}.npy") for k in ("train", "validation", "test")]
    for p in parts:
        if p.ndim != 2 or p.shape[1] != parts[0].shape[1]:
            raise DataFileError("BSDS300: the three splits must be 2-D with the same number of columns")
    return Splits(*parts)


_LOADERS = {"power": _power, "gas": _gas, "hepmass": _hepmass, "miniboone": _miniboone, "bsds300": _bsds300}


def load(name: str, root: str | Path) -> Splits:
    """Load benchmark ``name`` (power, gas, hepmass, miniboone, bsds300) from ``root``, MAF-preprocessed.

    Returns:
        :class:`Splits` of ``float32`` arrays (train, val, test).

    Raises:
        ValueError: Unknown name or malformed files. FileNotFoundError: a file is missing.
    """
    key = str(name).lower()
    if key not in _LOADERS:
        raise ValueError(f"unknown UCI dataset {name!r}; choose from {', '.join(DATASETS)}")
    splits = _LOADERS[key](Path(root).expanduser())
    out = Splits(
        *(np.ascontiguousarray(a, dtype=np.float32) for a in (splits.train, splits.val, splits.test))
    )
    for split, a in zip(("train", "val", "test"), (out.train, out.val, out.test)):
        if not np.isfinite(a).all():
            raise DataFileError(f"{key}: non-finite values in the {split} split after preprocessing")
    return out
