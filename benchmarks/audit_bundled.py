"""Contamination audit on scikit-learn's bundled sets: what it reports and how far the closest
cross-split pair lies from the near-duplicate threshold (the margin against false reports).

    OMP_NUM_THREADS=1 uv run python benchmarks/audit_bundled.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn import datasets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules import DigitsDataModule, InMemoryDataModule  # noqa: E402
from datamodules.audit import find_near  # noqa: E402


def main() -> None:
    print("| data | seed | exact dups across splits | near dups (< 0.01) | leaky features | closest cross-split rms distance |")
    print("|---|---|---|---|---|---|")
    for name in ("digits", "iris", "wine", "breast_cancer", "diabetes"):
        for seed in range(3):
            if name == "digits":
                dm = DigitsDataModule(seed=seed)
            else:
                d = getattr(datasets, f"load_{name}")()
                task = "regression" if name == "diabetes" else "classification"
                dm = InMemoryDataModule(d.data, d.target, task=task, seed=seed)
            dm.setup()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rep = dm.audit("warn")
            closest = min(d for *_, d in find_near(dm.raw_x, dm.split_indices, np.inf, []))
            print(f"| {name} | {seed} | {len(rep.exact)} | {len(rep.near)} | {len(rep.leaky_features)} | {closest:.4f} |")


if __name__ == "__main__":
    main()
