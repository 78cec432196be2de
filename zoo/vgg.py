"""VGG.

Simonyan & Zisserman (2015), "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR. Stacks of 3x3 convolutions (stride 1, padding 1) separated by 2x2 max pooling; configurations
A (11 layers), B (13), D (16) and E (19) of the paper's Table 1. The ``_bn`` variants add batch norm
after every convolution (Ioffe & Szegedy, 2015), as torchvision and timm do.

Deviations, all options: the paper's classifier sees a 7x7x512 map of a 224x224 image through two
4096-wide layers. We pool the last map adaptively to ``pool_size`` (default 1, which is what a
32x32 input leaves after five poolings anyway) so the model takes any input of at least 32x32;
``fc_width=4096, pool_size=7`` with 224x224 input is the paper's network exactly; the registered
variants default to ``fc_width=512`` (a CIFAR-sized head) to keep the default models small. ``vgg_small`` is a narrow VGG
for 8x8 to 32x32 inputs: three stages of two 3x3 convolutions, a width multiplier, and global
average pooling (Lin, Chen & Yan, 2014, "Network in Network") before a single affine classifier.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._base import ZooModel, make_head
from ._registry import register_model
from .layers import get_activation

# Table 1 of the paper: channel counts, "M" = 2x2 max pooling.
CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
    # Small-input VGG: three stages, so an 8x8 image ends at 1x1.
    "vgg_small": [32, 32, "M", 64, 64, "M", 128, 128, "M"],
}

# ---------------------------------------------------------------------------------------- blocks


class ConvBnAct(nn.Sequential):
    """3x3 convolution (padding 1) -> [BatchNorm] -> activation."""

    def __init__(self, in_chans: int, out_chans: int, batch_norm: bool, act: str) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_chans))
        layers.append(get_activation(act))
        super().__init__(*layers)


def make_features(cfg: Sequence[int | str], in_chans: int, batch_norm: bool, act: str, width_mult: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    c = in_chans
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            out = max(1, int(round(int(v) * width_mult)))
            layers.append(ConvBnAct(c, out, batch_norm, act))
            c = out
    return nn.Sequential(*layers), c


# ----------------------------------------------------------------------------------------- model


class VGG(ZooModel):
    """VGG for ``(C, H, W)`` input; any H, W of at least ``2 ** (number of poolings)``.

    Args:
        input_shape: ``(C, H, W)``; only C is fixed, the size may vary (adaptive pooling).
        num_classes: output units; 0 returns the pre-logits features.
        cfg: name of a layer configuration in ``CFGS`` (``vgg11`` ... ``vgg19``, ``vgg_small``).
        batch_norm: batch norm after every convolution.
        width_mult: multiplies every channel count (1.0 = paper).
        fc_width: width of the two hidden fully connected layers (paper: 4096); 0 for none
            (global average pooling straight into the classifier, as ``vgg_small`` does).
        pool_size: side of the adaptive pooling before the classifier (paper: 7 at 224x224).
        dropout: dropout after each hidden fully connected layer (paper: 0.5).
        act: activation (paper: ReLU).
    """

    strict_dims = (0,)

    def __init__(
        self,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        cfg: str = "vgg16",
        batch_norm: bool = False,
        width_mult: float = 1.0,
        fc_width: int = 4096,
        pool_size: int = 1,
        dropout: float = 0.5,
        act: str = "relu",
    ) -> None:
        super().__init__(input_shape, num_classes)
        if len(self.input_shape) != 3:
            raise ValueError(f"VGG needs input_shape=(C, H, W), got {self.input_shape}")
        if cfg not in CFGS:
            raise ValueError(f"VGG: unknown cfg {cfg!r}; choose one of {sorted(CFGS)}")
        if width_mult <= 0:
            raise ValueError(f"VGG: width_mult must be positive, got {width_mult}")
        if fc_width < 0 or pool_size < 1:
            raise ValueError(f"VGG: fc_width must be >= 0 and pool_size >= 1, got fc_width={fc_width}, pool_size={pool_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"VGG: dropout must be in [0, 1), got {dropout}")
        self.min_size = 2 ** sum(1 for v in CFGS[cfg] if v == "M")
        if min(self.input_shape[1:]) < self.min_size:
            raise ValueError(
                f"VGG: input {self.input_shape[1:]} is too small for cfg {cfg!r} ({self.min_size}x{self.min_size} at least); "
                "resize the input or use cfg='vgg_small'"
            )
        self.features, c = make_features(CFGS[cfg], self.in_chans, batch_norm, act, width_mult)  # (N, c, h, w)
        self.pool = nn.AdaptiveAvgPool2d(pool_size) if fc_width else nn.AdaptiveAvgPool2d(1)
        flat = c * (pool_size * pool_size if fc_width else 1)
        layers: list[nn.Module] = [nn.Flatten()]  # (N, flat)
        if fc_width:
            for i in range(2):
                layers += [nn.Linear(flat if i == 0 else fc_width, fc_width), get_activation(act)]
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        self.pre_logits = nn.Sequential(*layers)
        self.num_features = fc_width or c
        self.head = make_head(self.num_features, num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"VGG expects images of at least {self.min_size}x{self.min_size} but received {tuple(x.shape)}; resize the batch"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_logits(self.pool(self.features(x)))  # (N, num_features)


# ------------------------------------------------------------------------------------- variants

_PAPER = "Simonyan & Zisserman (2015), Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR"
_IN = (3, 32, 32)


def _vgg(cfg: str, batch_norm: bool, input_shape: Sequence[int], num_classes: int, **kwargs) -> VGG:
    # 512-wide hidden layers by default (the CIFAR-sized head): the paper's 4096-wide head adds
    # 17-120M parameters that a 32x32 input does not need. fc_width=4096, pool_size=7 at 224x224
    # input is the paper's network.
    kwargs.setdefault("fc_width", 512)
    return VGG(input_shape, num_classes, cfg=cfg, batch_norm=batch_norm, **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def vgg11(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> VGG:
    """Configuration A (8 convolutions + 3 fully connected layers)."""
    return _vgg("vgg11", False, input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def vgg11_bn(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> VGG:
    return _vgg("vgg11", True, input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def vgg13(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> VGG:
    """Configuration B."""
    return _vgg("vgg13", False, input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def vgg13_bn(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> VGG:
    return _vgg("vgg13", True, input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def vgg16(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> VGG:
    """Configuration D."""
    return _vgg("vgg16", False, input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def vgg16_bn(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> VGG:
    return _vgg("vgg16", True, input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def vgg19(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> VGG:
    """Configuration E."""
    return _vgg("vgg19", False, input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def vgg19_bn(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> VGG:
    return _vgg("vgg19", True, input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=(1, 8, 8), paper=_PAPER, default_config="configs/vgg_digits.yaml")
def vgg_small(input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, **kwargs) -> VGG:
    """Small-input VGG with batch norm: 32-32-M-64-64-M-128-128-M, global average pooling, affine."""
    kwargs.setdefault("batch_norm", True)
    kwargs.setdefault("fc_width", 0)
    return _vgg("vgg_small", kwargs.pop("batch_norm"), input_shape, num_classes, **kwargs)
