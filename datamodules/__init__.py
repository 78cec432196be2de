"""Leak-proof DataModules: split in ``setup()`` from a seed, statistics fitted on training rows only."""

from .audit import AuditReport, ContaminationError
from .base import ArrayDataModule, InMemoryDataModule, SplitMismatchError
from .digits import DigitsDataModule
from .pairs import PairDataModule
from .sequences import AddingProblemDataModule, SequentialDigitsDataModule
from .splits import make_split
from .tabular import CSVDataModule
from .timeseries import TimeSeriesDataModule
from .vision import CIFAR10DataModule, FashionMNISTDataModule, ImageFolderDataModule, MNISTDataModule

__all__ = [
    "AddingProblemDataModule",
    "ArrayDataModule",
    "AuditReport",
    "CIFAR10DataModule",
    "CSVDataModule",
    "ContaminationError",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "PairDataModule",
    "SequentialDigitsDataModule",
    "SplitMismatchError",
    "TimeSeriesDataModule",
    "make_split",
]
