"""Rosenblatt's perceptron: a linear threshold unit trained by the perceptron learning rule.

Rosenblatt (1958), "The perceptron: a probabilistic model for information storage and organization
in the brain", Psychological Review 65(6). The unit outputs ``1`` if ``w . x + b >= 0`` else ``0``;
after each sample the rule moves the weights by ``lr * (y - y_hat) * x`` (and the bias by
``lr * (y - y_hat)``): nothing changes on a correct answer. Novikoff (1962) proved it stops making
mistakes after finitely many updates when the classes are linearly separable; Minsky & Papert (1969)
showed that no single threshold unit computes XOR.

The step function has zero derivative almost everywhere, so back-propagation cannot train it; the
rule is applied by ``Perceptron.perceptron_update`` (``zoo.tasks.PerceptronTask`` calls it with
Lightning's manual optimisation).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from ._base import ZooModel, make_head
from ._registry import register_model

__all__ = ["Perceptron", "perceptron"]

# ----------------------------------------------------------------------------------------- model


class Perceptron(ZooModel):
    """Linear threshold unit(s) on the flattened input.

    ``forward`` returns the net input ``w . x + b`` (shape ``(N, num_classes)``), the score whose
    sign the unit thresholds: a differentiable, exportable output that the zoo's shared tests and
    tasks can use; ``predict`` applies the threshold and returns 0/1.

    Args:
        input_shape: shape of one sample; flattened.
        num_classes: number of independent threshold units (1 for one binary decision); 0 returns
            the flattened input.
        zero_init: start from ``w = 0, b = 0`` as Rosenblatt did; the default keeps ``nn.Linear``'s
            small random start (convergence on separable data holds from any start, Novikoff 1962).
    """

    def __init__(self, input_shape: Sequence[int] = (4,), num_classes: int = 1, zero_init: bool = False) -> None:
        super().__init__(input_shape, num_classes)
        self.num_features = math.prod(self.input_shape)
        self.flatten = nn.Flatten()
        self.head = make_head(self.num_features, num_classes)
        if zero_init and num_classes > 0:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(x)  # (N, F)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Threshold output: ``(N, num_classes)`` of 0/1 (Heaviside step at 0, 1 on the boundary)."""
        return (self(x) >= 0).to(x.dtype)

    @torch.no_grad()
    def perceptron_update(self, x: torch.Tensor, y: torch.Tensor, lr: float = 1.0) -> torch.Tensor:
        """Apply the perceptron rule to the samples of ``x`` one after the other (online, as in 1958).

        Args:
            x: ``(N, *input_shape)`` inputs (already standardised if the task does that).
            y: ``(N,)`` or ``(N, num_classes)`` targets in {0, 1}.
            lr: learning rate (step size); with a zero start it only scales ``w`` and changes nothing.

        Returns:
            ``(N,)`` bool: which samples the unit got wrong just before its update (= were updated on).
        """
        if self.num_classes == 0:
            raise ValueError("perceptron_update needs threshold units (num_classes >= 1)")
        self.check_input(x)
        feats = self.flatten(x)  # (N, F)
        y = y.reshape(len(feats), -1).to(feats.dtype)  # (N, K)
        w, b = self.head.weight, self.head.bias  # (K, F), (K,)
        mistakes = torch.zeros(len(feats), dtype=torch.bool, device=feats.device)
        # A Python loop on purpose: each update must see the weights the previous sample left.
        for i, (xi, yi) in enumerate(zip(feats, y)):
            y_hat = (w @ xi + b >= 0).to(xi.dtype)  # (K,)
            err = yi - y_hat  # (K,) in {-1, 0, 1}
            if err.any():
                w.add_(lr * err[:, None] * xi[None, :])  # w += lr (y - y_hat) x
                b.add_(lr * err)  # b += lr (y - y_hat)
                mistakes[i] = True
        return mistakes


# ------------------------------------------------------------------------------------- variants

_PAPER = (
    "Rosenblatt (1958), The perceptron: a probabilistic model for information storage and organization "
    "in the brain, Psychological Review 65(6)"
)


@register_model(task="binary_classification", input_shape=(4,), num_classes=1, paper=_PAPER,
                default_config="configs/perceptron_iris.yaml")
def perceptron(input_shape: Sequence[int] = (4,), num_classes: int = 1, **kwargs) -> Perceptron:
    """Rosenblatt perceptron: threshold unit(s) trained by the perceptron learning rule."""
    return Perceptron(input_shape, num_classes, **kwargs)
