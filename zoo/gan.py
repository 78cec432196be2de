"""Generative adversarial networks: the MLP pair and the DCGAN pair.

* GAN: Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville & Bengio (2014),
  "Generative Adversarial Nets", NeurIPS. A multilayer-perceptron generator (ReLU hidden units, the
  paper's sigmoid output replaced by tanh so both families share the [-1, 1] pixel scale) and a
  maxout discriminator with dropout, as in the paper's MNIST model.
* DCGAN: Radford, Metz & Chintala (2015), "Unsupervised Representation Learning with Deep
  Convolutional Generative Adversarial Networks", ICLR 2016. Section 3's guidelines, each held by
  construction here: strided convolutions instead of pooling in the discriminator and fractionally
  strided (transposed) convolutions in the generator; batch normalisation in both, except on the
  generator's output layer and the discriminator's input layer; no fully connected hidden layers;
  ReLU in the generator with tanh at the output; LeakyReLU (slope 0.2) in the discriminator;
  weights drawn from N(0, 0.02) (section 4).
* Conditioning (``cond_classes > 0``): Mirza & Osindero (2014), "Conditional Generative Adversarial
  Nets": a one-hot label is concatenated to the generator's code and to the discriminator's input
  (as constant feature maps for the convolutional discriminator).

Generators take a code ``z`` of shape ``(N, latent_dim)`` (their ``input_shape`` is
``(latent_dim,)``) and return images of ``output_shape`` in [-1, 1]. Discriminators take images and
return ``num_classes`` logits (1: real vs fake), or their ``num_features``-wide features with
``num_classes=0``, like every zoo classifier.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import ZooModel, make_head
from ._registry import register_model
from .layers import Maxout

GOODFELLOW = "Goodfellow et al., 2014, Generative Adversarial Nets (NeurIPS)"
RADFORD = "Radford, Metz & Chintala, 2015, Unsupervised Representation Learning with DCGANs (ICLR 2016)"


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. section 4: every weight from N(0, 0.02); batch-norm scales from N(1, 0.02) (as
    in the authors' and PyTorch's reference code, so the scale starts near identity); biases zero."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _image_shape(output_shape: Sequence[int], who: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in output_shape)
    if len(shape) != 3 or any(s <= 0 for s in shape):
        raise ValueError(f"{who}: image shape must be (C, H, W) with positive sizes, got {shape}")
    return shape  # type: ignore[return-value]


def _check_latent(latent_dim: int, who: str) -> int:
    if int(latent_dim) < 1:
        raise ValueError(f"{who}: latent_dim must be >= 1, got {latent_dim}; use e.g. latent_dim: 100 (Radford et al.)")
    return int(latent_dim)


def _latent_from(latent_dim: int, input_shape: Sequence[int] | None, who: str) -> int:
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 1:
            raise ValueError(f"{who}: input_shape is the code's shape (latent_dim,), got {shape}; set output_shape for the images")
        latent_dim = shape[0]
    return _check_latent(latent_dim, who)


def _one_hot(y: torch.Tensor | None, classes: int, n: int, who: str) -> torch.Tensor | None:
    """(N, classes) one-hot labels, or None for an unconditional model."""
    if classes == 0:
        return None
    if y is None or y.shape != (n,):
        got = None if y is None else tuple(y.shape)
        raise ValueError(f"{who} is conditioned on {classes} classes and needs labels y of shape ({n},), got {got}")
    return F.one_hot(y.long(), classes).float()


def dcgan_upsamplings(hw: Sequence[int], max_upsamplings: int = 3) -> int:
    """How many stride-2 layers take a ``>= 2``-pixel base map to ``hw`` exactly (both sides divisible by
    2**k); 0 when none does."""
    k = 0
    while k < max_upsamplings and all(s % 2 ** (k + 1) == 0 and s // 2 ** (k + 1) >= 2 for s in hw):
        k += 1
    return k


# ---------------------------------------------------------------------------------------- MLP GAN


class MLPGenerator(ZooModel):
    """Goodfellow et al.'s generator: z -> affine-ReLU hidden layers -> affine -> tanh image.

    Args:
        latent_dim: size of the code z (``input_shape == (latent_dim,)``).
        output_shape: ``(C, H, W)`` of the images (linked from the data by the GAN task).
        num_classes: must be 0: a generator has no classification head (kept for the zoo's shared surface).
        hidden: widths of the hidden layers.
        cond_classes: classes the generator is conditioned on (0: unconditional).
        input_shape: ``(latent_dim,)``, the zoo's shared name for what ``forward`` takes (overrides ``latent_dim``).
    """

    def __init__(
        self,
        latent_dim: int = 100,
        output_shape: Sequence[int] = (1, 8, 8),
        num_classes: int = 0,
        hidden: Sequence[int] = (256, 512),
        cond_classes: int = 0,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        latent_dim = _latent_from(latent_dim, input_shape, "MLPGenerator")
        super().__init__((latent_dim,), num_classes)
        if num_classes != 0:
            raise ValueError(f"MLPGenerator: num_classes must be 0 (a generator has no classifier head), got {num_classes}; condition on labels with cond_classes")
        if not hidden or any(int(h) <= 0 for h in hidden):
            raise ValueError(f"MLPGenerator: hidden widths must be positive, got {list(hidden)}")
        self.output_shape = _image_shape(output_shape, "MLPGenerator")
        self.latent_dim, self.cond_classes = latent_dim, int(cond_classes)
        layers: list[nn.Module] = []
        width = latent_dim + self.cond_classes
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        # Output layer: affine then tanh, no normalisation (the pixels are the output).
        layers += [nn.Linear(width, math.prod(self.output_shape)), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_input(z)
        c = _one_hot(y, self.cond_classes, z.shape[0], "MLPGenerator")
        h = z if c is None else torch.cat([z, c], dim=1)  # (N, latent + cond)
        return self.body(h).unflatten(1, self.output_shape)  # (N, C, H, W) in [-1, 1]


class MLPDiscriminator(ZooModel):
    """Goodfellow et al.'s discriminator: flattened image -> maxout hidden layers with dropout -> logit.

    Args:
        input_shape: ``(C, H, W)`` of the images.
        num_classes: output logits (1: real vs fake); 0 returns the last hidden layer's features.
        hidden: widths of the maxout layers (paper: 240 units of 5 pieces, then 240 of 5; smaller here).
        pieces: maxout pieces per unit.
        dropout: dropout before each maxout layer (paper: 0.8 keep on the input, 0.5 on hidden layers).
        cond_classes: classes the discriminator is conditioned on (0: unconditional).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        num_classes: int = 1,
        hidden: Sequence[int] = (256, 256),
        pieces: int = 2,
        dropout: float = 0.2,
        cond_classes: int = 0,
    ) -> None:
        super().__init__(input_shape, num_classes)
        if not hidden or any(int(h) <= 0 for h in hidden):
            raise ValueError(f"MLPDiscriminator: hidden widths must be positive, got {list(hidden)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPDiscriminator: dropout must be in [0, 1), got {dropout}")
        self.cond_classes = int(cond_classes)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.input_shape) + self.cond_classes
        for h in hidden:
            layers += [nn.Dropout(dropout), Maxout(width, int(h), pieces)]
            width = int(h)
        self.features = nn.Sequential(*layers)
        self.num_features = width
        self.head = make_head(width, num_classes)

    def forward_features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_input(x)
        c = _one_hot(y, self.cond_classes, x.shape[0], "MLPDiscriminator")
        h = x.flatten(1) if c is None else torch.cat([x.flatten(1), c], dim=1)  # (N, C*H*W + cond)
        return self.features(h)  # (N, num_features)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.forward_features(x, y))


# ------------------------------------------------------------------------------------------ DCGAN


class DCGANGenerator(ZooModel):
    """z -> project to a ``base x base`` map (a transposed convolution from 1x1) -> k fractionally strided
    convolutions doubling the side -> tanh image. BN + ReLU after every layer but the output layer.

    The number of stride-2 layers ``k`` follows the image size (``dcgan_upsamplings``): 8x8 digits
    start from 2x2 (k=2), 28x28 MNIST from 7x7 (k=2), 32x32 CIFAR-10 from 4x4 (k=3).

    Args:
        latent_dim: size of the code z.
        output_shape: ``(C, H, W)`` of the images; both sides must be even.
        num_classes: must be 0 (no classifier head).
        width: channels of the layer before the output (the base map has ``width * 2**(k-1)``).
        max_upsamplings: upper bound on k.
        cond_classes: classes the generator is conditioned on (0: unconditional).
        input_shape: ``(latent_dim,)``, the zoo's shared name for what ``forward`` takes (overrides ``latent_dim``).
    """

    def __init__(
        self,
        latent_dim: int = 100,
        output_shape: Sequence[int] = (1, 8, 8),
        num_classes: int = 0,
        width: int = 64,
        max_upsamplings: int = 3,
        cond_classes: int = 0,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        latent_dim = _latent_from(latent_dim, input_shape, "DCGANGenerator")
        super().__init__((latent_dim,), num_classes)
        if num_classes != 0:
            raise ValueError(f"DCGANGenerator: num_classes must be 0 (a generator has no classifier head), got {num_classes}; condition on labels with cond_classes")
        if width < 1:
            raise ValueError(f"DCGANGenerator: width must be positive, got {width}")
        c, h, w = self.output_shape = _image_shape(output_shape, "DCGANGenerator")
        k = dcgan_upsamplings((h, w), max_upsamplings)
        if k == 0:
            raise ValueError(
                f"DCGANGenerator cannot produce {h}x{w} images: both sides must be even and at least 4 "
                f"(stride-2 layers from a base map of >= 2 pixels); resize the data (data.resize: {max(4, h + h % 2)}) or use gan_generator"
            )
        self.latent_dim, self.cond_classes, self.upsamplings = latent_dim, int(cond_classes), k
        ch = width * 2 ** (k - 1)
        base = (h // 2**k, w // 2**k)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + self.cond_classes, ch, base, bias=False),  # (N, ch, *base)
            nn.BatchNorm2d(ch),
            nn.ReLU(),
        ]
        for _ in range(k - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU()]  # side x2
            ch //= 2
        # Output layer: no batch normalisation (Radford et al. section 3: it caused sample oscillation).
        layers += [nn.ConvTranspose2d(ch, c, 4, 2, 1), nn.Tanh()]  # (N, C, H, W)
        self.body = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_input(z)
        cond = _one_hot(y, self.cond_classes, z.shape[0], "DCGANGenerator")
        h = z if cond is None else torch.cat([z, cond], dim=1)  # (N, latent + cond)
        return self.body(h[:, :, None, None])  # (N, C, H, W) in [-1, 1]


class DCGANDiscriminator(ZooModel):
    """Image -> k strided convolutions halving the side (LeakyReLU 0.2, BN on all but the input layer)
    -> flattened features -> one affine logit (Radford et al.: "flattened and then fed into a single
    sigmoid output"; the sigmoid lives in the loss).

    Args:
        input_shape: ``(C, H, W)``; both sides even.
        num_classes: output logits (1: real vs fake); 0 returns the flattened features.
        width: channels of the input layer, doubled at every further layer.
        max_downsamplings: upper bound on k (mirrors the generator's).
        cond_classes: classes the discriminator is conditioned on (0: unconditional).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        num_classes: int = 1,
        width: int = 64,
        max_downsamplings: int = 3,
        cond_classes: int = 0,
    ) -> None:
        super().__init__(input_shape, num_classes)
        if width < 1:
            raise ValueError(f"DCGANDiscriminator: width must be positive, got {width}")
        c, h, w = _image_shape(self.input_shape, "DCGANDiscriminator")
        k = dcgan_upsamplings((h, w), max_downsamplings)
        if k == 0:
            raise ValueError(
                f"DCGANDiscriminator cannot take {h}x{w} images: both sides must be even and at least 4; "
                f"resize the data (data.resize: {max(4, h + h % 2)}) or use gan_discriminator"
            )
        self.cond_classes = int(cond_classes)
        # Input layer: no batch normalisation (Radford et al. section 3).
        layers: list[nn.Module] = [nn.Conv2d(c + self.cond_classes, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = width
        for _ in range(k - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2
        layers.append(nn.Flatten())  # (N, ch * h/2^k * w/2^k)
        self.features = nn.Sequential(*layers)
        self.num_features = ch * (h // 2**k) * (w // 2**k)
        self.head = make_head(self.num_features, num_classes)
        dcgan_init(self)

    def forward_features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_input(x)
        cond = _one_hot(y, self.cond_classes, x.shape[0], "DCGANDiscriminator")
        if cond is not None:  # labels as constant feature maps: (N, C + cond, H, W)
            x = torch.cat([x, cond[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
        return self.features(x)  # (N, num_features)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.forward_features(x, y))


# --------------------------------------------------------------------------------------- variants


@register_model(task="generation", output="image", input_shape=(100,), num_classes=0, paper=GOODFELLOW, default_config="configs/gan_digits.yaml")
def gan_generator(**kwargs) -> MLPGenerator:
    return MLPGenerator(**kwargs)


@register_model(task="discrimination", input_shape=(1, 8, 8), num_classes=1, paper=GOODFELLOW, default_config="configs/gan_digits.yaml")
def gan_discriminator(**kwargs) -> MLPDiscriminator:
    return MLPDiscriminator(**kwargs)


@register_model(task="generation", output="image", input_shape=(100,), num_classes=0, paper=RADFORD, default_config="configs/dcgan_digits.yaml")
def dcgan_generator(**kwargs) -> DCGANGenerator:
    return DCGANGenerator(**kwargs)


@register_model(task="discrimination", input_shape=(1, 8, 8), num_classes=1, paper=RADFORD, default_config="configs/dcgan_digits.yaml")
def dcgan_discriminator(**kwargs) -> DCGANDiscriminator:
    return DCGANDiscriminator(**kwargs)


#: family name -> (generator, discriminator) registry names, read by the GAN task
PAIRS = {"gan": ("gan_generator", "gan_discriminator"), "dcgan": ("dcgan_generator", "dcgan_discriminator")}
