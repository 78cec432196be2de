"""DigitsDataModule: seeded stratified split, statistics from training rows only, state round trip."""

import numpy as np
import pytest
import torch

from datamodules import DigitsDataModule, SplitMismatchError
from datamodules.augment import random_affine


def test_split_is_disjoint_covering_stratified_and_repeatable():
    dm = DigitsDataModule(seed=3)
    dm.setup("fit")
    s = dm.split_indices
    allidx = np.concatenate([s["train"], s["val"], s["test"]])
    assert len(allidx) == len(np.unique(allidx)) == 1797
    assert len(s["test"]) == int(np.ceil(0.2 * 1797)) and abs(len(s["val"]) - 0.15 * 1797) <= 1  # sklearn rounds test up
    _, y = dm.load_arrays()
    for part in s.values():  # stratified: every class's share within 2 points of its overall share
        share = np.bincount(y[part], minlength=10) / len(part)
        assert np.abs(share - np.bincount(y) / len(y)).max() < 0.02
    # same on a second call and in a fresh object (as on another rank); differs with the seed
    dm.setup("test")
    again = DigitsDataModule(seed=3)
    again.setup("fit")
    for k in s:
        np.testing.assert_array_equal(s[k], again.split_indices[k])
    other = DigitsDataModule(seed=4)
    other.setup()
    assert not np.array_equal(other.split_indices["test"], s["test"])


def test_split_ignores_global_rng():
    torch.manual_seed(123)
    np.random.seed(123)
    a = DigitsDataModule(seed=0)
    a.setup()
    torch.manual_seed(999)
    np.random.seed(999)
    b = DigitsDataModule(seed=0)
    b.setup()
    assert a.split_hash == b.split_hash


class ShiftedDigits(DigitsDataModule):
    """Digits whose validation and test rows (by a reference split) are shifted by +1000."""

    def __init__(self, rows, **kw):
        super().__init__(**kw)
        self.rows = rows

    def load_arrays(self):
        x, y = super().load_arrays()
        x = x.copy()
        x[self.rows] += 1000.0
        return x, y


def test_leakage_probe_val_and_test_rows_do_not_move_statistics():
    ref = DigitsDataModule(seed=0)
    ref.setup()
    rows = np.concatenate([ref.split_indices["val"], ref.split_indices["test"]])
    probe = ShiftedDigits(rows, seed=0)
    probe.setup()
    assert probe.split_hash == ref.split_hash  # the split depends on labels and seed only
    assert probe.preprocessing["mean"] == ref.preprocessing["mean"]
    assert probe.preprocessing["std"] == ref.preprocessing["std"]
    # ... while shifting a training row does move them (the probe can fail)
    moved = ShiftedDigits(ref.split_indices["train"][:5], seed=0)
    moved.setup()
    assert moved.preprocessing["mean"] != ref.preprocessing["mean"]


def test_statistics_are_the_training_rows_mean_and_std():
    dm = DigitsDataModule(seed=0)
    dm.setup()
    x, _ = dm.load_arrays()
    train = x[dm.split_indices["train"]]
    assert dm.preprocessing["mean"][0] == pytest.approx(train.mean(), rel=1e-5)
    assert dm.preprocessing["std"][0] == pytest.approx(train.std(), rel=1e-5)


def test_state_dict_round_trip_and_mismatch_error():
    dm = DigitsDataModule(seed=0, resize=32)
    dm.setup()
    state = dm.state_dict()
    assert state["preprocessing"]["resize"] == [32, 32]
    fresh = DigitsDataModule(seed=0, resize=32)
    fresh.setup()
    fresh.load_state_dict(state)
    assert fresh.preprocessing == dm.preprocessing
    wrong = DigitsDataModule(seed=1, resize=32)
    wrong.setup()
    with pytest.raises(SplitMismatchError, match="split .* differs from the checkpoint"):
        wrong.load_state_dict(state)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="data.val_size"):
        DigitsDataModule(val_size=0.5, test_size=0.6)
    with pytest.raises(ValueError, match="data.resize"):
        DigitsDataModule(resize=0)


def test_bad_labels_name_the_rows():
    class Bad(DigitsDataModule):
        def load_arrays(self):
            x, y = super().load_arrays()
            y = y.copy()
            y[[4, 7]] = 12
            return x, y

    with pytest.raises(ValueError, match=r"rows \[4, 7\] have \[12, 12\]"):
        Bad().setup()


def test_random_affine_is_per_sample_and_identity_at_zero():
    x = torch.rand(6, 1, 8, 8)
    torch.testing.assert_close(random_affine(x, degrees=0, translate=0, scale=(1, 1)), x, atol=1e-5, rtol=0)
    torch.manual_seed(0)
    out = random_affine(x.expand(6, 1, 8, 8).clone()[:1].repeat(6, 1, 1, 1))
    assert out.shape == (6, 1, 8, 8)
    assert not torch.allclose(out[0], out[1])  # different draws per sample
