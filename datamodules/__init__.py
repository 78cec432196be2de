"""Leak-proof DataModules: split in ``setup()`` from a seed, statistics fitted on training rows only."""

from .base import ArrayDataModule, SplitMismatchError
from .digits import DigitsDataModule

__all__ = ["ArrayDataModule", "DigitsDataModule", "SplitMismatchError"]
