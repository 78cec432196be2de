"""Class-disjoint splits and P x K batches for metric learning (``zoo.tasks.metric``).

A metric-learning model is judged on classes it never saw (Koch et al., 2015, one-shot recognition;
Schroff et al., 2015, "FaceNet", verification of unseen people), so the split is over *classes*:

* ``train_classes`` given (the digits configs: ``[0, 1, 2, 3, 4]``): training takes every row of
  those classes; the rows of the other classes are split, stratified and seeded, into validation and
  test (``val_size : test_size``). Validation and test then share their classes but no row, and no
  class of either is ever trained on. N-way episodes over five test digits need that.
* ``train_classes`` null (a folder of faces, one folder per person): the classes themselves are split
  (scikit-learn's ``GroupShuffleSplit`` with the class as the group), so one person's photos never
  straddle splits and validation and test people are new to the model.

Training batches come from ``PKBatchSampler``: P classes, K rows of each (Hermans et al., 2017, "In
Defense of the Triplet Loss for Person Re-Identification"), so every batch holds positives and
negatives for every anchor, which batch-hard and semi-hard mining need. Validation and test loaders
yield ``(x, y)`` batches in row order; the task embeds the whole split and scores it at epoch end.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Sampler

from .base import TensorBatchDataset, passthrough
from .digits import DigitsDataModule
from .splits import make_split
from .vision import ImageFolderDataModule


class PKBatchSampler(Sampler[list[int]]):
    """Batches of ``P`` distinct classes with ``K`` rows each (row positions into ``labels``).

    PyTorch Metric Learning's ``MPerClassSampler`` does a similar job; it is not used because it draws
    from NumPy's global RNG (the zoo's splits and batches come from their own seed, identical on every
    call) and is one more dependency for ~20 lines. Each ``__iter__`` is one epoch drawn from
    ``default_rng([seed, epoch])``: the same batches for the same seed and epoch count.
    An epoch has ``len(labels) // (P * K)`` batches (at least one), so it draws about every row once.

    ``views`` > 1 repeats each batch's rows that many times, view-major (``(views * P * K,)``: row ``i``
    and row ``i + P * K`` are the same image); the training-only augmentation, drawn per sample, turns
    the copies into different views of one image (positives of the task's ``instance_weight`` term).
    """

    def __init__(self, labels: np.ndarray, classes_per_batch: int, samples_per_class: int, seed: int = 0,
                 views: int = 1) -> None:
        labels = np.asarray(labels)
        self.p, self.k, self.seed, self.epoch, self.views = classes_per_batch, samples_per_class, seed, 0, int(views)
        self.classes, counts = np.unique(labels, return_counts=True)
        check_pk(self.classes, counts, classes_per_batch, samples_per_class)
        self.rows = {c: np.flatnonzero(labels == c) for c in self.classes.tolist()}
        self.num_batches = max(1, len(labels) // (classes_per_batch * samples_per_class))

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for _ in range(self.num_batches):
            chosen = rng.choice(self.classes, size=self.p, replace=False)
            batch = np.concatenate([rng.choice(self.rows[c], size=self.k, replace=False) for c in chosen.tolist()])
            yield np.tile(batch, self.views).tolist()  # (V*P*K,): V copies of P blocks of K rows of one class


def check_pk(classes: np.ndarray, counts: np.ndarray, p: int, k: int) -> None:
    """One-line errors for P x K batches the training split cannot fill."""
    if p < 2 or k < 2:
        raise ValueError(
            f"data.classes_per_batch={p} and data.samples_per_class={k}: P x K batches need at least 2 classes "
            "(for negatives) and 2 rows per class (for positives); raise them"
        )
    if p > len(classes):
        raise ValueError(
            f"data.classes_per_batch={p} but the training split has {len(classes)} classes; "
            f"set data.classes_per_batch to at most {len(classes)}"
        )
    few = [(c, n) for c, n in zip(classes.tolist(), counts.tolist()) if n < k]
    if few:
        listed = ", ".join(f"class {c} has {n}" for c, n in few[:5])
        raise ValueError(
            f"{listed} training rows, fewer than data.samples_per_class={k} (a P x K batch draws K rows of a class); "
            f"lower data.samples_per_class to {min(n for _, n in few)} or add rows of that class"
        )


class ClassDisjointMixin:
    """The split and the training loader shared by the metric-learning DataModules (see the module
    docstring). Put it before the ``ArrayDataModule`` subclass in the bases."""

    train_classes: list[int] | None
    classes_per_batch: int
    samples_per_class: int

    def _init_metric(self, train_classes, classes_per_batch: int, samples_per_class: int, views: int = 1) -> None:
        if views < 1:
            raise ValueError(f"data.views must be >= 1 (views of each training image per batch), got {views}")
        if views > 1 and not getattr(self, "augment", False):
            raise ValueError(f"data.views={views} without data.augment: the views would be identical copies; "
                             "set data.augment: true or data.views: 1")
        self.views = int(views)
        if self.n_folds is not None:
            raise ValueError("data.n_folds: cross-validation is not supported by the class-disjoint metric-learning split; set it to null")
        self.train_classes = None if train_classes is None else [int(c) for c in train_classes]
        self.classes_per_batch, self.samples_per_class = int(classes_per_batch), int(samples_per_class)
        check_pk(np.arange(max(2, classes_per_batch)), np.full(max(2, classes_per_batch), samples_per_class),
                 self.classes_per_batch, self.samples_per_class)  # P, K >= 2, before any data is read

    @property
    def strategy(self) -> str:
        return "class_disjoint" if self.train_classes is not None else "grouped_by_class"

    def split(self, y: np.ndarray, groups=None, times=None) -> dict[str, np.ndarray]:
        y = np.asarray(y)
        present = np.unique(y)
        if self.train_classes is None:  # whole classes (people) go to one split each
            try:
                return make_split(len(y), strategy="grouped", groups=y, val_size=self.val_size,
                                  test_size=self.test_size, seed=self.seed)
            except ValueError as e:
                raise ValueError(f"{type(self).__name__}: {e}") from None
        missing = sorted(set(self.train_classes) - set(present.tolist()))
        if missing:
            raise ValueError(f"data.train_classes {missing} are not in the data (classes {present.tolist()}); drop them")
        held = np.flatnonzero(~np.isin(y, self.train_classes))
        if len(np.unique(y[held])) < 2:
            raise ValueError(
                f"data.train_classes={self.train_classes} leaves {len(np.unique(y[held]))} class for validation and test; "
                "leave at least 2 classes out of training"
            )
        train = np.flatnonzero(np.isin(y, self.train_classes))
        # Held-out rows split val:test in the ratio val_size:test_size, stratified, seeded.
        frac = self.test_size / (self.val_size + self.test_size)
        val, test = train_test_split(held, test_size=frac, stratify=y[held], random_state=self.seed)
        return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}

    def split_labels(self, stage: str) -> np.ndarray:
        """Labels of the rows of split ``stage`` (``train``/``val``/``test``), in loader order."""
        return self.raw_y[self.split_indices[stage]]

    def train_dataloader(self) -> DataLoader:
        if self.split_indices is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for the train loader")
        sampler = PKBatchSampler(self.split_labels("train"), self.classes_per_batch, self.samples_per_class, seed=self.seed,
                                 views=self.views)
        dataset = self.datasets["train"]
        device = self._resident_device(dataset)  # as ArrayDataModule._loader: indices only cross to the GPU
        if device is not None:
            cached = self._on_device.get("train")
            if cached is None or cached[0] is not dataset or cached[1].x.device != device:
                self._on_device["train"] = (dataset, dataset.to(device))
            dataset = self._on_device["train"][1]
        batched = isinstance(dataset, TensorBatchDataset)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, collate_fn=passthrough if batched else None)


class MetricDigitsDataModule(ClassDisjointMixin, DigitsDataModule):
    """scikit-learn's digits for metric learning: train on ``train_classes``, validate and test on the
    other digits (disjoint rows), training batches of P digits x K images.

    Args:
        train_classes: digits to train on (``[0, 1, 2, 3, 4]``); null splits whole digits instead.
        classes_per_batch, samples_per_class: P and K of the training batches.
        views: copies of each training row per batch, each augmented on its own (needs ``augment``):
            the positives of the task's ``instance_weight`` term.
        Other arguments: see ``DigitsDataModule`` (``batch_size`` is the evaluation batch size).
    """

    def __init__(self, train_classes: list[int] | None = None, classes_per_batch: int = 5,
                 samples_per_class: int = 8, views: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_metric(train_classes, classes_per_batch, samples_per_class, views)


class MetricImageFolderDataModule(ClassDisjointMixin, ImageFolderDataModule):
    """A user's folder of identities, ``root/<person>/<photos>``: training, validation and test get
    different people (``train_classes`` null) and batches of P people x K photos.

    Args:
        train_classes: class indices (sorted folder order) to train on; null (default) splits whole
            folders, seeded, into train/val/test by ``val_size``/``test_size`` (fractions of the rows).
        classes_per_batch, samples_per_class: P and K of the training batches.
        views: copies of each training photo per batch, each augmented on its own (needs ``augment``).
        Other arguments: see ``ImageFolderDataModule``.
    """

    def __init__(self, root: str, train_classes: list[int] | None = None, classes_per_batch: int = 4,
                 samples_per_class: int = 4, views: int = 1, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self._init_metric(train_classes, classes_per_batch, samples_per_class, views)


def episode_indices(y: np.ndarray, n_way: int, k_shot: int, n_episodes: int, seed: int, n_query: int = 1):
    """Seeded N-way K-shot episodes over the rows of ``y`` (the same arrays on every call).

    Returns ``support`` ``(E, N, K)`` and ``query`` ``(E, N, Q)`` row positions, where way ``j`` of
    episode ``e`` is one class; a query's answer is its way index. Raises a one-line error when the
    split has fewer than ``n_way`` classes with ``k_shot + n_query`` rows.
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    usable = classes[counts >= k_shot + n_query]
    if len(usable) < n_way:
        raise ValueError(
            f"model.n_way={n_way}-way {k_shot}-shot episodes need {n_way} classes with at least {k_shot + n_query} rows, "
            f"but the split has {len(usable)} such classes (of {len(classes)}); lower model.n_way to {max(len(usable), 1)} "
            "or hold out more classes"
        )
    rows = {c: np.flatnonzero(y == c) for c in usable.tolist()}
    rng = np.random.default_rng(seed)
    support = np.empty((n_episodes, n_way, k_shot), dtype=np.int64)
    query = np.empty((n_episodes, n_way, n_query), dtype=np.int64)
    for e in range(n_episodes):
        for j, c in enumerate(rng.choice(usable, size=n_way, replace=False).tolist()):
            drawn = rng.choice(rows[c], size=k_shot + n_query, replace=False)
            support[e, j], query[e, j] = drawn[:k_shot], drawn[k_shot:]
    return support, query


def episode_accuracy(emb: torch.Tensor, support: np.ndarray, query: np.ndarray) -> torch.Tensor:
    """Accuracy of nearest-prototype classification (Snell et al., 2017; with K=1 the nearest
    neighbour, Koch et al., 2015) over episodes from ``episode_indices``; ``emb`` ``(n, D)`` are
    embeddings (or raw pixels, flattened) of the rows."""
    s = torch.as_tensor(support, device=emb.device)
    q = torch.as_tensor(query, device=emb.device)
    protos = emb[s].mean(2)  # (E, N, D)
    queries = emb[q].flatten(1, 2)  # (E, N*Q, D)
    pred = torch.cdist(queries, protos).argmin(-1)  # (E, N*Q) way index
    truth = torch.arange(q.shape[1], device=emb.device).repeat_interleave(q.shape[2])  # (N*Q,)
    return (pred == truth).float().mean()
