"""Leakage properties every DataModule must have, checked over 20 seeds.

To cover a new DataModule, append a ``Factory`` to ``FACTORIES``: ``make(seed, tmp)`` builds it
(any files it needs go under ``tmp``), ``perturb(dm, rows)`` changes the raw validation/test rows
``rows`` of a freshly built (not yet set-up) DataModule by a large amount. The default perturbation
wraps ``load_arrays``: float samples are multiplied by 1000; uint8 images (which cannot hold x1000)
are inverted (255 - x). The checks only use ``setup()``, ``split_indices``, ``preprocessing``,
``state_dict()``, ``load_groups()``, ``load_times()`` and ``gap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine

from datamodules import (
    AddingProblemDataModule,
    BreastCancerDataModule,
    CSVDataModule,
    DiabetesDataModule,
    DigitsDataModule,
    IrisDataModule,
    SequentialDigitsDataModule,
    TimeSeriesDataModule,
    XORDataModule,
    ImageFolderDataModule,
    InMemoryDataModule,
    MNISTDataModule,
    PairDataModule,
)

from _data_factories import write_csv, write_fake_mnist, write_image_folder

SEEDS = range(20)


def perturb_arrays(dm, rows: np.ndarray) -> None:
    orig = dm.load_arrays

    def load():
        x, y = orig()
        x = np.array(x, copy=True)
        if x.dtype == np.uint8:
            x[rows] = 255 - x[rows]
        else:
            x[rows] = x[rows] * 1000.0
        return x, y

    dm.load_arrays = load


def perturb_csv(dm, rows: np.ndarray) -> None:
    t = dm.table()
    for c in dm.numeric:
        t[c] = t[c].copy()
        t[c][rows] = [str(float(v) * 1000) for v in t[c][rows]]
    for c in dm.categorical:  # values unseen in training must not enter the vocabulary
        t[c] = t[c].copy()
        t[c][rows] = "never-in-training"


@dataclass
class Factory:
    name: str
    make: Callable
    perturb: Callable = perturb_arrays


_BC, _WINE, _DIAB = load_breast_cancer(), load_wine(), load_diabetes()
_DIG = load_digits()

FACTORIES = [
    Factory("digits", lambda s, tmp: DigitsDataModule(seed=s)),
    Factory("digits-kfold", lambda s, tmp: DigitsDataModule(seed=s, n_folds=5, fold=s % 5)),
    Factory("breast_cancer-random", lambda s, tmp: InMemoryDataModule(_BC.data, _BC.target, seed=s, split="random")),
    Factory(
        "breast_cancer-grouped",
        lambda s, tmp: InMemoryDataModule(_BC.data, _BC.target, groups=np.arange(len(_BC.target)) // 7, seed=s, split="grouped"),
    ),
    Factory(
        "wine-stratified-grouped-kfold",
        lambda s, tmp: InMemoryDataModule(
            _WINE.data, _WINE.target, groups=np.arange(178) // 3, seed=s, split="stratified_grouped", n_folds=4, fold=s % 4
        ),
    ),
    Factory(
        "diabetes-time-gap",
        lambda s, tmp: InMemoryDataModule(
            _DIAB.data, _DIAB.target, task="regression", times=(np.arange(442) * 7 + s) % 442, seed=s, split="time", gap=5
        ),
    ),
    Factory(
        "diabetes-time-kfold",
        lambda s, tmp: InMemoryDataModule(
            _DIAB.data, _DIAB.target, task="regression", times=np.arange(442) // 2, seed=s, split="time", gap=3, n_folds=3,
            fold=s % 3,
        ),
    ),
    Factory("csv", lambda s, tmp: CSVDataModule(str(write_csv(tmp / "t.csv")), target="label", seed=s), perturb_csv),
    Factory(
        "csv-regression-grouped-minmax",
        lambda s, tmp: CSVDataModule(
            str(write_csv(tmp / "r.csv", regression=True)), target="label", task="regression", scale_target=True,
            scaler="minmax", group_column="person", numeric=["age", "income"], categorical=["color", "city"],
            split="grouped", seed=s,
        ),
        perturb_csv,
    ),
    Factory(
        "csv-time",
        lambda s, tmp: CSVDataModule(
            str(write_csv(tmp / "t2.csv")), target="label", time_column="day", split="time", gap=2, numeric=["age"],
            categorical=["color"], seed=s,
        ),
        perturb_csv,
    ),
    Factory("mnist-fake", lambda s, tmp: MNISTDataModule(root=str(write_fake_mnist(tmp)), download=False, seed=s)),
    Factory(
        "imagefolder-grouped",
        lambda s, tmp: ImageFolderDataModule(str(write_image_folder(tmp / "imgs")), image_size=8, split="grouped", group_by_prefix=True, seed=s),
    ),
    Factory("pairs-class-disjoint", lambda s, tmp: PairDataModule(_DIG.data[:500], _DIG.target[:500], per_sample=1, seed=s)),
    # The issue-3 DataModules (bundled tables, XOR, sequences, time series).
    Factory("diabetes", lambda s, tmp: DiabetesDataModule(seed=s)),
    Factory("breast_cancer", lambda s, tmp: BreastCancerDataModule(seed=s)),
    Factory("iris-setosa-vs-rest", lambda s, tmp: IrisDataModule(setosa_vs_rest=True, seed=s)),
    Factory("xor", lambda s, tmp: XORDataModule(seed=s)),
    Factory("sequential-digits", lambda s, tmp: SequentialDigitsDataModule(seed=s)),
    Factory("adding-problem", lambda s, tmp: AddingProblemDataModule(num_samples=600, seq_len=50, seed=s)),
    Factory("sunspots-time-gap", lambda s, tmp: TimeSeriesDataModule(dataset="sunspots", window=10, gap=s % 4, seed=s)),
]


def _fitted(dm) -> dict:
    """Everything a DataModule fitted: its preprocessing spec (which is also in its state_dict)."""
    state = dm.state_dict()
    assert state["preprocessing"] == dm.preprocessing
    return dm.preprocessing


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.name)
def test_splits_are_disjoint_covering_grouped_ordered_and_statistics_ignore_val_test(factory, tmp_path):
    for seed in SEEDS:
        dm = factory.make(seed, tmp_path)
        dm.setup("fit")
        s = dm.split_indices
        n = len(dm.raw_y)
        parts = [s["train"], s["val"], s["test"]]
        assert all(len(p) > 0 for p in parts), factory.name
        allidx = np.concatenate(parts)
        assert len(allidx) == len(np.unique(allidx)), f"{factory.name} seed {seed}: splits overlap"
        uncovered = np.setdiff1d(np.arange(n), allidx)
        times = dm.load_times()
        gap = getattr(dm, "gap", 0.0)
        if times is None:
            assert len(uncovered) == 0, f"{factory.name} seed {seed}: rows {uncovered[:5]} are in no split"
        else:
            t = np.asarray(times, dtype=float)
            assert t[s["train"]].max() + gap <= t[s["val"]].min()
            assert t[s["val"]].max() + gap <= t[s["test"]].min()
            # only rows inside a gap may be left out, and with time k-fold (forward chaining) the
            # rows after the validation fold, which would be future data for training
            for i in uncovered:
                # (a row sharing the first validation time with the last training rows counts as in the gap)
                in_gap = any(t[s[b]].min() - gap - 1e-9 < t[i] <= t[s[b]].min() for b in ("val", "test"))
                future = getattr(dm, "n_folds", None) is not None and t[s["val"]].max() <= t[i] < t[s["test"]].min()
                assert in_gap or future, (factory.name, seed, i)
        groups = dm.load_groups()
        if groups is not None:
            g = {k: set(np.asarray(groups)[v].tolist()) for k, v in s.items()}
            assert not (g["train"] & g["val"] or g["train"] & g["test"] or g["val"] & g["test"]), factory.name
        # the same split on a second call and in a fresh object (another rank)
        twin = factory.make(seed, tmp_path)
        twin.setup("fit")
        dm.setup("test")
        assert twin.split_hash == dm.split_hash
        # scale the validation and test rows by 1000: every fitted statistic stays the same
        probe = factory.make(seed, tmp_path)
        factory.perturb(probe, np.concatenate([s["val"], s["test"]]))
        probe.setup("fit")
        assert probe.split_hash == dm.split_hash
        assert probe.fingerprint != dm.fingerprint, f"{factory.name}: the probe did not change the data"
        assert _fitted(probe) == _fitted(dm), f"{factory.name} seed {seed}: validation/test rows moved a statistic"
