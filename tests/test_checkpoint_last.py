"""``last.ckpt`` is the latest state at every save point (Lightning 2.6 writes it only with a new best),
a hard link when the best was written at the same step; the callback's writes go behind the training,
in order, and every reader waits for them (issue 10: cheaper saves; issue 12: reliability)."""

from __future__ import annotations

import os
import threading

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from datamodules import DigitsDataModule
from zoo.tasks import ClassificationTask
from zoo.tasks import checkpointing
from zoo.tasks.checkpointing import AtomicCheckpointIO, ZooModelCheckpoint

# The monitored value per epoch: a new best at epochs 0, 1 and 3; none at 2 and 4.
SCORES = [3.0, 2.0, 2.5, 1.0, 5.0]


class _Score(Callback):
    def on_validation_epoch_end(self, trainer, pl_module):
        pl_module.log("val/score", SCORES[trainer.current_epoch])


class _Inspect(Callback):
    """At the start of each epoch, after the previous epoch's saves (waited for), record what is on disk."""

    def __init__(self, d):
        self.d, self.seen = d, []

    def _look(self, trainer):
        trainer.strategy.checkpoint_io.wait()
        last = torch.load(self.d / "last.ckpt", weights_only=True)
        bests = sorted(p.name for p in self.d.glob("best-*.ckpt"))
        linked = [b for b in bests if os.path.samefile(self.d / b, self.d / "last.ckpt")]
        self.seen.append((last["epoch"], bests, linked))

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch > 0:
            self._look(trainer)

    def on_train_end(self, trainer, pl_module):
        self._look(trainer)


def _fit(tmp_path, epochs=5, ckpt_path=None, extra=()):
    dm = DigitsDataModule(batch_size=256, seed=0)
    dm.setup("fit")
    task = ClassificationTask(model="mlp", model_kwargs={"hidden": [16]}, num_classes=10, input_shape=dm.input_shape,
                              preprocessing=dm.preprocessing)
    d = tmp_path / "ckpt"
    cb = ZooModelCheckpoint(dirpath=d, monitor="val/score", mode="min", filename="best-{epoch}", save_top_k=1, save_last=True)
    look = _Inspect(d)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
                         callbacks=[_Score(), look, cb, *extra])
    trainer.fit(task, dm, ckpt_path=ckpt_path)
    return d, look.seen, trainer


def test_last_is_the_latest_epoch_and_a_link_to_a_best_of_the_same_step(tmp_path):
    d, seen, _ = _fit(tmp_path)
    assert seen == [
        (0, ["best-epoch=0.ckpt"], ["best-epoch=0.ckpt"]),  # new best: last is the same file
        (1, ["best-epoch=1.ckpt"], ["best-epoch=1.ckpt"]),
        (2, ["best-epoch=1.ckpt"], []),  # no new best: last still written (Lightning 2.6 kept epoch 1's)
        (3, ["best-epoch=3.ckpt"], ["best-epoch=3.ckpt"]),  # the old best removed, after it was written
        (4, ["best-epoch=3.ckpt"], []),
    ]
    assert sorted(p.name for p in d.iterdir()) == ["best-epoch=3.ckpt", "last.ckpt"]  # no temp file left
    state = next(v for k, v in torch.load(d / "last.ckpt", weights_only=True)["callbacks"].items()
                 if k.startswith("ModelCheckpoint{"))  # Lightning's key, so older checkpoints still restore it
    assert state["last_model_path"] == str(d / "last.ckpt") and state["best_model_path"] == str(d / "best-epoch=3.ckpt")
    best = torch.load(d / "best-epoch=3.ckpt", weights_only=True)
    linked_state = next(v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint{"))
    assert linked_state["last_model_path"] == str(d / "last.ckpt")  # a linked file names last.ckpt as a written one would


def test_resume_from_last_continues_after_the_latest_epoch(tmp_path):
    d, _, _ = _fit(tmp_path, epochs=5)
    epochs = []

    class _Epochs(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            epochs.append(trainer.current_epoch)

    SCORES.append(0.5)
    try:
        _, _, trainer = _fit(tmp_path, epochs=6, ckpt_path=str(d / "last.ckpt"), extra=[_Epochs()])
    finally:
        SCORES.pop()
    assert epochs == [5]  # resumed after epoch 4 (with Lightning 2.6's last.ckpt: after epoch 3, epoch 4 redone)
    assert sorted(p.name for p in d.glob("best-*.ckpt")) == ["best-epoch=5.ckpt"]


@pytest.fixture
def blocked_io():
    """An AtomicCheckpointIO whose writer thread is held until ``release`` is set."""
    io = AtomicCheckpointIO()
    release = threading.Event()
    io._submit(release.wait)
    yield io, release
    release.set()
    io.teardown()


def test_write_behind_snapshots_now_and_writes_later_in_order(tmp_path, blocked_io):
    io, release = blocked_io
    w = torch.zeros(3)
    with io.write_behind():
        io.save_checkpoint({"w": w}, tmp_path / "a.ckpt")
    assert not (tmp_path / "a.ckpt").exists()  # queued behind the held writer: the call did not wait
    w.add_(1.0)  # the next optimizer step changes the weights in place
    io.link_checkpoint(tmp_path / "a.ckpt", tmp_path / "last.ckpt")  # after the queued write
    io.remove_checkpoint(tmp_path / "a.ckpt")  # after the link; never before the write
    release.set()
    loaded = io.load_checkpoint(tmp_path / "last.ckpt")  # waits for the queue
    assert torch.equal(loaded["w"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_save_outside_write_behind_is_on_disk_when_it_returns(tmp_path, blocked_io):
    io, release = blocked_io
    with io.write_behind():
        io.save_checkpoint({"step": 1}, tmp_path / "x.ckpt")
    threading.Timer(0.3, release.set).start()
    io.save_checkpoint({"step": 2}, tmp_path / "x.ckpt")  # waits for the queued one, then writes
    assert torch.load(tmp_path / "x.ckpt", weights_only=True) == {"step": 2}


def test_a_failed_background_write_is_raised(tmp_path):
    io = AtomicCheckpointIO()
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OSError, match="File exists"):  # at the next save or at teardown, whichever comes first
        with io.write_behind():
            io.save_checkpoint({"step": 1}, tmp_path / "file" / "x.ckpt")
        io.teardown()
    io.teardown()  # raised once, then the queue is empty


def test_atomic_link_replaces_the_target_and_survives_removing_the_source(tmp_path):
    torch.save({"v": 1}, tmp_path / "best.ckpt")
    torch.save({"v": 0}, tmp_path / "last.ckpt")
    checkpointing.atomic_link(tmp_path / "best.ckpt", tmp_path / "last.ckpt")
    os.remove(tmp_path / "best.ckpt")
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
