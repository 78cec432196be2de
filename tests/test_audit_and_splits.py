"""Contamination audit, split strategies and k-fold, resume guard, pairs and triplets."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine

import cli
from datamodules import (
    ContaminationError,
    DigitsDataModule,
    InMemoryDataModule,
    PairDataModule,
    SplitMismatchError,
    make_split,
)

ROOT = Path(__file__).resolve().parents[1]


def _genuine_cross_split_duplicates(x, split):
    """Exact duplicate pairs across splits found independently of the audit (np.unique on rows)."""
    where = {}
    for name in ("train", "val", "test"):
        for i in split[name]:
            where.setdefault(x[i].reshape(-1).tobytes(), set()).add(name)
    return sum(len(v) > 1 for v in where.values())


@pytest.mark.parametrize("name", ["digits", "iris", "wine", "breast_cancer"])
def test_audit_reports_nothing_false_on_clean_bundled_sets(name):
    for seed in range(3):
        if name == "digits":
            dm = DigitsDataModule(seed=seed)
        else:
            d = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer}[name]()
            dm = InMemoryDataModule(d.data, d.target, seed=seed)
        dm.setup()
        rep = dm.audit("fail" if name != "iris" else "warn")
        assert rep.near == [] and rep.leaky_features == []
        # iris really holds one duplicated flower (rows 101 and 142): reported only when split apart
        assert len(rep.exact) == _genuine_cross_split_duplicates(dm.raw_x, dm.split_indices)


def _planted(seed=0):
    d = load_breast_cancer()
    ref = InMemoryDataModule(d.data, d.target, seed=seed)
    ref.setup()
    s = ref.split_indices
    x = d.data.copy()
    rng = np.random.default_rng(seed)
    tr = rng.choice(s["train"], 12, replace=False)
    exact_to = np.concatenate([s["val"][:3], s["test"][:3]])
    near_to = np.concatenate([s["val"][3:6], s["test"][3:6]])
    x[exact_to] = x[tr[:6]]
    x[near_to] = x[tr[6:]] * (1 + 1e-4 * rng.standard_normal((6, x.shape[1])))
    x[s["test"][10]] = x[s["val"][10]]  # val/test duplicate
    planted = {
        "exact": {(int(a), int(b)) for a, b in zip(tr[:6], exact_to)} | {(int(s["val"][10]), int(s["test"][10]))},
        "near": {(int(a), int(b)) for a, b in zip(tr[6:], near_to)},
    }
    return x, d.target, planted


@pytest.mark.parametrize("seed", [0, 1])
def test_audit_finds_every_planted_duplicate_and_drop_removes_them(seed):
    x, y, planted = _planted(seed)
    dm = InMemoryDataModule(x, y, seed=seed)
    dm.setup()
    with pytest.warns(UserWarning, match="CONTAMINATED"):
        rep = dm.audit("warn")
    assert {(i, j) for _, i, _, j in rep.exact} == planted["exact"]
    assert {(i, j) for _, i, _, j, _ in rep.near} == planted["near"]
    with pytest.raises(ContaminationError, match="exact duplicates across splits: 7"):
        dm.audit("fail")
    before = dm.split_hash
    # drop inside setup: reproducible, so a resumed run computes the same training rows
    dropper = InMemoryDataModule(x, y, seed=seed, audit="drop")
    with pytest.warns(UserWarning):
        dropper.setup()
    train = set(dropper.split_indices["train"].tolist())
    assert not train & {i for i, _ in planted["exact"] | planted["near"]}
    assert len(dropper.split_indices["train"]) == len(dm.split_indices["train"]) - 12
    assert dropper.split_hash != before and len(dropper.datasets["train"]) == len(train)
    again = InMemoryDataModule(x, y, seed=seed, audit="drop")
    with pytest.warns(UserWarning):
        again.setup()
    assert again.split_hash == dropper.split_hash


def test_audit_flags_a_feature_that_copies_the_target():
    d = load_wine()
    x = np.column_stack([d.data, d.target * 10.0 + np.random.default_rng(0).normal(0, 0.1, len(d.target))])
    dm = InMemoryDataModule(x, d.target, feature_names=[*d.feature_names, "batch_code"])
    dm.setup()
    with pytest.warns(UserWarning):
        rep = dm.audit("warn")
    assert [n for n, _ in rep.leaky_features] == ["batch_code"]


@pytest.mark.parametrize("plant", ["copy", "log", "cube", "rescaled_noisy"])
def test_audit_flags_a_regression_target_copy_and_monotone_transforms(plant):
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False)
    y = d.target
    leak = {
        "copy": y,
        "log": np.log(y),  # monotone: a tree and the rank correlation see a copy
        "cube": (y - 150.0) ** 3,
        "rescaled_noisy": 0.01 * y + np.random.default_rng(0).normal(0, 0.05, len(y)),  # |rho| 0.997
    }[plant]
    x = np.column_stack([d.data, leak])
    dm = InMemoryDataModule(x, y, task="regression", feature_names=[*d.feature_names, plant])
    dm.setup()
    with pytest.warns(UserWarning, match="CONTAMINATED"):
        rep = dm.audit("warn", near=False)
    assert [n for n, _ in rep.leaky_features] == [plant]
    assert rep.leak_rank[plant] >= 0.99 and f"{plant}: cross-validated score" in str(rep)


def test_audit_leaves_clean_diabetes_and_flags_a_rare_label_copy():
    from datamodules import DiabetesDataModule

    dm = DiabetesDataModule()
    dm.setup()
    assert dm.audit("warn", near=False).leaky_features == []
    # Classification: 0.5% positives, so a constant guess already scores 99.5% accuracy; balanced
    # accuracy still flags a feature that copies the label.
    rng = np.random.default_rng(0)
    y = (np.arange(1000) % 200 == 0).astype(np.int64)
    x = np.column_stack([rng.normal(size=(1000, 4)), y * 2.0])
    dm = InMemoryDataModule(x, y, feature_names=["a", "b", "c", "d", "label_copy"])
    dm.setup()
    with pytest.warns(UserWarning):
        rep = dm.audit("warn", near=False)
    assert [n for n, _ in rep.leaky_features] == ["label_copy"]


def test_zoo_audit_cli_prints_the_report(capsys):
    cli.main(["audit", "--config", str(ROOT / "configs/mlp_digits.yaml"), "--trainer.logger", "false"])
    out = capsys.readouterr().out
    assert "exact duplicates across splits: 0" in out and "verdict: clean" in out


def test_kfold_folds_partition_the_non_test_rows_and_resume_checks_the_fold():
    y = load_digits().target
    vals, tests = [], []
    for k in range(5):
        s = make_split(len(y), strategy="stratified", y=y, n_folds=5, fold=k, seed=0)
        vals.append(s["val"])
        tests.append(s["test"])
        assert not set(s["train"]) & set(s["val"])
    assert all(np.array_equal(t, tests[0]) for t in tests)  # test held out first, the same for every fold
    allval = np.concatenate(vals)
    assert len(allval) == len(np.unique(allval)) == len(y) - len(tests[0])
    a = DigitsDataModule(n_folds=5, fold=0)
    a.setup()
    b = DigitsDataModule(n_folds=5, fold=1)
    b.load_state_dict(a.state_dict())
    with pytest.raises(SplitMismatchError, match="the split .*'fold': 0"):
        b.setup()


def test_split_errors_name_the_setting():
    with pytest.raises(ValueError, match="data.split: unknown split strategy 'bogus'"):
        DigitsDataModule(split="bogus")
    with pytest.raises(ValueError, match="needs a group per row"):
        DigitsDataModule(split="grouped").setup()
    with pytest.raises(ValueError, match=r"data.fold in \[0, n_folds\), got n_folds=3, fold=3"):
        DigitsDataModule(n_folds=3, fold=3)


@pytest.mark.parametrize("kind", ["pairs", "triplets"])
def test_pairs_are_class_disjoint_seeded_and_within_a_split(kind):
    d = load_digits()
    dm = PairDataModule(d.data, d.target, kind=kind, per_sample=1, seed=3)
    dm.setup()
    s = dm.split_indices
    cls = {k: set(d.target[v]) for k, v in s.items()}
    assert not (cls["train"] & cls["test"] or cls["train"] & cls["val"] or cls["val"] & cls["test"])
    for name, rows in s.items():
        idx = dm.datasets[name].index.numpy()
        assert np.isin(idx, rows).all()  # no pair or triplet mixes splits
        if kind == "triplets":
            assert (d.target[idx[:, 0]] == d.target[idx[:, 1]]).all() and (d.target[idx[:, 0]] != d.target[idx[:, 2]]).all()
        else:
            same = dm.datasets[name].same.numpy()
            assert ((d.target[idx[:, 0]] == d.target[idx[:, 1]]) == (same == 1)).all() and 0.3 < same.mean() < 0.7
    twin = PairDataModule(d.data, d.target, kind=kind, per_sample=1, seed=3)
    twin.setup()
    assert np.array_equal(twin.datasets["train"].index.numpy(), dm.datasets["train"].index.numpy())


def test_identity_grouped_pairs_keep_an_identity_in_one_split():
    d = load_digits()
    ids = np.arange(len(d.target)) // 5
    dm = PairDataModule(d.data, d.target, identities=ids, disjoint="identity", per_sample=1)
    dm.setup()
    g = {k: set(ids[v]) for k, v in dm.split_indices.items()}
    assert not (g["train"] & g["val"] or g["train"] & g["test"] or g["val"] & g["test"])
    assert dm.num_classes == 0
