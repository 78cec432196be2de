"""The lean training step every task inherits (issue 10): no host read and no logging call on a
step the logger does not write, exact epoch means from device sums, a non-finite loss stopping the
run at the step it happened; and the in-memory loaders serving whole batches by indexing."""

from __future__ import annotations

import csv
import sys

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from datamodules import DigitsDataModule, InMemoryDataModule
from datamodules.base import TensorBatchDataset
from zoo.tasks import ClassificationTask, RegressionTask
from zoo.tasks.base import NonFiniteLossError


def _digits(batch_size=32):
    dm = DigitsDataModule(batch_size=batch_size, seed=0)
    dm.setup("fit")
    return dm


def _task(dm, **kw):
    kw.setdefault("model", "mlp")
    kw.setdefault("model_kwargs", {"hidden": [32]})
    return ClassificationTask(num_classes=10, input_shape=dm.input_shape, preprocessing=dm.preprocessing, **kw)


def _trainer(tmp_path, **kw):
    kw.setdefault("logger", False)
    return pl.Trainer(accelerator="cpu", devices=1, enable_checkpointing=kw.pop("enable_checkpointing", False),
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kw)


class _HostReads(Callback):
    """Counts reads of tensor values to the host (item, bool, float, int, tolist, numpy) made
    between the start of one training batch and the start of the next, per global step. The
    sampler's once-per-epoch ``randperm(...).tolist()`` (a CPU tensor it made itself) is not one."""

    NAMES = ("item", "__bool__", "__float__", "__int__", "tolist", "numpy")

    def __init__(self, monkeypatch) -> None:
        self.step: int | None = None
        self.reads: dict[int, int] = {}
        for name in self.NAMES:
            orig = getattr(torch.Tensor, name)

            def counted(t, *a, _orig=orig, **k):
                if self.step is not None and "torch/utils/data/" not in sys._getframe(1).f_code.co_filename:
                    self.reads[self.step] = self.reads.get(self.step, 0) + 1
                return _orig(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, counted)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.step = trainer.global_step
        self.last = batch_idx + 1 == trainer.num_training_batches

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.step = None  # epoch-end work (means, validation) is once per epoch, not per step


def test_no_host_read_on_steps_the_logger_does_not_write(tmp_path, monkeypatch):
    """With a logger writing every 10th step, only those steps (and each epoch's last) read a value
    back from the device; the others queue their work and return. SGD, because torch's CPU Adam
    reads its step counter with .item() (a CPU tensor: no device sync, but it would be counted)."""
    dm = _digits()
    task = _task(dm, optimizer="sgd", lr=0.05)
    reads = _HostReads(monkeypatch)
    trainer = _trainer(tmp_path, max_epochs=2, logger=CSVLogger(tmp_path), log_every_n_steps=10,
                       limit_val_batches=0, callbacks=[reads])
    trainer.fit(task, dm)
    steps = trainer.global_step
    per_epoch = trainer.num_training_batches
    allowed = {s for s in range(steps) if (s + 1) % 10 == 0 or (s + 1) % per_epoch == 0}
    quiet = [s for s in range(steps) if s not in allowed]
    assert len(quiet) > 50
    assert {s: reads.reads[s] for s in quiet if reads.reads.get(s)} == {}


def test_epoch_means_are_exact(tmp_path):
    """lr=0 keeps the weights fixed, so the epoch's train/loss and train/acc must equal the loss and
    accuracy of the whole training split computed directly (rows weighted, last batch smaller)."""
    dm = _digits(batch_size=50)  # 1,167 training rows: 23 batches of 50 and one of 17
    task = _task(dm, optimizer="sgd", lr=1e-12, model_kwargs={"hidden": [32], "dropout": 0.0})
    trainer = _trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(task, dm)
    x, y = dm.datasets["train"].x, dm.datasets["train"].y
    with torch.no_grad():
        logits = task.eval()(x)
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
    assert float(trainer.callback_metrics["train/acc"]) == pytest.approx(float((logits.argmax(-1) == y).float().mean()), rel=1e-6)
    # Test metrics, logged once at the epoch's end, are those of the whole test split.
    result = trainer.test(task, dm, verbose=False)[0]
    xt, yt = dm.datasets["test"].x, dm.datasets["test"].y
    with torch.no_grad():
        lt = task.eval()(xt)
    assert result["test/loss"] == pytest.approx(float(F.cross_entropy(lt, yt)), rel=1e-5)
    assert result["test/acc"] == pytest.approx(float((lt.argmax(-1) == yt).float().mean()), rel=1e-6)


def test_one_logging_call_per_evaluation_epoch(tmp_path, monkeypatch):
    dm = _digits()
    task = _task(dm)
    calls, inside = [], []
    for name in ("log", "log_dict"):
        orig = getattr(task, name)

        def counted(*a, _o=orig, **k):
            if not inside:  # log_dict calls log once per key: count the outer call only
                calls.append(task.trainer.state.stage.value)
            inside.append(1)
            try:
                return _o(*a, **k)
            finally:
                inside.pop()

        monkeypatch.setattr(task, name, counted)
    trainer = _trainer(tmp_path, max_epochs=2, num_sanity_val_steps=0, log_every_n_steps=0)
    trainer.fit(task, dm)
    trainer.test(task, dm, verbose=False)
    assert calls.count("validate") == 2 and calls.count("test") == 1
    assert calls.count("train") == 2  # the epoch means; no per-step call with log_every_n_steps=0


def test_step_loss_is_logged_on_the_loggers_steps_only(tmp_path):
    dm = _digits()
    trainer = _trainer(tmp_path, max_epochs=2, logger=CSVLogger(tmp_path, name="", version=""), log_every_n_steps=5,
                       limit_val_batches=0)
    trainer.fit(_task(dm), dm)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    step_rows = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    epoch_rows = [r for r in rows if r.get("train/loss")]
    assert step_rows == [s for s in range(trainer.global_step) if (s + 1) % 5 == 0]
    assert len(epoch_rows) == 2 and all(r["train/acc"] for r in epoch_rows)


class _PoisonAt(Callback):
    """Sets one weight to NaN before global step ``at``: that step's loss is NaN."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            with torch.no_grad():
                next(pl_module.net.parameters()).view(-1)[0] = float("nan")


@pytest.mark.parametrize("every", [1, 50])
def test_non_finite_loss_stops_the_run_naming_the_step(tmp_path, every):
    """Without any inspector: the run stops with one line naming the step, whether or not the step
    is a logging step (with every=50 the check is at the epoch's last batch, before validation and
    the epoch's checkpoint), and the checkpoint of the earlier epoch is untouched."""
    dm = _digits()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = _trainer(tmp_path, max_epochs=3, log_every_n_steps=every, callbacks=[ckpt, _PoisonAt(40)],
                       enable_checkpointing=True)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit(_task(dm), dm)
    msg = str(err.value)
    assert "\n" not in msg
    assert "train/loss is nan at global step 40 (epoch 1, batch 3)" in msg and "model.lr" in msg
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 37  # epoch 0's, written before the poisoned step
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_regression_task_tracks_loss_too(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 3).astype(np.float32)
    dm = InMemoryDataModule(x, y, task="regression", batch_size=32)
    dm.setup("fit")
    task = RegressionTask(model="linear_regression", num_classes=1, input_shape=[4], preprocessing=dm.preprocessing, lr=0.1)
    trainer = _trainer(tmp_path, max_epochs=30)
    trainer.fit(task, dm)
    assert set(trainer.callback_metrics) >= {"train/loss", "val/loss", "val/r2"}
    assert float(trainer.callback_metrics["train/loss"]) < 0.01  # an exact linear target: learnt


def test_batches_are_indexed_not_collated_and_match_the_old_loader():
    """Same seed, same batches as DataLoader(TensorDataset) with the default collate; one
    __getitems__ call per batch instead of one __getitem__ per row."""
    dm = _digits()
    loader = dm.train_dataloader()
    ds = dm.datasets["train"]
    assert isinstance(ds, TensorBatchDataset)
    old = DataLoader(TensorDataset(ds.x, ds.y), batch_size=32, shuffle=True)
    torch.manual_seed(3)
    new_batches = list(loader)
    torch.manual_seed(3)
    old_batches = list(old)
    assert len(new_batches) == len(old_batches) == 37
    for (xn, yn), (xo, yo) in zip(new_batches, old_batches):
        assert torch.equal(xn, xo) and torch.equal(yn, yo)
    calls = {"items": 0, "item": 0}
    orig_items, orig_item = TensorBatchDataset.__getitems__, TensorBatchDataset.__getitem__
    TensorBatchDataset.__getitems__ = lambda self, i: (calls.__setitem__("items", calls["items"] + 1), orig_items(self, i))[1]
    TensorBatchDataset.__getitem__ = lambda self, i: (calls.__setitem__("item", calls["item"] + 1), orig_item(self, i))[1]
    try:
        list(dm.train_dataloader())
    finally:
        TensorBatchDataset.__getitems__, TensorBatchDataset.__getitem__ = orig_items, orig_item
    assert calls == {"items": 37, "item": 0}


def test_loader_survives_lightnings_distributed_sampler_swap():
    """Under DDP Lightning rebuilds the loader with a DistributedSampler; batches stay whole tensors
    and the two ranks' shards cover the training rows once."""
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import DistributedSampler

    dm = _digits()
    seen = []
    for rank in (0, 1):
        sampler = DistributedSampler(dm.datasets["train"], num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = _update_dataloader(dm.train_dataloader(), sampler)
        for x, y in loader:
            assert x.shape[1:] == (1, 8, 8) and x.shape[0] == len(y) <= 32
            seen.append(y)
    assert sum(len(y) for y in seen) >= len(dm.datasets["train"])


def test_device_resident_data_is_moved_once_and_reused(tmp_path):
    """On CPU nothing moves (``device_resident=None``); forced, the split is copied once to the
    trainer's device and every later loader reuses that copy. (On a GPU the same path keeps the
    rows in GPU memory; not measured here: this machine has none.)"""
    dm = DigitsDataModule(batch_size=32, seed=0, device_resident=True)
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=2)
    trainer.fit(_task(dm), dm)
    first = dm.train_dataloader().dataset
    assert dm.train_dataloader().dataset is first and first is not dm.datasets["train"]
    assert torch.equal(first.x, dm.datasets["train"].x)
    auto = DigitsDataModule(batch_size=32, seed=0)
    auto.setup("fit")
    assert auto.train_dataloader().dataset is auto.datasets["train"]
