"""Sequence-to-one regression (forecasting, the adding problem): MSE on standardised targets,
``test/mse`` and ``test/mae`` in the data's own units, optional truncated backpropagation through
time (Williams & Peng, 1990, "An efficient gradient-based algorithm for on-line training of
recurrent network trajectories", Neural Computation 2(4)).

Gradient clipping (Pascanu, Mikolov & Bengio, 2013, "On the difficulty of training recurrent
neural networks") is Lightning's: set ``trainer.gradient_clip_val`` in the config.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
import torchmetrics

from .base import ZooTask


class SequenceRegressionTask(ZooTask):
    """Regression of ``num_classes`` targets (output width, usually 1) from raw ``(T, F)`` sequences.

    Target scaling: the DataModule fits the targets' mean and standard deviation on its training
    rows and puts them in ``preprocessing`` (``target_mean``, ``target_std``); they travel in the
    hyper-parameters, so the loss is computed on standardised targets while ``forward`` and
    ``predict_step`` return values in the data's units, also from a loaded checkpoint.

    Logs ``train/loss``, ``val/loss``, ``val/mse``, ``val/mae``, ``test/loss``, ``test/mse``,
    ``test/mae`` (``*/loss`` is the MSE on the standardised scale, the others are in data units).

    Args (besides ``ZooTask``'s):
        tbptt_steps: ``None`` for full backpropagation through time; ``k`` splits every training
            sequence into chunks of ``k`` steps and back-propagates through the last chunk only,
            carrying the (detached) recurrent state across chunks. Needs a model with
            ``forward_sequence`` (``rnn``, ``lstm``, ``gru``).
    """

    def __init__(
        self,
        model: str = "lstm",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 1,
        input_shape: Sequence[int] = (20, 1),
        preprocessing: dict[str, Any] | None = None,
        init: str | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        nesterov: bool = False,
        optimizer_kwargs: dict[str, Any] | None = None,
        scheduler: str | None = None,
        scheduler_kwargs: dict[str, Any] | None = None,
        tbptt_steps: int | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"model.num_classes is the number of regression targets and must be >= 1, got {num_classes}")
        if tbptt_steps is not None and tbptt_steps < 1:
            raise ValueError(f"model.tbptt_steps must be a positive number of time steps or null, got {tbptt_steps}")
        super().__init__(
            model, model_kwargs, num_classes, input_shape, preprocessing, init, optimizer, lr, weight_decay,
            momentum, nesterov, optimizer_kwargs, scheduler, scheduler_kwargs,
        )
        if tbptt_steps is not None and not hasattr(self.net, "forward_sequence"):
            raise ValueError(
                f"model.tbptt_steps needs a recurrent model (rnn, lstm, gru); {model!r} has no recurrent state"
            )
        self.hparams["tbptt_steps"] = tbptt_steps
        metrics = lambda: torchmetrics.MetricCollection(  # noqa: E731
            {"mse": torchmetrics.MeanSquaredError(), "mae": torchmetrics.MeanAbsoluteError()}
        )
        self.val_metrics = metrics().clone(prefix="val/")
        self.test_metrics = metrics().clone(prefix="test/")

    # ---------------------------------------------------------------------------- target scale

    def _target_stats(self) -> tuple[float, float]:
        spec = self.hparams.get("preprocessing") or {}
        mean, std = spec.get("target_mean"), spec.get("target_std")
        return (0.0 if mean is None else float(mean)), (1.0 if std is None else float(std))

    def scaled_output(self, x: torch.Tensor) -> torch.Tensor:
        """Network output on the standardised target scale, ``(N, num_classes)``."""
        return self.net(self.preprocess(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw input -> predictions in the data's units, ``(N, num_classes)``."""
        mean, std = self._target_stats()
        return self.scaled_output(x) * std + mean

    def _scale_target(self, y: torch.Tensor) -> torch.Tensor:
        mean, std = self._target_stats()
        y = y.float()
        return ((y.view(len(y), -1)) - mean) / std  # (N, num_classes)

    # ----------------------------------------------------------------------------------- steps

    def _tbptt_output(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Truncated BPTT for a sequence-to-one target.

        Hand-written because Lightning 2.x removed ``Trainer(truncated_bptt_steps=...)`` and the
        ``hiddens`` argument of ``training_step``. The target sits after the last step, so only the
        last chunk has a loss: earlier chunks only advance the recurrent state, which is carried on
        detached (that cut is the truncation), and they run without a graph, which is where TBPTT
        saves memory. One optimizer step per batch keeps Lightning's automatic optimization, so
        ``trainer.gradient_clip_val`` still clips. With ``k >= T`` this is full BPTT.
        """
        z = self.preprocess(x)  # (N, T, F)
        chunks = list(torch.split(z, k, dim=1))  # each (N, <=k, F)
        state = None
        with torch.no_grad():
            for chunk in chunks[:-1]:
                _, state = self.net.forward_sequence(chunk, state)
        if state is not None:
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        h, _ = self.net.forward_sequence(chunks[-1], state)  # (N, hidden)
        return self.net.forward_head(h)  # (N, num_classes)

    def training_step(self, batch, batch_idx):
        x, y = batch
        k = self.hparams.get("tbptt_steps")
        out = self._tbptt_output(x, k) if k else self.scaled_output(x)  # (N, num_classes)
        loss = F.mse_loss(out, self._scale_target(y))
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        return loss

    def _eval_step(self, batch, stage: str, metrics) -> None:
        x, y = batch
        out = self.scaled_output(x)  # (N, num_classes)
        yt = self._scale_target(y)
        loss = F.mse_loss(out, yt)
        mean, std = self._target_stats()
        metrics.update(out * std + mean, y.float().view(len(y), -1))
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", on_step=False, on_epoch=True, batch_size=len(y))
        self.log_dict(metrics, prog_bar=stage == "val", on_step=False, on_epoch=True, batch_size=len(y))

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test", self.test_metrics)

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x)  # (N, num_classes), data units
