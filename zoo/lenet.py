"""LeNet-5.

LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based learning applied to document recognition",
Proc. IEEE 86(11). Two 5x5 convolutions each followed by 2x2 subsampling, then fully connected
layers of 120 and 84 units and the classifier. The paper's C3 layer connects only some S2 maps to
each C3 map (to break symmetry on 1998 hardware); like every modern reimplementation we connect all
of them. The paper's subsampling layers are average pooling with a trainable coefficient; we offer
``pool="avg"`` (paper) or ``"max"``, and tanh (paper) or any other activation.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._base import ZooModel, make_head
from ._registry import register_model
from .layers import get_activation, output_hw

# ---------------------------------------------------------------------------------------- blocks


class ConvPool(nn.Sequential):
    """5x5 convolution (one bias per output map) -> activation -> 2x2 pooling."""

    def __init__(self, in_chans: int, out_chans: int, act: str, pool: str) -> None:
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        pool_layer = nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2)
        super().__init__(nn.Conv2d(in_chans, out_chans, kernel_size=5), get_activation(act), pool_layer)


# ----------------------------------------------------------------------------------------- model


class LeNet5(ZooModel):
    """LeNet-5 for ``(C, H, W)`` input, 32x32 as in the paper (any size that leaves >= 1 pixel works).

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: output units; 0 returns the 84-wide F6 features.
        widths: channels of the two convolutions (paper: 6 and 16).
        fc: widths of the fully connected layers (paper: 120 and 84).
        act: activation (paper: scaled tanh; here tanh by default).
        pool: ``'avg'`` (paper's subsampling) or ``'max'``.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 32, 32),
        num_classes: int = 10,
        widths: Sequence[int] = (6, 16),
        fc: Sequence[int] = (120, 84),
        act: str = "tanh",
        pool: str = "avg",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_shape, num_classes)
        if len(self.input_shape) != 3:
            raise ValueError(f"LeNet5 needs input_shape=(C, H, W), got {self.input_shape}")
        if len(widths) != 2 or any(w <= 0 for w in widths):
            raise ValueError(f"widths must be two positive channel counts, got {list(widths)}")
        hw = self.input_shape[1:]
        for _ in range(2):
            hw = output_hw(output_hw(hw, 5), 2, stride=2)
        if min(hw) < 1:
            raise ValueError(
                f"input {self.input_shape[1:]} is too small for LeNet5 (two 5x5 convs and two 2x2 pools); "
                "use at least 12x12, or resize (the paper uses 32x32)"
            )
        self.features = nn.Sequential(
            ConvPool(self.in_chans, widths[0], act, pool),  # (N, w0, (H-4)/2, (W-4)/2)
            ConvPool(widths[0], widths[1], act, pool),  # (N, w1, h, w)
            nn.Flatten(),  # (N, w1*h*w)
        )
        layers: list[nn.Module] = []
        in_features = widths[1] * hw[0] * hw[1]
        for width in fc:
            layers += [nn.Linear(in_features, width), get_activation(act)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_features = width
        self.fc = nn.Sequential(*layers)
        self.num_features = in_features
        self.head = make_head(in_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # (N, num_features)


# ------------------------------------------------------------------------------------- variants

_PAPER = "LeCun, Bottou, Bengio & Haffner (1998), Gradient-based learning applied to document recognition, Proc. IEEE 86(11)"


@register_model(task="classification", input_shape=(1, 32, 32), paper=_PAPER, default_config="configs/lenet5_digits.yaml")
def lenet5(input_shape: Sequence[int] = (1, 32, 32), num_classes: int = 10, **kwargs) -> LeNet5:
    """LeNet-5 as in the paper: tanh, average pooling, 6/16 maps, 120/84 units."""
    return LeNet5(input_shape, num_classes, **kwargs)
