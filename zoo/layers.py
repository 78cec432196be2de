"""Building blocks shared by several families: activations by name, Maxout, input transforms."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "elu": nn.ELU,
    "prelu": nn.PReLU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


def get_activation(name: str) -> nn.Module:
    """``nn.Module`` for an activation name; ``maxout`` is handled by the layers that use it."""
    key = name.lower().replace("-", "_")
    if key not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted([*ACTIVATIONS, 'maxout'])}"
        )
    return ACTIVATIONS[key]()


class Maxout(nn.Module):
    """Maxout unit (Goodfellow et al., 2013, "Maxout Networks", ICML): ``k`` affine pieces per unit,
    output their maximum. Written by hand because torch has no Maxout layer."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 2) -> None:
        super().__init__()
        if pieces < 2:
            raise ValueError(f"maxout needs pieces >= 2, got {pieces}")
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)  # (N, out * k)
        return z.view(*z.shape[:-1], self.out_features, self.pieces).amax(dim=-1)  # (N, out)


class InputTransform(nn.Module):
    """Maps raw samples to what the network expects: optional resize, then per-channel
    standardisation with statistics fitted on the training rows by a DataModule.

    It is built from a plain dict (``spec``) so that the fitted state travels in the checkpoint's
    hyper-parameters and a loaded model predicts on raw input without its DataModule. Statistics are
    non-persistent buffers: the spec, not the state dict, is their single source of truth.

    spec keys: ``input_shape`` (raw sample shape), ``resize`` (``[H, W]`` or ``None``),
    ``mean`` / ``std`` (one value per entry of the statistics axis, or ``None`` before fitting),
    ``axis``: the sample axis the statistics run along: ``0`` (default) is the channel axis of
    images, ``-1`` the feature axis of tables ``(F,)`` and sequences ``(T, F)``.
    """

    def __new__(cls, spec: dict[str, Any] | None = None, *args: Any, **kwargs: Any):
        # Tables carry a fitted ColumnTransformer instead of mean/std: build its torch replay.
        if cls is InputTransform and isinstance(spec, dict) and spec.get("kind") == "tabular":
            from .tabular_transform import TabularTransform

            return TabularTransform(spec)
        return super().__new__(cls)

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.raw_shape = tuple(int(s) for s in spec["input_shape"])
        self.resize = tuple(int(s) for s in spec["resize"]) if spec.get("resize") else None
        mean, std = spec.get("mean"), spec.get("std")
        self.fitted = mean is not None
        axis = int(spec.get("axis", 0)) % len(self.raw_shape)
        c = self.raw_shape[axis]
        mean_t = torch.tensor(mean if mean is not None else [0.0] * c, dtype=torch.float32)
        std_t = torch.tensor(std if std is not None else [1.0] * c, dtype=torch.float32)
        if mean_t.numel() != c or std_t.numel() != c:
            raise ValueError(f"mean/std need {c} values (one per entry of axis {axis}), got {mean_t.numel()}/{std_t.numel()}")
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {std_t.tolist()}")
        view = [1] * (len(self.raw_shape) + 1)  # broadcast over (N, *input_shape)
        view[axis + 1] = c
        self.register_buffer("mean", mean_t.view(view), persistent=False)
        self.register_buffer("std", std_t.view(view), persistent=False)

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.resize is None:
            return self.raw_shape
        return (self.raw_shape[0], *self.resize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        got = tuple(x.shape[1:])
        if got != self.raw_shape:
            raise ValueError(
                f"expected raw input of shape (N, {', '.join(map(str, self.raw_shape))}) but received "
                f"{tuple(x.shape)}; this model was trained on raw samples of shape {self.raw_shape}"
            )
        x = (x.float() - self.mean) / self.std
        if self.resize is not None:
            # Bilinear resize after standardising: resizing is linear, so the order only matters at
            # the borders, and standardising first keeps the zero padding at the data mean.
            if len(self.raw_shape) != 3:
                raise ValueError(f"resize needs image samples (C, H, W), got {self.raw_shape}")
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False)  # (N, C, H', W')
        return x


def output_hw(hw: Sequence[int], kernel: int, stride: int = 1, padding: int = 0) -> tuple[int, int]:
    """Spatial size after a conv/pool layer (floor division, as torch computes it)."""
    return tuple((s + 2 * padding - kernel) // stride + 1 for s in hw)  # type: ignore[return-value]
