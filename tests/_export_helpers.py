"""Helpers shared by the export, serve and DDP tests and benchmarks/serve_throughput.py: a small trained
checkpoint (written by the caller itself, never downloaded) and a free local port."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server or a DDP master)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_digits_checkpoint(root: Path, resize: int = 16) -> Path:
    """LeNet-5 on the bundled digits, resized to ``resize`` pixels a side, trained for 8 batches: enough
    for the checkpoint to hold fitted statistics and non-trivial weights, which is all the parity and
    serving checks need (they compare against the same checkpoint, not against the labels)."""
    import lightning.pytorch as pl

    from datamodules import DigitsDataModule
    from zoo.tasks import ClassificationTask

    pl.seed_everything(0)
    dm = DigitsDataModule(resize=resize, batch_size=64)
    task = ClassificationTask(model="lenet5", num_classes=10, input_shape=dm.input_shape, preprocessing=dm.preprocessing)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=8, limit_val_batches=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=root)
    trainer.fit(task, dm)
    path = root / "lenet5.ckpt"
    trainer.save_checkpoint(path)
    return path
