"""LightningModules that add a task (loss, metrics, optimizer) to the pure architectures in ``zoo``."""

from .base import OPTIMIZERS, SCHEDULERS, ZooTask
from .binary import BinaryClassificationTask, PerceptronTask
from .classification import ClassificationTask
from .finetune import FinetuneTask
from .gan import GANTask
from .regression import RegressionTask
from .representation import DBNTask, EnergyTask, ReconstructionTask, VariationalTask
from .sequence import SequenceRegressionTask

__all__ = [
    "ZooTask",
    "ClassificationTask",
    "FinetuneTask",
    "GANTask",
    "BinaryClassificationTask",
    "PerceptronTask",
    "RegressionTask",
    "SequenceRegressionTask",
    "ReconstructionTask",
    "VariationalTask",
    "EnergyTask",
    "DBNTask",
    "OPTIMIZERS",
    "SCHEDULERS",
]
