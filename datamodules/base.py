"""Leak-proof in-memory DataModule machinery.

The rules every zoo DataModule follows (and tests prove):

1. Split first, inside ``setup()``, from a seed: the same indices on every rank and every call
   (no randomness from the global RNG, nothing computed in ``prepare_data``).
2. Fit every statistic on the training rows only (scikit-learn's ``StandardScaler``, fitted the
   way a ``Pipeline`` fits it) and never look at validation or test rows while fitting.
3. Keep the fitted state in ``state_dict()`` (saved in every Lightning checkpoint) together with a
   fingerprint of the data and a hash of the split; on resume the saved split must match, or a
   clear error says what changed before anything trains.
4. Yield raw samples; the model owns the fitted input transform (``preprocessing``), so a loaded
   checkpoint predicts on raw input with no DataModule and training and serving cannot disagree.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader, Dataset, RandomSampler

from .splits import STRATEGIES, make_split

NONFINITE = ("error", "drop")  # what setup does with rows holding NaN or inf (data.nonfinite)
SCALINGS = ("standard", "unit")  # the fitted input transform (data.scaling)


def _sha256(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


class TensorBatchDataset(Dataset):
    """Rows of stored tensors ``x`` (N, ...) and ``y`` (N, ...), served a whole batch at a time.

    Why not ``TensorDataset`` + the default collate: that builds one ``(x[i], y[i])`` tuple per row
    and ``torch.stack``s them again, which for small networks costs as much as the step. Here the
    DataLoader's batch of indices goes to ``__getitems__`` (PyTorch's batched-fetch hook, used with
    auto-batching) and comes back as two indexed tensors; ``collate_fn=passthrough`` leaves them
    as they are. It is still a plain map-style dataset with a ``BatchSampler``, so Lightning can swap
    in a ``DistributedSampler`` under DDP, and ``__getitem__`` serves single rows as before.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``, as ``TensorDataset.tensors``."""
        return self.x, self.y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.as_tensor(indices, device=self.x.device)  # (B,)
        return self.x[i], self.y[i]  # (B, ...), (B, ...)

    def to(self, device: torch.device) -> "TensorBatchDataset":
        return TensorBatchDataset(self.x.to(device), self.y.to(device))


def passthrough(batch):
    """``collate_fn`` for ``TensorBatchDataset``: the batch is already two tensors (module-level so
    worker processes can pickle it)."""
    return batch


def _nonfinite_rows(a: np.ndarray) -> np.ndarray:
    """Rows of ``a`` holding NaN or inf (integer arrays, e.g. uint8 images, hold none)."""
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating)):
        try:  # object arrays of Python numbers; anything else (ints, strings) holds no NaN
            a = a.astype(np.float64) if a.dtype == object else None
        except (TypeError, ValueError):
            a = None
        if a is None:
            return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1))


class TransformedDataset(Dataset):
    """Raw samples with a per-sample transform (augmentation of the training split)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.transform(self.x[i]), self.y[i]


class SplitMismatchError(RuntimeError):
    """The data or the split differ from the ones a checkpoint was trained on."""


class ResumableRandomSampler(RandomSampler):
    """torch's ``RandomSampler`` (the same draw from the global RNG, so the same order) that can
    start an epoch part-way.

    Why: when a checkpoint written mid-epoch (a preemption, ``every_n_train_steps``) resumes,
    Lightning counts the batches already done but restarts a plain DataLoader's epoch from the top
    with a new shuffle, so in that epoch some rows are trained twice and others not at all.
    ``ArrayDataModule`` saves the epoch's seed and the samples done (``state_dict``) and calls
    ``resume_at`` on the resumed run's sampler, which then serves exactly the rows the epoch had
    left. Under DDP Lightning swaps in its ``DistributedSampler`` and this does not apply.
    """

    def __init__(self, data_source) -> None:
        super().__init__(data_source)
        self.seed: int | None = None  # the current epoch's permutation seed
        self._resume: tuple[int, int, torch.Tensor | None] | None = None

    def resume_at(self, seed: int, skip: int, rng: torch.Tensor | None = None) -> None:
        """The next epoch is the one with permutation ``seed``, without its first ``skip`` samples;
        ``rng``: the global torch RNG state to continue from once its iterator exists."""
        self._resume = (int(seed), int(skip), rng)

    def __iter__(self):
        if self._resume is not None:  # the resumed epoch: no new draw from the global RNG
            (seed, skip, rng), self._resume = self._resume, None
            if rng is not None:
                # Creating the DataLoader's iterator drew its worker base seed from the global RNG,
                # a draw the uninterrupted run made at the epoch's start, before the checkpoint: undo
                # it, so dropout and the like draw what they would have (bit-identical without
                # augmentation and with num_workers 0; tests/test_preemption.py).
                torch.set_rng_state(rng)
        else:  # RandomSampler.__iter__ (torch 2.x) without a generator, without replacement
            seed, skip = int(torch.empty((), dtype=torch.int64).random_().item()), 0
        self.seed = seed
        generator = torch.Generator()
        generator.manual_seed(seed)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()[skip:]


class ArrayDataModule(pl.LightningDataModule):
    """Data held in memory as raw arrays ``X`` (N, *input_shape) and targets ``y`` (N,) or (N, K).

    Subclasses implement ``load_arrays`` and set the class attributes below; they may also provide
    ``load_groups`` (a group per row for grouped splits), ``load_times`` (a time per row for time
    splits) and ``official_test_index`` (rows of an official test set, which then stays the test
    set). The split is seeded; by default stratified on ``y`` for classification and random for
    regression; ``val_size`` and ``test_size`` are fractions of all rows.

    Class attributes:
        task_type: ``"classification"`` (integer labels in ``[0, num_classes)``, stratified split)
            or ``"regression"`` (float targets, random split).
        scale_axis: sample axis of the fitted standardisation: ``0`` per channel (images),
            ``-1`` per feature (tables, sequences), ``None`` for no standardisation.

    Args:
        val_size: fraction of all rows for validation.
        test_size: fraction of all rows for test (never used for fitting anything).
        seed: split seed; the split depends on it and the labels only.
        batch_size: training batch size (evaluation uses the same).
        num_workers: DataLoader worker processes.
        split: ``None`` (stratified for classification, random for regression), ``random``,
            ``stratified``, ``grouped``, ``stratified_grouped`` or ``time`` (see ``datamodules.splits``).
        n_folds, fold: k-fold cross-validation: the test part is held out first, then fold ``fold``
            of ``n_folds`` of the remaining rows is the validation part (``val_size`` is ignored).
        gap: time split only: time units left out between train and validation and between
            validation and test, so ``max(train time) + gap <= min(val time)``.
        audit: ``None``, or run the contamination audit (``datamodules.audit``) in ``setup``:
            ``"warn"``, ``"fail"`` or ``"drop"`` (duplicates of val/test rows leave training).
        device_resident: keep the splits on the accelerator and index batches there (no host-to-
            device copy per batch): ``None`` (auto: on a GPU, with ``num_workers=0``, up to 1 GiB
            per split), ``True`` or ``False``.
        nonfinite: rows whose inputs or targets hold NaN or inf: ``"error"`` (default: ``setup``
            refuses the data, naming the rows) or ``"drop"`` (those rows are left out before the
            split, with a warning giving their count; ``dropped_nonfinite`` lists them).
        scaling: the fitted input transform: ``"standard"`` (mean 0, std 1 along ``scale_axis``) or
            ``"unit"``: (x - min) / (max - min) with min and max of the training rows, so training
            pixels lie in [0, 1] as Bernoulli models (RBM, VAE) need.
    """

    num_classes: int
    input_shape: tuple[int, ...]
    task_type: str = "classification"
    scale_axis: int | None = 0
    raw_dtype: Any = np.float32  # dtype raw samples are held in (vision keeps uint8 to save memory)

    def __init__(
        self,
        val_size: float = 0.15,
        test_size: float = 0.2,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
        split: str | None = None,
        n_folds: int | None = None,
        fold: int = 0,
        gap: float = 0.0,
        audit: str | None = None,
        device_resident: bool | None = None,
        nonfinite: str = "error",
        scaling: str = "standard",
    ) -> None:
        super().__init__()
        if scaling not in SCALINGS:
            raise ValueError(f"data.scaling must be one of {list(SCALINGS)}, got {scaling!r}")
        self.scaling = scaling
        if not (0 < val_size < 1 and 0 < test_size < 1 and val_size + test_size < 1):
            raise ValueError(
                f"data.val_size ({val_size}) and data.test_size ({test_size}) must be fractions in (0, 1) "
                "whose sum is below 1, so that rows are left for training"
            )
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if split is not None and split not in STRATEGIES:
            raise ValueError(f"data.split: unknown split strategy {split!r}; choose one of {list(STRATEGIES)} or null")
        if n_folds is not None and (n_folds < 2 or not 0 <= fold < n_folds):
            raise ValueError(f"data.n_folds must be >= 2 and data.fold in [0, n_folds), got n_folds={n_folds}, fold={fold}")
        if gap < 0:
            raise ValueError(f"data.gap must be >= 0, got {gap}")
        self.val_size, self.test_size, self.seed = val_size, test_size, seed
        self.split_strategy, self.n_folds, self.fold, self.gap = split, n_folds, fold, gap
        if audit is not None and audit not in ("warn", "fail", "drop"):
            raise ValueError(f"data.audit must be 'warn', 'fail', 'drop' or null, got {audit!r}")
        self.audit_mode = audit
        if nonfinite not in NONFINITE:
            raise ValueError(f"data.nonfinite must be one of {list(NONFINITE)}, got {nonfinite!r}")
        self.nonfinite = nonfinite
        self.dropped_nonfinite: np.ndarray = np.zeros(0, dtype=np.int64)
        self.audit_report = None
        self.batch_size, self.num_workers = batch_size, num_workers
        self.device_resident = device_resident
        self._on_device: dict[str, tuple[Dataset, TensorBatchDataset]] = {}
        self.split_indices: dict[str, np.ndarray] | None = None
        self.fingerprint: str | None = None
        self.scaler: StandardScaler | None = None
        self._restored: dict[str, Any] | None = None
        self._train_sampler: ResumableRandomSampler | None = None

    # --------------------------------------------------------------------------- to implement

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return raw ``X`` of shape ``(N, *input_shape)`` and integer labels ``y`` of shape ``(N,)``."""
        raise NotImplementedError

    def load_groups(self) -> np.ndarray | None:
        """A group id per row (person, patient, session) for grouped splits, or ``None``."""
        return None

    def load_times(self) -> np.ndarray | None:
        """A time per row (numbers, e.g. seconds or days) for time-ordered splits, or ``None``."""
        return None

    def official_test_index(self) -> np.ndarray | None:
        """Rows of an official test set (they stay the test set), or ``None``."""
        return None

    # -------------------------------------------------------------------------------- helpers

    @property
    def resize(self) -> list[int] | None:
        return None

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Plain-dict spec of the input transform; ``mean``/``std`` are ``None`` until ``setup``."""
        fitted = self.scaler is not None and getattr(self.scaler, "mean_", None) is not None
        unit = {"scaling": "unit"} if getattr(self, "scaling", "standard") == "unit" else {}
        return {
            **unit,
            "input_shape": list(self.input_shape),
            "resize": self.resize,
            "axis": 0 if self.scale_axis is None else self.scale_axis,
            "mean": self.scaler.mean_.tolist() if fitted else None,
            "std": self.scaler.scale_.tolist() if fitted else None,
        }

    @property
    def strategy(self) -> str:
        """The split strategy in use (``split`` or the task type's default)."""
        if self.split_strategy is not None:
            return self.split_strategy
        return "stratified" if self.task_type == "classification" else "random"

    def split(self, y: np.ndarray, groups: np.ndarray | None = None, times: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Seeded train/val/test indices; they depend only on ``y``, the groups, the times, the sizes,
        the fold and the seed (never on feature values or the global RNG)."""
        strat = self.strategy
        try:
            return self._make_split(strat, y, groups, times)
        except ValueError as e:  # too few rows or classes: say which data set
            raise ValueError(f"{getattr(self, 'path', None) or type(self).__name__}: {e}") from None

    def _make_split(self, strat: str, y, groups, times) -> dict[str, np.ndarray]:
        return make_split(
            len(y),
            strategy=strat,
            y=y if strat.startswith("stratified") or self.task_type == "classification" else None,
            groups=groups,
            times=times,
            val_size=self.val_size,
            test_size=self.test_size,
            seed=self.seed,
            gap=self.gap,
            n_folds=self.n_folds,
            fold=self.fold,
            test_index=self.official_test_index(),
            class_names=getattr(self, "classes", None),
        )

    @property
    def split_hash(self) -> str | None:
        if self.split_indices is None:
            return None
        s = self.split_indices
        return _sha256(s["train"], s["val"], s["test"])

    def fit_scaler(self, x_train: np.ndarray) -> StandardScaler:
        """Mean/std of the training rows along ``scale_axis``: that axis becomes the columns of a
        ``StandardScaler``, every other position a row (zero variance gives scale 1, as in sklearn)."""
        axis = 0 if self.scale_axis is None else self.scale_axis % (x_train.ndim - 1)
        c = x_train.shape[axis + 1]
        cols = np.moveaxis(x_train, axis + 1, -1).reshape(-1, c)  # (rows, C)
        if self.scale_axis is None:  # identity transform, still a fitted object for the state
            return StandardScaler(with_mean=False, with_std=False).fit(cols)
        if getattr(self, "scaling", "standard") == "unit":
            # Min-max scaling in the StandardScaler's form (x - mean_) / scale_, so the model's input
            # transform replays it unchanged: MinMaxScaler's fitted minimum and range (range 0 -> 1).
            from sklearn.preprocessing import MinMaxScaler

            mm = MinMaxScaler().fit(cols)
            sc = StandardScaler(with_mean=False, with_std=False).fit(cols[:1])
            sc.mean_, sc.scale_ = mm.data_min_.astype(np.float64), np.where(mm.data_range_ > 0, mm.data_range_, 1.0)
            return sc
        if cols.shape[0] * cols.shape[1] <= 5_000_000:
            return StandardScaler().fit(cols)
        # Large image sets (CIFAR-10: 40k x 1024 rows x 3): partial_fit in chunks keeps float64
        # copies small; the streaming mean/variance update is scikit-learn's own.
        sc = StandardScaler()
        step = max(1, 5_000_000 // cols.shape[1])
        for i in range(0, cols.shape[0], step):
            sc.partial_fit(cols[i : i + step].astype(np.float64))
        return sc

    def _validate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
        """Refuse data the model cannot train on, naming the rows; runs on the arrays as loaded
        (before the cast to the training dtypes, so a NaN label is seen before it becomes an integer).

        Returns ``None``, or with ``nonfinite='drop'`` and rows holding NaN/inf, the mask of rows to keep.
        """
        name = type(self).__name__
        if len(x) != len(y):
            raise ValueError(f"{name}: {len(x)} samples but {len(y)} labels")
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{name}: samples have shape {tuple(x.shape[1:])}, expected {tuple(self.input_shape)}")
        keep = None
        bad_x, bad_y = _nonfinite_rows(x), _nonfinite_rows(y)
        if len(bad_x) or len(bad_y):
            rows = np.union1d(bad_x, bad_y)
            if self.nonfinite == "error":
                where = "; ".join(
                    f"{what} of rows {r[:10].tolist()}{' ...' if len(r) > 10 else ''}"
                    for what, r in (("inputs", bad_x), ("targets", bad_y)) if len(r)
                )
                raise ValueError(
                    f"{name}: NaN or inf in the {where} ({len(rows)} of {len(x)} rows); "
                    "clean those rows, or set data.init_args.nonfinite: drop to leave them out"
                )
            if len(rows) == len(x):
                raise ValueError(f"{name}: every one of the {len(x)} rows holds NaN or inf; nothing is left to train on")
            keep = np.ones(len(x), dtype=bool)
            keep[rows] = False
            self.dropped_nonfinite = rows
            warnings.warn(
                f"{name}: dropped {len(rows)} of {len(x)} rows holding NaN or inf (data.nonfinite=drop): rows "
                f"{rows[:10].tolist()}{' ...' if len(rows) > 10 else ''}",
                stacklevel=2,
            )
            y = y[keep]
        if self.task_type == "classification":
            ok = np.flatnonzero(keep) if keep is not None else np.arange(len(y))  # rows as loaded
            if np.issubdtype(y.dtype, np.floating):
                frac = np.flatnonzero(y != np.round(y))
                if len(frac):
                    raise ValueError(
                        f"{name}: class labels must be whole numbers; rows {ok[frac[:10]].tolist()} have "
                        f"{y[frac[:10]].tolist()} (use task='regression' for continuous targets)"
                    )
            bad = np.flatnonzero((y < 0) | (y >= self.num_classes))
            if len(bad):
                raise ValueError(
                    f"{name}: labels must be in [0, {self.num_classes}); rows {ok[bad[:10]].tolist()} "
                    f"have {y[bad[:10]].tolist()}"
                )
        return keep

    # ------------------------------------------------------------------------------ lightning

    def setup(self, stage: str | None = None) -> None:
        if self.split_indices is not None:  # idempotent: Lightning calls setup once per stage
            return
        x, y = self.load_arrays()
        x, y = np.asarray(x), np.asarray(y)
        keep = self._validate(x, y)  # before the casts: a NaN label must not become an integer
        ydtype = np.int64 if self.task_type == "classification" else np.float32
        groups, times = self.load_groups(), self.load_times()
        if keep is not None:  # data.nonfinite=drop: the rows leave before the split
            x, y = x[keep], y[keep]
            groups = None if groups is None else np.asarray(groups)[keep]
            times = None if times is None else np.asarray(times)[keep]
        x, y = np.asarray(x, dtype=self.raw_dtype), np.asarray(y, dtype=ydtype)
        self.split_indices = self.split(y, groups, times)
        self.fingerprint = self.data_fingerprint(x, y)
        self.raw_x, self.raw_y = x, y  # kept for the contamination audit (datamodules.audit)
        # Rule 2: statistics from training rows only.
        self.scaler = self.fit_scaler(x[self.split_indices["train"]])
        self.fit_extra(x[self.split_indices["train"]], y[self.split_indices["train"]])
        self.datasets: dict[str, Dataset] = {
            k: self.make_dataset(x[i], y[i], train=k == "train") for k, i in self.split_indices.items()
        }
        if self.audit_mode is not None:  # inside setup, so a drop is the same on every call and rank
            self.audit_report = self.audit(self.audit_mode)
        if self._restored is not None:
            self._check_restored()

    def data_fingerprint(self, x: np.ndarray, y: np.ndarray) -> str:
        """Hash of the raw data (checked on resume); subclasses whose raw arrays depend on the split
        (the CSV's category codes) hash their source instead."""
        return _sha256(x, y)

    def audit(self, mode: str = "warn", **kwargs: Any):
        """Contamination audit across train/val/test (see ``datamodules.audit.run_audit``)."""
        from .audit import run_audit

        return run_audit(self, mode, **kwargs)

    def drop_training_rows(self, rows: np.ndarray) -> None:
        """Remove raw rows ``rows`` from training and refit the training statistics without them."""
        assert self.split_indices is not None
        train = np.setdiff1d(self.split_indices["train"], rows)
        if len(train) == 0:
            raise ValueError(f"{type(self).__name__}: dropping {len(rows)} duplicated rows leaves no training rows")
        self.split_indices["train"] = train
        x, y = self.raw_x, self.raw_y
        self.scaler = self.fit_scaler(x[train])
        self.fit_extra(x[train], y[train])
        self.datasets["train"] = self.make_dataset(x[train], y[train], train=True)

    def fit_extra(self, x_train: np.ndarray, y_train: np.ndarray) -> None:
        """Hook for further statistics (target scaling, vocabularies); training rows only."""

    def train_transform(self):
        """Augmentation for training samples only (validation and test stay deterministic)."""
        return None

    def make_dataset(self, x: np.ndarray, y: np.ndarray, train: bool) -> Dataset:
        tf = self.train_transform() if train else None
        if tf is None:
            return TensorBatchDataset(torch.from_numpy(x), torch.from_numpy(y))
        return TransformedDataset(torch.from_numpy(x), torch.from_numpy(y), tf)

    def _resident_device(self, dataset: Dataset) -> torch.device | None:
        """The accelerator to keep ``dataset`` on, or ``None`` to serve it from host memory.

        ``device_resident=None`` (auto) keeps whole-batch in-memory data on the accelerator when the
        trainer runs on one, no worker processes are asked for (CUDA tensors cannot be shared with
        forked workers) and the split fits in 1 GiB: then no batch is copied host-to-device, only
        its index. ``True`` forces it (any size), ``False`` never."""
        if self.device_resident is False or not isinstance(dataset, TensorBatchDataset) or self.num_workers > 0:
            return None
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is None or (device.type == "cpu" and self.device_resident is None):
            return None
        nbytes = dataset.x.nbytes + dataset.y.nbytes
        return device if self.device_resident or nbytes <= 1 << 30 else None

    def _loader(self, key: str, shuffle: bool) -> DataLoader:
        if self.split_indices is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for the {key} loader")
        from zoo.tasks.distributed import eval_sampler  # DDP: evaluation rows split over ranks without padding

        dataset = self.datasets[key]
        device = self._resident_device(dataset)
        if device is not None:  # moved once per split and device, then reused every epoch
            cached = self._on_device.get(key)
            if cached is None or cached[0] is not dataset or cached[1].x.device != device:
                self._on_device[key] = (dataset, dataset.to(device))
            dataset = self._on_device[key][1]
        batched = isinstance(dataset, TensorBatchDataset)
        if shuffle:
            sampler = self._train_sampler = ResumableRandomSampler(dataset)
            order = (self._restored or {}).pop("train_order", None)
            if order is not None:
                sampler.resume_at(order["seed"], order["samples_done"], order.get("torch_rng"))
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler if shuffle else eval_sampler(dataset),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=passthrough if batched else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # --------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        if self.split_indices is None:
            return {}
        state = {
            "split_hash": self.split_hash,
            "fingerprint": self.fingerprint,
            "sizes": {k: int(len(v)) for k, v in self.split_indices.items()},
            "split": {"strategy": self.strategy, "seed": self.seed, "n_folds": self.n_folds, "fold": self.fold, "gap": self.gap},
            "preprocessing": self.preprocessing,
        }
        order = self._train_order()
        if order is not None:
            state["train_order"] = order
        return state

    def _train_order(self) -> dict[str, int] | None:
        """For a checkpoint written mid-epoch: the epoch's permutation seed and the samples its
        finished batches took (``ResumableRandomSampler``); None at an epoch's end or outside fit."""
        trainer, sampler = self.trainer, self._train_sampler
        if trainer is None or sampler is None or sampler.seed is None or trainer.world_size > 1 or trainer.state.fn != "fit":
            return None
        # Lightning's count of this epoch's finished training batches; a resumed run starts at the
        # next one (its restart logic, loops/training_epoch_loop.py), so these are the samples to skip.
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if not 0 < done < trainer.num_training_batches:
            return None
        return {"seed": sampler.seed, "samples_done": int(done) * self.batch_size, "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self._restored = dict(state)
        if "train_order" in state:
            # Lightning warns that a plain DataLoader cannot resume mid-epoch; this one can (_loader).
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
        if self.split_indices is not None:
            self._check_restored()

    def _check_restored(self) -> None:
        state = self._restored
        assert state is not None
        if state["fingerprint"] != self.fingerprint or state["split_hash"] != self.split_hash:
            what = (
                "the data" if state["fingerprint"] != self.fingerprint
                else f"the split (saved settings {state.get('split')}; seed, val_size, test_size, split, n_folds, fold or gap)"
            )
            raise SplitMismatchError(
                f"{type(self).__name__}: {what} differs from the checkpoint's "
                f"(data {state['fingerprint']} -> {self.fingerprint}, split {state['split_hash']} -> {self.split_hash}). "
                "Resuming would mix rows across train/val/test. Use the data and split settings the checkpoint "
                "was trained with, or start a new run without ckpt_path."
            )
        # Restore the fitted statistics saved with the checkpoint.
        if state["preprocessing"].get("mean") is not None and self.scaler is not None:
            self.scaler.mean_ = np.asarray(state["preprocessing"]["mean"], dtype=np.float64)
            self.scaler.scale_ = np.asarray(state["preprocessing"]["std"], dtype=np.float64)


class InMemoryDataModule(ArrayDataModule):
    """Any labelled arrays held in memory (a Python API: tests, notebooks, the pair builder).

    Args:
        x: raw samples ``(N, *input_shape)``; y: labels ``(N,)`` (classification) or targets.
        task: ``"classification"`` or ``"regression"``.
        num_classes: classification: number of classes (default ``max(y) + 1``); regression: output width.
        groups, times: per-row groups / times for grouped or time splits.
        feature_names: tables: a name per feature (the audit's report uses them).
        scale_axis: see ``ArrayDataModule`` (default ``-1``: per feature; ``0`` per image channel).
        Other arguments: see ``ArrayDataModule``.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        task: str = "classification",
        num_classes: int | None = None,
        groups: np.ndarray | None = None,
        times: np.ndarray | None = None,
        feature_names: list[str] | None = None,
        scale_axis: int | None = -1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        self._x, self._y = np.asarray(x), np.asarray(y)
        self.task_type, self.scale_axis = task, scale_axis
        self.input_shape = tuple(self._x.shape[1:])
        if num_classes is None:
            num_classes = int(self._y.max()) + 1 if task == "classification" else (1 if self._y.ndim == 1 else self._y.shape[1])
        self.num_classes = num_classes
        self._groups, self._times, self.feature_names = groups, times, feature_names

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self._x, self._y

    def load_groups(self) -> np.ndarray | None:
        return None if self._groups is None else np.asarray(self._groups)

    def load_times(self) -> np.ndarray | None:
        return None if self._times is None else np.asarray(self._times)


class TargetScalingMixin:
    """For regression DataModules: fits the target mean/std on the training rows (``fit_extra``) and
    adds them to ``preprocessing`` as ``target`` = ``{"mean": [...], "std": [...]}`` (one entry per
    target column), which ``zoo.tasks.RegressionTask`` uses to train on standardised targets and to
    predict in raw units. Put it before the ``ArrayDataModule`` subclass in the bases. The loaders
    yield raw targets: the task, not the data, applies the scaling, so a checkpoint predicts raw units."""

    target_scaler: StandardScaler | None = None

    def fit_extra(self, x_train: np.ndarray, y_train: np.ndarray) -> None:
        # Training targets only, like every other statistic (rule 2 of datamodules.base).
        self.target_scaler = StandardScaler().fit(y_train.reshape(len(y_train), -1))

    @property
    def preprocessing(self) -> dict[str, Any]:
        spec = super().preprocessing  # type: ignore[misc]
        ts = self.target_scaler
        spec["target"] = {
            "mean": ts.mean_.tolist() if ts is not None else None,
            "std": ts.scale_.tolist() if ts is not None else None,
        }
        return spec
