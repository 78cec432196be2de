"""How far hand-built invariance takes nearest neighbour on configs/siamese_digits.yaml's one-shot
episodes (digits 5-9, 5-way 1-shot, the task's own seeded episodes), on the VALIDATION rows only:
raw pixels, L2-normalised pixels, Gaussian blurs, 2x upsampling + blur, and the minimum distance over
+-1 pixel shifts. A yardstick for issue 16's bar (raw + 0.10), not a model.

    uv run python benchmarks/oneshot_invariance_probe.py
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.ndimage import gaussian_filter, zoom  # noqa: E402

from cli import ZooCLI  # noqa: E402
from datamodules.metric import episode_accuracy, episode_indices  # noqa: E402

c = ZooCLI(args=["--config", str(ROOT / "configs/siamese_digits.yaml")], run=False)
dm, hp = c.datamodule, c.model.hparams
dm.setup("fit")
rows = dm.split_indices["val"]
X = dm.raw_x[rows].reshape(len(rows), 8, 8).astype(np.float64)  # (n, 8, 8) raw pixels
y = dm.split_labels("val")
support, query = episode_indices(y, hp.n_way, hp.k_shot, hp.episodes, hp.eval_seed)  # (E, ways, shots) each


def acc(f: np.ndarray) -> float:
    return float(episode_accuracy(torch.from_numpy(np.ascontiguousarray(f.reshape(len(f), -1))), support, query))


def l2(f: np.ndarray) -> np.ndarray:
    return f / np.linalg.norm(f.reshape(len(f), -1), axis=1)[:, None, None]


def shift_acc(f: np.ndarray) -> float:
    """1-shot accuracy with d(i, j) = min over +-1 pixel shifts of one image against the other."""
    n, flat = len(f), f.reshape(len(f), -1)
    padded = np.pad(f, ((0, 0), (1, 1), (1, 1)))
    d = np.full((n, n), np.inf)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            s = padded[:, 1 + dy:9 + dy, 1 + dx:9 + dx].reshape(n, -1)
            d = np.minimum(d, ((s[:, None, :] - flat[None, :, :]) ** 2).sum(-1))
    d = np.minimum(d, d.T)
    sup, qry = np.asarray(support).reshape(len(support), -1), np.asarray(query).reshape(len(query), -1)
    right = sum(int((y[s[np.argmin(d[np.ix_(q, s)], axis=1)]] == y[q]).sum()) for s, q in zip(sup, qry))
    return right / qry.size


up = np.stack([zoom(x, 2, order=1) for x in X])  # (n, 16, 16)
results = [("raw pixels", acc(X)), ("L2-normalised pixels", acc(l2(X)))]
results += [(f"Gaussian blur sigma {s}", acc(np.stack([gaussian_filter(x, s) for x in X]))) for s in (0.5, 0.7, 1.0, 1.3)]
results += [(f"2x upsampled, blur {s}", acc(np.stack([gaussian_filter(x, s) for x in up]))) for s in (1.0, 1.5, 2.0)]
results += [("min over +-1 pixel shifts", shift_acc(X)),
            ("shifts + blur 0.7", shift_acc(np.stack([gaussian_filter(x, 0.7) for x in X])))]
print("| nearest neighbour on | 5-way 1-shot (validation) |\n| --- | --- |")
for name, a in results:
    print(f"| {name} | {a:.4f} |")
