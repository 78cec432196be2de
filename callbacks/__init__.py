"""Callbacks of the zoo: gradient inspection, W&B preset and extras, image sampling, fine-tuning strategies."""

from .finetuning import FinetuneStrategy
from .gradient_inspector import GradientInspector, NonFiniteGradientError
from .image_sampler import ImageSampler
from .wandb import WandbExtras, ZooWandbLogger

__all__ = ["FinetuneStrategy", "GradientInspector", "ImageSampler", "NonFiniteGradientError", "WandbExtras", "ZooWandbLogger"]
