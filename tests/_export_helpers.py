"""A small trained checkpoint for the export and serve tests (written by the tests themselves)."""

from __future__ import annotations

from pathlib import Path


def train_digits_checkpoint(root: Path) -> Path:
    """LeNet-5 on the bundled digits, resized to 16x16 inside the model, trained for 8 batches: enough
    for the checkpoint to hold fitted statistics and non-trivial weights, which is all the parity and
    serving checks need (they compare against the same checkpoint, not against the labels)."""
    import lightning.pytorch as pl

    from datamodules import DigitsDataModule
    from zoo.tasks import ClassificationTask

    pl.seed_everything(0)
    dm = DigitsDataModule(resize=16, batch_size=64)
    task = ClassificationTask(model="lenet5", num_classes=10, input_shape=dm.input_shape, preprocessing=dm.preprocessing)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=8, limit_val_batches=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=root)
    trainer.fit(task, dm)
    path = root / "lenet5.ckpt"
    trainer.save_checkpoint(path)
    return path
