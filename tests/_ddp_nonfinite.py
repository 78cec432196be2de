"""Two DDP processes (gloo on CPU, Lightning's own launcher), the training loss non-finite on ONE rank only,
at the last batch of the first epoch (tests/test_ddp_nonfinite.py).

``python tests/_ddp_nonfinite.py BAD_RANK OUT_DIR``: rank ``BAD_RANK`` multiplies its loss by NaN at that
batch (a bad row in its shard, say); every rank writes the error it ended with to ``OUT_DIR/rank<R>.txt``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning.pytorch as pl  # noqa: E402

from datamodules import DigitsDataModule  # noqa: E402
from zoo.tasks import ClassificationTask  # noqa: E402


class NaNOnOneRank(ClassificationTask):
    def __init__(self, bad_rank: int, **kwargs):
        super().__init__(**kwargs)
        self.bad_rank = bad_rank

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.global_rank == self.bad_rank and batch_idx == self.trainer.num_training_batches - 1 and self.current_epoch == 0:
            loss = loss * float("nan")
            self._ledger.buf[len(self._ledger.steps) - 1, 0] = float("nan")  # what the step recorded
        return loss


def main(bad_rank: int, out: Path) -> None:
    warnings.simplefilter("ignore")
    pl.seed_everything(0, verbose=False)
    dm = DigitsDataModule(batch_size=256)
    task = NaNOnOneRank(bad_rank, model="mlp", model_kwargs={"hidden": [16]}, num_classes=10, input_shape=dm.input_shape)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=str(out))
    try:
        trainer.fit(task, dm)
    except BaseException as e:
        (out / f"rank{trainer.global_rank}.txt").write_text(f"{type(e).__name__}: {e}")
        raise
    (out / f"rank{trainer.global_rank}.txt").write_text("finished")


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
