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

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets
from torchvision.transforms import v2

from .base import ArrayDataModule, TensorBatchDataset, _sha256, passthrough

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
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:  # SyntaxError: some of PIL's decoders
        raise ValueError(f"cannot read image {str(path)!r} ({type(e).__name__}: {e}); delete or replace the file") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)


class ImageFileDataset(Dataset):
    """Images read from disk on demand: decoded and resized in the DataLoader's worker processes,
    so a folder larger than memory trains with ``num_workers`` processes doing the decoding."""

    def __init__(self, files: list[str], y: np.ndarray, size: tuple[int, int], channels: int, transform=None) -> None:
        self.files, self.y, self.size, self.channels, self.transform = files, torch.from_numpy(np.asarray(y)), size, channels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        x = torch.from_numpy(load_image(self.files[i], self.size, self.channels))  # (C, H, W) uint8
        return (self.transform(x) if self.transform is not None else x), self.y[i]


class _DecodeCheck(Dataset):
    """``(index, why)`` per file: ``why`` is ``""`` when ``load_image`` decodes it, else the reason.

    The streamed folder's check before training. It decodes every file in full, as the in-memory path
    does, rather than PIL's header-level ``verify()``: ``verify`` passes a truncated JPEG (its JPEG
    plugin checks nothing), which then fails in a worker in the middle of an epoch. The same
    criterion in both paths also keeps the same files, so streaming and in-memory give the same split.
    Run through a DataLoader, so ``num_workers`` processes share the decoding."""

    def __init__(self, files: list[str], size: tuple[int, int], channels: int) -> None:
        self.files, self.size, self.channels = files, size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, str]:
        try:
            load_image(self.files[i], self.size, self.channels)
        except ValueError as e:  # load_image's one-line "cannot read image ... (why); ..." error
            return i, str(e).split(" (", 1)[-1].rsplit(");", 1)[0]
        return i, ""


BAD_FILES = ("error", "skip")


class ImageFolderDataModule(ArrayDataModule):
    """A user's photos: ``root/<class name>/<image files>``, one folder per class (torchvision's
    ``ImageFolder`` layout and class order: sorted folder names).

    Every image is resized to ``image_size``; that resized uint8 image is the raw sample
    (``load_image`` makes one from a new file). Small folders are read once in ``setup`` and kept in
    memory; folders larger than ``memory_limit_mb`` (or ``in_memory: false``) stream from disk, each
    image decoded and resized in the DataLoader's workers (``num_workers``). Both give the same split
    (it depends on the labels, groups and seed only) and the same samples. The split is seeded and
    stratified by default; ``split='grouped'`` with ``group_by_prefix`` keeps photos whose file names
    share a prefix up to the first ``_`` (e.g. one person or one session) in one split.

    Unreadable or corrupt files are found in ``setup``, before training: ``bad_files: error`` (default)
    stops with their names, ``skip`` leaves them out before the split with a warning naming every one
    (also in ``skipped_files``); a class folder left with no readable image is an error either way.
    Both paths decode every file once to check it (a streamed folder in the DataLoader's workers), so
    a truncated file never surfaces in the middle of an epoch.

    ``zoo predict`` on an image folder predicts every image under ``root`` (class folders or a flat
    folder of photos), in sorted order (``predict_files``); a flat folder needs ``classes`` (the
    CLI fills them from the checkpoint).

    Args:
        root: the folder of class folders.
        image_size: side (or ``[H, W]``) every image is resized to.
        channels: 3 (RGB) or 1 (grey).
        augment: random resized crops and horizontal flips of training images only.
        group_by_prefix: groups for grouped splits from the file-name prefix before the first ``_``.
        classes: the class names in label order (default: the sorted class folders); other folders are
            an error when training.
        bad_files: ``error`` or ``skip`` (see above).
        in_memory: ``None`` (auto by ``memory_limit_mb``), ``True`` or ``False`` (stream from disk).
        memory_limit_mb: the size of the resized uint8 images above which ``in_memory: null`` streams.
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
        classes: list[str] | None = None,
        bad_files: str = "error",
        in_memory: bool | None = None,
        memory_limit_mb: float = 1024,
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
        if bad_files not in BAD_FILES:
            raise ValueError(f"data.bad_files must be one of {list(BAD_FILES)}, got {bad_files!r}")
        self.root, self.size, self.channels = Path(root), (int(size[0]), int(size[1])), channels
        self.augment, self.group_by_prefix = augment, group_by_prefix
        self.bad_files, self.in_memory_opt, self.memory_limit_mb = bad_files, in_memory, memory_limit_mb
        self.save_hyperparameters()
        self.skipped_files: list[str] = []
        self.predict_files: list[str] = []
        self._predict_only = False
        self.classes, self.samples = self._scan(list(classes) if classes else None)  # folder errors surface here

    def _scan(self, classes: list[str] | None) -> tuple[list[str], list[tuple[str, int]]]:
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data.root: image folder {str(self.root)!r} does not exist (working directory {Path.cwd()}); "
                "it must hold one sub-folder of images per class"
            )
        class_dirs = sorted(d for d in self.root.iterdir() if d.is_dir())
        flat = [f for f in sorted(self.root.iterdir()) if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS]
        if not class_dirs and flat and classes:  # a folder of photos to predict on; labels unknown (-1)
            self.flat = True
            return classes, [(str(f), -1) for f in flat]
        self.flat = False
        if len(class_dirs) < 2:
            raise ValueError(f"data.root: {str(self.root)!r} needs one sub-folder per class (at least 2), found {[d.name for d in class_dirs]}")
        for d in class_dirs:
            if not any(f.suffix.lower() in IMG_EXTENSIONS for f in d.rglob("*") if f.is_file()):
                raise ValueError(
                    f"class folder {str(d)!r} has no image files ({', '.join(IMG_EXTENSIONS)}); add images or remove the folder"
                )
        ds = datasets.ImageFolder(str(self.root), loader=lambda p: p, is_valid_file=lambda p: p.lower().endswith(IMG_EXTENSIONS))
        if classes is None:
            return list(ds.classes), list(ds.samples)
        index = {c: i for i, c in enumerate(classes)}
        return classes, [(p, index.get(ds.classes[c], -1)) for p, c in ds.samples]

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.channels, *self.size)

    @property
    def streaming(self) -> bool:
        """Whether the images stream from disk (``in_memory`` false, or auto and over ``memory_limit_mb``)."""
        if self.in_memory_opt is not None:
            return not self.in_memory_opt
        return len(self.samples) * int(np.prod(self.input_shape)) > self.memory_limit_mb * 2**20

    @property
    def preprocessing(self) -> dict[str, Any]:
        # Predicting on a folder fits nothing: the model keeps the statistics of its checkpoint.
        return {} if self._predict_only else super().preprocessing

    def _check_files(self) -> None:
        """Find unreadable files before training; fail or skip them (``bad_files``), naming each."""
        if self.flat:
            raise ValueError(
                f"data.root: {str(self.root)!r} holds photos but no class folders; training needs root/<class>/<images> "
                "(a flat folder is for zoo predict)"
            )
        unknown = sorted({Path(p).parent.name for p, c in self.samples if c < 0})
        if unknown:
            raise ValueError(f"data.root: class folders {unknown} are not in data.classes {self.classes}; add them to classes or move them out")
        bad = []
        if self.streaming:
            files = [p for p, _ in self.samples]
            loader = DataLoader(_DecodeCheck(files, self.size, self.channels), batch_size=64, num_workers=self.num_workers, collate_fn=list)
            bad = [(files[i], why) for batch in loader for i, why in batch if why]  # (index, reason) per file
        else:  # in memory: decode every image once, here, and keep it for load_arrays
            self._loaded = {}
            for p, _ in self.samples:
                try:
                    self._loaded[p] = load_image(p, self.size, self.channels)
                except ValueError as e:
                    bad.append((p, str(e).split(" (", 1)[-1].rsplit(");", 1)[0]))
        if not bad:
            return
        if self.bad_files == "error":
            p, why = bad[0]
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise ValueError(
                f"cannot read image {p!r} ({why}){more}; delete or replace the file, or set data.init_args.bad_files: skip"
            )
        names = {p for p, _ in bad}
        kept = [(p, c) for p, c in self.samples if p not in names]
        empty = sorted(set(self.classes) - {self.classes[c] for _, c in kept})
        if empty:
            raise ValueError(f"class folders {empty} have no readable image (all {len(bad)} unreadable files: {sorted(names)[:5]}); replace the files")
        self.samples, self.skipped_files = kept, sorted(names)
        warnings.warn(f"ImageFolderDataModule: skipped {len(bad)} unreadable files (data.bad_files=skip): {self.skipped_files}", stacklevel=2)

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        loaded = getattr(self, "_loaded", None) or {}
        x = np.stack([loaded.get(p) if p in loaded else load_image(p, self.size, self.channels) for p, _ in self.samples])  # (N, C, H, W)
        self._loaded = None  # the stacked copy is the one kept
        return x, np.array([c for _, c in self.samples], dtype=np.int64)

    def load_groups(self) -> np.ndarray | None:
        if not self.group_by_prefix:
            return None
        return np.array([f"{c}/{Path(p).name.split('_')[0]}" for p, c in self.samples])

    def train_transform(self):
        if not self.augment:
            return None
        return v2.Compose([v2.RandomResizedCrop(self.size, scale=(0.8, 1.0), antialias=True), v2.RandomHorizontalFlip()])

    # ------------------------------------------------------------------------------- lightning

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.split_indices is None:
            # Predict on every image under root, in sorted order: no split, no fitting, no labels needed.
            self._predict_only = True
            self.predict_files = sorted(p for p, _ in self.samples)
            return
        if self.split_indices is not None:
            return
        if self.streaming and self.audit_mode is not None:
            raise ValueError("data.audit needs the images in memory; set data.init_args.in_memory: true (or audit: null)")
        self._check_files()
        if not self.streaming:
            return super().setup(stage)
        self._setup_streaming()

    def _setup_streaming(self) -> None:
        """``ArrayDataModule.setup`` for files on disk: the same split (labels, groups, seed), the
        per-channel statistics fitted on the training images only, read in batches by the workers."""
        from sklearn.preprocessing import StandardScaler

        files = [p for p, _ in self.samples]
        y = np.array([c for _, c in self.samples], dtype=np.int64)
        self.split_indices = self.split(y, self.load_groups(), None)
        self.fingerprint = _sha256(np.array(files), y)  # the file list and labels (contents are not read twice)
        train = self.split_indices["train"]
        sc = StandardScaler()
        loader = DataLoader(ImageFileDataset([files[i] for i in train], y[train], self.size, self.channels),
                            batch_size=max(self.batch_size, 64), num_workers=self.num_workers)
        for xb, _ in loader:  # (B, C, H, W) uint8
            sc.partial_fit(xb.numpy().transpose(0, 2, 3, 1).reshape(-1, self.channels).astype(np.float64))
        self.scaler = sc
        self.datasets = {
            k: ImageFileDataset([files[j] for j in i], y[i], self.size, self.channels, self.train_transform() if k == "train" else None)
            for k, i in self.split_indices.items()
        }
        if self._restored is not None:
            self._check_restored()

    def predict_dataloader(self) -> DataLoader:
        if not self._predict_only:
            return super().predict_dataloader()
        files = self.predict_files
        if self.streaming:
            ds: Dataset = ImageFileDataset(files, np.zeros(len(files), dtype=np.int64), self.size, self.channels)
            collate = None
        else:
            x = np.stack([load_image(p, self.size, self.channels) for p in files])  # (N, C, H, W)
            ds, collate = TensorBatchDataset(torch.from_numpy(x), torch.zeros(len(files), dtype=torch.int64)), passthrough
        from zoo.tasks.distributed import eval_sampler

        return DataLoader(ds, batch_size=self.batch_size, shuffle=False, sampler=eval_sampler(ds),
                          num_workers=self.num_workers, collate_fn=collate)
