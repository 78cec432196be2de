"""The surface every zoo architecture shares, so that one task class wraps them all.

* ``input_shape``: the shape of one sample, channels first: ``(C, H, W)`` for images, ``(F,)`` for
  feature vectors, ``(T, F)`` for sequences.
* ``num_classes``: the width of the output layer; ``0`` means no head, and ``forward`` returns the
  ``num_features``-wide embedding instead (as in timm).
* ``forward_features`` / ``forward_head`` split the network at the embedding.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


def _fmt(shape: Sequence[int]) -> str:
    return "(N, " + ", ".join(str(int(s)) for s in shape) + ")"


class ZooModel(nn.Module):
    """Base class: stores the shared surface and checks the input shape with a clear error."""

    #: Dimensions of ``input_shape`` that the network really depends on; ``None`` means all of them.
    #: A convolutional net with global pooling only needs the channel count, so it sets ``(0,)``.
    strict_dims: tuple[int, ...] | None = None

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        input_shape = tuple(int(s) for s in input_shape)
        if not input_shape or any(s <= 0 for s in input_shape):
            raise ValueError(f"input_shape must be a tuple of positive sizes, got {input_shape}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 means: return embeddings), got {num_classes}")
        self.input_shape = input_shape
        self.num_classes = int(num_classes)

    @property
    def in_chans(self) -> int:
        return self.input_shape[0]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the expected and received shapes when ``x`` does not fit."""
        expected = self.input_shape
        got = tuple(x.shape[1:])
        dims = range(len(expected)) if self.strict_dims is None else self.strict_dims
        ok = x.dim() == len(expected) + 1 and all(got[d] == expected[d] for d in dims)
        if not ok:
            name = type(self).__name__
            raise ValueError(
                f"{name} expects input of shape {_fmt(expected)} but received {tuple(x.shape)}. "
                f"Resize or reshape the batch, or build the model with input_shape={got}."
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))


def make_head(num_features: int, num_classes: int) -> nn.Module:
    """Final affine layer, or identity when ``num_classes == 0`` (embedding output)."""
    return nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
