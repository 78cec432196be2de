"""Pure-torch replay of a fitted scikit-learn ``ColumnTransformer`` for tables.

``datamodules.tabular`` fits ``StandardScaler`` or ``MinMaxScaler`` (numeric columns) and
``OneHotEncoder(handle_unknown="ignore")`` (categorical columns) in a ``ColumnTransformer`` on the
training rows and exports what they learned into a plain-dict spec (``"kind": "tabular"``). This
module rebuilds the same mapping from that spec, so a checkpoint predicts on raw rows without
scikit-learn objects, pickles or its DataModule. It is written by hand because torch has no
ColumnTransformer, and pickling the scikit-learn one would break ``weights_only=True`` loading.

The raw row (``N, n_numeric + n_categorical``) is the numeric values as they are in the file,
then one integer code per categorical column: the position of the value in that column's
vocabulary (``spec["categorical"]["categories"]``, the encoder's ``categories_`` learned on the
training rows), ``-1`` for a value the training rows never had (one-hot all zeros, exactly what
``handle_unknown="ignore"`` gives). ``encode_rows`` turns rows of strings/numbers into that tensor.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}


def _columns_of(rows: Any) -> Mapping[str, Sequence[Any]]:
    """Mapping column -> values from a dict of columns, a list of dicts or a pandas DataFrame."""
    if isinstance(rows, Mapping):
        return rows
    if hasattr(rows, "columns") and hasattr(rows, "__getitem__"):  # a DataFrame, duck-typed (no pandas needed)
        return {str(c): list(rows[c]) for c in rows.columns}
    rows = list(rows)
    if rows and isinstance(rows[0], Mapping):
        return {k: [r.get(k) for r in rows] for k in rows[0]}
    raise TypeError("encode_rows takes a dict of columns, a list of dicts (one per row) or a DataFrame")


def category_key(value: Any) -> str:
    """Categories are compared as stripped strings (a CSV has no types; ``3`` and ``"3"`` are one value)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def encode_rows(spec: dict[str, Any], rows: Any) -> torch.Tensor:
    """Raw rows -> the raw tensor ``(N, n_numeric + n_categorical)`` a tabular model takes.

    ``rows``: a dict of columns, a list of dicts or a DataFrame with (at least) the spec's numeric
    and categorical columns. Categorical values are mapped to their code in the spec's vocabulary
    (``-1`` if unseen in training). Errors name the missing column or the bad value and row.
    """
    cols = _columns_of(rows)
    num_cols = list(spec["numeric"]["columns"])
    cat_cols = list(spec["categorical"]["columns"])
    missing = [c for c in num_cols + cat_cols if c not in cols]
    if missing:
        raise KeyError(f"encode_rows: columns {missing} are missing; the model needs {num_cols + cat_cols}, got {list(cols)}")
    n = len(cols[(num_cols + cat_cols)[0]])
    out = torch.empty(n, len(num_cols) + len(cat_cols), dtype=torch.float32)
    for j, c in enumerate(num_cols):
        for i, v in enumerate(cols[c]):
            try:
                out[i, j] = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"encode_rows: column {c!r} row {i} has {v!r}, which is not a number") from None
            if category_key(v).lower() in MISSING or out[i, j] != out[i, j]:
                raise ValueError(f"encode_rows: column {c!r} row {i} is missing; the model needs a number there")
    for j, (c, cats) in enumerate(zip(cat_cols, spec["categorical"]["categories"])):
        vocab = {category_key(v): k for k, v in enumerate(cats)}
        for i, v in enumerate(cols[c]):
            out[i, len(num_cols) + j] = vocab.get(category_key(v), -1)
    return out


class TabularTransform(nn.Module):
    """Raw tabular rows ``(N, n_numeric + n_categorical)`` -> the ColumnTransformer's output
    ``(N, n_numeric + sum of vocabulary sizes)``: scaled numeric columns, then one-hot blocks.

    spec keys: ``kind`` = ``"tabular"``, ``input_shape`` = ``[n_numeric + n_categorical]``,
    ``numeric``: ``columns``, ``scaler`` (``"standard"``, ``"minmax"`` or ``None``) and its learned
    state (``mean``/``scale`` = StandardScaler's ``mean_``/``scale_``; ``data_min``/``data_range``/
    ``feature_range`` = MinMaxScaler's), ``categorical``: ``columns``, ``categories`` (the
    encoder's ``categories_``), optional ``target``: ``mean``/``scale`` of a scaled regression target.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        if spec.get("kind") != "tabular":
            raise ValueError(f"TabularTransform needs a spec with kind='tabular', got kind={spec.get('kind')!r}")
        self.spec = spec
        num, cat = spec["numeric"], spec["categorical"]
        self.n_num, self.n_cat = len(num["columns"]), len(cat["columns"])
        self.raw_shape = tuple(int(s) for s in spec["input_shape"])
        if self.raw_shape != (self.n_num + self.n_cat,):
            raise ValueError(f"tabular spec: input_shape {list(self.raw_shape)} must be [{self.n_num + self.n_cat}] "
                             f"({self.n_num} numeric + {self.n_cat} categorical columns)")
        self.sizes = [len(c) for c in cat["categories"]]
        # Affine map x * a + b in float64, the precision scikit-learn computes in.
        kind = num.get("scaler")
        if kind == "standard":
            scale = torch.tensor(num["scale"], dtype=torch.float64)
            a, b = 1.0 / scale, -torch.tensor(num["mean"], dtype=torch.float64) / scale
            self._standard = (torch.tensor(num["mean"], dtype=torch.float64), scale)
        elif kind == "minmax":
            lo, hi = num.get("feature_range", [0.0, 1.0])
            rng = torch.tensor(num["data_range"], dtype=torch.float64)
            rng = torch.where(rng == 0, torch.ones_like(rng), rng)  # sklearn's _handle_zeros_in_scale
            a = (hi - lo) / rng
            b = lo - torch.tensor(num["data_min"], dtype=torch.float64) * a
            self._standard = None
        elif kind is None:
            a, b = torch.ones(self.n_num, dtype=torch.float64), torch.zeros(self.n_num, dtype=torch.float64)
            self._standard = None
        else:
            raise ValueError(f"tabular spec: unknown numeric scaler {kind!r}; use 'standard', 'minmax' or None")
        self.register_buffer("a", a, persistent=False)
        self.register_buffer("b", b, persistent=False)
        if self._standard is not None:
            self.register_buffer("mean64", self._standard[0], persistent=False)
            self.register_buffer("scale64", self._standard[1], persistent=False)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.n_num + sum(self.sizes),)

    def encode_rows(self, rows: Any) -> torch.Tensor:
        return encode_rows(self.spec, rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.raw_shape:
            raise ValueError(
                f"expected raw rows of shape (N, {self.raw_shape[0]}) ({self.n_num} numeric values, then "
                f"{self.n_cat} category codes; see encode_rows) but received {tuple(x.shape)}"
            )
        x64 = x.to(torch.float64)
        num = x64[:, : self.n_num]  # (N, n_num)
        if self._standard is not None:  # the same operations as StandardScaler.transform
            num = (num - self.mean64) / self.scale64
        else:
            num = num * self.a + self.b  # MinMaxScaler.transform: X * scale_ + min_
        parts = [num.to(torch.float32)]
        for j, k in enumerate(self.sizes):
            code = x[:, self.n_num + j].round().long()  # (N,)
            known = (code >= 0) & (code < k)
            onehot = torch.zeros(len(x), k, dtype=torch.float32, device=x.device)  # (N, k)
            rows = known.nonzero(as_tuple=True)[0]
            onehot[rows, code[rows]] = 1.0
            parts.append(onehot)
        return torch.cat(parts, dim=1)  # (N, n_num + sum(k))
