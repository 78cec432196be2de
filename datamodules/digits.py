"""scikit-learn's bundled handwritten digits (1,797 8x8 images, values 0..16, ten classes).

Source: the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak, 1998),
shipped inside scikit-learn, so it needs no download.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_digits

from .augment import random_affine
from .base import ArrayDataModule


class DigitsDataModule(ArrayDataModule):
    """Digits as raw ``(1, 8, 8)`` float images, split stratified and seeded in ``setup``.

    Args:
        augment: random small rotations, shifts and scalings of the training images (never of
            validation or test images).
        resize: side length the model resizes the images to (LeNet-5 expects 32); ``None`` keeps 8x8.
            The resize is part of the model's input transform, so the checkpoint takes raw 8x8 input.
        val_size, test_size, seed, batch_size, num_workers, split, n_folds, fold, audit: see ``ArrayDataModule``.
    """

    num_classes = 10
    input_shape = (1, 8, 8)

    def __init__(self, resize: int | None = None, augment: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # val_size, test_size, seed, batch_size, num_workers, split, n_folds, fold, audit
        if resize is not None and resize < 1:
            raise ValueError(f"data.resize must be a positive side length or null, got {resize}")
        self._resize = resize
        self.augment = augment
        self.save_hyperparameters()

    @property
    def resize(self) -> list[int] | None:
        return [self._resize, self._resize] if self._resize else None

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Training batches only: validation, test and predict see the images as they are.
        if self.augment and self.trainer is not None and self.trainer.training:
            x, y = batch
            # Up to 10 degrees, 1 pixel (of 8) and 10 % scale: a digit stays the same digit.
            batch = (random_affine(x, degrees=10.0, translate=0.125, scale=(0.9, 1.1)), y)
        return batch

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        d = load_digits()
        return d.images[:, None].astype(np.float32), d.target.astype(np.int64)  # (1797, 1, 8, 8), (1797,)
