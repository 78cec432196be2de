"""Fine-tuning: pretrained backbones (torchvision, timm, zoo checkpoints), the FinetuneStrategy
callback, image folders in memory or streamed, predictions on a folder. Every weights file is
written by the test itself (a randomly initialised network saved where the real one would be)."""

from __future__ import annotations

import csv
import types
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torchvision
from lightning.pytorch.callbacks import ModelCheckpoint

import cli
from callbacks import FinetuneStrategy
from datamodules import ImageFolderDataModule, InMemoryDataModule
from datamodules.vision import load_image
from zoo.pretrained import WeightsError, hub_checkpoint_path
from zoo.tasks import ClassificationTask, FinetuneTask

from _data_factories import write_image_folder

ROOT = Path(__file__).resolve().parents[1]


def _trainer(**kw) -> pl.Trainer:
    kw.setdefault("logger", False)
    kw.setdefault("enable_progress_bar", False)
    kw.setdefault("enable_model_summary", False)
    kw.setdefault("enable_checkpointing", False)
    return pl.Trainer(**kw)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """A TORCH_HOME holding resnet18's ImageNet weights file, written here (random weights, real name)."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    path = hub_checkpoint_path(torchvision.models.ResNet18_Weights.DEFAULT.url)
    assert path == home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    for m in net.modules():  # non-trivial running statistics, so "untouched" is a real check
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    torch.save(net.state_dict(), path)
    return path


def _digits(classes, per_class=None, seed=0):
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.isin(d.target, classes)
    x, y = d.images[keep].astype(np.float32)[:, None], d.target[keep]
    if per_class is not None:
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes])
        x, y = x[idx], y[idx]
    return x, np.searchsorted(np.array(classes), y)


def _zoo_checkpoint(tmp_path) -> Path:
    """A zoo checkpoint: simple_convnet trained briefly on digits 0-4."""
    pl.seed_everything(0)
    x, y = _digits([0, 1, 2, 3, 4])
    dm = InMemoryDataModule(x, y, scale_axis=0, batch_size=64)
    task = ClassificationTask(model="simple_convnet", model_kwargs={"padding": 2}, num_classes=5,
                              input_shape=dm.input_shape, preprocessing=dm.preprocessing)
    trainer = _trainer(max_epochs=1, limit_train_batches=5, limit_val_batches=1)
    trainer.fit(task, dm)
    path = tmp_path / "digits04.ckpt"
    trainer.save_checkpoint(path)
    return path


# ------------------------------------------------------------------------------ torchvision


def test_resnet18_from_hub_cache_freeze_keeps_weights_and_bn_stats_bit_identical_then_predicts_raw_photos(torch_home, tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "photos", per_class=5, classes=("cat", "dog"))
    cfg = str(ROOT / "configs/finetune_resnet18_imagefolder.yaml")
    common = ["--data.init_args.root", str(root), "--data.init_args.image_size", "40", "--data.init_args.batch_size", "4",
              "--data.init_args.num_workers", "0", "--trainer.default_root_dir", str(tmp_path / "runs")]
    cli.main(["fit", "--config", cfg, *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
              "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0", "--trainer.callbacks.strategy", "freeze", "--trainer.callbacks.unfreeze_at_epoch", "0",
              "--checkpoint.dirpath", str(tmp_path / "ck")])
    ckpt_path = tmp_path / "ck" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)  # the CLI's checkpoint loads with weights_only=True
    pretrained = torch.load(torch_home, weights_only=True)
    weights = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    frozen = [k for k in pretrained if not k.startswith("fc.")]
    assert any("running_mean" in k for k in frozen) and len(frozen) > 100
    changed = [k for k in frozen if not torch.equal(weights[k], pretrained[k])]
    assert changed == []  # every frozen weight and batch-norm statistic bit-identical to the file
    assert weights["fc.weight"].shape == (2, 512)
    assert ckpt["hyper_parameters"]["class_names"] == ["cat", "dog"]

    # The checkpoint alone predicts on raw photos of any size: no weights file, no DataModule.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    model = FinetuneTask.load_from_checkpoint(ckpt_path, weights_only=True).eval()
    files = sorted(root.rglob("*.png"))
    raw = torch.from_numpy(np.stack([load_image(f, (40, 40)) for f in files]))  # (10, 3, 40, 40) uint8
    with torch.no_grad():
        probs = model(raw).softmax(-1)  # (12, 2)
        other_size = model(torch.from_numpy(load_image(files[0], (70, 50)))[None])
    assert probs.shape == (10, 2) and other_size.shape == (1, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(10))

    # zoo predict on the folder writes file, class name, probability per image, as the model says.
    out = tmp_path / "pred.csv"
    cli.main(["predict", "--config", cfg, *common, "--ckpt_path", str(ckpt_path), "--output", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == [str(f) for f in files]
    assert [r["class"] for r in rows] == [["cat", "dog"][int(i)] for i in probs.argmax(-1)]
    np.testing.assert_allclose([float(r["probability"]) for r in rows], probs.max(-1).values.numpy(), atol=1e-5)


def test_bad_backbone_weights_and_milestones_are_one_line_errors(torch_home, tmp_path, monkeypatch):
    kw = {"num_classes": 2, "input_shape": [3, 32, 32]}
    with pytest.raises(WeightsError, match=r"unknown torchvision model 'resnet81'; did you mean .*resnet18"):
        FinetuneTask(backbone="resnet81", **kw)
    sd = torch.load(torch_home, weights_only=True)
    sd["layer1.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(WeightsError, match=r"bad.pth' does not fit torchvision resnet18.*layer1.0.conv1.weight"):
        FinetuneTask(weights_file=str(bad), **kw)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "offline"))
    with pytest.raises(WeightsError) as e:  # offline and no file: refused when the model is built, before any data
        FinetuneTask(**kw)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "offline/hub/checkpoints/resnet18-f37072fd.pth") in msg and "TORCH_HOME" in msg
    monkeypatch.setenv("TORCH_HOME", str(torch_home.parents[2]))
    dm = InMemoryDataModule(np.zeros((20, 3, 32, 32), np.float32), np.arange(20) % 2, scale_axis=0)
    cb = FinetuneStrategy("freeze_unfreeze", unfreeze_at_epoch=3)
    with pytest.raises(ValueError, match=r"unfreeze_at_epoch 3 is at or past trainer.max_epochs \(3\)"):
        _trainer(max_epochs=3, callbacks=[cb]).fit(FinetuneTask(**kw), dm)
    with pytest.raises(ValueError, match="unknown strategy 'freeze_all'"):
        FinetuneStrategy("freeze_all")


def test_timm_backbone_takes_its_data_config_and_a_local_weights_file(tmp_path):
    import timm

    torch.manual_seed(1)
    src = timm.create_model("resnet18", pretrained=False)
    torch.save(src.state_dict(), tmp_path / "timm_resnet18.pth")
    task = FinetuneTask(source="timm", backbone="resnet18", weights_file=str(tmp_path / "timm_resnet18.pth"),
                        num_classes=3, input_shape=[3, 64, 64])
    spec = task.hparams.preprocessing
    cfg = timm.data.resolve_model_data_config(src)
    assert spec["crop"] == list(cfg["input_size"][1:]) and spec["mean"] == list(cfg["mean"]) and spec["resize"] >= spec["crop"][0]
    torch.testing.assert_close(task.net.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    assert task.net.fc.out_features == 3
    with pytest.raises(WeightsError, match=r"unknown timm model 'resnet_18'; did you mean"):
        FinetuneTask(source="timm", backbone="resnet_18", num_classes=3, input_shape=[3, 64, 64])


# ---------------------------------------------------------------------- zoo checkpoint + strategy


def test_resume_after_the_unfreeze_epoch_keeps_training_the_backbone(tmp_path):
    """Lightning #21901: BackboneFinetuning re-freezes on resume and unfreezes only at the exact epoch.

    Resumed with the same schedule, the epoch alone says "unfrozen", so that part holds with or
    without the strategy's saved state. The second resume is the case only the saved state can
    decide: the resumed run's schedule (``unfreeze_at_epoch`` 3) would freeze the backbone again in
    epoch 2, but the checkpoint says it was already unfrozen, so it keeps training. Without
    ``FinetuneStrategy.state_dict``/``load_state_dict`` this test fails (the backbone stays put)."""
    src = _zoo_checkpoint(tmp_path)
    cfg = str(ROOT / "configs/finetune_simple_convnet_digits.yaml")
    args = ["fit", "--config", cfg, "--model.init_args.weights_file", str(src), "--trainer.limit_train_batches", "3",
            "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0", "--checkpoint.dirpath", str(tmp_path / "ck"),
            "--checkpoint.save_top_k", "0",
            "--trainer.default_root_dir", str(tmp_path / "runs")]
    cli.main([*args, "--trainer.max_epochs", "2"])  # epoch 0 head only, epoch 1 everything
    first_path = tmp_path / "first.ckpt"
    (tmp_path / "ck" / "last.ckpt").rename(first_path)
    first = torch.load(first_path, weights_only=True)
    state = next(v for k, v in first["callbacks"].items() if "FinetuneStrategy" in k)
    assert state == {"strategy": "freeze_unfreeze", "unfrozen": 2}  # both backbone groups
    lrs = [g["lr"] for g in first["optimizer_states"][0]["param_groups"]]
    assert lrs[-1] == 0.002 and all(lr == pytest.approx(0.0002) for lr in lrs[:-1])  # discriminative rates
    backbone = [k for k in first["state_dict"] if k.startswith("net.features")]
    assert len(backbone) == 4  # the convolution's and the hidden layer's weight and bias

    def resume(*extra: str) -> dict:
        cli.main([*args, "--ckpt_path", str(first_path), *extra])
        out = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)
        (tmp_path / "ck" / "last.ckpt").unlink()
        assert out["epoch"] == first["epoch"] + 1 and out["global_step"] == first["global_step"] + 3  # one more epoch, resumed
        return out

    for second in (
        resume("--trainer.max_epochs", "3"),  # the same schedule
        # a later unfreeze epoch: the saved state, not the schedule, says the backbone is unfrozen
        resume("--trainer.max_epochs", "4", "--trainer.max_steps", str(first["global_step"] + 3),
               "--trainer.callbacks.unfreeze_at_epoch", "3", "--early_stopping.strict", "false"),  # max_steps ends before validation
    ):
        moved = [k for k in backbone if not torch.equal(first["state_dict"][k], second["state_dict"][k])]
        assert moved == backbone  # every backbone tensor trained after the resume
        assert next(v for k, v in second["callbacks"].items() if "FinetuneStrategy" in k)["unfrozen"] == 2


def test_strategies_schedule_groups_and_learning_rates(tmp_path):
    src = _zoo_checkpoint(tmp_path)
    x, y = _digits([5, 6, 7, 8, 9])
    dm = InMemoryDataModule(x, y, scale_axis=0, batch_size=64)
    task = FinetuneTask(source="zoo", weights_file=str(src), num_classes=5, input_shape=list(dm.input_shape), lr=0.01)
    groups = task.layer_groups()
    assert len(groups) == 3  # the features' convolution block and linear layer, then the new head
    # reinit_groups=1: the hidden layer next to the head is fresh, the convolution keeps its pretrained weights
    pretrained_sd = torch.load(src, weights_only=True)["state_dict"]
    torch.manual_seed(0)
    fresh = FinetuneTask(source="zoo", weights_file=str(src), num_classes=5, input_shape=list(dm.input_shape), reinit_groups=1)
    assert fresh.hparams.reinit_groups == 1
    for k, v in fresh.net.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, pretrained_sd[f"net.{k}"]) == k.startswith("features.0"), k
    with pytest.raises(ValueError, match=r"model.reinit_groups must be in \[0, 2\]"):
        FinetuneTask(source="zoo", weights_file=str(src), num_classes=5, input_shape=list(dm.input_shape), reinit_groups=3)
    # A resumed run keeps the saved unfrozen groups only under the same strategy; a changed strategy
    # follows its own schedule (with a warning), so `freeze` after `freeze_unfreeze` freezes again.
    saved = {"strategy": "freeze_unfreeze", "unfrozen": 2}
    backbone = [p for group in groups[:-1] for m in group for p in m.parameters()]
    for strategy, kwargs, trains in (("freeze_unfreeze", {"unfreeze_at_epoch": 3}, True), ("freeze", {}, False)):
        resumed = FinetuneStrategy(strategy, **kwargs)
        if trains:
            resumed.load_state_dict(saved)
        else:
            with pytest.warns(UserWarning, match=r"trained with strategy 'freeze_unfreeze' .* follows 'freeze' from here"):
                resumed.load_state_dict(saved)
        resumed.on_train_epoch_start(types.SimpleNamespace(current_epoch=1), task)  # the resumed epoch
        assert all(p.requires_grad == trains for p in backbone), strategy
    cb = FinetuneStrategy("unfreeze_milestones", milestones=[1, 3], backbone_lr_ratio=0.5, layer_decay=0.5)
    assert [cb.target(e, 2) for e in range(5)] == [0, 1, 1, 2, 2]
    assert [cb.target(e, 5) for e in range(5)] == [0, 3, 3, 5, 5]
    assert cb.lr_scales(3) == [0.25, 0.5, 1.0]
    before = {k: v.clone() for k, v in task.net.state_dict().items()}
    trainer = _trainer(max_epochs=4, max_steps=4, limit_train_batches=2, limit_val_batches=1, callbacks=[cb])  # 2 epochs
    trainer.fit(task, dm)
    assert [g["lr"] for g in trainer.optimizers[0].param_groups] == pytest.approx([0.0025, 0.005, 0.01])
    after = task.net.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    # epoch 1 unfroze the two groups next to the head; the first convolution stayed frozen
    assert "head.weight" in moved and not any(k.startswith("features.0") for k in moved) and any(k.startswith("features.2") for k in moved)
    trainer.save_checkpoint(tmp_path / "ft.ckpt")
    loaded = FinetuneTask.load_from_checkpoint(tmp_path / "ft.ckpt", weights_only=True).eval()
    src.unlink()  # the checkpoint rebuilds without the zoo checkpoint it started from
    loaded2 = FinetuneTask.load_from_checkpoint(tmp_path / "ft.ckpt", weights_only=True).eval()
    raw = torch.from_numpy(x[:20])  # raw digits, values 0..16
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(raw), task(raw))
        torch.testing.assert_close(loaded2(raw), task(raw))


# --------------------------------------------------------------------------------- image folders


def test_streaming_and_in_memory_folders_give_the_same_split_and_predictions(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=10)
    mem = ImageFolderDataModule(str(root), image_size=12, in_memory=True, batch_size=8)
    disk = ImageFolderDataModule(str(root), image_size=12, in_memory=False, batch_size=8)
    assert not mem.streaming and disk.streaming
    mem.setup("fit"), disk.setup("fit")
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(mem.split_indices[k], disk.split_indices[k])
    np.testing.assert_allclose(mem.scaler.mean_, disk.scaler.mean_, rtol=1e-9)
    pl.seed_everything(0)
    task = ClassificationTask(model="mlp", model_kwargs={"hidden": [16]}, num_classes=3, input_shape=mem.input_shape,
                              preprocessing=mem.preprocessing)
    _trainer(max_epochs=2).fit(task, mem)
    task.eval()
    with torch.no_grad():
        probs = [torch.cat([task(xb).softmax(-1) for xb, _ in dm.test_dataloader()]) for dm in (mem, disk)]
    torch.testing.assert_close(probs[0], probs[1])
    # auto mode streams a folder over the memory limit
    assert ImageFolderDataModule(str(root), image_size=12, memory_limit_mb=0.001).streaming


def test_unreadable_images_fail_or_are_skipped_by_name(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=6)
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    for in_memory in (True, False):
        with pytest.raises(ValueError, match=r"cannot read image .*dog/broken.png.*bad_files: skip"):
            ImageFolderDataModule(str(root), image_size=8, in_memory=in_memory).setup("fit")
        dm = ImageFolderDataModule(str(root), image_size=8, in_memory=in_memory, bad_files="skip")
        with pytest.warns(UserWarning, match=r"skipped 1 unreadable files .*broken.png"):
            dm.setup("fit")
        assert dm.skipped_files == [str(root / "dog" / "broken.png")] and sum(map(len, dm.split_indices.values())) == 18
    for f in (root / "fox").iterdir():
        f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"class folders \['fox'\] have no readable image"):
        ImageFolderDataModule(str(root), image_size=8, bad_files="skip").setup("fit")


def _truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in half: its header reads (PIL's ``verify`` passes it), its pixels do not decode."""
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, "JPEG")
    data = path.read_bytes()  # ~3 kB, of which ~0.6 kB header and tables
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as im:
        im.verify()  # the header-level check a streamed folder could be tempted to use passes it
    return path


def test_streamed_folder_finds_a_truncated_image_before_training_and_fails_or_skips_it_by_name(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=6)
    bad = _truncated_jpeg(root / "dog" / "p9_truncated.jpg")
    steps = []

    class Count(pl.Callback):
        def on_train_batch_start(self, *args):
            steps.append(1)

    def fit(dm):
        pl.seed_everything(0)
        task = ClassificationTask(model="mlp", model_kwargs={"hidden": [8]}, num_classes=3, input_shape=dm.input_shape,
                                  preprocessing=dm.preprocessing)
        _trainer(max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Count()]).fit(task, dm)

    # bad_files: error -> one line naming the file and the fix, raised in setup, before any training step
    with pytest.raises(ValueError) as e:
        fit(ImageFolderDataModule(str(root), image_size=8, in_memory=False, batch_size=4))
    msg = str(e.value)
    assert "\n" not in msg and repr(str(bad)) in msg and "truncated" in msg and "bad_files: skip" in msg
    assert steps == []
    # bad_files: skip -> named in a warning and in skipped_files, left out before the split; every
    # remaining file then streams through a whole epoch
    dm = ImageFolderDataModule(str(root), image_size=8, in_memory=False, batch_size=4, bad_files="skip")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable files .*p9_truncated.jpg"):
        fit(dm)
    assert dm.skipped_files == [str(bad)] and sum(map(len, dm.split_indices.values())) == 18
    assert len(steps) == len(dm.train_dataloader())
    # the in-memory path skips the same file, so both give the same split
    mem = ImageFolderDataModule(str(root), image_size=8, in_memory=True, bad_files="skip")
    with pytest.warns(UserWarning, match="p9_truncated.jpg"):
        mem.setup("fit")
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(mem.split_indices[k], dm.split_indices[k])
