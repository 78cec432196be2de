"""Callbacks of the zoo: gradient inspection, W&B extras, image sampling."""

from .gradient_inspector import GradientInspector, NonFiniteGradientError

__all__ = ["GradientInspector", "NonFiniteGradientError"]
