"""ResNet.

He, Zhang, Ren & Sun (2016), "Deep Residual Learning for Image Recognition", CVPR. Residual blocks
``y = F(x) + shortcut(x)``: the basic block (two 3x3 convolutions, ResNet-18/34) and the bottleneck
block (1x1 reduce, 3x3, 1x1 expand by 4, ResNet-50), both with batch norm after every convolution
and ReLU after the addition. ``resnet18/34/50`` use the ImageNet stem (7x7 stride-2 convolution and
3x3 max pooling) and four stages of 64-512 channels; ``resnet20/32/56`` are the CIFAR networks of
section 4.2 (a 3x3 stem, three stages of 16/32/64 channels with n = 3, 5, 9 basic blocks each).

Shortcuts where the shape changes (section 3.3): option ``"A"`` is the parameter-free identity with
stride-2 subsampling and zero-padded extra channels (the paper's choice for CIFAR), option ``"B"`` a
1x1 convolution with batch norm (projection; the paper's choice for ImageNet). Structure after
timm's and torchvision's ``resnet.py`` (blocks, ``make_stage``, model, registered variants).
"""

from __future__ import annotations

from typing import Sequence, Type

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import ZooModel, make_head
from ._registry import register_model

# ---------------------------------------------------------------------------------------- blocks


class ZeroPadShortcut(nn.Module):
    """Option A (section 3.3): identity with stride subsampling; extra channels are zeros.

    Written by hand because neither torch nor torchvision ships it (torchvision only has option B).
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__()
        if out_chans < in_chans:
            raise ValueError(f"option A shortcut cannot reduce channels ({in_chans} -> {out_chans}); use shortcut='B'")
        self.stride, self.extra = stride, out_chans - in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (N, C_in, H/s, W/s)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # (N, C_out, H/s, W/s)


def make_shortcut(in_chans: int, out_chans: int, stride: int, option: str) -> nn.Module:
    if stride == 1 and in_chans == out_chans:
        return nn.Identity()
    if option == "A":
        return ZeroPadShortcut(in_chans, out_chans, stride)
    # Option B: 1x1 projection (with batch norm, as in the paper's implementation).
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chans))


class BasicBlock(nn.Module):
    """3x3 conv - BN - ReLU - 3x3 conv - BN, plus the shortcut, then ReLU (Fig. 2 / Fig. 5 left)."""

    expansion = 1

    def __init__(self, in_chans: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_chans, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.shortcut = make_shortcut(in_chans, out, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))  # (N, planes, H/s, W/s)
        y = self.bn2(self.conv2(y))  # (N, out, H/s, W/s)
        return F.relu(y + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce - 3x3 (carries the stride, as in torchvision's "ResNet v1.5") - 1x1 expand x4 (Fig. 5 right)."""

    expansion = 4

    def __init__(self, in_chans: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_chans, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = make_shortcut(in_chans, out, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))  # (N, planes, H, W)
        y = F.relu(self.bn2(self.conv2(y)))  # (N, planes, H/s, W/s)
        y = self.bn3(self.conv3(y))  # (N, 4*planes, H/s, W/s)
        return F.relu(y + self.shortcut(x))


BLOCKS: dict[str, Type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


# ----------------------------------------------------------------------------------------- model


class ResNet(ZooModel):
    """Residual network for ``(C, H, W)`` input of any size (global average pooling).

    Args:
        input_shape: ``(C, H, W)``; only C is fixed.
        num_classes: output units; 0 returns the pooled features.
        block: ``"basic"`` or ``"bottleneck"``.
        layers: number of blocks per stage.
        widths: ``planes`` of each stage (ImageNet: 64-512; CIFAR: 16-64).
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool) or ``"cifar"`` (3x3 conv).
        shortcut: ``"A"`` (zero-padding identity) or ``"B"`` (projection) where shapes change.
    """

    strict_dims = (0,)

    def __init__(
        self,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        block: str = "basic",
        layers: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: str = "imagenet",
        shortcut: str = "B",
    ) -> None:
        super().__init__(input_shape, num_classes)
        if len(self.input_shape) != 3:
            raise ValueError(f"ResNet needs input_shape=(C, H, W), got {self.input_shape}")
        if block not in BLOCKS:
            raise ValueError(f"ResNet: unknown block {block!r}; choose one of {sorted(BLOCKS)}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"ResNet: unknown stem {stem!r}; choose 'imagenet' or 'cifar'")
        shortcut = str(shortcut).upper()
        if shortcut not in ("A", "B"):
            raise ValueError(f"ResNet: shortcut must be 'A' (zero-padding identity) or 'B' (projection), got {shortcut!r}")
        if len(layers) != len(widths) or not layers:
            raise ValueError(f"ResNet: layers {list(layers)} and widths {list(widths)} need one entry per stage")
        if any(n < 1 for n in layers) or any(w < 1 for w in widths):
            raise ValueError(f"ResNet: layers and widths must be positive, got layers={list(layers)}, widths={list(widths)}")
        block_cls = BLOCKS[block]
        c0 = widths[0]
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(self.in_chans, c0, 7, stride=2, padding=3, bias=False),  # (N, c0, H/2, W/2)
                nn.BatchNorm2d(c0),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),  # (N, c0, H/4, W/4)
            )
        else:
            self.stem = nn.Sequential(nn.Conv2d(self.in_chans, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        c = c0
        for i, (n, planes) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1  # downsample at the start of every stage but the first
                blocks.append(block_cls(c, planes, stride, shortcut))
                c = planes * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)  # (N, c, H/2^k, W/2^k)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (N, c)
        self.num_features = c
        self.head = make_head(c, num_classes)
        # He et al. (2015, "Delving deep into rectifiers") initialisation, as in the paper.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))  # (N, num_features)


# ------------------------------------------------------------------------------------- variants

_PAPER = "He, Zhang, Ren & Sun (2016), Deep Residual Learning for Image Recognition, CVPR"
_IN = (3, 32, 32)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def resnet18(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> ResNet:
    """ImageNet ResNet-18: basic blocks [2, 2, 2, 2], projection shortcuts."""
    return ResNet(input_shape, num_classes, block="basic", layers=(2, 2, 2, 2), **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def resnet34(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> ResNet:
    """ImageNet ResNet-34: basic blocks [3, 4, 6, 3]."""
    return ResNet(input_shape, num_classes, block="basic", layers=(3, 4, 6, 3), **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def resnet50(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> ResNet:
    """ImageNet ResNet-50: bottleneck blocks [3, 4, 6, 3]."""
    return ResNet(input_shape, num_classes, block="bottleneck", layers=(3, 4, 6, 3), **kwargs)


def _cifar(n: int, input_shape: Sequence[int], num_classes: int, **kwargs) -> ResNet:
    kwargs.setdefault("shortcut", "A")  # section 4.2: "we use identity shortcuts in all cases (option A)"
    return ResNet(input_shape, num_classes, block="basic", layers=(n, n, n), widths=(16, 32, 64), stem="cifar", **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER, default_config="configs/resnet_digits.yaml")
def resnet20(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> ResNet:
    """CIFAR ResNet-20 (6n+2 layers, n=3), option A shortcuts by default."""
    return _cifar(3, input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def resnet32(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> ResNet:
    """CIFAR ResNet-32 (n=5)."""
    return _cifar(5, input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_PAPER)
def resnet56(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> ResNet:
    """CIFAR ResNet-56 (n=9)."""
    return _cifar(9, input_shape, num_classes, **kwargs)
