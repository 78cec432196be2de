"""Batch augmentation for small images.

torchvision's v2 ``RandomAffine`` draws one set of parameters per call, so augmenting every sample
differently costs one Python call per sample; on 8x8 digits that call dominates the epoch on a
CPU. ``random_affine`` draws per-sample parameters and warps the whole batch with one
``affine_grid``/``grid_sample`` pair instead, which is why it is written by hand.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    x: torch.Tensor, degrees: float = 10.0, translate: float = 0.125, scale: tuple[float, float] = (0.9, 1.1)
) -> torch.Tensor:
    """Rotate by U(-degrees, degrees), shift by U(-translate, translate) of the size and scale by
    U(*scale), independently per sample. ``x``: (N, C, H, W); zeros fill the border."""
    n = x.shape[0]
    dev = x.device
    angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(degrees)  # (N,)
    s = torch.empty(n, device=dev).uniform_(*scale)  # (N,)
    t = (torch.rand(n, 2, device=dev) * 2 - 1) * translate * 2  # (N, 2); normalised coords span 2
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    # theta maps output to input coordinates, so it is the inverse of the forward transform.
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
