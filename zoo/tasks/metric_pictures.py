"""Pictures of a metric-learning run (``zoo.tasks.metric``), written next to the run's logs:

* ``embeddings/<val_epochNNN|test>.png``: the split's embeddings projected to 2-D by PCA (a linear
  map fitted on the pictured split itself, deterministic and cheap; t-SNE would cost seconds per epoch
  and move between epochs for reasons of its own), coloured by class. The validation classes are new
  to the model, so clusters forming epoch by epoch show the embedding generalising.
* ``oneshot_episodes.png``: the first test episodes, one row each: the support images (one per way),
  then the query, titled with the way the model chose (green right, red wrong).

matplotlib's object API (no pyplot): no window, no global backend switch.
"""

from __future__ import annotations

import numpy as np
import torch

from callbacks._images import send_image

from .distributed import run_dir


def save_projection(trainer, emb: torch.Tensor, y: torch.Tensor, name: str) -> None:
    from matplotlib.figure import Figure
    from PIL import Image
    from sklearn.decomposition import PCA

    e = emb.detach().float().cpu().numpy()
    labels = y.cpu().numpy()
    xy = PCA(n_components=2).fit_transform(e) if e.shape[1] >= 2 and len(e) >= 2 else np.zeros((len(e), 2))
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=8, label=str(c))
    ax.legend(title="class", fontsize=7, markerscale=2, loc="best")
    ax.set_title(f"{name}: embeddings, PCA to 2-D")
    out = run_dir(trainer) / "embeddings"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    with Image.open(path) as im:
        send_image(trainer, f"embeddings/{name.split('_')[0]}", path, im.copy())


def _show(ax, img: torch.Tensor) -> None:
    a = img.float().cpu()
    if a.dim() == 3 and a.shape[0] in (1, 3):
        a = a.permute(1, 2, 0)
    a = a.numpy()
    a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
    ax.imshow(a.squeeze(-1) if a.ndim == 3 and a.shape[-1] == 1 else a, cmap="gray")
    ax.set_xticks([]), ax.set_yticks([])


def save_episodes(trainer, x: torch.Tensor, emb: torch.Tensor, y: torch.Tensor, support: np.ndarray,
                  query: np.ndarray, rows: int = 6) -> None:
    """``x`` raw test images ``(n, C, H, W)``; ``support`` ``(E, N, K)``, ``query`` ``(E, N, Q)`` row positions."""
    from matplotlib.figure import Figure

    rows = min(rows, len(support))
    n_way = support.shape[1]
    fig = Figure(figsize=(1.2 * (n_way + 1), 1.3 * rows))
    labels = y.cpu()
    for e in range(rows):
        protos = emb[torch.as_tensor(support[e])].mean(1)  # (N, D)
        q = int(query[e, e % n_way, 0])  # one query per row, cycling through the ways
        pred = int(torch.cdist(emb[q][None], protos).argmin())
        for j in range(n_way):
            ax = fig.add_subplot(rows, n_way + 1, e * (n_way + 1) + j + 1)
            _show(ax, x[int(support[e, j, 0])])
            ax.set_title(f"{int(labels[support[e, j, 0]])}", fontsize=8, color="green" if j == pred else "black")
        ax = fig.add_subplot(rows, n_way + 1, e * (n_way + 1) + n_way + 1)
        _show(ax, x[q])
        ok = pred == e % n_way
        ax.set_title(f"query -> {int(labels[support[e, pred, 0]])}", fontsize=8, color="green" if ok else "red")
    fig.suptitle(f"{n_way}-way one-shot test episodes: support (left), query and prediction (right)", fontsize=9)
    out = run_dir(trainer)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "oneshot_episodes.png", dpi=80, bbox_inches="tight")
