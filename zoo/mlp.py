"""Multilayer perceptron.

Rumelhart, Hinton & Williams (1986), "Learning representations by back-propagating errors",
Nature 323. Options cover the activations of the classic curriculum, including SELU
(Klambauer et al., 2017, "Self-Normalizing Neural Networks") and Maxout (Goodfellow et al., 2013),
dropout (Srivastava et al., 2014) and batch norm (Ioffe & Szegedy, 2015).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from ._base import ZooModel, make_head
from ._registry import register_model
from .layers import Maxout, get_activation

# ---------------------------------------------------------------------------------------- blocks


class MLPBlock(nn.Sequential):
    """Linear (or Maxout) -> [BatchNorm] -> activation -> [Dropout]."""

    def __init__(
        self, in_features: int, out_features: int, act: str, dropout: float, batch_norm: bool, pieces: int
    ) -> None:
        layers: list[nn.Module] = []
        if act == "maxout":
            # Maxout is itself the non-linearity; batch norm goes after it.
            layers.append(Maxout(in_features, out_features, pieces))
            if batch_norm:
                layers.append(nn.BatchNorm1d(out_features))
        else:
            layers.append(nn.Linear(in_features, out_features, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(out_features))
            layers.append(get_activation(act))
        if dropout > 0:
            # SELU's self-normalisation needs alpha dropout to keep mean and variance (Klambauer 2017).
            layers.append(nn.AlphaDropout(dropout) if act == "selu" else nn.Dropout(dropout))
        super().__init__(*layers)


# ----------------------------------------------------------------------------------------- model


class MLP(ZooModel):
    """Fully connected network on the flattened input.

    Args:
        input_shape: shape of one sample; it is flattened, so ``(1, 8, 8)`` gives 64 inputs.
        num_classes: output units; 0 returns the last hidden layer (embedding).
        hidden: widths of the hidden layers, e.g. ``[256, 128]``; ``[]`` is a linear model.
        act: sigmoid, tanh, relu, leaky_relu, elu, prelu, selu, gelu or maxout.
        dropout: dropout probability after each hidden layer.
        batch_norm: batch norm after each hidden affine layer.
        maxout_pieces: affine pieces per Maxout unit.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (64,),
        num_classes: int = 10,
        hidden: Sequence[int] = (256, 128),
        act: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        maxout_pieces: int = 2,
    ) -> None:
        super().__init__(input_shape, num_classes)
        hidden = [int(h) for h in hidden]
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden widths must be positive, got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if act != "maxout":
            get_activation(act)  # validate the name early, with the list of choices
        in_features = math.prod(self.input_shape)
        blocks = []
        for width in hidden:
            blocks.append(MLPBlock(in_features, width, act, dropout, batch_norm, maxout_pieces))
            in_features = width
        self.features = nn.Sequential(nn.Flatten(), *blocks)
        self.num_features = in_features
        self.head = make_head(in_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (N, num_features)


# ------------------------------------------------------------------------------------- variants

_PAPER = "Rumelhart, Hinton & Williams (1986), Learning representations by back-propagating errors, Nature 323"


@register_model(task="classification", input_shape=(1, 8, 8), paper=_PAPER, default_config="configs/mlp_digits.yaml")
def mlp(input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, **kwargs) -> MLP:
    """Configurable MLP (default two hidden ReLU layers, 256 and 128 units)."""
    return MLP(input_shape, num_classes, **kwargs)
