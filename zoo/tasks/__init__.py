"""LightningModules that add a task (loss, metrics, optimizer) to the pure architectures in ``zoo``."""

from .base import OPTIMIZERS, SCHEDULERS, ZooTask
from .classification import ClassificationTask

__all__ = ["ZooTask", "ClassificationTask", "OPTIMIZERS", "SCHEDULERS"]
