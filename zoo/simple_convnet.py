"""SimpleConvNet: the smallest useful convolutional network.

Saito (2016), "Deep Learning from Scratch" (O'Reilly Japan), chapter 7: one convolution of 30 5x5
filters, ReLU, 2x2 max pooling, an affine layer of 100 units, ReLU and the affine classifier. It is
the textbook reduction of LeNet (LeCun, Bottou, Bengio & Haffner, 1998, "Gradient-based learning
applied to document recognition", Proc. IEEE 86(11)). The book uses 28x28 MNIST and no padding; on
scikit-learn's 8x8 digits ``padding=2`` keeps the 8x8 map before pooling (an 8x8 input without
padding also works, leaving a 4x4 map, then 2x2 after pooling).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._base import ZooModel, make_head
from ._registry import register_model
from .layers import get_activation, output_hw

# ---------------------------------------------------------------------------------------- blocks


class ConvReluPool(nn.Sequential):
    """Convolution -> activation -> 2x2 max pooling (stride 2)."""

    def __init__(self, in_chans: int, filters: int, kernel_size: int, padding: int, act: str) -> None:
        super().__init__(nn.Conv2d(in_chans, filters, kernel_size, padding=padding), get_activation(act), nn.MaxPool2d(2))


# ----------------------------------------------------------------------------------------- model


class SimpleConvNet(ZooModel):
    """conv(filters, k x k) - ReLU - pool 2x2 - affine(hidden) - ReLU - affine(num_classes).

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: output units; 0 returns the ``hidden``-wide features.
        filters: number of convolution filters (book: 30).
        kernel_size: filter side (book: 5).
        padding: zero padding of the convolution (book: 0; 2 keeps the size of 8x8 digits).
        hidden: width of the hidden affine layer (book: 100).
        act: activation (book: ReLU).
        dropout: dropout before the classifier (book: none).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        num_classes: int = 10,
        filters: int = 30,
        kernel_size: int = 5,
        padding: int = 0,
        hidden: int = 100,
        act: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_shape, num_classes)
        if len(self.input_shape) != 3:
            raise ValueError(f"SimpleConvNet needs input_shape=(C, H, W), got {self.input_shape}")
        for field, value in (("filters", filters), ("kernel_size", kernel_size), ("hidden", hidden)):
            if value <= 0:
                raise ValueError(f"SimpleConvNet: {field} must be positive, got {value}")
        if padding < 0:
            raise ValueError(f"SimpleConvNet: padding must be >= 0, got {padding}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"SimpleConvNet: dropout must be in [0, 1), got {dropout}")
        hw = output_hw(output_hw(self.input_shape[1:], kernel_size, padding=padding), 2, stride=2)
        if min(hw) < 1:
            raise ValueError(
                f"SimpleConvNet: input {self.input_shape[1:]} is too small for a {kernel_size}x{kernel_size} "
                f"convolution with padding {padding} and 2x2 pooling; raise padding or resize the input"
            )
        self.features = nn.Sequential(
            ConvReluPool(self.in_chans, filters, kernel_size, padding, act),  # (N, filters, h, w)
            nn.Flatten(),  # (N, filters*h*w)
            nn.Linear(filters * hw[0] * hw[1], hidden),  # (N, hidden)
            get_activation(act),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )
        self.num_features = hidden
        self.head = make_head(hidden, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (N, hidden)


# ------------------------------------------------------------------------------------- variants

_PAPER = "Saito (2016), Deep Learning from Scratch, ch. 7 (after LeCun et al., 1998, Proc. IEEE 86(11))"


@register_model(task="classification", input_shape=(1, 8, 8), paper=_PAPER, default_config="configs/simple_convnet_digits.yaml")
def simple_convnet(input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, **kwargs) -> SimpleConvNet:
    """30 filters 5x5, ReLU, 2x2 max pool, affine 100, ReLU, affine to the classes."""
    return SimpleConvNet(input_shape, num_classes, **kwargs)
