"""LightningModules that add a task (loss, metrics, optimizer) to the pure architectures in ``zoo``."""

from .base import OPTIMIZERS, SCHEDULERS, ZooTask
from .classification import ClassificationTask
from .sequence import SequenceRegressionTask

__all__ = ["ZooTask", "ClassificationTask", "SequenceRegressionTask", "OPTIMIZERS", "SCHEDULERS"]
