"""Offline sample quality for generative models: a zoo classifier, trained on the same DataModule's
training rows, stands in for Inception v3 (nothing is downloaded).

* Frechet distance (Heusel et al., 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
  Local Nash Equilibrium", NeurIPS) and kernel distance (Binkowski et al., 2018, "Demystifying MMD
  GANs", ICLR) between the classifier's penultimate features of two image sets: torchmetrics'
  ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` with the classifier as the custom
  ``feature`` module.
* Inception Score (Salimans et al., 2016, "Improved Techniques for Training GANs") from the
  classifier's logits: torchmetrics' ``InceptionScore`` with the logits as the ``feature`` module.
* Class coverage: the share of each class among the samples, as the classifier reads them; a
  collapsed generator leaves classes near 0 (Radford et al. and Salimans et al. read mode collapse
  the same way on MNIST).

Every metric object is built per call and dropped, so the classifier's weights never enter the GAN's
checkpoint. The metrics' random subsets (KID, IS splits) draw from a forked RNG: measuring does not
move the training run's random stream.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The helper classifier's own Trainer and the metrics' buffer notices are not the user's run: keep
    their start-up lines and warnings (accelerator banner, "no val_dataloader", "saves all features in
    a buffer") off the console."""
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


class FeatureExtractorError(ValueError):
    """The feature-extractor checkpoint does not fit the data."""


class _Features(nn.Module):
    """Raw images -> the classifier's penultimate features (N, d) (its ``forward_features``)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = int(classifier.net.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.classifier
        return c.net.forward_features(c.preprocess(x.float())).flatten(1)  # (N, d)


class _Logits(nn.Module):
    """Raw images -> class logits (N, classes)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.float())


def load_classifier(path: str | Path, input_shape: tuple[int, ...], num_classes: int | None = None) -> nn.Module:
    """Load a ``ClassificationTask`` checkpoint (``weights_only``), frozen in eval mode, after checking it
    takes raw samples of ``input_shape``."""
    from .classification import ClassificationTask

    with _quiet():
        clf = ClassificationTask.load_from_checkpoint(str(path), map_location="cpu")
    got = tuple(clf.hparams.get("input_shape") or ())
    if got != tuple(input_shape):
        raise FeatureExtractorError(
            f"model.feature_extractor: {str(path)!r} takes samples of shape {got} but the data yields {tuple(input_shape)}; "
            "point it at a classifier trained on this DataModule, or at a path that does not exist yet (one is trained there)"
        )
    if num_classes is not None and int(clf.hparams.get("num_classes", -1)) != int(num_classes):
        raise FeatureExtractorError(
            f"model.feature_extractor: {str(path)!r} has {clf.hparams.get('num_classes')} classes but the data has {num_classes}; "
            "point it at a classifier trained on this DataModule"
        )
    clf.eval().requires_grad_(False)
    return clf


def train_classifier(path: str | Path, x: torch.Tensor, y: torch.Tensor, input_shape: tuple[int, ...], num_classes: int,
                     preprocessing: dict[str, Any] | None, epochs: int = 30, seed: int = 0) -> Path:
    """Train the zoo's SimpleConvNet (Saito, 2016; padding 2 for small images) on the TRAINING rows
    ``x, y`` only and save it at ``path`` as a ``ClassificationTask`` checkpoint. Runs in a forked RNG
    so the caller's random stream is unchanged. Seconds on digits (1,257 rows, 30 epochs)."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from .classification import ClassificationTask

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]), _quiet():
        torch.manual_seed(seed)
        clf = ClassificationTask(
            model="simple_convnet", model_kwargs={"padding": 2} if min(input_shape[1:]) < 16 else {},
            num_classes=num_classes, input_shape=list(input_shape), preprocessing=preprocessing,
            optimizer="adamw", lr=2e-3, weight_decay=0.01, label_smoothing=0.1,
        )
        loader = DataLoader(TensorDataset(x.cpu().float(), y.cpu().long()), batch_size=32, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(clf, train_dataloaders=loader)
        trainer.save_checkpoint(path)
    return path


def train_rows(dm) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """A set-up ArrayDataModule's training rows, raw (never augmented: they are kept as arrays)."""
    x, idx = getattr(dm, "raw_x", None), getattr(dm, "split_indices", None)
    if x is None or idx is None:
        return None, None
    return torch.as_tensor(x[idx["train"]]), torch.as_tensor(dm.raw_y[idx["train"]])


def ensure_classifier(path: str | Path, dm) -> nn.Module:
    """The feature-extractor classifier at ``path`` for the set-up DataModule ``dm``: loaded (and checked
    against the data's shape and classes), or first trained on ``dm``'s training rows and kept there."""
    path = Path(path)
    shape, classes = tuple(dm.input_shape), int(dm.num_classes)
    if not path.exists():
        x, y = train_rows(dm)
        if x is None:
            raise FeatureExtractorError(
                f"model.feature_extractor {str(path)!r} does not exist and {type(dm).__name__} has no training rows to "
                "train it on; train a ClassificationTask on this data and point to its checkpoint"
            )
        print(f"Training the feature-extractor classifier on the {len(x)} training rows -> {path}")
        train_classifier(path, x, y, shape, classes, dm.preprocessing)
    return load_classifier(path, shape, classes)


@torch.no_grad()
def classify(classifier: nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """(N, classes) logits of raw images, in batches."""
    return torch.cat([classifier(x[i : i + batch].float()) for i in range(0, len(x), batch)])


@torch.no_grad()
def frechet_distance(classifier: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> float:
    """FD between the classifier features of two raw image sets (torchmetrics' FID, custom feature)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=_Features(classifier)).to(real.device)
    for i in range(0, len(real), 512):
        fid.update(real[i : i + 512].float(), real=True)
    for i in range(0, len(fake), 512):
        fid.update(fake[i : i + 512].float().to(real.device), real=False)
    return float(fid.compute())


@torch.no_grad()
def kernel_distance(classifier: nn.Module, real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> float:
    """KID (mean over 50 random subsets) between two raw image sets (torchmetrics' KID, custom feature)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(len(real), len(fake), 1000)
    with _quiet():
        kid = KernelInceptionDistance(feature=_Features(classifier), subsets=50, subset_size=size).to(real.device)
    kid.update(real.float(), real=True)
    kid.update(fake.float().to(real.device), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, _ = kid.compute()
    return float(mean)


@torch.no_grad()
def inception_score(classifier: nn.Module, x: torch.Tensor, seed: int = 0) -> float:
    """Classifier-based Inception Score (mean over 10 splits; torchmetrics' IS with the logits as feature)."""
    from torchmetrics.image.inception import InceptionScore

    with _quiet():
        metric = InceptionScore(feature=_Logits(classifier)).to(x.device)
    metric.update(x.float())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, _ = metric.compute()
    return float(mean)


@torch.no_grad()
def class_coverage(classifier: nn.Module, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes,) share of each class among ``x`` as the classifier predicts them."""
    pred = classify(classifier, x).argmax(-1)
    return torch.bincount(pred, minlength=num_classes).float() / len(x)


@torch.no_grad()
def class_changes(classifier: nn.Module, paths: torch.Tensor) -> torch.Tensor:
    """Class changes of the classifier's prediction along each path of images ``(P, S, C, H, W)`` -> (P,)."""
    p, s = paths.shape[:2]
    pred = classify(classifier, paths.flatten(0, 1)).argmax(-1).view(p, s)  # (P, S)
    return (pred[:, 1:] != pred[:, :-1]).sum(1).float()
