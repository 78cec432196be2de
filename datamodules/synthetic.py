"""Generated data sets (seeded, no download).

XOR: the four points of {0, 1}^2 labelled ``x1 XOR x2``. Minsky & Papert (1969), "Perceptrons",
showed that no single threshold unit separates them; one hidden layer does (Rumelhart, Hinton &
Williams, 1986).
"""

from __future__ import annotations

import numpy as np

from .base import ArrayDataModule

__all__ = ["XORDataModule"]

_CORNERS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=np.float32)  # (4, 2)
_XOR = np.array([0, 1, 1, 0], dtype=np.int64)


class XORDataModule(ArrayDataModule):
    """``copies`` noisy copies of each XOR corner (Gaussian noise of std ``noise``), seeded.

    The split is stratified on the *corner* (not only on the label), so validation and test hold
    every one of the four patterns in equal numbers. That is what makes ``test/acc`` meaningful: a
    linear decision boundary can get at most three of the four corners right, so a linear model
    scores at most about 0.75, and 1.0 means the XOR function itself was learnt.

    Args:
        copies: samples per corner (>= 4, so that train, val and test all see every corner).
        noise: standard deviation of the Gaussian jitter; below 0.25 the corners' clouds stay apart.
        data_seed: seed of the generated points (``seed`` is the split seed).
        val_size, test_size, seed, batch_size, num_workers: see ``ArrayDataModule``.
    """

    num_classes = 2
    input_shape = (2,)
    scale_axis = -1

    def __init__(
        self,
        copies: int = 50,
        noise: float = 0.1,
        data_seed: int = 0,
        val_size: float = 0.2,
        test_size: float = 0.2,
        seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__(val_size=val_size, test_size=test_size, seed=seed, batch_size=batch_size, num_workers=num_workers)
        if copies < 4:
            raise ValueError(f"data.copies must be >= 4 so that train, val and test each hold every XOR corner, got {copies}")
        if not 0 <= noise < 0.5:
            raise ValueError(f"data.noise must be in [0, 0.5) (corners are 1 apart), got {noise}")
        for k, frac in (("val_size", val_size), ("test_size", test_size)):
            if round(frac * copies) < 1:
                raise ValueError(f"data.{k}={frac} leaves no copy of a corner in that split with copies={copies}; raise one of them")
        self.copies, self.noise, self.data_seed = int(copies), float(noise), int(data_seed)
        self.save_hyperparameters()

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.data_seed)
        corner = np.repeat(np.arange(4), self.copies)  # (4 * copies,)
        x = _CORNERS[corner] + rng.normal(0.0, self.noise, size=(len(corner), 2)).astype(np.float32)
        return x.astype(np.float32), _XOR[corner]

    def split(self, y: np.ndarray, groups=None, times=None) -> dict[str, np.ndarray]:
        # Stratify on the corner id (0..3), known from the generation order, instead of the label.
        corner = np.repeat(np.arange(4), self.copies)
        return super().split(corner, groups, times)
