"""Vision DataModules without downloads: a fake MNIST cache, an injected CIFAR-10 class, tiny PNG folders."""

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from datamodules import CIFAR10DataModule, FashionMNISTDataModule, ImageFolderDataModule, MNISTDataModule
from datamodules.vision import load_image
from zoo.tasks import ClassificationTask

from _data_factories import write_fake_mnist, write_image_folder


def test_mnist_official_test_stays_test_val_from_train_stats_from_train(tmp_path):
    root = write_fake_mnist(tmp_path, n_train=120, n_test=40)
    dm = MNISTDataModule(root=str(root), download=False, val_size=0.25, seed=1)
    dm.setup()
    s = dm.split_indices
    np.testing.assert_array_equal(s["test"], np.arange(120, 160))  # the official t10k rows
    assert len(s["val"]) == 30 and len(s["train"]) == 90
    assert np.bincount(dm.raw_y[s["val"]], minlength=10).tolist() == [3] * 10  # stratified
    x_train = dm.raw_x[s["train"]].astype(np.float64)
    assert dm.preprocessing["mean"] == pytest.approx([x_train.mean()])
    assert dm.preprocessing["std"] == pytest.approx([x_train.std()])
    assert dm.raw_x.dtype == np.uint8 and dm.input_shape == (1, 28, 28)


def test_augmentation_on_training_only_and_deterministic_eval(tmp_path):
    root = write_fake_mnist(tmp_path, name="FashionMNIST")
    dm = FashionMNISTDataModule(root=str(root), download=False, augment=True, batch_size=200)
    dm.setup()
    torch.manual_seed(0)
    a = next(iter(dm.val_dataloader()))[0]
    b = next(iter(dm.val_dataloader()))[0]
    assert torch.equal(a, b) and torch.equal(a, torch.from_numpy(dm.raw_x[dm.split_indices["val"]]))
    ds = dm.datasets["train"]
    raw = torch.from_numpy(dm.raw_x[dm.split_indices["train"]])
    augmented = torch.stack([ds[i][0] for i in range(len(ds))])
    assert augmented.shape == raw.shape and augmented.dtype == torch.uint8
    assert not torch.equal(augmented, raw)


def test_missing_cache_names_the_folder(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path / "empty"), download=False)
    with pytest.raises(FileNotFoundError, match="MNIST files not found under .*empty"):
        dm.setup()


class FakeCIFAR:
    """Stands in for torchvision.datasets.CIFAR10 (whose md5 checks a fake cache cannot pass)."""

    def __init__(self, root, train, download):
        rng = np.random.default_rng(0 if train else 1)
        n = 100 if train else 20
        self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # HWC, as torchvision holds it
        self.data[..., 0] = 7  # a constant red channel shows the HWC -> CHW order
        self.targets = [i % 10 for i in range(n)]


def test_cifar10_layout_with_an_injected_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10DataModule, "dataset_cls", FakeCIFAR)
    dm = CIFAR10DataModule(root=str(tmp_path), download=False, augment=True)
    dm.setup()
    assert dm.raw_x.shape == (120, 3, 32, 32) and (dm.raw_x[:, 0] == 7).all()
    assert dm.preprocessing["mean"][0] == 7.0 and dm.preprocessing["std"][0] == 1.0  # zero variance -> 1
    assert len(dm.split_indices["test"]) == 20
    x, _ = dm.datasets["train"][0]
    assert x.shape == (3, 32, 32)


def test_image_folder_checkpoint_predicts_on_raw_images(tmp_path):
    root = write_image_folder(tmp_path / "photos")
    dm = ImageFolderDataModule(str(root), image_size=[8, 10], batch_size=8)
    assert dm.num_classes == 3 and dm.input_shape == (3, 8, 10) and dm.classes == ["cat", "dog", "fox"]
    pl.seed_everything(0)
    task = ClassificationTask(model="mlp", model_kwargs={"hidden": [16]}, num_classes=3, input_shape=dm.input_shape,
                              preprocessing=dm.preprocessing)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    trainer.fit(task, dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = ClassificationTask.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True).eval()
    files = sorted((root / "dog").glob("*.png"))[:4]
    x = torch.from_numpy(np.stack([load_image(f, (8, 10)) for f in files]))  # raw photos, no DataModule
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), task(x))


def test_image_folder_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder .*missing.* does not exist"):
        ImageFolderDataModule(str(tmp_path / "missing"))
    root = write_image_folder(tmp_path / "p", per_class=2)
    (root / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*empty_class.* has no image files"):
        ImageFolderDataModule(str(root))
    (root / "empty_class").rmdir()
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    dm = ImageFolderDataModule(str(root))
    with pytest.raises(ValueError, match=r"cannot read image .*dog/broken.png"):
        dm.setup()
