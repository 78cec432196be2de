"""LightningModules that add a task (loss, metrics, optimizer) to the pure architectures in ``zoo``."""

from .base import OPTIMIZERS, SCHEDULERS, ZooTask
from .binary import BinaryClassificationTask, PerceptronTask
from .classification import ClassificationTask
from .gan import GANTask
from .regression import RegressionTask
from .sequence import SequenceRegressionTask

__all__ = [
    "ZooTask",
    "ClassificationTask",
    "GANTask",
    "BinaryClassificationTask",
    "PerceptronTask",
    "RegressionTask",
    "SequenceRegressionTask",
    "OPTIMIZERS",
    "SCHEDULERS",
]
