"""Recognition by encoded vectors (Taigman et al., 2014, "DeepFace"; Schroff et al., 2015, "FaceNet"):
a gallery of embeddings of known identities, and queries answered by the nearest one.

A gallery file (``zoo enrol``) holds the unit-length embeddings of one or a few images per identity,
their names and files, the fingerprint of the model that made them and the model's validation
threshold; ``zoo identify`` answers each query with the nearest gallery identity and its distance,
or ``unknown`` when even the nearest is farther than the threshold: the distance at validation's
equal-error point (false accepts = false rejects on validation pairs of people the model never trained
on), chosen when the model was trained, never on test data. Shared by ``zoo/enrol.py`` and
``zoo/identify.py``; the Python API is ``load_model``, ``build_gallery``, ``identify``.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

GALLERY_FORMAT = "zoo-gallery-1"
UNKNOWN = "unknown"


def load_model(ckpt: str | Path):
    """The ``MetricLearningTask`` of a checkpoint (weights_only), in eval mode on the CPU."""
    from zoo.tasks.metric import MetricLearningTask

    path = Path(str(ckpt))
    if not str(ckpt).startswith(("http://", "https://")) and not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(ckpt)!r} does not exist; give the .ckpt a `zoo fit` of a metric-learning config wrote")
    hp = torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters", {}) if path.is_file() else {}
    if path.is_file() and "embedding_dim" not in hp:
        raise ValueError(
            f"checkpoint {str(ckpt)!r} is not a metric-learning model (no embedding_dim in its hyper-parameters); "
            "give a checkpoint trained with zoo.tasks.metric.MetricLearningTask (configs/triplet_*.yaml, siamese_*.yaml)"
        )
    return MetricLearningTask.load_from_checkpoint(str(ckpt), map_location="cpu").eval()


def fingerprint(model) -> str:
    """Hash of the model's weights: a gallery is only comparable with queries embedded by the same ones."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def input_shape(model) -> tuple[int, ...]:
    spec = model.hparams.get("preprocessing") or {}
    return tuple(spec.get("input_shape") or model.hparams.input_shape)


def read_images(files: list[Path], model) -> torch.Tensor:
    """Image files -> the raw uint8 batch ``(N, C, H, W)`` the model was trained on (each file resized to
    the training size, as ``ImageFolderDataModule`` did)."""
    from datamodules.vision import load_image

    shape = input_shape(model)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ValueError(
            f"this model takes raw samples of shape {shape}, not images; enrol and identify image files with a model "
            "trained on an image folder (datamodules.metric.MetricImageFolderDataModule), or call zoo.gallery.identify "
            "with tensors of that shape"
        )
    return torch.from_numpy(np.stack([load_image(f, shape[1:], shape[0]) for f in files]))


@torch.no_grad()
def embed(model, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Unit-length embeddings ``(N, D)`` of raw samples ``x`` ``(N, *input_shape)``."""
    shape = input_shape(model)
    if tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"query samples have shape {tuple(x.shape[1:])}, the model takes {shape}; resize them to {shape} "
            "(zoo identify resizes image files itself)"
        )
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0)


def image_files(folder: Path) -> list[Path]:
    from datamodules.vision import IMG_EXTENSIONS

    return sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS)


def build_gallery(model, folder: str | Path) -> dict[str, Any]:
    """Gallery of ``folder/<identity>/<images>`` (one or a few images per identity)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"gallery folder {str(folder)!r} does not exist; it must hold one sub-folder of images per identity")
    names, files = [], []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        found = image_files(d)
        names += [d.name] * len(found)
        files += found
    if not files:
        raise ValueError(f"gallery folder {str(folder)!r} has no identity sub-folders with images; put each person's images in folder/<name>/")
    emb = embed(model, read_images(files, model))
    return {
        "format": GALLERY_FORMAT,
        "model_fingerprint": fingerprint(model),
        "input_shape": list(input_shape(model)),
        "threshold": float(model.threshold),
        "embeddings": emb,  # (G, D) unit vectors
        "names": names,
        "files": [str(f) for f in files],
    }


def save_gallery(gallery: dict[str, Any], path: str | Path) -> None:
    from zoo.tasks.checkpointing import atomic_torch_save

    atomic_torch_save(gallery, path)


def load_gallery(path: str | Path, model=None) -> dict[str, Any]:
    """A gallery file (weights_only); with ``model``, refused unless that model built it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gallery {str(path)!r} does not exist; build it with `zoo enrol`")
    try:
        gallery = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same answer
        raise ValueError(f"gallery {str(path)!r} is not a gallery file ({type(e).__name__}); build it with `zoo enrol`") from None
    if not isinstance(gallery, dict) or gallery.get("format") != GALLERY_FORMAT:
        raise ValueError(f"gallery {str(path)!r} is not a {GALLERY_FORMAT} file; build it with `zoo enrol`")
    if model is not None and gallery["model_fingerprint"] != fingerprint(model):
        raise ValueError(
            f"gallery {str(path)!r} was built by another model (weights {gallery['model_fingerprint']}, this checkpoint's "
            f"{fingerprint(model)}); run `zoo enrol` again with this checkpoint"
        )
    return gallery


def identify(model, gallery: dict[str, Any], x: torch.Tensor, threshold: float | None = None) -> list[dict[str, Any]]:
    """For each raw query sample of ``x``: ``{"identity", "distance", "nearest"}``; ``identity`` is
    ``"unknown"`` when the nearest gallery embedding is farther than ``threshold`` (default: the
    model's validation equal-error threshold stored in the gallery)."""
    t = gallery["threshold"] if threshold is None else float(threshold)
    if t is None or math.isnan(t):
        raise ValueError(
            "the model has no validation threshold (it never ran a validation epoch); train it with `zoo fit`, "
            "or give --threshold DISTANCE"
        )
    q = embed(model, x)  # (Q, D)
    d = torch.cdist(q, gallery["embeddings"].to(q.dtype))  # (Q, G)
    dist, idx = d.min(1)
    out = []
    for di, i in zip(dist.tolist(), idx.tolist()):
        name = gallery["names"][i]
        out.append({"identity": name if di <= t else UNKNOWN, "distance": di, "nearest": name})
    return out
