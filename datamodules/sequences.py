"""Sequence data sets: digits read row by row, and the adding problem.

* Sequential digits: each 8x8 scikit-learn digit becomes 8 time steps of 8 features (its rows), the
  small cousin of sequential MNIST (Le, Jaitly & Hinton, 2015, "A Simple Way to Initialize Recurrent
  Networks of Rectified Linear Units").
* The adding problem (Hochreiter & Schmidhuber, 1997, "Long Short-Term Memory", Neural Computation
  9(8), experiment 4; in the form of Le et al., 2015): every step carries a random value in [0, 1)
  and a marker; exactly two steps are marked, one in each half of the sequence, and the target is
  the sum of the two marked values. Predicting the mean sum 1.0 gives MSE = Var(U1 + U2) = 2/12 =
  0.167, the bar a network must beat to show it carries information across the sequence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_digits

from .base import ArrayDataModule, TargetScalingMixin


class SequentialDigitsDataModule(ArrayDataModule):
    """Digits as raw ``(8, 8)`` sequences: T = 8 rows, F = 8 pixels per row (values 0..16).

    Standardised per feature (pixel column) with training-row statistics (``scale_axis=-1``).
    Args: see ``ArrayDataModule``.
    """

    num_classes = 10
    input_shape = (8, 8)
    scale_axis = -1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # ArrayDataModule's arguments
        self.save_hyperparameters()

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        d = load_digits()
        return d.images.astype(np.float32), d.target.astype(np.int64)  # (1797, 8, 8), (1797,)


def adding_problem(n: int, seq_len: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` adding-problem sequences ``(n, seq_len, 2)`` and their targets ``(n,)``, from ``seed``."""
    rng = np.random.default_rng(seed)
    values = rng.random((n, seq_len))  # (n, T)
    half = seq_len // 2
    first = rng.integers(0, half, size=n)  # one marker in the first half ...
    second = rng.integers(half, seq_len, size=n)  # ... and one in the second half
    markers = np.zeros((n, seq_len))
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)  # (n, T, 2)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)  # (n,)
    return x, y


class AddingProblemDataModule(TargetScalingMixin, ArrayDataModule):
    """Generated adding-problem sequences, raw ``(seq_len, 2)``: channel 0 the values, channel 1 the markers.

    Args:
        num_samples: sequences generated (split into train/val/test by ``val_size``/``test_size``).
        seq_len: sequence length T (>= 2; the classic difficulty starts around 50).
        data_seed: seed of the generator (the split has its own ``seed``).
        val_size, test_size, seed, batch_size, num_workers: see ``ArrayDataModule``.
    """

    num_classes = 1  # one regression output
    task_type = "regression"
    scale_axis = -1

    def __init__(
        self,
        num_samples: int = 10000,
        seq_len: int = 50,
        data_seed: int = 0,
        val_size: float = 0.1,
        test_size: float = 0.1,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(val_size=val_size, test_size=test_size, seed=seed, batch_size=batch_size, num_workers=num_workers)
        if seq_len < 2:
            raise ValueError(f"data.seq_len must be >= 2 (one marker in each half), got {seq_len}")
        if num_samples < 10:
            raise ValueError(f"data.num_samples must be >= 10 to leave rows for every split, got {num_samples}")
        self.num_samples, self.seq_len, self.data_seed = num_samples, seq_len, data_seed
        self.input_shape = (seq_len, 2)
        self.save_hyperparameters()

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return adding_problem(self.num_samples, self.seq_len, self.data_seed)
