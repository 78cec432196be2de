"""Classification: cross-entropy (optional label smoothing, Szegedy et al., 2016, "Rethinking the
Inception Architecture"), accuracy and macro-F1 from torchmetrics, a confusion matrix at test time."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torchmetrics.classification import MulticlassConfusionMatrix

from .base import ZooTask
from .distributed import run_dir


class ClassificationTask(ZooTask):
    """Multi-class classification of raw samples into ``num_classes`` classes.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/f1``, ``test/loss``,
    ``test/acc``, ``test/f1``. After ``trainer.test`` the confusion matrix (rows: true class,
    columns: predicted) is in ``self.test_confusion_matrix`` and written as CSV and PNG to the log
    directory. ``predict_step`` returns class probabilities and predicted labels.

    Args (besides ``ZooTask``'s):
        label_smoothing: cross-entropy label smoothing in [0, 1).
    """

    def __init__(self, label_smoothing: float = 0.0, **kwargs: Any) -> None:
        # ZooTask's arguments arrive through **kwargs; jsonargparse follows them into ZooTask's
        # signature, so the CLI and `--print_config` still show and type-check every one.
        num_classes = kwargs.get("num_classes", 10)
        if num_classes < 2:
            raise ValueError(f"model.num_classes must be >= 2 for classification, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        super().__init__(**kwargs)
        self.label_smoothing = float(label_smoothing)
        metrics = lambda: torchmetrics.MetricCollection(  # noqa: E731
            {
                "acc": torchmetrics.Accuracy(task="multiclass", num_classes=num_classes),
                "f1": torchmetrics.F1Score(task="multiclass", num_classes=num_classes, average="macro"),
            }
        )
        self.val_metrics = metrics().clone(prefix="val/")
        self.test_metrics = metrics().clone(prefix="test/")
        self.test_confmat = MulticlassConfusionMatrix(num_classes=num_classes)
        self.test_confusion_matrix: torch.Tensor | None = None

    def _train_step(self, batch):
        x, y = batch
        logits = self(x)  # (N, num_classes)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        # Training accuracy as a device count (two small kernels, no host sync), logged per epoch;
        # the validation split, not this, is what the user should judge the model by.
        return loss, len(y), {"acc": (logits.detach().argmax(dim=-1) == y).sum()}

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        metrics = getattr(self, f"{stage}_metrics")
        x, y = batch
        logits = self(x)  # (N, num_classes)
        loss = F.cross_entropy(logits, y)
        metrics.update(logits, y)
        self.track_eval(stage, loss, len(y))
        if stage == "test":
            self.test_confmat.update(logits, y)
        return loss

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        probs = self(x).softmax(dim=-1)  # (N, num_classes)
        return {"probs": probs, "preds": probs.argmax(dim=-1)}

    def on_test_epoch_start(self) -> None:
        self.test_confmat.reset()

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()  # logs test/loss, test/acc, test/f1
        cm = self.test_confmat.compute().cpu()  # (true, predicted)
        self.test_confusion_matrix = cm
        # Files go next to the logger's output; with logger=False only the tensor is kept.
        if self.trainer.is_global_zero and self.trainer.loggers:
            self._save_confusion_matrix(cm)

    def _save_confusion_matrix(self, cm: torch.Tensor) -> None:
        out = run_dir(self.trainer)
        out.mkdir(parents=True, exist_ok=True)
        rows = [",".join(["true\\pred", *map(str, range(cm.shape[1]))])]
        rows += [",".join([str(i), *map(str, r.tolist())]) for i, r in enumerate(cm)]
        (out / "test_confusion_matrix.csv").write_text("\n".join(rows) + "\n")
        # matplotlib's object API, not pyplot: no window, no global backend switch (which would break
        # a notebook's inline plots), nothing to close; torchmetrics draws into the axes it is given.
        from matplotlib.figure import Figure

        fig = Figure(figsize=(max(4.0, 0.5 * cm.shape[0] + 1), max(4.0, 0.5 * cm.shape[0] + 1)))
        self.test_confmat.plot(val=cm, ax=fig.add_subplot())
        fig.savefig(out / "test_confusion_matrix.png", dpi=100, bbox_inches="tight")
