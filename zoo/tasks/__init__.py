"""LightningModules that add a task (loss, metrics, optimizer) to the pure architectures in ``zoo``."""

from .base import OPTIMIZERS, SCHEDULERS, ZooTask
from .binary import BinaryClassificationTask, PerceptronTask
from .classification import ClassificationTask
from .regression import RegressionTask

__all__ = [
    "ZooTask",
    "ClassificationTask",
    "OPTIMIZERS",
    "SCHEDULERS",
    "RegressionTask",
    "BinaryClassificationTask",
    "PerceptronTask",
]
