"""Leak-proof DataModules: split in ``setup()`` from a seed, statistics fitted on training rows only."""

from .audit import AuditReport, ContaminationError
from .base import ArrayDataModule, InMemoryDataModule, SplitMismatchError, TargetScalingMixin
from .digits import DigitsDataModule
from .pairs import PairDataModule
from .sequences import AddingProblemDataModule, SequentialDigitsDataModule
from .sklearn_tabular import BreastCancerDataModule, DiabetesDataModule, IrisDataModule
from .splits import make_split
from .synthetic import XORDataModule
from .tabular import CSVDataModule
from .timeseries import TimeSeriesDataModule
from .vision import CIFAR10DataModule, FashionMNISTDataModule, ImageFolderDataModule, MNISTDataModule

__all__ = [
    "AddingProblemDataModule",
    "ArrayDataModule",
    "AuditReport",
    "BreastCancerDataModule",
    "CIFAR10DataModule",
    "CSVDataModule",
    "ContaminationError",
    "DiabetesDataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "InMemoryDataModule",
    "IrisDataModule",
    "MNISTDataModule",
    "PairDataModule",
    "SequentialDigitsDataModule",
    "SplitMismatchError",
    "TargetScalingMixin",
    "TimeSeriesDataModule",
    "XORDataModule",
    "make_split",
]
