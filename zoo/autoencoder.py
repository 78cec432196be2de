"""Autoencoders: an encoder to a small code, a decoder back to the input.

Hinton & Salakhutdinov (2006), "Reducing the Dimensionality of Data with Neural Networks", Science 313.
The same networks serve the denoising autoencoder (Vincent, Larochelle, Bengio & Manzagol, 2008,
"Extracting and Composing Robust Features with Denoising Autoencoders", ICML: corrupt the training
input, reconstruct the clean one) and the sparse autoencoder (an L1 penalty on the codes, Ng 2011,
CS294A lecture notes "Sparse autoencoder"); both are settings of ``zoo.tasks.ReconstructionTask``,
not separate networks.

Surface: ``encode(x) -> (N, latent_dim)`` codes, ``decode(z) -> (N, *input_shape)`` reconstruction
(through ``out_act``: ``sigmoid`` for pixels in [0, 1], ``identity`` for standardised inputs);
``forward(x)`` is ``decode(encode(x))``. ``forward_features`` is the encoder (``num_features`` =
``latent_dim``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from ._base import ZooModel
from ._registry import register_model
from .layers import get_activation


def check_latent(latent_dim: int, name: str) -> int:
    if int(latent_dim) < 1:
        raise ValueError(
            f"{name}: latent_dim must be >= 1, got {latent_dim}; set model.model_kwargs.latent_dim to the code size (e.g. 16)"
        )
    return int(latent_dim)


def mlp_stack(sizes: Sequence[int], act: str) -> list[nn.Module]:
    """Linear -> activation for each consecutive pair in ``sizes``."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), get_activation(act)]
    return layers


class AutoEncoder(ZooModel):
    """Autoencoder with an MLP or a convolutional encoder/decoder.

    Args:
        input_shape: ``(C, H, W)`` or ``(F,)``.
        latent_dim: code size.
        arch: ``"mlp"`` (flattened input) or ``"conv"`` (two 3x3 convolutions, the second with stride
            2, mirrored by a transposed convolution; needs even H and W).
        hidden: MLP: widths of the encoder's hidden layers (the decoder mirrors them);
            conv: the two convolutions' channel counts.
        act: hidden activation.
        out_act: ``sigmoid`` (inputs in [0, 1]) or ``identity``.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        num_classes: int = 0,
        latent_dim: int = 16,
        arch: str = "mlp",
        hidden: Sequence[int] = (128,),
        act: str = "relu",
        out_act: str = "sigmoid",
    ) -> None:
        super().__init__(input_shape, 0)
        latent_dim = check_latent(latent_dim, type(self).__name__)
        if num_classes:
            raise ValueError(f"{type(self).__name__} has no classifier head; got num_classes={num_classes} (leave it 0)")
        if out_act not in ("sigmoid", "identity"):
            raise ValueError(f"out_act must be 'sigmoid' or 'identity', got {out_act!r}")
        hidden = [int(h) for h in hidden]
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden widths must be positive, got {hidden}")
        self.latent_dim = self.num_features = latent_dim
        n_in = math.prod(self.input_shape)
        if arch == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), *mlp_stack([n_in, *hidden], act), nn.Linear(([n_in, *hidden])[-1], latent_dim))
            self.decoder = nn.Sequential(
                *mlp_stack([latent_dim, *hidden[::-1]], act), nn.Linear(([latent_dim, *hidden[::-1]])[-1], n_in),
                nn.Unflatten(1, self.input_shape),
            )
        elif arch == "conv":
            if len(self.input_shape) != 3 or self.input_shape[1] % 2 or self.input_shape[2] % 2:
                raise ValueError(f"arch='conv' needs input_shape (C, H, W) with even H and W, got {self.input_shape}")
            if len(hidden) != 2:
                raise ValueError(f"arch='conv' takes hidden=[c1, c2] (two convolutions' channels), got {hidden}")
            c, h, w = self.input_shape
            c1, c2 = hidden
            flat = c2 * (h // 2) * (w // 2)
            self.encoder = nn.Sequential(
                nn.Conv2d(c, c1, 3, padding=1), get_activation(act),  # (N, c1, H, W)
                nn.Conv2d(c1, c2, 3, stride=2, padding=1), get_activation(act),  # (N, c2, H/2, W/2)
                nn.Flatten(), nn.Linear(flat, latent_dim),  # (N, latent)
            )
            self.decoder = nn.Sequential(
                nn.Linear(latent_dim, flat), get_activation(act), nn.Unflatten(1, (c2, h // 2, w // 2)),
                nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), get_activation(act),  # (N, c1, H, W)
                nn.Conv2d(c1, c, 3, padding=1),  # (N, C, H, W)
            )
        else:
            raise ValueError(f"arch must be 'mlp' or 'conv', got {arch!r}")
        self.out = nn.Sigmoid() if out_act == "sigmoid" else nn.Identity()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.encoder(x)  # (N, latent)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.decoder(z))  # (N, *input_shape)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class VAE(ZooModel):
    """Variational autoencoder (Kingma & Welling, 2014, "Auto-Encoding Variational Bayes", ICLR).

    The encoder gives the Gaussian posterior q(z|x) = N(mu, diag(exp(logvar))); z is drawn by the
    reparameterisation z = mu + exp(logvar / 2) * eps, so gradients flow through the sample. The
    decoder gives the likelihood's parameters: Bernoulli logits (``likelihood='bernoulli'``, pixels
    in [0, 1]) or the Gaussian mean (``'gaussian'``, unit variance). ``forward`` returns the
    likelihood's mean (sigmoid of the logits) from a sample of q in training mode and from its mean
    in eval mode (as dropout does).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        num_classes: int = 0,
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        act: str = "relu",
        likelihood: str = "bernoulli",
    ) -> None:
        super().__init__(input_shape, 0)
        latent_dim = check_latent(latent_dim, "VAE")
        if num_classes:
            raise ValueError(f"VAE has no classifier head; got num_classes={num_classes} (leave it 0)")
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        hidden = [int(h) for h in hidden]
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden widths must be positive, got {hidden}")
        self.latent_dim = self.num_features = latent_dim
        self.likelihood = likelihood
        n_in = math.prod(self.input_shape)
        self.encoder = nn.Sequential(nn.Flatten(), *mlp_stack([n_in, *hidden], act))
        self.to_stats = nn.Linear(([n_in, *hidden])[-1], 2 * latent_dim)  # mu and logvar
        self.decoder = nn.Sequential(
            *mlp_stack([latent_dim, *hidden[::-1]], act), nn.Linear(([latent_dim, *hidden[::-1]])[-1], n_in),
            nn.Unflatten(1, self.input_shape),
        )

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``(N, latent)``."""
        self.check_input(x)
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=-1)
        return mu, logvar

    @staticmethod
    def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # (N, latent)

    def decode_params(self, z: torch.Tensor) -> torch.Tensor:
        """Logits (Bernoulli) or means (Gaussian) of p(x|z): ``(N, *input_shape)``."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z) (pixel intensities for Bernoulli)."""
        out = self.decoder(z)
        return out.sigmoid() if self.likelihood == "bernoulli" else out

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]  # (N, latent): the posterior mean is the code

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.posterior(x)
        return self.decode(self.reparameterise(mu, logvar) if self.training else mu)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws of the likelihood's mean from z ~ N(0, I): ``(n, *input_shape)``."""
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, generator=generator, device=p.device, dtype=p.dtype)
        return self.decode(z)


# ------------------------------------------------------------------------------------- variants

_PAPER = "Hinton & Salakhutdinov (2006), Reducing the Dimensionality of Data with Neural Networks, Science 313"
_PAPER_VAE = "Kingma & Welling (2014), Auto-Encoding Variational Bayes, ICLR"


@register_model(task="reconstruction", output="reconstruction", input_shape=(1, 8, 8), num_classes=0, paper=_PAPER,
                default_config="configs/autoencoder_digits.yaml")
def autoencoder(input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 0, **kwargs) -> AutoEncoder:
    """MLP autoencoder: input -> 128 -> latent (16) -> 128 -> input, sigmoid output."""
    return AutoEncoder(input_shape, num_classes, **kwargs)


@register_model(task="reconstruction", output="reconstruction", input_shape=(1, 8, 8), num_classes=0, paper=_PAPER)
def conv_autoencoder(input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 0, **kwargs) -> AutoEncoder:
    """Convolutional autoencoder: two 3x3 convolutions (16, 32 channels, the second strided) to the code."""
    kwargs.setdefault("hidden", (16, 32))
    return AutoEncoder(input_shape, num_classes, arch="conv", **kwargs)


@register_model(task="variational", output="reconstruction", input_shape=(1, 8, 8), num_classes=0, paper=_PAPER_VAE,
                default_config="configs/vae_digits.yaml")
def vae(input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 0, **kwargs) -> VAE:
    """MLP VAE: 256 -> 128 -> Gaussian posterior (8) -> 128 -> 256 -> Bernoulli logits."""
    return VAE(input_shape, num_classes, **kwargs)
