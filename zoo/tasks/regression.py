"""Regression: squared-error loss on standardised targets; R^2, MAE and MSE (torchmetrics) in the
raw target units."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchmetrics

from .base import ZooTask, _plain


class TargetTransform(nn.Module):
    """``y_raw = y_scaled * std + mean``, from the plain spec ``{"mean": [...], "std": [...]}``
    fitted by the DataModule on the training targets (identity while unfitted). Non-persistent
    buffers: the spec in the hyper-parameters is the single source of truth, as for ``InputTransform``."""

    def __init__(self, spec: dict[str, Any] | None, width: int) -> None:
        super().__init__()
        mean = (spec or {}).get("mean")
        std = (spec or {}).get("std")
        mean_t = torch.tensor(mean if mean is not None else [0.0] * width, dtype=torch.float32)
        std_t = torch.tensor(std if std is not None else [1.0] * width, dtype=torch.float32)
        if mean_t.numel() != width or std_t.numel() != width:
            raise ValueError(
                f"preprocessing.target has {mean_t.numel()} means / {std_t.numel()} stds but the model has "
                f"{width} outputs (model.num_classes); build the model from the same data configuration"
            )
        if (std_t <= 0).any():
            raise ValueError(f"preprocessing.target.std must be positive, got {std_t.tolist()}")
        self.register_buffer("mean", mean_t, persistent=False)  # (K,)
        self.register_buffer("std", std_t, persistent=False)  # (K,)

    def scale(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean) / self.std

    def forward(self, y_scaled: torch.Tensor) -> torch.Tensor:
        return y_scaled * self.std + self.mean


class RegressionTask(ZooTask):
    """Regression of raw samples onto ``num_classes`` real-valued targets.

    ``num_classes`` is the output width, i.e. the number of targets (1 for one target); the name is
    shared with classification because the CLI links ``data.num_classes`` into every task.
    The loss is the mean squared error of the *standardised* targets (the DataModule fits the target
    mean/std on training rows and puts them in ``preprocessing["target"]``), so the learning rate does
    not depend on the target's units; ``forward`` and the metrics are in the raw units, and since the
    statistics sit in the hyper-parameters, a loaded checkpoint predicts raw units from raw input.

    Logs ``train/loss``, ``val/loss``, ``test/loss`` (standardised MSE) and ``val|test/r2``,
    ``val|test/mae``, ``val|test/mse`` (raw units; R^2 averaged uniformly over targets).
    """

    def __init__(self, num_classes: int = 1, **kwargs: Any) -> None:
        # ZooTask's other arguments arrive through **kwargs (as in ClassificationTask); jsonargparse
        # follows them into ZooTask's signature, so the CLI still shows and type-checks every one.
        # num_classes is the number of targets here (default one); the CLI links the data's.
        if num_classes < 1:
            raise ValueError(f"model.num_classes is the number of regression targets and must be >= 1, got {num_classes}")
        super().__init__(num_classes=num_classes, **kwargs)
        preprocessing = kwargs.get("preprocessing")
        self.target = TargetTransform((preprocessing or {}).get("target"), num_classes)
        metrics = lambda: torchmetrics.MetricCollection(  # noqa: E731
            {
                "r2": torchmetrics.R2Score(multioutput="uniform_average"),
                "mae": torchmetrics.MeanAbsoluteError(),
                "mse": torchmetrics.MeanSquaredError(),
            }
        )
        self.val_metrics = metrics().clone(prefix="val/")
        self.test_metrics = metrics().clone(prefix="test/")

    def setup(self, stage: str) -> None:
        super().setup(stage)  # copies the DataModule's preprocessing (with "target") into hparams
        spec = (self.hparams.get("preprocessing") or {}).get("target")
        if spec is not None:
            self.target = TargetTransform(_plain(spec), self.hparams.num_classes).to(self.device)

    def forward_scaled(self, x: torch.Tensor) -> torch.Tensor:
        """Raw input -> standardised prediction ``(N, num_classes)`` (what the loss sees)."""
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw input -> prediction in raw target units, ``(N, num_classes)``."""
        return self.target(self.forward_scaled(x))

    def _train_step(self, batch):
        x, y = batch
        y = y.float().reshape(len(y), -1)  # (N, K)
        return F.mse_loss(self.forward_scaled(x), self.target.scale(y)), len(y), {}

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        y = y.float().reshape(len(y), -1)  # (N, K)
        pred_scaled = self.forward_scaled(x)  # (N, K)
        loss = F.mse_loss(pred_scaled, self.target.scale(y))
        self.track_eval(stage, loss, len(y))
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        pred = self.target(pred_scaled.detach())
        # R2Score wants (N,) for one output and (N, K) for several.
        metrics.update(pred.squeeze(-1) if y.shape[1] == 1 else pred, y.squeeze(-1) if y.shape[1] == 1 else y)
        return loss

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x)  # (N, K) raw units
