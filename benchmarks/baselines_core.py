"""Peer baselines for the foundation's configs, fitted on exactly the training rows of the config's
split and scored on its test rows."""

from __future__ import annotations

import numpy as np
from sklearn.svm import SVC


def svc_digits(dm) -> dict:
    """scikit-learn's SVC(gamma=0.001) on the raw 64 pixel values (the scikit-learn digits example)."""
    x, y = dm.load_arrays()
    x = x.reshape(len(x), -1)
    s = dm.split_indices
    acc = SVC(gamma=0.001).fit(x[s["train"]], y[s["train"]]).score(x[s["test"]], y[s["test"]])
    return {"metric": "test/acc", "baseline": "SVC(gamma=0.001)", "value": float(acc)}


BASELINES = {"lenet5_digits": svc_digits, "mlp_digits": svc_digits}

# Bars from the issues: (metric, comparison, value); "baseline" means the baseline's value.
BARS = {
    "lenet5_digits": [("test/acc", ">=", 0.985), ("test/acc", ">=", "baseline")],
    "mlp_digits": [("test/acc", ">=", 0.975)],
}
