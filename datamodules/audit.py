"""Contamination audit: duplicates across train/val/test and single features that give the target away.

* Exact duplicates: a content hash (SHA-1 of the raw sample's bytes) shared by rows in two
  different splits.
* Near duplicates: features standardised with a ``StandardScaler`` fitted on the training rows,
  then scikit-learn's ``NearestNeighbors``: a validation/test row whose nearest training row (or a
  test row whose nearest validation row) lies closer than ``near_threshold`` in root-mean-square
  standardised units per feature (distance / sqrt(n_features)), which is scale-free across data sets.
* Leaky features (tables only, samples of shape ``(F,)``): each feature alone, in a depth-3
  decision tree, cross-validated on the training rows, the signature of an id or a target copy.
  The bar depends on the task (``LEAK_SCORE``): classification, balanced accuracy >= 0.99
  (balanced, so that a copy of a rare label is flagged too: a constant guess scores 1/k however
  imbalanced the classes); regression, R^2 >= 0.95, or a Spearman rank correlation with the target
  of |rho| >= 0.99 (``LEAK_RANK``). A depth-3 tree has 8 leaves, so on an exact copy of a continuous
  target it reaches R^2 about 0.98, not 1 (0.9785 on scikit-learn's diabetes), which is why the
  regression bar is lower; a tree is blind to monotone transforms, and the rank correlation flags
  any monotone transform of the target (log, cube, a rescaled copy) at |rho| = 1 whatever the bar.

``mode``: ``"warn"`` (a warning with the report), ``"fail"`` (``ContaminationError``) or
``"drop"`` (remove the training rows that duplicate validation or test rows, then refit the
training statistics). Run it from a DataModule (``dm.audit(mode)`` after ``setup``, or the
``audit=...`` argument, which makes the drop part of ``setup`` and therefore reproducible on
resume) or from the command line: ``zoo audit --config configs/<model>_<data>.yaml``.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import spearmanr
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

MODES = ("warn", "fail", "drop")
# Cross-validated score of a depth-3 tree on one feature at which the feature is reported as leaky,
# per task (docs/data.md): balanced accuracy for classification, R^2 for regression.
LEAK_SCORE = {"classification": 0.99, "regression": 0.95}
LEAK_RANK = 0.99  # regression: |Spearman rho| between one feature and the target (monotone copies)
PAIRS = (("train", "val"), ("train", "test"), ("val", "test"))


class ContaminationError(RuntimeError):
    """The audit found duplicates across splits or a leaky feature (``mode='fail'``)."""


@dataclass
class AuditReport:
    """Rows are indices into the DataModule's raw arrays (``dm.raw_x``)."""

    exact: list[tuple[str, int, str, int]] = field(default_factory=list)
    near: list[tuple[str, int, str, int, float]] = field(default_factory=list)
    leaky_features: list[tuple[str, float]] = field(default_factory=list)
    leak_rank: dict[str, float] = field(default_factory=dict)  # regression: |Spearman rho| of each leaky feature
    dropped: list[int] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.exact or self.near or self.leaky_features)

    def __str__(self) -> str:
        lines = [f"contamination audit ({', '.join(f'{k} {v}' for k, v in self.sizes.items())} rows)"]
        lines.append(f"  exact duplicates across splits: {len(self.exact)}")
        for a, i, b, j in self.exact[:20]:
            lines.append(f"    {a} row {i} == {b} row {j}")
        lines.append(f"  near duplicates across splits: {len(self.near)}")
        for a, i, b, j, d in self.near[:20]:
            lines.append(f"    {a} row {i} ~ {b} row {j} (rms distance {d:.4f})")
        lines.append(f"  features that alone predict the target: {len(self.leaky_features)}")
        for name, s in self.leaky_features:
            rho = self.leak_rank.get(name)
            extra = "" if rho is None else f", |Spearman rho| with the target {rho:.4f}"
            lines.append(f"    {name}: cross-validated score {s:.4f} on training rows{extra}")
        if self.dropped:
            lines.append(f"  dropped {len(self.dropped)} training rows: {self.dropped[:20]}")
        lines.append("  verdict: " + ("clean" if self.clean else "CONTAMINATED"))
        return "\n".join(lines)


def _hashes(x: np.ndarray) -> list[str]:
    flat = np.ascontiguousarray(x.reshape(len(x), -1))
    return [hashlib.sha1(r.tobytes()).hexdigest() for r in flat]


def find_exact(x: np.ndarray, splits: dict[str, np.ndarray]) -> list[tuple[str, int, str, int]]:
    h = _hashes(x)
    first: dict[str, dict[str, int]] = {}
    for name in ("train", "val", "test"):
        for i in splits[name]:
            first.setdefault(h[i], {}).setdefault(name, int(i))
    out = []
    for a, b in PAIRS:
        for i in splits[b]:
            j = first.get(h[i], {}).get(a)
            if j is not None:
                out.append((a, j, b, int(i)))
    return out


def find_near(
    x: np.ndarray, splits: dict[str, np.ndarray], threshold: float, exact: list
) -> list[tuple[str, int, str, int, float]]:
    flat = x.reshape(len(x), -1).astype(np.float64)
    z = StandardScaler().fit(flat[splits["train"]]).transform(flat)  # training statistics only
    d = z.shape[1]
    known = {(b, i) for _, _, b, i in exact}
    out = []
    for a, b in PAIRS:
        ref, qry = splits[a], splits[b]
        if len(ref) == 0 or len(qry) == 0:
            continue
        nn = NearestNeighbors(n_neighbors=1).fit(z[ref])
        dist, pos = nn.kneighbors(z[qry])
        rms = dist[:, 0] / np.sqrt(d)
        for q, (r, p) in enumerate(zip(rms, pos[:, 0])):
            if r < threshold and (b, int(qry[q])) not in known:
                out.append((a, int(ref[p]), b, int(qry[q]), float(r)))
    return out


def find_leaky_features(
    x: np.ndarray,
    y: np.ndarray,
    classification: bool,
    names: list[str],
    leak_score: float | None,
    seed: int,
    leak_rank: float = LEAK_RANK,
) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """Features that alone predict the target: ``([(name, tree score)], {name: |rho|})`` (rho:
    regression only). ``leak_score`` ``None`` takes the task's bar from ``LEAK_SCORE``."""
    task = "classification" if classification else "regression"
    bar = LEAK_SCORE[task] if leak_score is None else leak_score
    if classification:
        counts = np.bincount(y)
        folds = min(5, int(counts[counts > 0].min()))
        if folds < 2 or (counts > 0).sum() < 2:
            return [], {}
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        est = DecisionTreeClassifier(max_depth=3, random_state=seed)
        scoring = "balanced_accuracy"
    else:
        if len(y) < 5 or np.ptp(y) == 0:
            return [], {}
        cv = KFold(5, shuffle=True, random_state=seed)
        est = DecisionTreeRegressor(max_depth=3, random_state=seed)
        scoring = "r2"
    out, ranks = [], {}
    for j in range(x.shape[1]):
        col = x[:, j]
        s = float(np.mean(cross_val_score(est, col[:, None], y, cv=cv, scoring=scoring)))
        rho = 0.0
        if not classification and np.ptp(col) > 0:
            rho = abs(float(spearmanr(col, y.reshape(len(y)))[0]))
        if s >= bar or rho >= leak_rank:
            out.append((names[j], s))
            if not classification:
                ranks[names[j]] = rho
    return out, ranks


def run_audit(
    dm,
    mode: str = "warn",
    near_threshold: float = 0.01,
    leak_score: float | None = None,
    near: bool = True,
) -> AuditReport:
    """Audit a DataModule after ``setup()`` (see the module docstring); returns the report."""
    if mode not in MODES:
        raise ValueError(f"audit mode must be one of {list(MODES)}, got {mode!r}")
    if getattr(dm, "split_indices", None) is None:
        dm.setup()
    x, y, s = dm.raw_x, dm.raw_y, dm.split_indices
    rep = AuditReport(sizes={k: int(len(v)) for k, v in s.items()})
    rep.exact = find_exact(x, s)
    if near:
        rep.near = find_near(x, s, near_threshold, rep.exact)
    if x.ndim == 2 and y.ndim == 1:  # tables: one feature per column
        names = list(getattr(dm, "feature_names", None) or [f"feature {j}" for j in range(x.shape[1])])
        tr = s["train"]
        rep.leaky_features, rep.leak_rank = find_leaky_features(
            x[tr].astype(np.float64), y[tr], dm.task_type == "classification", names, leak_score, dm.seed
        )
    if rep.clean:
        return rep
    if mode == "fail":
        raise ContaminationError(
            f"{type(dm).__name__}: {rep}\nRemove the duplicated rows or the leaky columns, or run with audit mode "
            "'drop' to remove the duplicates from training"
        )
    if mode == "drop":
        bad = {i for a, i, _, *_ in rep.exact + rep.near if a == "train"}
        # Duplicates of a test row in validation are left: dropping them would change which rows
        # are validated on; report them and drop only from training, as documented.
        rep.dropped = sorted(bad)
        if bad:
            dm.drop_training_rows(np.array(rep.dropped))
    warnings.warn(f"{type(dm).__name__}: {rep}", stacklevel=2)
    return rep
