"""Callbacks of the zoo: gradient inspection, W&B preset and extras, image sampling."""

from .gradient_inspector import GradientInspector, NonFiniteGradientError
from .wandb import WandbExtras, ZooWandbLogger

__all__ = ["GradientInspector", "NonFiniteGradientError", "WandbExtras", "ZooWandbLogger"]
