"""A callback for tests/test_ddp.py's DDP driver run ``nonfinite``: the training loss goes non-finite on ONE rank only."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback


class PlantNaNOnRankOne(Callback):
    """At the first epoch's last batch, rank 1's recorded training loss becomes NaN, as a bad row in
    its shard would make it; rank 0's stays finite. Callbacks' ``on_train_batch_end`` runs before
    the task's, so the task's check at that batch sees it."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == 1 and trainer.current_epoch == 0 and batch_idx == trainer.num_training_batches - 1:
            led = pl_module._ledger
            led.buf[len(led.steps) - 1, 0] = float("nan")


class SigtermRankOne(Callback):
    """After the first epoch's second batch, rank 1 alone gets SIGTERM (rank 0 never does)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == 1 and trainer.current_epoch == 0 and batch_idx == 1:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)
