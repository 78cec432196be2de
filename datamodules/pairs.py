"""Pairs and triplets for metric learning (contrastive loss: Hadsell et al., 2006; triplet loss:
Schroff et al., 2015, "FaceNet"), built from any labelled arrays.

The split comes first and is over *classes* or *identities*, never over rows: with
``disjoint="class"`` the classes of the validation and test parts never occur in training (the
open-set protocol of face verification); with ``disjoint="identity"`` the rows are grouped by a
separate identity array (one person, one recording) and an identity never straddles two splits.
Pairs/triplets are then drawn inside each split only, from a seed, so no pair mixes splits and
every call and rank draws the same ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import InMemoryDataModule


class PairDataset(Dataset):
    """``kind='pairs'``: ``(x_a, x_b, same)`` with ``same`` 1.0 for one class, 0.0 otherwise;
    ``kind='triplets'``: ``(anchor, positive, negative)``. Raw samples (the model standardises)."""

    def __init__(self, x: torch.Tensor, index: np.ndarray, same: np.ndarray | None) -> None:
        self.x, self.index, self.same = x, torch.from_numpy(index), None if same is None else torch.from_numpy(same)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        rows = self.index[i]
        if self.same is None:
            return self.x[rows[0]], self.x[rows[1]], self.x[rows[2]]
        return self.x[rows[0]], self.x[rows[1]], self.same[i]


def sample_pairs(y: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs of row positions in ``y``, half same-class (where a class has two rows), half not."""
    by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    multi = [c for c, r in by_class.items() if len(r) >= 2]
    out, same = np.empty((n, 2), dtype=np.int64), np.empty(n, dtype=np.float32)
    for k in range(n):
        if (k % 2 == 0 and multi) or len(by_class) < 2:
            c = multi[rng.integers(len(multi))]
            out[k] = rng.choice(by_class[c], size=2, replace=False)
            same[k] = 1.0
        else:
            a = rng.integers(len(y))
            others = np.flatnonzero(y != y[a])
            out[k] = (a, others[rng.integers(len(others))])
            same[k] = 0.0
    return out, same


def sample_triplets(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` (anchor, positive, negative) row positions in ``y``."""
    by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    multi = [c for c, r in by_class.items() if len(r) >= 2]
    if not multi or len(by_class) < 2:
        raise ValueError("triplets need a class with two rows and a second class in every split")
    out = np.empty((n, 3), dtype=np.int64)
    for k in range(n):
        c = multi[rng.integers(len(multi))]
        a, p = rng.choice(by_class[c], size=2, replace=False)
        neg = np.flatnonzero(y != c)
        out[k] = (a, p, neg[rng.integers(len(neg))])
    return out


class PairDataModule(InMemoryDataModule):
    """Pairs or triplets from labelled arrays, with class-disjoint or identity-grouped splits.

    Args:
        x: raw samples ``(N, *input_shape)``; y: class labels ``(N,)`` (any integers).
        identities: ``(N,)`` identity per row for ``disjoint='identity'``.
        disjoint: ``"class"`` (test classes never seen in training) or ``"identity"``.
        kind: ``"pairs"`` or ``"triplets"``.
        per_sample: pairs/triplets drawn per row of a split.
        scale_axis: see ``ArrayDataModule`` (``-1`` per feature, ``0`` per image channel).
        Other arguments: see ``ArrayDataModule`` (the split strategy is always grouped).

    ``num_classes`` is 0: the model returns embeddings (``num_classes=0`` in the zoo's models).
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        identities: np.ndarray | None = None,
        disjoint: str = "class",
        kind: str = "pairs",
        per_sample: int = 2,
        scale_axis: int | None = -1,
        **kwargs: Any,
    ) -> None:
        if disjoint not in ("class", "identity"):
            raise ValueError(f"disjoint must be 'class' or 'identity', got {disjoint!r}")
        if kind not in ("pairs", "triplets"):
            raise ValueError(f"kind must be 'pairs' or 'triplets', got {kind!r}")
        if disjoint == "identity" and identities is None:
            raise ValueError("disjoint='identity' needs an identities array (one id per row)")
        if per_sample < 1:
            raise ValueError(f"per_sample must be >= 1, got {per_sample}")
        kwargs.setdefault("split", "grouped")
        if kwargs["split"] != "grouped":
            raise ValueError("PairDataModule always splits by class or identity (split='grouped')")
        groups = np.asarray(y) if disjoint == "class" else np.asarray(identities)
        super().__init__(x, y, task="classification", groups=groups, scale_axis=scale_axis, **kwargs)
        self.num_classes = 0  # embeddings
        self.disjoint, self.kind, self.per_sample = disjoint, kind, per_sample

    def _validate(self, x: np.ndarray, y: np.ndarray) -> None:
        if len(x) != len(y):
            raise ValueError(f"PairDataModule: {len(x)} samples but {len(y)} labels")
        if not np.isfinite(x.reshape(len(x), -1)).all():
            rows = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
            raise ValueError(f"PairDataModule: non-finite values in rows {rows[:10].tolist()}")

    def setup(self, stage: str | None = None) -> None:
        fresh = self.split_indices is None
        super().setup(stage)
        if fresh:
            self._make_pairs()

    def _make_pairs(self) -> None:
        x = torch.from_numpy(self.raw_x)
        for k, (name, rows) in enumerate(self.split_indices.items()):
            rng = np.random.default_rng([self.seed, k])  # seeded per split, independent of the global RNG
            y = self.raw_y[rows]
            n = len(rows) * self.per_sample
            if self.kind == "pairs":
                pos, same = sample_pairs(y, n, rng)
                self.datasets[name] = PairDataset(x, rows[pos], same)
            else:
                self.datasets[name] = PairDataset(x, rows[sample_triplets(y, n, rng)], None)

    def drop_training_rows(self, rows: np.ndarray) -> None:
        super().drop_training_rows(rows)
        self._make_pairs()
