"""Peer baselines for the issue-3 configs (SimpleConvNet, VGG, ResNet, RNN/LSTM/GRU).

``BASELINES[config_stem](datamodule)`` takes the DataModule of that config AFTER ``setup()`` and
returns ``{"metric": ..., "baseline": ..., "value": ...}`` computed on exactly the test rows or
windows the model is tested on, fitting only on the training rows. A baseline with company (the
linear AR model beside the naive forecast) lists the others under ``"also"``.

Run directly to print the baselines of every config: ``uv run python benchmarks/baselines_3b.py``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from baselines_core import svc_digits  # one peer for every digits config: SVC(gamma=0.001)
from sklearn.metrics import accuracy_score
from sklearn.svm import SVC


def _arrays(dm, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw samples and targets of one split (the same tensors the loaders yield)."""
    ds = dm.datasets[split]
    x, y = (ds.tensors if hasattr(ds, "tensors") else (ds.x, ds.y))
    return x.numpy().astype(np.float64), y.numpy()


def constant_one_mse(dm) -> dict:
    """The adding problem's trivial answer: the expected sum 1.0 (MSE = Var(U1 + U2) = 1/6)."""
    _, yte = _arrays(dm, "test")
    return {"metric": "test/mse", "baseline": "predict 1.0", "value": float(np.mean((yte - 1.0) ** 2))}


def naive_and_ar_mae(dm) -> dict:
    """Naive last-value forecast and a linear AR model of the same window (least squares on the
    training windows, with intercept), both on the test windows."""
    xtr, ytr = _arrays(dm, "train")
    xte, yte = _arrays(dm, "test")
    xtr, xte = xtr[..., 0], xte[..., 0]  # (n, window): univariate
    h = dm.horizon
    naive = float(np.mean(np.abs(xte[:, -1] - yte)))
    design = lambda x: np.hstack([x, np.ones((len(x), 1))])  # noqa: E731
    coef, *_ = np.linalg.lstsq(design(xtr), ytr, rcond=None)
    ar = float(np.mean(np.abs(design(xte) @ coef - yte)))
    return {
        "metric": "test/mae",
        "baseline": f"naive last value ({h} step{'s' if h > 1 else ''} ahead)",
        "value": naive,
        "also": [{"metric": "test/mae", "baseline": f"linear AR({xtr.shape[1]}) least squares", "value": ar}],
    }


BASELINES: dict[str, Callable[[object], dict]] = {
    "simple_convnet_digits": svc_digits,
    "vgg_digits": svc_digits,
    "resnet_digits": svc_digits,
    "rnn_sequential_digits": svc_digits,
    "lstm_sequential_digits": svc_digits,
    "gru_sequential_digits": svc_digits,
    "lstm_sunspots": naive_and_ar_mae,
    "rnn_adding": constant_one_mse,
    "lstm_adding": constant_one_mse,
    "gru_adding": constant_one_mse,
}


def _datamodule(config: str):
    """The DataModule a config builds (same class and arguments), set up."""
    from pathlib import Path

    import yaml

    import datamodules

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "configs" / f"{config}.yaml").read_text())["data"]
    cls = getattr(datamodules, cfg["class_path"].rsplit(".", 1)[-1])
    dm = cls(**cfg.get("init_args", {}))
    dm.setup("fit")
    return dm


if __name__ == "__main__":
    for stem, fn in BASELINES.items():
        r = fn(_datamodule(stem))
        rows = [r, *r.get("also", [])]
        for b in rows:
            print(f"{stem:24s} {b['metric']:9s} {b['value']:.4f}  {b['baseline']}")

# Bars from issue 3: (metric, comparison, value); "baseline*k" means k times the baseline's value.
BARS = {
    "simple_convnet_digits": [("test/acc", ">=", 0.98)],
    "vgg_digits": [("test/acc", ">=", 0.97)],
    "resnet_digits": [("test/acc", ">=", 0.98)],
    "lstm_sequential_digits": [("test/acc", ">=", 0.95)],
    "gru_sequential_digits": [("test/acc", ">=", 0.95)],
    "lstm_sunspots": [("test/mae", "<=", "baseline*0.8")],
    "lstm_adding": [("test/mse", "<", 0.02)],
    "gru_adding": [("test/mse", "<", 0.02)],
}
