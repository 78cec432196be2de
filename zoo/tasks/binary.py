"""Binary classification with one logit (sigmoid + binary cross-entropy), and the Rosenblatt
perceptron task, which trains by the perceptron learning rule instead of back-propagation."""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics

from .base import ZooTask

# PerceptronTask overrides the module's on_after_batch_transfer on purpose (see there); Lightning
# warns about any such override when a DataModule is passed, which would say so on every run.
warnings.filterwarnings("ignore", message="You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in")


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
        self.val_metrics = metrics().clone(prefix="val/")
        self.test_metrics = metrics().clone(prefix="test/")

    def net_kwargs(self, num_classes: int) -> dict[str, Any]:
        return {"num_classes": 1}  # one logit for two classes

    def loss(self, logit: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logit, y.float(), pos_weight=self.pos_weight)

    def _train_step(self, batch):
        x, y = batch
        logit = self(x).squeeze(-1)  # (N,)
        # Training accuracy as a device count (no host sync), logged per epoch.
        return self.loss(logit, y), len(y), {"acc": ((logit.detach() >= 0) == y.bool()).sum()}

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logit = self(x).squeeze(-1)  # (N,)
        loss = self.loss(logit, y)
        self.track_eval(stage, loss, len(y))
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(logit.detach().sigmoid(), y)
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
        l1_penalty, input_noise: as every task's; the L1 penalty is applied as a proximal shrink of the
            weights after each batch (``l1_shrink``: the rule has no loss gradient to add it to), the
            noise to the standardised training inputs the rule sees.
    """

    train_totals = ("mistakes",)  # updates per epoch, not per row
    train_batches_are_global = True  # under DDP every rank applies the rule to the gathered batch

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
        xs = self.add_input_noise(self.preprocess(x))  # (N, *input_shape) standardised (+ input_noise)
        with torch.no_grad():
            score = self.net(xs).squeeze(-1)  # (N,) before this batch's updates, for the logged loss
            wrong = self.net.perceptron_update(xs, y, lr=self.hparams.lr)  # (N,) bool, the rule itself
            self.l1_shrink()
        # Device counts only (no host sync): train/acc = right before the update / rows, and
        # train/mistakes = updates in the epoch (a total, see train_totals); ZooTask logs both per epoch.
        # Recorded before the step below, which moves global_step.
        self.track_train(batch_idx, self.loss(score, y), len(y), {"acc": (~wrong).sum(), "mistakes": wrong.sum()})
        # Lightning's global_step counts optimizer steps, and ModelCheckpoint saves only when it
        # moved: one rule pass over the batch counts as one step of the step-counting optimizer.
        self.optimizers().step()

    @torch.no_grad()
    def l1_shrink(self) -> None:
        """The L1 weight penalty (``l1_penalty``) for a rule without a loss gradient: after each batch,
        the proximal step of ``lr * l1_penalty * sum |w|`` (soft thresholding, Tibshirani, 1996;
        as scikit-learn's ``Perceptron(penalty="l1")`` regularises the same rule), which shrinks every
        weight towards 0 by ``lr * l1_penalty`` and stops at 0. Biases are not penalised, as in
        ``ZooTask.weight_penalty``."""
        l1 = self._regularisers[0]
        if l1 <= 0:
            return
        step = self.hparams.lr * l1
        for w in self.net.parameters():
            if w.dim() > 1:
                w.copy_(w.sign() * (w.abs() - step).clamp_min(0))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Under DDP every rank trains on the GLOBAL batch (all ranks' shards, gathered).

        Why: DDP keeps replicas equal by all-reducing gradients in ``backward``, and the perceptron
        rule has no backward; each rank would otherwise update its own weights on its own shard and
        the replicas would drift apart (rank 0 saving only its own). The rule is sequential, so it
        cannot be split over ranks; instead every rank applies it to the same gathered batch, in the
        same order, and the replicas stay identical. The logged counts are then global already.
        The distributed sampler gives every rank the same number of equally sized batches, which
        ``all_gather`` needs.
        """
        if self._trainer is None or not self.trainer.training or self.trainer.world_size < 2:
            return batch
        x, y = batch
        # (W, N, ...) -> (N, W, ...) -> (N * W, ...): rank r's sample j lands at j * W + r, which is
        # the single-process order when the loader does not shuffle (rank r holds rows r, r + W, ...).
        x, y = (t.transpose(0, 1).reshape(-1, *t.shape[2:]) for t in (self.all_gather(x), self.all_gather(y)))
        return x, y

    def configure_optimizers(self):
        # The rule updates the weights itself (training_step). This SGD only counts steps through
        # Lightning's public manual-optimisation API: no backward pass ever fills .grad, and
        # SGD.step skips parameters without a gradient, so it never changes a weight.
        return torch.optim.SGD(self.net.parameters(), lr=0.0)
