"""Split strategies: random, stratified, grouped, stratified-grouped and time-ordered, and k-fold.

Every strategy is a pure function of the labels / groups / times, the sizes and the seed (never
of the feature values and never of the global RNG), so the split is identical on every call and
every rank. The work is done by scikit-learn's splitters (``train_test_split``,
``GroupShuffleSplit``, ``StratifiedGroupKFold``, ``KFold``, ``StratifiedKFold``, ``GroupKFold``,
``TimeSeriesSplit``); only the time-ordered hold-out with a gap in time units is written here,
because scikit-learn's ``TimeSeriesSplit`` counts its gap in rows and cannot hold out a fraction.

K-fold: the test part is held out first with the chosen strategy (so every fold is tested on the
same rows), then ``n_folds`` folds split the remaining rows into train and validation; ``fold``
picks which fold is the validation part. ``benchmarks/kfold.py`` runs every fold.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    TimeSeriesSplit,
    train_test_split,
)

STRATEGIES = ("random", "stratified", "grouped", "stratified_grouped", "time")


def _check(strategy: str, y, groups, times) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"data.split: unknown split strategy {strategy!r}; choose one of {list(STRATEGIES)}")
    if strategy in ("stratified", "stratified_grouped") and y is None:
        raise ValueError(f"data.split={strategy!r} needs class labels; use split='random' for regression targets")
    if strategy in ("grouped", "stratified_grouped") and groups is None:
        raise ValueError(
            f"data.split={strategy!r} needs a group per row (e.g. the person or the patient); this data set "
            "provides none (give a group column / groups array, or use split='random' or 'stratified')"
        )
    if strategy == "time" and times is None:
        raise ValueError("data.split='time' needs a time per row (give a time column / times array)")


def _n_splits(frac: float) -> int:
    return max(2, int(round(1.0 / frac)))


def _time_cut(idx: np.ndarray, times: np.ndarray, frac: float, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """(earlier, later) rows of ``idx``: the newest ``frac`` go to ``later``; rows sharing a time never
    straddle the boundary and rows within ``gap`` (time units) before it are left out, so that
    ``max(earlier time) + gap <= min(later time)``."""
    t = times[idx]
    ts = np.sort(t)
    t_cut = ts[len(idx) - int(np.ceil(frac * len(idx)))]
    earlier = idx[(t < t_cut) & (t + gap <= t_cut)]
    if len(earlier) == 0:
        raise ValueError(
            f"data.split='time': no rows are left before time {t_cut} with gap={gap} "
            f"({len(np.unique(t))} distinct times); lower data.gap or the held-out fractions"
        )
    return earlier, idx[t >= t_cut]


def _holdout(idx, frac, strategy, y, groups, seed, times=None, gap=0.0) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held_out) rows of ``idx``: about ``frac`` of the rows go to ``held_out``."""
    if strategy == "time":
        return _time_cut(idx, times, frac, gap)
    if strategy == "random":
        return train_test_split(idx, test_size=frac, random_state=seed)
    if strategy == "stratified":
        return train_test_split(idx, test_size=frac, stratify=y[idx], random_state=seed)
    if strategy == "grouped":
        # A group (a person, a patient, a photo session) lies wholly on one side.
        rest, held = next(GroupShuffleSplit(n_splits=1, test_size=frac, random_state=seed).split(idx, groups=groups[idx]))
        return idx[rest], idx[held]
    # stratified_grouped: one fold of a StratifiedGroupKFold with 1/frac folds keeps groups whole and
    # the class shares as close to the whole set's as the groups allow.
    cv = StratifiedGroupKFold(n_splits=_n_splits(frac), shuffle=True, random_state=seed)
    rest, held = next(cv.split(idx, y[idx], groups=groups[idx]))
    return idx[rest], idx[held]


def make_split(
    n: int,
    *,
    strategy: str,
    y: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    times: np.ndarray | None = None,
    val_size: float = 0.15,
    test_size: float = 0.2,
    seed: int = 0,
    gap: float = 0.0,
    n_folds: int | None = None,
    fold: int = 0,
    test_index: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Sorted ``train``/``val``/``test`` row indices of ``n`` rows.

    Args:
        strategy: ``random``, ``stratified`` (on ``y``), ``grouped`` (``groups`` never straddle),
            ``stratified_grouped`` or ``time`` (ordered by ``times`` with ``gap``).
        val_size, test_size: fractions of all rows (``val_size`` is ignored with ``n_folds``).
        n_folds, fold: k-fold cross-validation of the rows left after the test part; ``fold`` in
            ``[0, n_folds)`` is the validation fold.
        test_index: a predefined test part (an official test set): only the other rows are split.
        class_names: names of the classes ``0..k-1`` for error messages (the CSV's labels, folder names).

    Data too small for the split is a one-line ``ValueError`` naming the counts and the fix (never
    scikit-learn's own message about ``n_samples`` or "the least populated class").
    """
    _check(strategy, y, groups, times)
    if n < 3:
        raise ValueError(
            f"the data has {n} row{'s' if n != 1 else ''}: too few for a training, a validation and a test part "
            "(at least 3 rows); add rows"
        )
    if y is not None and strategy.startswith("stratified"):
        classes, counts = np.unique(np.asarray(y), return_counts=True)
        few = [(c, k) for c, k in zip(classes.tolist(), counts.tolist()) if k < 2]
        if few:
            name = (lambda c: repr(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c))
            listed = ", ".join(f"class {name(c)} has {k} row" for c, k in few[:10])
            raise ValueError(
                f"{listed}: a stratified split needs at least 2 rows of every class (one for training, one held "
                "out); add rows of that class, remove it, or set data.split: random"
            )
    try:
        return _make_split(n, strategy, y, groups, times, val_size, test_size, seed, gap, n_folds, fold, test_index)
    except ValueError as e:
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            raise  # raised here: already names the setting
        msg = str(e)
        # scikit-learn's splitters: one line with the counts and the settings that decide them.
        counts = ""
        if y is not None and strategy.startswith("stratified"):
            counts = f", smallest class {int(np.unique(np.asarray(y), return_counts=True)[1].min())} rows"
        first = " ".join(msg.split())
        raise ValueError(
            f"data.split={strategy!r} cannot split {n} rows (val_size={val_size}, test_size={test_size}, "
            f"n_folds={n_folds}{counts}): {first} Add rows, change data.val_size/test_size/n_folds, or use another data.split"
        ) from None


def _make_split(n, strategy, y, groups, times, val_size, test_size, seed, gap, n_folds, fold, test_index) -> dict[str, np.ndarray]:
    y = None if y is None else np.asarray(y)
    groups = None if groups is None else np.asarray(groups)
    times = None if times is None else np.asarray(times, dtype=np.float64)
    for name, a in (("labels", y), ("groups", groups), ("times", times)):
        if a is not None and len(a) != n:
            raise ValueError(f"{name} has {len(a)} entries for {n} rows")
    if n_folds is not None:
        if n_folds < 2:
            raise ValueError(f"data.n_folds must be >= 2 (or null for a single split), got {n_folds}")
        if not 0 <= fold < n_folds:
            raise ValueError(f"data.fold must be in [0, {n_folds}), got {fold}")
    idx = np.arange(n)

    if test_index is not None:
        test = np.asarray(test_index, dtype=np.int64)
        if len(np.unique(test)) != len(test) or (len(test) and (test.min() < 0 or test.max() >= n)):
            raise ValueError(f"the predefined test indices must be distinct rows in [0, {n})")
        rest = np.setdiff1d(idx, test)
    else:
        rest, test = _holdout(idx, test_size, strategy, y, groups, seed, times, gap)

    if n_folds is None:
        # val_size is a fraction of all rows (of the rows left by a predefined test part).
        val_frac = val_size / (1.0 - test_size) if test_index is None else val_size
        if not 0 < val_frac < 1:
            raise ValueError(f"data.val_size={val_size} leaves no training rows")
        train, val = _holdout(rest, val_frac, strategy, y, groups, seed, times, gap)
        return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}

    rest = np.sort(rest)
    if strategy == "random":
        cv = KFold(n_folds, shuffle=True, random_state=seed).split(rest)
    elif strategy == "stratified":
        cv = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(rest, y[rest])
    elif strategy == "grouped":
        cv = GroupKFold(n_folds, shuffle=True, random_state=seed).split(rest, groups=groups[rest])
    elif strategy == "stratified_grouped":
        cv = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(rest, y[rest], groups=groups[rest])
    else:  # time: expanding window (TimeSeriesSplit), validation always after training
        rest = rest[np.argsort(times[rest], kind="stable")]
        cv = TimeSeriesSplit(n_folds).split(rest)
    tr, va = list(cv)[fold]
    if strategy == "time":  # ties and the gap (in time units): drop training rows too close to validation
        t0 = times[rest[va]].min()
        tr = tr[(times[rest[tr]] < t0) & (times[rest[tr]] + gap <= t0)]
    return {"train": np.sort(rest[tr]), "val": np.sort(rest[va]), "test": np.sort(test)}
