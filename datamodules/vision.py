"""Image DataModules: MNIST, FashionMNIST and CIFAR-10 through torchvision, and ``ImageFolder`` for a
user's own photos (one folder per class).

Raw samples are uint8 images ``(C, H, W)`` (as the files hold them; held as uint8 to keep CIFAR-10
in 180 MB). The official test set stays the test set; the validation part is carved from the
official training set by a seeded stratified split; the per-channel mean/std of the model's input
transform is fitted on the training part only; augmentation (torchvision transforms v2) is applied
to training samples only, so validation and test are deterministic. A checkpoint therefore takes
raw uint8-valued images: the standardisation is inside the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import datasets
from torchvision.transforms import v2

from .base import ArrayDataModule

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class TorchvisionDataModule(ArrayDataModule):
    """Base for torchvision's classification sets with an official train/test split.

    Args:
        root: download/cache folder (torchvision's on-disk layout, e.g. ``root/MNIST/raw``).
        download: download the files if they are missing (``prepare_data``, rank 0 only).
        augment: training-only augmentation (``augmentation()``).
        val_size: fraction of the official training set held out for validation (stratified, seeded).
        seed, batch_size, num_workers: see ``ArrayDataModule``. ``n_folds``/``fold`` cross-validate
            within the official training set; the official test set stays the test set.
    """

    dataset_cls: Any = None
    raw_dtype = np.uint8
    scale_axis = 0  # per channel

    def __init__(
        self,
        root: str = "data",
        download: bool = True,
        augment: bool = False,
        val_size: float = 0.1,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        n_folds: int | None = None,
        fold: int = 0,
        audit: str | None = None,
    ) -> None:
        # test_size is not used (the official test set is the test part); 0.5 only passes the check.
        super().__init__(
            val_size=val_size, test_size=0.5, seed=seed, batch_size=batch_size, num_workers=num_workers,
            split="stratified", n_folds=n_folds, fold=fold, audit=audit,
        )
        self.root, self.download, self.augment = root, download, augment
        self.save_hyperparameters()
        self._n_train: int | None = None

    def prepare_data(self) -> None:
        if self.download:
            for train in (True, False):
                self.dataset_cls(self.root, train=train, download=True)

    def load_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """Raw uint8 images ``(N, C, H, W)`` and labels of the official train or test set."""
        try:
            ds = self.dataset_cls(self.root, train=train, download=self.download)
        except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True ..."
            raise FileNotFoundError(
                f"data.root: {self.dataset_cls.__name__} files not found under {str(Path(self.root).resolve())!r} ({e}); "
                "set data.download=true or point data.root at the folder holding them"
            ) from None
        x = np.asarray(ds.data)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # (N, H, W) or (N, H, W, C) -> (N, C, H, W)
        return x, np.asarray(ds.targets, dtype=np.int64)

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        xtr, ytr = self.load_split(True)
        xte, yte = self.load_split(False)
        self._n_train, self._n_all = len(ytr), len(ytr) + len(yte)
        return np.concatenate([xtr, xte]), np.concatenate([ytr, yte])

    def official_test_index(self) -> np.ndarray | None:
        assert self._n_train is not None, "load_arrays runs first"
        return np.arange(self._n_train, self._n_all)  # the official test rows (the tail)

    def augmentation(self) -> v2.Transform:
        raise NotImplementedError

    def train_transform(self):
        return self.augmentation() if self.augment else None


class MNISTDataModule(TorchvisionDataModule):
    """MNIST (LeCun et al., 1998): 60,000 training and 10,000 test 28x28 grey digits.
    Augmentation: small random affine moves (a digit stays the same digit; no flips)."""

    dataset_cls = datasets.MNIST
    num_classes = 10
    input_shape = (1, 28, 28)

    def augmentation(self) -> v2.Transform:
        return v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Xiao et al., 2017): MNIST's format with ten clothing classes.
    Augmentation: horizontal flips (clothes are left-right symmetric) and small shifts."""

    dataset_cls = datasets.FashionMNIST

    def augmentation(self) -> v2.Transform:
        return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomAffine(degrees=0, translate=(0.1, 0.1))])


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10 (Krizhevsky, 2009): 50,000 training and 10,000 test 32x32 colour images.
    Augmentation: 4-pixel padded random crops and horizontal flips (He et al., 2016, ResNet's recipe)."""

    dataset_cls = datasets.CIFAR10
    num_classes = 10
    input_shape = (3, 32, 32)

    def augmentation(self) -> v2.Transform:
        return v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])


# ---------------------------------------------------------------------------------- ImageFolder


def load_image(path: str | Path, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """One image file -> the raw uint8 ``(C, H, W)`` sample an ImageFolder model takes (resized to
    ``size`` = (H, W) bilinearly, converted to RGB or grey). Use it to predict on new photos."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L").resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"cannot read image {str(path)!r} ({type(e).__name__}: {e}); delete or replace the file") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)


class ImageFolderDataModule(ArrayDataModule):
    """A user's photos: ``root/<class name>/<image files>``, one folder per class (torchvision's
    ``ImageFolder`` layout and class order: sorted folder names).

    Every image is read once in ``setup`` and resized to ``image_size``; that resized uint8 image is
    the raw sample (``load_image`` makes one from a new file). The split is seeded and stratified by
    default; ``split='grouped'`` with ``group_by_prefix`` keeps photos whose file names share a prefix
    up to the first ``_`` (e.g. one person or one session) in one split.

    Args:
        root: the folder of class folders.
        image_size: side (or ``[H, W]``) every image is resized to.
        channels: 3 (RGB) or 1 (grey).
        augment: random resized crops and horizontal flips of training images only.
        group_by_prefix: groups for grouped splits from the file-name prefix before the first ``_``.
        val_size, test_size, seed, batch_size, num_workers, split, n_folds, fold, audit: see ``ArrayDataModule``.
    """

    raw_dtype = np.uint8
    scale_axis = 0

    def __init__(
        self,
        root: str,
        image_size: int | list[int] = 64,
        channels: int = 3,
        augment: bool = False,
        group_by_prefix: bool = False,
        val_size: float = 0.15,
        test_size: float = 0.2,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        split: str | None = None,
        n_folds: int | None = None,
        fold: int = 0,
        audit: str | None = None,
    ) -> None:
        super().__init__(
            val_size=val_size, test_size=test_size, seed=seed, batch_size=batch_size, num_workers=num_workers,
            split=split, n_folds=n_folds, fold=fold, audit=audit,
        )
        if channels not in (1, 3):
            raise ValueError(f"data.channels must be 1 or 3, got {channels}")
        size = [image_size, image_size] if isinstance(image_size, int) else list(image_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"data.image_size must be a positive side or [H, W], got {image_size}")
        self.root, self.size, self.channels = Path(root), (int(size[0]), int(size[1])), channels
        self.augment, self.group_by_prefix = augment, group_by_prefix
        self.save_hyperparameters()
        self.classes, self.samples = self._scan()  # folder errors surface here, before training

    def _scan(self) -> tuple[list[str], list[tuple[str, int]]]:
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data.root: image folder {str(self.root)!r} does not exist (working directory {Path.cwd()}); "
                "it must hold one sub-folder of images per class"
            )
        class_dirs = sorted(d for d in self.root.iterdir() if d.is_dir())
        if len(class_dirs) < 2:
            raise ValueError(f"data.root: {str(self.root)!r} needs one sub-folder per class (at least 2), found {[d.name for d in class_dirs]}")
        for d in class_dirs:
            if not any(f.suffix.lower() in IMG_EXTENSIONS for f in d.rglob("*") if f.is_file()):
                raise ValueError(
                    f"class folder {str(d)!r} has no image files ({', '.join(IMG_EXTENSIONS)}); add images or remove the folder"
                )
        ds = datasets.ImageFolder(str(self.root), loader=lambda p: p, is_valid_file=lambda p: p.lower().endswith(IMG_EXTENSIONS))
        return list(ds.classes), list(ds.samples)

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.channels, *self.size)

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([load_image(p, self.size, self.channels) for p, _ in self.samples])  # (N, C, H, W)
        return x, np.array([c for _, c in self.samples], dtype=np.int64)

    def load_groups(self) -> np.ndarray | None:
        if not self.group_by_prefix:
            return None
        return np.array([f"{c}/{Path(p).name.split('_')[0]}" for p, c in self.samples])

    def train_transform(self):
        if not self.augment:
            return None
        return v2.Compose([v2.RandomResizedCrop(self.size, scale=(0.8, 1.0), antialias=True), v2.RandomHorizontalFlip()])
