"""Tables from a CSV file: numeric and categorical columns, a classification or regression target.

Preprocessing is scikit-learn's: ``StandardScaler`` or ``MinMaxScaler`` on the numeric columns and
``OneHotEncoder(handle_unknown="ignore")`` on the categorical ones, in a ``ColumnTransformer``
fitted on the training rows only (after the seeded split). Its learned state is exported into the
plain-dict ``preprocessing`` spec (``"kind": "tabular"``), which ``zoo.tabular_transform.
TabularTransform`` replays in torch, so a checkpoint predicts on raw rows without this DataModule.

Raw rows, as the loaders yield them and the model takes them: ``(N, n_numeric + n_categorical)``
float32, the numeric values as in the file, then per categorical column the value's code in the
vocabulary the training rows produced (``-1`` for a value only seen outside training).
``encode_rows(rows)`` makes that tensor from new rows (a dict of columns, a list of dicts or a
DataFrame); ``preprocessing["categorical"]["categories"]`` is the vocabulary.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from zoo.tabular_transform import MISSING, category_key, encode_rows

from .base import ArrayDataModule

SCALERS = ("standard", "minmax", None)


def read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    """Column name -> string values (csv module: no pandas needed for a plain table)."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}: the file is empty; it needs a header line and data rows") from None
        rows = [r for r in reader if r]
    if not rows:
        raise ValueError(f"{path}: no data rows after the header {header}")
    bad = [i + 2 for i, r in enumerate(rows) if len(r) != len(header)]
    if bad:
        raise ValueError(f"{path}: lines {bad[:10]} have a different number of fields than the header ({len(header)})")
    return {h: np.array([r[j].strip() for r in rows], dtype=object) for j, h in enumerate(header)}


class ColumnError(KeyError):
    """A column named in the config is not in the file (a ``KeyError`` whose message prints as written)."""

    def __str__(self) -> str:  # KeyError's own __str__ quotes the message like a dict key
        return str(self.args[0]) if self.args else ""


class _LabelError(ValueError):
    """Bad numeric class labels (not caught as 'these labels are strings')."""


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _mostly_numeric(values: np.ndarray) -> bool:
    """A column is numeric when at least half of its non-missing cells are numbers: a few bad cells
    (``12.5k``) then make an error that names them instead of turning the column categorical."""
    present = [v for v in values if v.lower() not in MISSING]
    return bool(present) and 2 * sum(_is_number(v) for v in present) >= len(present)


def _missing_or_inf(v: str) -> bool:
    if v.lower() in MISSING:
        return True
    try:
        return not np.isfinite(float(v))
    except ValueError:
        return False


class CSVDataModule(ArrayDataModule):
    """A CSV table with a target column.

    Args:
        path: the CSV file (header line, comma separated).
        target: the target column.
        numeric: numeric feature columns; ``None``: every other column that is numeric in the
            training rows (at least half of their cells are numbers). Declared types win. Every cell
            of a numeric column, in every split, must be a finite number: ``12.5k`` or ``inf`` is an
            error naming the lines and values, never a silent switch to categorical.
        categorical: categorical feature columns; ``None``: every other column. A categorical
            column with a distinct value in every training row (an id?) is warned about.
        task: ``"classification"`` (labels: integers ``0..num_classes-1``, or any strings, sorted
            into classes) or ``"regression"`` (a float target; ``num_classes`` is then 1, the output width).
        num_classes: classification with integer labels: the number of classes (labels outside
            ``[0, num_classes)`` are an error naming the rows); ``None``: from the labels.
        scaler: ``"standard"`` (StandardScaler), ``"minmax"`` (MinMaxScaler) or ``None`` for numeric columns.
        scale_target: regression: fit the target mean/std on training rows into
            ``preprocessing["target"]`` (``{"mean": [...], "std": [...]}``, as
            ``datamodules.TargetScalingMixin``); the loaders yield raw targets and
            ``zoo.tasks.RegressionTask`` trains on the standardised scale and predicts raw units.
        group_column: a column of group ids (person, patient) for ``split='grouped'``; not a feature.
        time_column: a numeric column of times for ``split='time'``; not a feature.
        val_size, test_size, seed, batch_size, num_workers, split, n_folds, fold, gap, audit: see ``ArrayDataModule``.
        nonfinite: ``"error"`` (default) or ``"drop"``: rows with a missing cell (empty, ``NA``,
            ``nan``, ...) or an infinite number in a used column are left out when the file is read
            (a warning gives their count and lines); ``dropped_lines`` lists their line numbers.
    """

    scale_axis = None  # the ColumnTransformer does the scaling

    def __init__(
        self,
        path: str,
        target: str,
        numeric: list[str] | None = None,
        categorical: list[str] | None = None,
        task: str = "classification",
        num_classes: int | None = None,
        scaler: str | None = "standard",
        scale_target: bool = False,
        group_column: str | None = None,
        time_column: str | None = None,
        **kwargs: Any,
    ) -> None:
        # ArrayDataModule's split and loader arguments (val_size, test_size, seed, batch_size,
        # num_workers, split, n_folds, fold, gap, audit) arrive through **kwargs; jsonargparse
        # follows them into its signature, so configs still set and type-check them.
        super().__init__(**kwargs)
        if task not in ("classification", "regression"):
            raise ValueError(f"data.task must be 'classification' or 'regression', got {task!r}")
        if scaler not in SCALERS:
            raise ValueError(f"data.scaler must be one of {list(SCALERS)}, got {scaler!r}")
        if scale_target and task != "regression":
            raise ValueError("data.scale_target only applies to task='regression'")
        self.path = Path(path)
        self.target, self.numeric, self.categorical = target, numeric, categorical
        self.task_type, self._num_classes, self.scaler_kind = task, num_classes, scaler
        self.scale_target, self.group_column, self.time_column = scale_target, group_column, time_column
        self.save_hyperparameters()
        self._table: dict[str, np.ndarray] | None = None
        self._train: np.ndarray | None = None
        self.dropped_lines: list[int] = []
        self.column_transformer: ColumnTransformer | None = None
        self.target_scaler: StandardScaler | None = None
        self.classes: list[str] | None = None
        self._resolve_columns()  # reads the file: a bad path or column fails here, before training

    # ------------------------------------------------------------------------------ reading

    def read_table(self) -> dict[str, np.ndarray]:
        """The file's columns as strings (tests override this to perturb rows)."""
        if not self.path.is_file():
            raise FileNotFoundError(
                f"data.path: CSV file {str(self.path)!r} does not exist (working directory {Path.cwd()}); "
                "give the path of a CSV file with a header line"
            )
        return read_csv_columns(self.path)

    def table(self) -> dict[str, np.ndarray]:
        if self._table is None:
            self._table = self.read_table()
            self._lines = np.arange(len(next(iter(self._table.values())))) + 2  # line 1 is the header
        return self._table

    def _line(self, rows) -> list[int]:
        """CSV line numbers of table rows (rows dropped by ``nonfinite='drop'`` keep their numbering)."""
        return self._lines[np.asarray(rows, dtype=np.int64)].tolist()

    def _used_columns(self) -> list[str]:
        t = self.table()
        reserved = [c for c in (self.target, self.group_column, self.time_column) if c is not None]
        if self.numeric is None or self.categorical is None:  # every free column becomes a feature
            return list(t)
        return reserved + [c for c in self.numeric + self.categorical if c not in reserved]

    def _drop_nonfinite_rows(self) -> None:
        """``nonfinite='drop'``: leave out rows with a missing or infinite cell in a used column."""
        t = self.table()
        bad = np.zeros(len(self._lines), dtype=bool)
        for c in self._used_columns():
            bad |= [_missing_or_inf(v) for v in t[c]]
        if not bad.any():
            return
        if bad.all():
            raise ValueError(f"{self.path}: every data row has a missing or infinite cell; nothing is left to train on")
        self.dropped_lines = self._lines[bad].tolist()
        self._table = {c: v[~bad] for c, v in t.items()}
        self._lines = self._lines[~bad]
        warnings.warn(
            f"{self.path}: dropped {int(bad.sum())} of {len(bad)} rows with missing or infinite cells "
            f"(data.nonfinite=drop): lines {self.dropped_lines[:10]}{' ...' if bad.sum() > 10 else ''}",
            stacklevel=2,
        )

    def _resolve_columns(self) -> None:
        t = self.table()
        cols = list(t)
        for field, name in (("target", self.target), ("group_column", self.group_column), ("time_column", self.time_column)):
            if name is not None and name not in t:
                raise ColumnError(f"{self.path}: data.{field} {name!r} is not a column; the columns are {cols}")
        for field, names in (("numeric", self.numeric), ("categorical", self.categorical)):
            unknown = [c for c in names or [] if c not in t]
            if unknown:
                raise ColumnError(f"{self.path}: data.{field} columns {unknown} are not in the file; the columns are {cols}")
        if self.nonfinite == "drop":
            self._drop_nonfinite_rows()
        reserved = {self.target, self.group_column, self.time_column}
        free = [c for c in cols if c not in reserved]
        declared = set(self.numeric or []) | set(self.categorical or [])
        if self.numeric is None or self.categorical is None:
            # Types of undeclared columns come from the training rows only (the split is seeded and
            # feature-blind, so this is the split setup() makes): what validation or test rows hold
            # never decides how a column is read.
            train = self._train_rows()
            if self.numeric is None:
                taken = set(self.categorical or [])
                self.numeric = [c for c in free if c not in taken and _mostly_numeric(t[c][train])]
            if self.categorical is None:
                self.categorical = [c for c in free if c not in set(self.numeric)]
        if not self.numeric and not self.categorical:
            raise ValueError(f"{self.path}: no feature columns besides the target {self.target!r}")
        clash = reserved & set(self.numeric + self.categorical)
        if clash:
            raise ValueError(f"{self.path}: columns {sorted(clash)} are the target/group/time and cannot be features")
        for c in self.numeric:  # every row, every split: a bad cell is an error here, before training
            self._floats(c, declared=c in declared)
        if self.categorical:
            train = self._train_rows()
            for c in self.categorical:
                v = t[c][train]
                if len(v) >= 10 and len(np.unique(v)) == len(v):
                    warnings.warn(
                        f"{self.path}: categorical column {c!r} has a different value in each of the {len(v)} training "
                        "rows (an id or a free-text column?); it cannot generalise: drop it from the features "
                        "(data.numeric/data.categorical) or declare it numeric if it holds numbers",
                        stacklevel=2,
                    )

    def _train_rows(self) -> np.ndarray:
        """Training rows of the seeded split (a function of the labels, groups and times only)."""
        if self._train is None:
            if self.task_type == "classification":
                y, self.classes = self._labels()
                self._check_label_range(y)
            else:
                y = self._floats(self.target)
            self._train = self.split(y, self.load_groups(), self.load_times())["train"]
        return self._train

    def _missing(self, col: str) -> None:
        v = self.table()[col]
        rows = np.flatnonzero([s.lower() in MISSING for s in v])
        if len(rows):
            raise ValueError(
                f"{self.path}: column {col!r} has missing values on lines {self._line(rows[:10])} "
                f"({len(rows)} rows; line 1 is the header); fill or drop those rows before training "
                "(data.init_args.nonfinite: drop leaves them out)"
            )

    def _floats(self, col: str, declared: bool = True) -> np.ndarray:
        self._missing(col)
        vals = self.table()[col]
        out = np.empty(len(vals), dtype=np.float64)
        bad = []
        for i, s in enumerate(vals):
            try:
                out[i] = float(s)
            except ValueError:
                bad.append(i)
        if bad:
            cells = ", ".join(f"line {n}: {vals[i]!r}" for n, i in zip(self._line(bad[:10]), bad[:10]))
            how = "is declared numeric" if declared and col not in (self.target, self.time_column) else (
                "must be numeric" if col in (self.target, self.time_column) else "is numeric in the training rows"
            )
            raise ValueError(
                f"{self.path}: column {col!r} {how} but {len(bad)} cells are not numbers ({cells}); "
                f"fix those cells{'' if col in (self.target, self.time_column) else ', or list the column in data.categorical'}"
            )
        inf = np.flatnonzero(~np.isfinite(out))
        if len(inf):
            cells = ", ".join(f"line {n}: {vals[i]!r}" for n, i in zip(self._line(inf[:10]), inf[:10]))
            raise ValueError(
                f"{self.path}: column {col!r} has {len(inf)} infinite values ({cells}); fix those cells, or set "
                "data.init_args.nonfinite: drop to leave those rows out"
            )
        return out

    def _check_label_range(self, y: np.ndarray) -> None:
        bad = np.flatnonzero((y < 0) | (y >= self.num_classes))
        if len(bad):
            raise ValueError(
                f"{self.path}: column {self.target!r} needs labels in [0, {self.num_classes}); lines "
                f"{self._line(bad[:10])} have {y[bad[:10]].tolist()} (fix the labels or data.num_classes)"
            )

    # ------------------------------------------------------------------------------ shapes

    @property
    def feature_names(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    @property
    def input_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (len(self.numeric) + len(self.categorical),)

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        if self.task_type == "regression":
            return 1
        if self._num_classes is not None:
            return self._num_classes
        return len(self._labels()[1])

    def _labels(self) -> tuple[np.ndarray, list[str]]:
        col = self.target
        self._missing(col)
        raw = self.table()[col]
        try:
            nums = np.array([float(s) for s in raw])
            # Numeric labels must be whole and finite: int() would turn 1.5 into class 1 and fail
            # with OverflowError on inf.
            bad = np.flatnonzero(~np.isfinite(nums) | (nums != np.round(nums)))
            if len(bad):
                raise _LabelError(
                    f"{self.path}: column {col!r} holds class labels, but {len(bad)} are not whole numbers "
                    f"({', '.join(f'line {n}: {raw[i]!r}' for n, i in zip(self._line(bad[:10]), bad[:10]))}); "
                    "fix them, or set data.task: regression for a continuous target"
                )
            ints = nums.astype(np.int64)
            if self._num_classes is not None or (ints.min() >= 0 and len(np.unique(ints)) == ints.max() + 1):
                k = self._num_classes if self._num_classes is not None else int(ints.max()) + 1
                return ints, [str(i) for i in range(k)]
        except _LabelError:
            raise
        except ValueError:
            if self._num_classes is not None:
                bad = [i for i, s in enumerate(raw) if not s.lstrip("-").isdigit()]
                raise ValueError(
                    f"{self.path}: data.num_classes={self._num_classes} needs integer labels in column "
                    f"{col!r}; lines {self._line(bad[:10])} are not integers"
                ) from None
        classes = sorted(set(raw.tolist()))
        lookup = {c: i for i, c in enumerate(classes)}
        return np.array([lookup[s] for s in raw]), classes

    # ------------------------------------------------------------------------------ arrays

    def load_groups(self) -> np.ndarray | None:
        return None if self.group_column is None else self.table()[self.group_column]

    def load_times(self) -> np.ndarray | None:
        return None if self.time_column is None else self._floats(self.time_column)

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        t = self.table()
        if self.task_type == "classification":
            y, self.classes = self._labels()
        else:
            y = self._floats(self.target)
        num = np.stack([self._floats(c) for c in self.numeric], axis=1) if self.numeric else np.zeros((len(y), 0))
        for c in self.categorical:
            self._missing(c)
        cats = np.stack([[category_key(v) for v in t[c]] for c in self.categorical], axis=1).astype(object) \
            if self.categorical else np.zeros((len(y), 0), dtype=object)
        # The vocabulary must come from training rows, so the (feature-blind, seeded) split is
        # computed here first; setup() computes the very same split again.
        groups, times = self.load_groups(), self.load_times()
        if self.task_type == "classification":  # range check before the split uses the labels
            self._check_label_range(y)
        train = self.split(y, groups, times)["train"]
        self.column_transformer = self._fit_column_transformer(num[train], cats[train])
        enc = self.column_transformer.named_transformers_.get("cat")
        codes = np.zeros(cats.shape, dtype=np.float64)
        for j in range(cats.shape[1]):
            vocab = {v: k for k, v in enumerate(enc.categories_[j])}
            codes[:, j] = [vocab.get(v, -1) for v in cats[:, j]]
        self.raw_categories = cats  # the strings, for ct.transform checks and the audit
        return np.concatenate([num, codes], axis=1).astype(np.float32), y

    def _fit_column_transformer(self, num_train: np.ndarray, cat_train: np.ndarray) -> ColumnTransformer:
        n_num = num_train.shape[1]
        parts: list[tuple[str, Any, list[int]]] = []
        if n_num:
            sc = {"standard": StandardScaler(), "minmax": MinMaxScaler(), None: "passthrough"}[self.scaler_kind]
            parts.append(("num", sc, list(range(n_num))))
        if cat_train.shape[1]:
            parts.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(range(n_num, n_num + cat_train.shape[1]))))
        ct = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
        return ct.fit(self.raw_frame(num_train, cat_train))

    @staticmethod
    def raw_frame(num: np.ndarray, cats: np.ndarray) -> np.ndarray:
        """The object array ``[numeric..., category strings...]`` the ColumnTransformer is fitted on."""
        out = np.empty((len(num), num.shape[1] + cats.shape[1]), dtype=object)
        out[:, : num.shape[1]] = num.astype(np.float64)
        out[:, num.shape[1] :] = cats
        return out

    def data_fingerprint(self, x: np.ndarray, y: np.ndarray) -> str:
        # The category codes depend on the training vocabulary (so on the split): hash the file's
        # used columns as text instead, so a changed split reads as a split change, not a data change.
        h = hashlib.sha256()
        for c in [self.target, *self.numeric, *self.categorical, self.group_column, self.time_column]:
            if c is not None:
                h.update(c.encode() + b"\0" + "\x1f".join(self.table()[c].tolist()).encode() + b"\0")
        return h.hexdigest()[:16]

    def fit_extra(self, x_train: np.ndarray, y_train: np.ndarray) -> None:
        if self.scale_target:
            self.target_scaler = StandardScaler().fit(y_train.reshape(len(y_train), -1).astype(np.float64))

    # ------------------------------------------------------------------------------ spec

    @property
    def preprocessing(self) -> dict[str, Any]:
        # The spec's width (one-hot sizes) must exist when the CLI builds the model, so it is
        # fitted on demand; the split is seeded, so this is the same fit setup() makes.
        if self.split_indices is None:
            self.setup()
        ct = self.column_transformer
        num: dict[str, Any] = {"columns": list(self.numeric), "scaler": self.scaler_kind}
        if self.numeric and self.scaler_kind == "standard":
            s = ct.named_transformers_["num"]
            num.update(mean=s.mean_.tolist(), scale=s.scale_.tolist())
        elif self.numeric and self.scaler_kind == "minmax":
            s = ct.named_transformers_["num"]
            num.update(data_min=s.data_min_.tolist(), data_range=s.data_range_.tolist(), feature_range=list(s.feature_range))
        cats = ct.named_transformers_["cat"].categories_ if self.categorical else []
        spec: dict[str, Any] = {
            "kind": "tabular",
            "input_shape": list(self.input_shape),
            "resize": None,
            "numeric": num,
            "categorical": {"columns": list(self.categorical), "categories": [[str(v) for v in c] for c in cats]},
            "target": None,
            "classes": self.classes,
        }
        if self.target_scaler is not None:
            # The format of datamodules.TargetScalingMixin: zoo.tasks.RegressionTask scales and inverts it.
            spec["target"] = {"mean": self.target_scaler.mean_.tolist(), "std": self.target_scaler.scale_.tolist()}
        return spec

    def encode_rows(self, rows: Any) -> torch.Tensor:
        """New raw rows (dict of columns, list of dicts, DataFrame) -> the model's raw input tensor."""
        return encode_rows(self.preprocessing, rows)

    def _check_restored(self) -> None:
        # The fitted ColumnTransformer is a function of the (verified) data and split, so matching
        # hashes mean the refit is the saved one; only the hashes need checking.
        super()._check_restored()
