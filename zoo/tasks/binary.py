"""Binary classification with one logit (sigmoid + binary cross-entropy), and the Rosenblatt
perceptron task, which trains by the perceptron learning rule instead of back-propagation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics

from .base import ZooTask


class BinaryClassificationTask(ZooTask):
    """Two classes, one output unit: ``p(y=1 | x) = sigmoid(logit)`` (logistic regression, Cox 1958).

    ``num_classes`` must be 2 (the DataModule's class count, linked by the CLI); the network is built
    with ONE output, the logit. The loss is ``binary_cross_entropy_with_logits``, which fuses the
    sigmoid into the log-loss for numerical stability. Logs ``<stage>/loss``, ``<stage>/acc``
    (threshold 0.5) and, for val/test, ``f1`` and ``auroc`` (torchmetrics binary metrics).

    Args (besides ``ZooTask``'s):
        pos_weight: weight of the positive class in the loss (class imbalance); ``None`` for 1.
    """

    def __init__(self, pos_weight: float | None = None, **kwargs: Any) -> None:
        # ZooTask's arguments arrive through **kwargs (as in ClassificationTask).
        num_classes = kwargs.get("num_classes", 10)  # ZooTask's default; the CLI links the data's
        if num_classes != 2:
            raise ValueError(
                f"model.num_classes must be 2 for binary classification (one logit), got {num_classes}; "
                "use zoo.tasks.ClassificationTask for more classes"
            )
        if pos_weight is not None and pos_weight <= 0:
            raise ValueError(f"model.pos_weight must be positive or null, got {pos_weight}")
        super().__init__(**kwargs)
        self.register_buffer("pos_weight", torch.tensor([pos_weight]) if pos_weight else None, persistent=False)
        metrics = lambda: torchmetrics.MetricCollection(  # noqa: E731
            {
                "acc": torchmetrics.Accuracy(task="binary"),
                "f1": torchmetrics.F1Score(task="binary"),
                "auroc": torchmetrics.AUROC(task="binary"),
            }
        )
        self.train_acc = torchmetrics.Accuracy(task="binary")
        self.val_metrics = metrics().clone(prefix="val/")
        self.test_metrics = metrics().clone(prefix="test/")

    def net_kwargs(self, num_classes: int) -> dict[str, Any]:
        return {"num_classes": 1}  # one logit for two classes

    def loss(self, logit: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logit, y.float(), pos_weight=self.pos_weight)

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logit = self(x).squeeze(-1)  # (N,)
        loss = self.loss(logit, y)
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=stage == "train", on_epoch=True, batch_size=len(y))
        prob = logit.detach().sigmoid()  # (N,)
        if stage == "train":
            self.train_acc.update(prob, y)
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        else:
            metrics = self.val_metrics if stage == "val" else self.test_metrics
            metrics.update(prob, y)
            self.log_dict(metrics, prog_bar=stage == "val", on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        prob = self(x).squeeze(-1).sigmoid()  # (N,)
        return {"probs": prob, "preds": (prob >= 0.5).long()}


class PerceptronTask(BinaryClassificationTask):
    """Rosenblatt's perceptron trained by the perceptron learning rule (``zoo.perceptron``).

    Why manual optimisation: the threshold unit's output is a step function whose derivative is zero
    almost everywhere, so there is no gradient to back-propagate; the 1958 rule
    ``w += lr * (y - y_hat) * x`` is an error-correction update, not a gradient step of a loss that
    Lightning's automatic optimisation could minimise. With ``automatic_optimization = False``
    Lightning leaves ``training_step`` to update the weights itself, which it does under
    ``torch.no_grad()`` (``Perceptron.perceptron_update``); there is no optimizer at all, so the
    optimizer/scheduler arguments are not accepted.

    The rule runs on the standardised input (the fitted ``preprocess``), sample by sample in loader
    order. ``train/acc`` is the fraction of training samples the unit got right *before* each update
    in the epoch (1.0 = an epoch without a mistake, the perceptron has converged); ``train/mistakes``
    counts the updates. The logged loss is the perceptron criterion ``mean(max(0, -t * score))`` with
    ``t = 2y - 1`` (Rosenblatt's error measure, zero exactly when every sample is on its side).

    Args:
        model: a registered threshold-unit model with ``perceptron_update`` (default ``perceptron``).
        lr: step size of the rule (with a zero start it only rescales ``w``).
    """

    def __init__(self, **kwargs: Any) -> None:
        # ZooTask's arguments arrive through **kwargs like every zoo task (LightningCLI hands the
        # hyper-parameters over as the config gives them, and ZooTask expects its full set). The
        # optimizer arguments are unused: there is no optimizer. A schedule would silently do
        # nothing, so it is refused.
        if kwargs.get("scheduler") is not None:
            raise ValueError("model.scheduler: PerceptronTask has no optimizer to schedule (the perceptron rule uses a fixed lr); set it to null")
        super().__init__(**kwargs)
        if not hasattr(self.net, "perceptron_update"):
            raise ValueError(f"model.model: {self.hparams.model!r} has no perceptron_update; PerceptronTask needs a threshold unit such as 'perceptron'")
        self.automatic_optimization = False

    def loss(self, score: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = 2.0 * y.float() - 1.0  # {0, 1} -> {-1, +1}
        return F.relu(-t * score).mean()  # perceptron criterion

    def training_step(self, batch, batch_idx):
        x, y = batch
        xs = self.preprocess(x)  # (N, *input_shape) standardised
        with torch.no_grad():
            score = self.net(xs).squeeze(-1)  # (N,) before this batch's updates, for the logged loss
            wrong = self.net.perceptron_update(xs, y, lr=self.hparams.lr)  # (N,) bool, the rule itself
        # Lightning's global_step counts optimizer steps, and ModelCheckpoint saves only when it
        # moved: one rule pass over the batch counts as one step of the step-counting optimizer.
        self.optimizers().step()
        self.train_acc.update((~wrong).long(), torch.ones_like(y))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("train/mistakes", wrong.sum().float(), on_step=False, on_epoch=True, reduce_fx="sum", batch_size=len(y))
        self.log("train/loss", self.loss(score, y), on_step=True, on_epoch=True, batch_size=len(y))

    def configure_optimizers(self):
        # The rule updates the weights itself (training_step). This SGD only counts steps through
        # Lightning's public manual-optimisation API: no backward pass ever fills .grad, and
        # SGD.step skips parameters without a gradient, so it never changes a weight.
        return torch.optim.SGD(self.net.parameters(), lr=0.0)
