"""Leak-proof DataModules: split in ``setup()`` from a seed, statistics fitted on training rows only."""

from .base import ArrayDataModule, SplitMismatchError
from .digits import DigitsDataModule
from .sequences import AddingProblemDataModule, SequentialDigitsDataModule
from .timeseries import TimeSeriesDataModule

__all__ = ["ArrayDataModule", "DigitsDataModule", "SplitMismatchError", "SequentialDigitsDataModule", "AddingProblemDataModule", "TimeSeriesDataModule"]
