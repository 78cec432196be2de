"""Leak-proof DataModules: split in ``setup()`` from a seed, statistics fitted on training rows only."""

from .base import ArrayDataModule, SplitMismatchError
from .digits import DigitsDataModule
from .sklearn_tabular import BreastCancerDataModule, DiabetesDataModule, IrisDataModule
from .synthetic import XORDataModule

__all__ = [
    "ArrayDataModule",
    "DigitsDataModule",
    "SplitMismatchError",
    "DiabetesDataModule",
    "BreastCancerDataModule",
    "IrisDataModule",
    "XORDataModule",
]
