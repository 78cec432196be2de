"""Linear models: linear, logistic and softmax regression, and the closed-form least-squares fit.

* Linear regression by least squares: Legendre (1805) and Gauss (1809); the closed form through the
  Moore-Penrose pseudo-inverse (Moore, 1920; Penrose, 1955, "A generalized inverse for matrices").
* Logistic regression: Cox (1958), "The regression analysis of binary sequences", JRSS B 20.
* Softmax (multinomial logistic) regression: the same model with one affine score per class and the
  softmax of Bridle (1990) turning scores into probabilities.

All three are one affine map of the flattened input; what differs is the task around it (squared
error, sigmoid + binary cross-entropy, softmax + cross-entropy), which lives in ``zoo.tasks``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from ._base import ZooModel, make_head
from ._registry import register_model

__all__ = ["LinearModel", "least_squares", "linear_regression", "logistic_regression", "softmax_regression"]

# ---------------------------------------------------------------------------------------- blocks


def least_squares(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ordinary least squares with an intercept: ``min ||[x, 1] theta - y||^2``.

    ``theta = pinv([x, 1]) @ y`` (Moore-Penrose pseudo-inverse, ``torch.linalg.pinv``): the minimum
    norm solution, defined even when ``x`` is rank deficient, which the normal equations are not.

    Args:
        x: ``(N, F)`` inputs (flatten images first).
        y: ``(N,)`` or ``(N, K)`` targets.

    Returns:
        ``weight`` of shape ``(K, F)`` and ``bias`` of shape ``(K,)``, laid out as ``nn.Linear``'s.
    """
    if x.dim() != 2:
        raise ValueError(f"least_squares: x must be (N, F), got shape {tuple(x.shape)}; flatten it first")
    y2 = y.reshape(len(y), -1) if y.dim() <= 2 else None
    if y2 is None or len(y) != len(x):
        raise ValueError(f"least_squares: y must be (N,) or (N, K) with N={len(x)}, got shape {tuple(y.shape)}")
    # float64: the pseudo-inverse's singular-value cut-off is far less fragile in double precision.
    xa = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64, device=x.device)], dim=1)  # (N, F+1)
    theta = torch.linalg.pinv(xa) @ y2.double()  # (F+1, K)
    return theta[:-1].T.to(x.dtype).contiguous(), theta[-1].to(x.dtype).contiguous()


# ----------------------------------------------------------------------------------------- model


class LinearModel(ZooModel):
    """One affine map of the flattened input: ``y = W x + b`` with ``num_classes`` outputs.

    Args:
        input_shape: shape of one sample; flattened, so ``(1, 8, 8)`` gives 64 inputs.
        num_classes: output width: 1 for linear regression and for logistic regression (one logit),
            the number of classes for softmax regression, the number of targets for multi-output
            regression; 0 returns the flattened input (a linear model has no hidden embedding).
        bias: learn the intercept ``b``.
    """

    def __init__(self, input_shape: Sequence[int] = (10,), num_classes: int = 1, bias: bool = True) -> None:
        super().__init__(input_shape, num_classes)
        self.num_features = math.prod(self.input_shape)
        self.flatten = nn.Flatten()
        self.head = make_head(self.num_features, num_classes)
        if not bias and num_classes > 0:
            self.head = nn.Linear(self.num_features, num_classes, bias=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(x)  # (N, F)

    @torch.no_grad()
    def fit_closed_form(self, x: torch.Tensor, y: torch.Tensor) -> "LinearModel":
        """Set ``W, b`` to the least-squares solution on ``(x, y)`` (see ``least_squares``)."""
        if self.num_classes == 0 or self.head.bias is None:
            raise ValueError("fit_closed_form needs a model with an output layer and a bias (num_classes >= 1, bias=True)")
        self.check_input(x)
        w, b = least_squares(self.flatten(x), y)
        if w.shape != self.head.weight.shape:
            raise ValueError(f"targets give {w.shape[0]} outputs but the model has num_classes={self.num_classes}")
        self.head.weight.copy_(w)
        self.head.bias.copy_(b)
        return self


# ------------------------------------------------------------------------------------- variants

_LSQ = "Legendre (1805) / Gauss (1809), least squares; closed form by the Moore-Penrose pseudo-inverse (Penrose 1955)"
_COX = "Cox (1958), The regression analysis of binary sequences, JRSS B 20"
_SOFTMAX = "Multinomial logistic regression; softmax: Bridle (1990), Probabilistic interpretation of feedforward classification network outputs"


@register_model(task="regression", input_shape=(10,), num_classes=1, paper=_LSQ,
                default_config="configs/linear_regression_diabetes.yaml")
def linear_regression(input_shape: Sequence[int] = (10,), num_classes: int = 1, **kwargs) -> LinearModel:
    """Linear regression (``num_classes`` = number of targets), trained with squared error."""
    return LinearModel(input_shape, num_classes, **kwargs)


@register_model(task="binary_classification", input_shape=(30,), num_classes=1, paper=_COX,
                default_config="configs/logistic_regression_breast_cancer.yaml")
def logistic_regression(input_shape: Sequence[int] = (30,), num_classes: int = 1, **kwargs) -> LinearModel:
    """Logistic regression: one logit; the task applies the sigmoid inside binary cross-entropy."""
    return LinearModel(input_shape, num_classes, **kwargs)


@register_model(task="classification", input_shape=(1, 8, 8), num_classes=10, paper=_SOFTMAX,
                default_config="configs/softmax_regression_digits.yaml")
def softmax_regression(input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, **kwargs) -> LinearModel:
    """Softmax regression: one score per class; the task applies softmax inside cross-entropy."""
    return LinearModel(input_shape, num_classes, **kwargs)
