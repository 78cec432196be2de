"""A callback for tests/test_preemption.py: sends this process a signal at a chosen point of ``fit``."""

from __future__ import annotations

import os
import signal

from lightning.pytorch.callbacks import Callback


class SendSignal(Callback):
    """Sends ``signum`` once, in epoch ``epoch``: after training batch ``batch`` (``where="train"``, -1
    for the epoch's last) or after validation batch ``batch`` (``where="val"``)."""

    def __init__(self, signum: int = int(signal.SIGUSR1), epoch: int = 0, where: str = "train", batch: int = -1) -> None:
        self.signum, self.epoch, self.where, self.batch = signum, epoch, where, batch
        self.sent = False

    def _send(self, trainer, batch_idx: int, where: str, n: int) -> None:
        if not self.sent and where == self.where and trainer.current_epoch == self.epoch and batch_idx == self.batch % n:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._send(trainer, batch_idx, "train", trainer.num_training_batches)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._send(trainer, batch_idx, "val", int(trainer.num_val_batches[dataloader_idx]))
