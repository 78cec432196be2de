"""Tabular data sets bundled with scikit-learn (no download): diabetes, breast cancer, iris.

* Diabetes: Efron, Hastie, Johnstone & Tibshirani (2004), "Least Angle Regression", Annals of
  Statistics 32; 442 patients, 10 baseline variables, target: disease progression after one year.
* Breast cancer Wisconsin (diagnostic): Street, Wolberg & Mangasarian (1993); 569 tumours,
  30 features, malignant (0) / benign (1).
* Iris: Fisher (1936), "The use of multiple measurements in taxonomic problems"; 150 flowers,
  4 features, 3 species. Setosa is linearly separable from the other two.

Features are standardised per feature (``scale_axis = -1``) with statistics of the training rows;
the diabetes targets too (``fit_extra``), so regression trains on unit-variance targets while the
task reports and predicts in the raw target units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from .base import ArrayDataModule, TargetScalingMixin

__all__ = ["DiabetesDataModule", "BreastCancerDataModule", "IrisDataModule"]


class _TabularDataModule(ArrayDataModule):
    scale_axis = -1  # per-feature standardisation of (F,) rows

    def __init__(self, batch_size: int = 32, **kwargs: Any) -> None:
        # Small tables: batches of 32 by default; the other arguments are ArrayDataModule's.
        super().__init__(batch_size=batch_size, **kwargs)
        self.save_hyperparameters()  # collects the subclasses' own arguments too


class DiabetesDataModule(TargetScalingMixin, _TabularDataModule):
    """scikit-learn's diabetes regression data: raw ``(10,)`` rows (``scaled=False``: the original
    units, so that our scaler, not sklearn's whole-data one, decides the statistics) and float targets.

    ``preprocessing`` also carries ``target`` = ``{"mean": [...], "std": [...]}`` fitted on the
    training targets; ``zoo.tasks.RegressionTask`` trains on standardised targets and inverts it.

    Args: see ``ArrayDataModule`` (split random, not stratified, as targets are continuous).
    """

    num_classes = 1  # output width of the regression model (one target)
    input_shape = (10,)
    task_type = "regression"


    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        d = load_diabetes(scaled=False)
        return d.data.astype(np.float32), d.target.astype(np.float32)  # (442, 10), (442,)


class BreastCancerDataModule(_TabularDataModule):
    """Breast cancer Wisconsin: raw ``(30,)`` rows, labels 0 = malignant, 1 = benign (stratified split)."""

    num_classes = 2
    input_shape = (30,)


    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        d = load_breast_cancer()
        return d.data.astype(np.float32), d.target.astype(np.int64)  # (569, 30), (569,)


class IrisDataModule(_TabularDataModule):
    """Iris: raw ``(4,)`` rows (cm).

    Args:
        setosa_vs_rest: ``True`` gives the binary, linearly separable problem (1 = setosa,
            0 = versicolor or virginica) on which the perceptron converges; ``False`` the 3 species.
        others: see ``ArrayDataModule`` (``batch_size`` defaults to 32).
    """

    input_shape = (4,)

    def __init__(self, setosa_vs_rest: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.setosa_vs_rest = bool(setosa_vs_rest)
        self.num_classes = 2 if self.setosa_vs_rest else 3

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        d = load_iris()
        y = d.target.astype(np.int64)  # (150,) 0 setosa, 1 versicolor, 2 virginica
        if self.setosa_vs_rest:
            y = (y == 0).astype(np.int64)
        return d.data.astype(np.float32), y
