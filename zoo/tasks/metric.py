"""Metric learning: any registered architecture, built with ``num_classes=0``, becomes an embedding
network (a linear projection to ``embedding_dim``, L2-normalised), trained with

* ``loss: contrastive`` (Hadsell, Chopra & LeCun, 2006): same-class pairs pulled together, other
  pairs pushed beyond ``margin``; the Siamese network of Koch et al. (2015) is this loss on shared
  weights;
* ``loss: triplet`` (Schroff et al., 2015, "FaceNet"): ``max(0, d(a, p) - d(a, n) + margin)`` on
  triplets mined inside P x K batches, ``mining: batch_hard`` (Hermans et al., 2017: each anchor's
  farthest positive and nearest negative) or ``semi_hard`` (FaceNet, section 3.2: for every
  anchor-positive pair the nearest negative still farther than the positive);
* ``loss: supcon`` (Khosla et al., 2020, "Supervised Contrastive Learning"): a softmax over cosine
  similarities at ``temperature``, every other row of the anchor's class a positive; the contrastive
  loss of the Siamese network in its many-negatives form.

Few training classes collapse the embedding (Papyan, Han & Donoho, 2020, "neural collapse"): with
five digits, any of the losses soon maps each digit to one point of a 4-simplex and discards what
tells unseen digits apart (validation one-shot accuracy falls below its value at initialisation).
``instance_weight`` adds the same loss with each training image as its own class, its positives the
other augmented views of it (``data.views``; SimCLR, Chen et al., 2020; Khosla et al. combine both):
the embedding must then keep what tells two images of one digit apart, and learns the augmentation's
invariances instead of the five training classes.

Why the losses and miners are written here rather than taken from pytorch-metric-learning (2.9, a
maintained library; looked at for this task): the whole of it is ~40 lines of tensor code below;
its ``TripletMarginMiner(type_of_triplets="semihard")`` returns every triplet in the semi-hard band,
not FaceNet's one nearest semi-hard negative per anchor-positive pair with the documented
fallback (TensorFlow's ``triplet_semihard_loss``: the farthest negative when no semi-hard one exists);
its miners report their counts as host attributes, while the zoo's step must not read the device
(``zoo.tasks.base``: the fraction of active triplets is a device sum logged once per epoch); and it
would be a dependency for what torch already does in a few lines. The P x K sampler is in
``datamodules.metric``.

Evaluation is on classes never trained on (``datamodules.metric``): the whole validation or test
split is embedded, then scored at epoch end: ``<stage>/oneshot_5way_acc`` (seeded N-way K-shot
episodes, identical on every call), ``<stage>/roc_auc`` and ``<stage>/eer`` (verification on seeded
same/different pairs, torchmetrics), ``<stage>/precision_at_1`` (leave-one-out nearest neighbour)
and ``<stage>/spread`` (mean distance between embeddings: a collapsed network maps everything to one
point, spread 0). The distance threshold at validation's equal-error point is kept in the checkpoint
(``threshold``) for ``zoo identify``; the test split never sets it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.functional.classification import binary_auroc, binary_roc

from .base import ZooTask
from .distributed import run_dir

LOSSES = ("contrastive", "triplet", "supcon")
MINING = ("batch_hard", "semi_hard")


# ------------------------------------------------------------------------------------ losses


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``(B, B)`` between the rows of ``emb`` ``(B, D)``. The square root is taken
    of at least 1e-12: its gradient at 0 (the diagonal, or two identical embeddings) is infinite."""
    sq = (emb * emb).sum(1)  # (B,)
    d2 = sq[:, None] + sq[None, :] - 2.0 * emb @ emb.T  # (B, B)
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_triplets(dist: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(anchor, positive, negative)`` indices: for every anchor with a positive and a negative in the
    batch, its farthest positive and its nearest negative (Hermans et al., 2017)."""
    same = labels[:, None] == labels[None, :]  # (B, B)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    ok = pos_mask.any(1) & neg_mask.any(1)  # (B,)
    hardest_pos = dist.masked_fill(~pos_mask, -1.0).argmax(1)  # (B,)
    hardest_neg = dist.masked_fill(~neg_mask, math.inf).argmin(1)  # (B,)
    anchors = ok.nonzero().squeeze(1)
    return anchors, hardest_pos[anchors], hardest_neg[anchors]


def semi_hard_triplets(dist: torch.Tensor, labels: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(anchor, positive, negative)`` indices: every anchor-positive pair with, as negative, the
    nearest one farther than the positive and within ``margin`` of it (FaceNet's semi-hard band),
    else the farthest negative (TensorFlow's ``triplet_semihard_loss`` fallback). ``(B, B, B)`` memory:
    meant for training batches, not for whole splits."""
    same = labels[:, None] == labels[None, :]  # (B, B)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    a, p = (same & ~eye).nonzero(as_tuple=True)  # (T,) all anchor-positive pairs
    d_ap = dist[a, p][:, None]  # (T, 1)
    d_an = dist[a]  # (T, B)
    neg = ~same[a]  # (T, B)
    band = neg & (d_an > d_ap) & (d_an < d_ap + margin)  # (T, B)
    nearest_in_band = d_an.masked_fill(~band, math.inf).argmin(1)  # (T,)
    farthest = d_an.masked_fill(~neg, -1.0).argmax(1)  # (T,)
    n = torch.where(band.any(1), nearest_in_band, farthest)
    keep = neg.any(1)
    return a[keep], p[keep], n[keep]


def triplet_loss(dist: torch.Tensor, a, p, n, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``max(0, d(a, p) - d(a, n) + margin)`` over the triplets and the fraction of them with a
    non-zero loss (0 when there are none)."""
    per = F.relu(dist[a, p] - dist[a, n] + margin)  # (T,)
    if per.numel() == 0:
        zero = dist.sum() * 0.0  # keeps the graph: a batch without triplets trains nothing
        return zero, zero.detach()
    return per.mean(), (per > 0).float().mean()


def contrastive_loss(d: torch.Tensor, same: torch.Tensor, margin: float, balanced: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Hadsell et al. (2006): ``same * d^2 / 2 + (1 - same) * max(0, margin - d)^2 / 2`` for pair
    distances ``d`` ``(M,)``; returns the loss and the fraction of pairs with a non-zero loss.

    ``balanced``: the mean over same-class pairs plus the mean over different-class pairs. All pairs of
    a P x K batch hold (K-1)/(PK-1) positives (7 of 39 for 5 x 8): a plain mean would let the negatives
    drown them."""
    same = same.to(d.dtype)
    pos = 0.5 * d.pow(2) * same
    neg = 0.5 * F.relu(margin - d).pow(2) * (1 - same)
    per = pos + neg
    active = (per > 0).float().mean()
    if not balanced:
        return per.mean(), active
    n_pos, n_neg = same.sum().clamp_min(1), (1 - same).sum().clamp_min(1)
    return pos.sum() / n_pos + neg.sum() / n_neg, active


def supcon_loss(emb: torch.Tensor, labels: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Supervised contrastive loss (Khosla et al., 2020, eq. 2, "L_out") of unit embeddings ``emb``
    ``(B, D)``: for each anchor, the mean over its positives (same label, not itself) of
    ``-log softmax`` of their cosine similarity / ``temperature`` against every other row. Written here
    because torch has no such loss (pytorch-metric-learning's ``SupConLoss`` would be a dependency for
    these lines). Also returns the fraction of anchor-positive pairs with a negative more similar than
    the positive (a violated ranking; the analogue of the active triplets)."""
    b = len(labels)
    eye = torch.eye(b, dtype=torch.bool, device=emb.device)
    sim = emb @ emb.T  # (B, B) cosine similarities (unit rows)
    logits = (sim / temperature).masked_fill(eye, -math.inf)  # (B, B); an anchor is not its own candidate
    log_prob = logits - logits.logsumexp(1, keepdim=True)  # (B, B)
    pos = (labels[:, None] == labels[None, :]) & ~eye  # (B, B)
    n_pos = pos.sum(1)  # (B,)
    has = n_pos > 0
    if not bool(has.any()):
        zero = emb.sum() * 0.0
        return zero, zero.detach()
    per = -(log_prob.masked_fill(~pos, 0.0)).sum(1)[has] / n_pos[has]  # (A,) anchors with a positive
    with torch.no_grad():
        hardest_neg = sim.masked_fill(pos | eye, -math.inf).max(1, keepdim=True).values  # (B, 1)
        active = ((sim < hardest_neg) & pos).sum() / pos.sum()
    return per.mean(), active.float()


def equal_error(dist: torch.Tensor, same: torch.Tensor) -> tuple[float, float, float]:
    """ROC AUC, equal error rate and the distance threshold at the equal-error point of pairs at
    distances ``dist`` ``(M,)`` with truth ``same`` (1 same class). Scores for torchmetrics are
    ``1 / (1 + d)``: in [0, 1] (torchmetrics treats scores outside it as logits) and decreasing in d."""
    score = 1.0 / (1.0 + dist.float())
    target = same.long()
    auc = float(binary_auroc(score, target))
    fpr, tpr, thr = binary_roc(score, target)
    fnr = 1.0 - tpr
    i = int((fpr - fnr).abs().argmin())
    eer = float((fpr[i] + fnr[i]) / 2)
    # Pairs scoring >= thr[i] are accepted there; the threshold goes midway to the next score down, so a
    # gap between the classes (perfect separation) is split in the middle, not at its genuine edge.
    d_at = 1.0 / float(thr[i].clamp(1e-12, 1.0)) - 1.0
    d_next = 1.0 / float(thr[i + 1].clamp(1e-12, 1.0)) - 1.0 if i + 1 < len(thr) else d_at
    return auc, eer, (d_at + d_next) / 2  # accept a pair when its distance <= this


# ------------------------------------------------------------------------------------ task


class MetricLearningTask(ZooTask):
    """Embedding network trained with a contrastive or a triplet loss (see the module docstring).

    Training batches are ``(x, y)`` from ``datamodules.metric`` (P x K batches), or
    ``PairDataModule``'s ``(x_a, x_b, same)`` pairs (contrastive) and ``(anchor, positive, negative)``
    triplets (triplet loss on the given triplets). Validation and test take ``(x, y)`` batches of
    classes never trained on (episodes, verification, precision@1), or pairs (verification only).

    Args (besides ``ZooTask``'s; ``num_classes`` is the data's and is not used by the network):
        loss: ``contrastive``, ``triplet`` or ``supcon``.
        margin: the loss's margin in embedding distance (embeddings are unit vectors, distances in [0, 2]).
        mining: triplet loss on P x K batches: ``batch_hard`` or ``semi_hard``.
        temperature: ``supcon``'s softmax temperature (Khosla et al., 2020 use 0.1).
        class_weight, instance_weight: the loss is ``class_weight * loss(classes) + instance_weight *
            loss(images)``, the second with each training image as its own class and its augmented
            views (``data.views`` >= 2) as positives; see the module docstring.
        embedding_dim: size of the L2-normalised embedding.
        n_way, k_shot, episodes: the seeded N-way K-shot episodes scored on validation and test.
        verification_pairs: seeded same/different pairs per split for ROC AUC and EER.
        eval_seed: seed of the episodes and pairs (the same ones on every call).
        collapse_spread: a fit whose last ``val/spread`` is below this ends with a warning.
        pictures: draw the embedding projection each validation epoch and at test, and the episode grid.
    """

    early_stopping_preset = {"monitor": "val/eer", "mode": "min"}

    def __init__(
        self,
        loss: str = "triplet",
        margin: float = 0.2,
        mining: str = "batch_hard",
        temperature: float = 0.1,
        class_weight: float = 1.0,
        instance_weight: float = 0.0,
        embedding_dim: int = 64,
        n_way: int = 5,
        k_shot: int = 1,
        episodes: int = 2000,
        verification_pairs: int = 2000,
        eval_seed: int = 0,
        collapse_spread: float = 0.05,
        pictures: bool = True,
        **kwargs: Any,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"model.loss: unknown loss {loss!r}; choose one of {list(LOSSES)}")
        if mining not in MINING:
            raise ValueError(f"model.mining: unknown mining {mining!r}; choose one of {list(MINING)}")
        if not margin > 0:
            raise ValueError(f"model.margin must be positive, got {margin}")
        if not temperature > 0:
            raise ValueError(f"model.temperature must be positive, got {temperature}")
        if class_weight < 0 or instance_weight < 0 or class_weight + instance_weight <= 0:
            raise ValueError(f"model.class_weight={class_weight} and model.instance_weight={instance_weight}: both must be "
                             ">= 0 and at least one positive")
        for name, value in (("embedding_dim", embedding_dim), ("n_way", n_way), ("k_shot", k_shot),
                            ("episodes", episodes), ("verification_pairs", verification_pairs)):
            if value < 1:
                raise ValueError(f"model.{name} must be >= 1, got {value}")
        if n_way < 2:
            raise ValueError(f"model.n_way must be >= 2 (one class is no choice), got {n_way}")
        super().__init__(**kwargs)
        feat = getattr(self.net, "num_features", None)
        if feat is None:  # an architecture without the attribute: measure its output on one sample
            shape = self.preprocess.output_shape if self.hparams.get("preprocessing") else tuple(self.hparams.input_shape)
            with torch.no_grad():
                feat = self.net.eval()(torch.zeros(2, *shape)).shape[-1]
            self.net.train()
        self.embed = nn.Linear(int(feat), embedding_dim)
        # Distance at validation's equal-error point (NaN until a validation epoch has run); a buffer,
        # so every checkpoint carries the one chosen with its weights.
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self._views = 1  # copies of each image in a training batch (the DataModule's ``views``; read in setup)
        self._eval: dict[str, dict[str, list[torch.Tensor]]] = {}
        self._episodes: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self.last_metrics: dict[str, dict[str, float]] = {}

    def net_kwargs(self, num_classes: int) -> dict[str, Any]:
        return {"num_classes": 0}  # the architecture's features; the embedding head is ours

    @property
    def metric_prefix(self) -> str:
        k = self.hparams.k_shot
        return f"{'one' if k == 1 else k}shot_{self.hparams.n_way}way_acc"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw input -> unit-length embeddings ``(N, embedding_dim)``."""
        return F.normalize(self.embed(self.net(self.preprocess(x))), dim=-1)

    # ------------------------------------------------------------------------------- checks

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self._trainer is not None and self.trainer.world_size > 1:
            # Scores need every embedding of a split in one place and the P x K sampler is not sharded.
            raise ValueError(
                f"MetricLearningTask runs on one process (trainer.world_size is {self.trainer.world_size}): its episodes "
                "and pairs score whole splits; set trainer.devices: 1 and trainer.num_nodes: 1"
            )
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        self._views = int(getattr(dm, "views", 1) or 1)
        if self.hparams.instance_weight > 0 and self._views < 2 and stage == "fit":
            raise ValueError(
                f"model.instance_weight={self.hparams.instance_weight} needs training batches holding two or more augmented "
                f"views of each image, but the DataModule gives {self._views}; set data.views: 2 (and data.augment: true) "
                "or model.instance_weight: 0"
            )
        if dm is None or not hasattr(dm, "split_labels"):
            return
        for split in ("val", "test"):  # one line before any training, not after the first epoch
            self._episodes_for(dm.split_labels(split))

    def _episodes_for(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from datamodules.metric import episode_indices

        hp = self.hparams
        key = (hp.n_way, hp.k_shot, hp.episodes, hp.eval_seed, len(y), hash(np.asarray(y).tobytes()))
        if key not in self._episodes:
            self._episodes[key] = episode_indices(y, hp.n_way, hp.k_shot, hp.episodes, hp.eval_seed)
        return self._episodes[key]

    # -------------------------------------------------------------------------------- steps

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(loss, fraction of active pairs/triplets, rows) of one batch of any supported kind."""
        hp = self.hparams
        if len(batch) == 2:  # (x, y): labelled rows, P x K batches (V views of each row, view-major)
            x, y = batch
            emb = self(x)  # (B, D)
            loss, active = hp.class_weight * 0.0, None
            if hp.class_weight > 0:
                loss, active = self._labelled_loss(emb, y)
                loss = hp.class_weight * loss
            if hp.instance_weight > 0 and self.training:
                # Row i and row i + B/V are views of one image (PKBatchSampler): its own class.
                n = len(y) // self._views
                inst = torch.arange(n, device=y.device).repeat(self._views)  # (B,)
                inst_loss, inst_active = self._labelled_loss(emb, inst)
                loss = loss + hp.instance_weight * inst_loss
                active = inst_active if active is None else active
            return loss, active, len(y)
        a, b, c = batch
        if c.dim() == 1:  # PairDataModule pairs (x_a, x_b, same)
            d = (self(a) - self(b)).norm(dim=1)  # (B,)
            if hp.loss != "contrastive":
                raise ValueError(f"model.loss={hp.loss!r} cannot train on pairs; use loss: contrastive, or PairDataModule kind: triplets")
            return (*contrastive_loss(d, c, hp.margin), len(c))
        if hp.loss == "supcon":
            raise ValueError("model.loss='supcon' needs labelled (x, y) batches (MetricDigitsDataModule, MetricImageFolderDataModule), "
                             "not PairDataModule pairs or triplets; use loss: contrastive or triplet there")
        ea, ep, en = self(a), self(b), self(c)  # PairDataModule triplets
        per = F.relu((ea - ep).norm(dim=1) - (ea - en).norm(dim=1) + hp.margin)
        return per.mean(), (per > 0).float().mean(), len(per)

    def _labelled_loss(self, emb: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The configured loss over every pair/triplet/anchor of one batch of embeddings ``(B, D)``."""
        hp = self.hparams
        if hp.loss == "supcon":
            return supcon_loss(emb, labels, hp.temperature)
        dist = pairwise_distances(emb)  # (B, B)
        if hp.loss == "contrastive":
            iu = torch.triu_indices(len(labels), len(labels), 1, device=labels.device)
            return contrastive_loss(dist[iu[0], iu[1]], labels[iu[0]] == labels[iu[1]], hp.margin, balanced=True)
        mined = (batch_hard_triplets(dist, labels) if hp.mining == "batch_hard"
                 else semi_hard_triplets(dist.detach(), labels, hp.margin))
        return triplet_loss(dist, *mined, hp.margin)

    def _train_step(self, batch):
        loss, active, rows = self._loss(batch)
        return loss, rows, {"active": active.detach() * rows}  # train/active: fraction with a non-zero loss

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        store = self._eval.setdefault(stage, {})
        if len(batch) == 2:
            x, y = batch
            store.setdefault("emb", []).append(self(x).float())
            store.setdefault("y", []).append(y)
            if stage == "test" and self.hparams.pictures:
                store.setdefault("x", []).append(x.cpu())
            return torch.zeros(())
        loss, _, rows = self._loss(batch)
        self.track_eval(stage, loss, rows)
        a, b, c = batch
        if c.dim() == 1:
            store.setdefault("pair_d", []).append((self(a) - self(b)).norm(dim=1).float())
            store.setdefault("pair_same", []).append(c)
        return loss

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return {"embeddings": self(x)}

    # ------------------------------------------------------------------------- epoch scores

    def split_scores(self, emb: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, float], float, torch.Tensor]:
        """Scores of one split's embeddings ``(n, D)`` with labels ``(n,)``: episode accuracy, ROC AUC,
        EER, precision@1, spread, loss; also the EER threshold and the pairwise distance matrix."""
        from datamodules.pairs import sample_pairs

        hp = self.hparams
        y_np = y.cpu().numpy()
        support, query = self._episodes_for(y_np)
        from datamodules.metric import episode_accuracy

        out = {self.metric_prefix: float(episode_accuracy(emb, support, query))}
        pairs, same = sample_pairs(y_np, hp.verification_pairs, np.random.default_rng(hp.eval_seed))
        pairs_t = torch.as_tensor(pairs, device=emb.device)
        d_pairs = (emb[pairs_t[:, 0]] - emb[pairs_t[:, 1]]).norm(dim=1)  # (M,)
        out["roc_auc"], out["eer"], threshold = equal_error(d_pairs, torch.as_tensor(same, device=emb.device))
        dist = torch.cdist(emb, emb)  # (n, n)
        n = len(y)
        off = ~torch.eye(n, dtype=torch.bool, device=emb.device)
        nearest = dist.masked_fill(~off, math.inf).argmin(1)
        out["precision_at_1"] = float((y[nearest] == y).float().mean())
        out["spread"] = float(dist[off].mean()) if n > 1 else 0.0
        if hp.loss == "contrastive":
            iu = torch.triu_indices(n, n, 1, device=emb.device)
            out["loss"] = float(contrastive_loss(dist[iu[0], iu[1]], y[iu[0]] == y[iu[1]], hp.margin, balanced=True)[0])
        elif hp.loss == "supcon":
            out["loss"] = float(supcon_loss(emb, y, hp.temperature)[0])
        else:  # batch-hard over the whole split: O(n^2), whatever the training mining was
            out["loss"] = float(triplet_loss(dist, *batch_hard_triplets(dist, y), hp.margin)[0])
        return out, threshold, dist

    def _end_eval(self, stage: str) -> None:
        store = self._eval.pop(stage, {})
        if self._trainer is not None and self.trainer.sanity_checking:
            self._eval_sums.pop(stage, None), self._eval_rows.pop(stage, None)
            return
        if "pair_d" in store:  # PairDataModule: loss (tracked per batch) and verification
            super()._log_eval_epoch(stage)
            auc, eer, threshold = equal_error(torch.cat(store["pair_d"]), torch.cat(store["pair_same"]))
            self.log_dict({f"{stage}/roc_auc": auc, f"{stage}/eer": eer}, prog_bar=stage == "val")
            if stage == "val":
                self.threshold.fill_(threshold)
            return
        if "emb" not in store:
            return super()._log_eval_epoch(stage)
        emb, y = torch.cat(store["emb"]), torch.cat(store["y"])
        scores, threshold, dist = self.split_scores(emb, y)
        if stage == "val":
            self.threshold.fill_(threshold)  # chosen on validation pairs only; test never writes it
            scores["threshold"] = threshold
        elif not math.isnan(float(self.threshold)):
            # Test pairs judged at validation's threshold: what `zoo identify` would answer.
            pairs_same = dist <= float(self.threshold)
            same = y[:, None] == y[None, :]
            off = ~torch.eye(len(y), dtype=torch.bool, device=y.device)
            scores["false_accept"] = float((pairs_same & ~same).sum() / (~same).sum().clamp_min(1))
            scores["false_reject"] = float((~pairs_same & same & off).sum() / (same & off).sum().clamp_min(1))
        self.last_metrics[stage] = dict(scores)
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()}, prog_bar=stage == "val")
        if self.hparams.pictures and self.trainer.is_global_zero and self.trainer.loggers:
            from . import metric_pictures

            name = f"val_epoch{self.current_epoch:03d}" if stage == "val" else "test"
            metric_pictures.save_projection(self.trainer, emb, y, name)
            if stage == "test" and "x" in store:
                support, query = self._episodes_for(y.cpu().numpy())
                metric_pictures.save_episodes(self.trainer, torch.cat(store["x"]), emb, y, support, query)

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")

    def on_fit_end(self) -> None:
        spread = self.last_metrics.get("val", {}).get("spread")
        if spread is not None and spread < self.hparams.collapse_spread:
            warnings.warn(
                f"embedding collapse: val/spread is {spread:.4g} after training (mean distance between validation "
                f"embeddings; unit vectors spread out give about 1.4), below model.collapse_spread="
                f"{self.hparams.collapse_spread}: the network maps every input to nearly one point; lower model.lr "
                "or change model.margin / model.mining",
                stacklevel=1,
            )
