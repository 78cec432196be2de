"""Small data sets the DataModule tests write themselves (no downloads): a CSV table, a fake MNIST
cache in torchvision's raw idx format, and a folder of tiny PNGs."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import numpy as np


def write_csv(path: Path, n: int = 120, seed: int = 0, regression: bool = False) -> Path:
    """Columns: age, income (numeric), color, city (categorical), person (group id), day (time), label."""
    if path.exists():  # written once per test folder; the factories call this for every seed
        return path
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "income", "color", "city", "person", "day", "label"])
        for i in range(n):
            age, income = rng.normal(40, 12), rng.lognormal(10, 0.5)
            color = rng.choice(["red", "green", "blue"])
            label = round(0.05 * age + rng.normal(), 4) if regression else int(rng.integers(3))
            w.writerow([f"{age:.3f}", f"{income:.2f}", color, rng.choice(["paris", "oslo"]), f"p{i // 4}", i, label])
    return path


def _idx(path: Path, arr: np.ndarray) -> None:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    with open(path, "wb") as f:  # idx format: 0, 0, type 0x08 (uint8), ndim; big-endian dims; data
        f.write(bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes())


def write_fake_mnist(root: Path, n_train: int = 120, n_test: int = 40, name: str = "MNIST", seed: int = 0) -> Path:
    """A tiny cache in torchvision's on-disk layout (``root/MNIST/raw/*-ubyte``): no download."""
    rng = np.random.default_rng(seed)
    raw = root / name / "raw"
    if raw.exists():
        return root
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, (n, 28, 28)) + (y[:, None, None] * 19)  # class-dependent brightness
        _idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    return root


def write_image_folder(root: Path, per_class: int = 12, classes=("cat", "dog", "fox"), seed: int = 0) -> Path:
    """``root/<class>/<person>_<k>.png`` tiny RGB PNGs of different sizes, class-coloured."""
    from PIL import Image

    if root.exists():
        return root
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            h, w = int(rng.integers(6, 14)), int(rng.integers(6, 14))
            a = rng.integers(0, 80, (h, w, 3)).astype(np.uint8)
            a[..., c] += 150
            Image.fromarray(a).save(root / name / f"p{k // 3}_{k}.png")
    return root
