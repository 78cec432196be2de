"""Univariate forecasting windows with a time-ordered, leak-proof split.

The series is split by time FIRST, ``train | gap | val | gap | test``, and the sliding windows
(``window`` past values -> the value ``horizon`` steps after the last one) are then built inside each
part only, so no window (inputs or target) crosses a split boundary, and ``max(train time) + gap <=
min(val time)`` (the same for val and test). Building windows over the whole series and splitting
the windows at random would put overlapping windows, hence the same values, on both sides of the
split (Bergmeir & Benitez, 2012, "On the use of cross-validation for time series predictor
evaluation", Information Sciences 191). The scalers are fitted on the training part only.

Series: statsmodels' bundled data (``sunspots``: yearly sunspot numbers 1700-2008; ``nile``: annual
Nile flow 1871-1970; ``co2``: weekly Mauna Loa CO2, gaps filled forward), or a column of a CSV file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.preprocessing import StandardScaler

from .base import ArrayDataModule, TargetScalingMixin

# statsmodels data set -> the column holding the series.
STATSMODELS_SERIES = {"sunspots": "SUNACTIVITY", "nile": "volume", "co2": "co2"}


def load_statsmodels_series(name: str) -> np.ndarray:
    if name not in STATSMODELS_SERIES:
        raise ValueError(f"data.dataset: unknown series {name!r}; choose one of {sorted(STATSMODELS_SERIES)} or give data.csv")
    import statsmodels.api as sm

    df = getattr(sm.datasets, name).load_pandas().data
    s = df[STATSMODELS_SERIES[name]].astype(float)
    # Forward fill only: filling a gap from later values would look into the future.
    return s.ffill().bfill().to_numpy()


class TimeSeriesDataModule(TargetScalingMixin, ArrayDataModule):
    """Windows ``(window, 1)`` of a univariate series -> the value ``horizon`` steps ahead.

    Args:
        dataset: statsmodels series name (``sunspots``, ``nile``, ``co2``); ignored when ``csv`` is set.
        csv: path of a CSV file whose rows are in time order; ``column`` names the series.
        column: the CSV column to forecast.
        window: input length T (past values per sample).
        horizon: steps ahead of the last input value the target lies (1 = next value).
        gap: time steps left out between train and val and between val and test.
        val_size, test_size: fractions of the series' time steps for the val and test parts
            (the most recent ones go to test).
        seed, batch_size, num_workers: see ``ArrayDataModule`` (the split itself uses no seed).
        nonfinite: a CSV series with missing, non-numeric or infinite values: ``"error"`` (default:
            refused, naming the rows) or ``"drop"``: every window whose inputs or target touch such a
            value is left out (the time order and the part boundaries stay; a warning gives the count)
            and the scaler is fitted on the finite training values.

    After ``setup``: ``part_bounds[k] = (start, stop)`` time indices of each part and
    ``window_times[k]`` an ``(n, 2)`` array of (first input time, target time) per window.
    """

    num_classes = 1
    task_type = "regression"
    scale_axis = -1

    def __init__(
        self,
        dataset: str = "sunspots",
        csv: str | None = None,
        column: str | None = None,
        window: int = 20,
        horizon: int = 1,
        gap: int = 0,
        val_size: float = 0.15,
        test_size: float = 0.15,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        nonfinite: str = "error",
    ) -> None:
        super().__init__(
            val_size=val_size, test_size=test_size, seed=seed, batch_size=batch_size, num_workers=num_workers, nonfinite=nonfinite
        )
        if window < 1:
            raise ValueError(f"data.window must be >= 1 time step, got {window}")
        if horizon < 1:
            raise ValueError(f"data.horizon must be >= 1 (1 = next value), got {horizon}")
        if gap < 0:
            raise ValueError(f"data.gap must be >= 0 time steps, got {gap}")
        if csv is not None and not column:
            raise ValueError("data.column: name the CSV column that holds the series")
        if csv is None and dataset not in STATSMODELS_SERIES:
            raise ValueError(f"data.dataset: unknown series {dataset!r}; choose one of {sorted(STATSMODELS_SERIES)} or give data.csv")
        self.dataset, self.csv, self.column = dataset, csv, column
        self.window, self.horizon, self.gap = window, horizon, gap
        self.input_shape = (window, 1)
        self.part_bounds: dict[str, tuple[int, int]] = {}
        self.window_times: dict[str, np.ndarray] = {}
        self.save_hyperparameters()

    # ---------------------------------------------------------------------------------- data

    def load_series(self) -> np.ndarray:
        if self.csv is None:
            return load_statsmodels_series(self.dataset)
        import pandas as pd

        path = Path(self.csv)
        if not path.is_file():
            raise FileNotFoundError(f"data.csv: no such file {str(path)!r}")
        df = pd.read_csv(path)
        if self.column not in df.columns:
            raise ValueError(f"data.column: {self.column!r} is not a column of {path}; columns are {list(df.columns)}")
        s = pd.to_numeric(df[self.column], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(s))
        if len(bad) and self.nonfinite == "error":
            raw = df[self.column].to_numpy()
            raise ValueError(
                f"data.csv: column {self.column!r} of {path} has missing, non-numeric or infinite values on lines "
                f"{(bad[:10] + 2).tolist()} ({[str(v) for v in raw[bad[:10]]]}; line 1 is the header); clean or fill "
                "them, or set data.init_args.nonfinite: drop to leave out the windows that touch them"
            )
        return s

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.load_series()
        n = len(s)
        n_test, n_val = int(round(self.test_size * n)), int(round(self.val_size * n))
        n_train = n - n_val - n_test - 2 * self.gap
        starts = {"train": 0, "val": n_train + self.gap, "test": n_train + n_val + 2 * self.gap}
        self.part_bounds = {"train": (0, n_train), "val": (starts["val"], starts["val"] + n_val), "test": (starts["test"], n)}
        need = self.window + self.horizon
        for k, (a, b) in self.part_bounds.items():
            if b - a < need:
                raise ValueError(
                    f"{type(self).__name__}: the {k} part has {max(b - a, 0)} time steps, fewer than window + horizon = {need}; "
                    f"the series has {n} steps. Lower data.window or data.gap, or raise data.{'val_size' if k == 'val' else 'test_size' if k == 'test' else 'val_size/test_size down'}"
                )
        xs, ys, idx, times = [], [], {}, {}
        count = dropped = 0
        for k, (a, b) in self.part_bounds.items():
            # Windows inside [a, b) only: inputs s[t - window : t], target s[t + horizon - 1].
            t = np.arange(a + self.window, b - self.horizon + 1)
            if self.nonfinite == "drop":  # windows touching a NaN/inf (inputs or target) are left out
                ok = np.array([np.isfinite(s[i - self.window : i]).all() and np.isfinite(s[i + self.horizon - 1]) for i in t], dtype=bool)
                dropped += int((~ok).sum())
                t = t[ok]
                if len(t) == 0:
                    raise ValueError(f"{type(self).__name__}: every window of the {k} part touches a NaN or inf value; clean the series")
            xs.append(np.stack([s[i - self.window : i] for i in t])[..., None])  # (n_k, window, 1)
            ys.append(s[t + self.horizon - 1])  # (n_k,)
            idx[k] = np.arange(count, count + len(t))
            times[k] = np.stack([t - self.window, t + self.horizon - 1], axis=1)  # (n_k, 2)
            count += len(t)
        if dropped:
            import warnings

            warnings.warn(
                f"{type(self).__name__}: dropped {dropped} windows touching the {int((~np.isfinite(s)).sum())} "
                "NaN or inf values of the series (data.nonfinite=drop)",
                stacklevel=2,
            )
        self._split = idx
        self._series_train = s[: n_train][np.isfinite(s[: n_train])]
        self.window_times = times
        return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)

    def split(self, y: np.ndarray, groups=None, times=None) -> dict[str, np.ndarray]:
        """Time-ordered: the windows were built inside each part in ``load_arrays`` (``split``,
        ``groups`` and ``times`` of the base class do not apply: the series fixes the order)."""
        return self._split

    def fit_scaler(self, x_train: np.ndarray) -> StandardScaler:
        # The training part of the series itself (every training value once), not the overlapping
        # windows, which would weigh the middle of the part more than its ends.
        return StandardScaler().fit(self._series_train.reshape(-1, 1))
