"""Fine-tuning strategies: which layers of a pretrained backbone train, when, and at what rate.

The strategies are lightning-flash's (freeze, freeze then unfreeze, unfreeze at milestones), on
the layer groups of ``zoo.tasks.FinetuneTask`` (input to head). Discriminative learning rates
(Howard & Ruder, 2018, "Universal Language Model Fine-tuning for Text Classification", ACL: lower
layers hold more general features and move less) give the backbone a fraction of the head's rate,
optionally decaying further per group towards the input (layer-wise decay).

Written as a plain ``Callback`` rather than a subclass of Lightning's ``BaseFinetuning`` because of
three of its behaviours this one must not have:

* it freezes batch-norm layers by setting ``track_running_stats = False`` while they stay in train
  mode, so a "frozen" BN normalises with the batch's statistics instead of the pretrained ones
  (Lightning #13902, #15062). Here a frozen BN is put in eval mode: it normalises with its
  pretrained running statistics and never updates them (``train_bn=True`` trains them instead);
* it adds optimizer parameter groups when it unfreezes, and on resume re-freezes in ``setup`` and
  only unfreezes again at the exact unfreeze epoch, so a run resumed after that epoch trains a frozen
  backbone (#21901). Here every group is in the optimizer from the first step (a frozen parameter has
  no gradient, so the optimizer skips it) and the number of unfrozen groups is in the checkpoint;
* ``freeze(..., train_bn=...)`` is ignored by ``BackboneFinetuning`` while freezing (#21531).

The frozen state is re-applied at every training epoch start (Lightning restores module modes after
validation, but a user's ``model.train()`` would undo eval-mode BN). Under DDP a parameter frozen
when DDP wraps the model is never synchronised after unfreezing: use ``no_freeze`` or ``freeze``
with several processes.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import lightning.pytorch as pl
import torch.nn as nn
from lightning.pytorch.callbacks import Callback
from torch.nn.modules.batchnorm import _BatchNorm

STRATEGIES = ("no_freeze", "freeze", "freeze_unfreeze", "unfreeze_milestones")


class FinetuneStrategy(Callback):
    """Freeze and unfreeze the backbone of a ``FinetuneTask``; set each layer group's learning rate.

    Args:
        strategy: ``no_freeze`` (all layers train from the start), ``freeze`` (only the new head
            trains), ``freeze_unfreeze`` (head only until ``unfreeze_at_epoch``, then all layers),
            ``unfreeze_milestones`` (head only, then at each epoch of ``milestones`` the next
            layer groups from the head down; the last milestone unfreezes all of them).
        unfreeze_at_epoch: ``freeze_unfreeze``: the first epoch (0-based) that trains the backbone.
        milestones: ``unfreeze_milestones``: increasing epochs (0-based).
        groups_per_milestone: layer groups unfrozen at each milestone (default: an equal share, so
            the last milestone reaches the input).
        backbone_lr_ratio: the backbone's learning rate as a fraction of the head's (``model.lr``).
        layer_decay: further factor per group from the head towards the input (1: none; 0.8: the
            group next to the head gets ``ratio * lr``, the one below ``0.8 * ratio * lr``, ...).
        train_bn: train the batch-norm layers of frozen groups (weights and running statistics).
    """

    def __init__(
        self,
        strategy: str = "freeze_unfreeze",
        unfreeze_at_epoch: int = 1,
        milestones: list[int] | None = None,
        groups_per_milestone: int | None = None,
        backbone_lr_ratio: float = 0.1,
        layer_decay: float = 1.0,
        train_bn: bool = False,
    ) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"FinetuneStrategy.strategy: unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}")
        if unfreeze_at_epoch < 0:
            raise ValueError(f"FinetuneStrategy.unfreeze_at_epoch must be >= 0, got {unfreeze_at_epoch}")
        milestones = list(milestones) if milestones is not None else [1, 2]
        if strategy == "unfreeze_milestones" and (not milestones or any(b <= a for a, b in zip(milestones, milestones[1:])) or milestones[0] < 0):
            raise ValueError(f"FinetuneStrategy.milestones must be increasing epochs >= 0, got {milestones}")
        if groups_per_milestone is not None and groups_per_milestone < 1:
            raise ValueError(f"FinetuneStrategy.groups_per_milestone must be >= 1, got {groups_per_milestone}")
        if not 0 < backbone_lr_ratio <= 1 or not 0 < layer_decay <= 1:
            raise ValueError(
                f"FinetuneStrategy.backbone_lr_ratio ({backbone_lr_ratio}) and layer_decay ({layer_decay}) must be in (0, 1]"
            )
        self.strategy, self.unfreeze_at_epoch, self.milestones = strategy, unfreeze_at_epoch, milestones
        self.groups_per_milestone, self.backbone_lr_ratio, self.layer_decay = groups_per_milestone, backbone_lr_ratio, layer_decay
        self.train_bn = train_bn
        self.unfrozen = 0  # backbone groups trainable now, counted from the head
        self._restored: int | None = None

    # ---------------------------------------------------------------------------------- policy

    def last_change_epoch(self) -> int:
        """The last epoch at which the strategy changes what trains (-1: never)."""
        if self.strategy == "freeze_unfreeze":
            return self.unfreeze_at_epoch
        if self.strategy == "unfreeze_milestones":
            return self.milestones[-1]
        return -1

    def target(self, epoch: int, n_backbone: int) -> int:
        """Backbone groups (from the head down) that train in ``epoch``."""
        if self.strategy == "no_freeze":
            return n_backbone
        if self.strategy == "freeze":
            return 0
        if self.strategy == "freeze_unfreeze":
            return n_backbone if epoch >= self.unfreeze_at_epoch else 0
        reached = sum(1 for m in self.milestones if epoch >= m)
        if reached == len(self.milestones):
            return n_backbone
        per = self.groups_per_milestone or math.ceil(n_backbone / len(self.milestones))
        return min(n_backbone, reached * per)

    def lr_scales(self, n_groups: int) -> list[float]:
        """Learning-rate factor of each layer group (input to head; the head's is 1)."""
        b = n_groups - 1
        return [self.backbone_lr_ratio * self.layer_decay ** (b - 1 - j) for j in range(b)] + [1.0]

    # ----------------------------------------------------------------------------------- apply

    @staticmethod
    def _groups(pl_module: pl.LightningModule) -> list[list[nn.Module]]:
        if not hasattr(pl_module, "layer_groups"):
            raise TypeError(
                f"FinetuneStrategy needs a model with layer_groups() (zoo.tasks.FinetuneTask), got {type(pl_module).__name__}"
            )
        return pl_module.layer_groups()

    def apply(self, pl_module: pl.LightningModule, unfrozen: int, modes: bool = True) -> None:
        """Make the head and the last ``unfrozen`` backbone groups trainable, freeze the rest
        (frozen batch-norm layers in eval mode, unless ``train_bn``; ``modes=False`` leaves the
        modules' train/eval modes alone)."""
        groups = self._groups(pl_module)
        backbone, head = groups[:-1], groups[-1]
        first_trainable = len(backbone) - unfrozen
        for j, group in enumerate([*backbone, head]):
            trainable = j >= first_trainable
            for top in group:
                for m in top.modules():
                    own = list(m.parameters(recurse=False))
                    if isinstance(m, _BatchNorm) and not trainable and not self.train_bn:
                        if modes:
                            m.eval()  # normalise with the pretrained running statistics, never update them
                        for p in own:
                            p.requires_grad_(False)
                        continue
                    if isinstance(m, _BatchNorm) and modes:
                        m.train(pl_module.training)
                    for p in own:
                        p.requires_grad_(trainable or (self.train_bn and isinstance(m, _BatchNorm)))
        self.unfrozen = unfrozen

    # ------------------------------------------------------------------------------ lightning

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        groups = self._groups(pl_module)
        last = self.last_change_epoch()
        max_epochs = trainer.max_epochs
        if last >= 0 and max_epochs is not None and max_epochs >= 0 and last >= max_epochs:
            what = "unfreeze_at_epoch" if self.strategy == "freeze_unfreeze" else "milestones"
            value = self.unfreeze_at_epoch if self.strategy == "freeze_unfreeze" else self.milestones
            raise ValueError(
                f"FinetuneStrategy.{what} {value} is at or past trainer.max_epochs ({max_epochs}), so the backbone "
                f"would never train; lower {what} or raise trainer.max_epochs"
            )
        if self.strategy == "unfreeze_milestones" and len(self.milestones) > len(groups) - 1:
            raise ValueError(
                f"FinetuneStrategy.milestones has {len(self.milestones)} epochs but the backbone has only "
                f"{len(groups) - 1} layer groups; give at most {len(groups) - 1} milestones"
            )
        # Parameters frozen before the first step; the eval mode of frozen batch-norm layers is set at
        # each training epoch's start (before any training forward), which also keeps Lightning's
        # "modules in eval mode at the start of training" warning for the user's own modules.
        self.apply(pl_module, self.target(0, len(groups) - 1), modes=False)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n_backbone = len(self._groups(pl_module)) - 1
        k = self.target(trainer.current_epoch, n_backbone)
        if self._restored is not None:  # never re-freeze what the resumed run had already unfrozen
            k, self._restored = max(k, min(self._restored, n_backbone)), None
        self.apply(pl_module, k)

    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "unfrozen": int(self.unfrozen)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("strategy")
        if saved is not None and saved != self.strategy:
            # The user changed the strategy for the resumed run: its own schedule decides from the
            # resumed epoch on. Keeping the old run's unfrozen groups would silently train layers
            # that, say, `freeze` promises to keep at their pretrained values.
            warnings.warn(
                f"FinetuneStrategy: the checkpoint was trained with strategy {saved!r} ({state_dict.get('unfrozen', 0)} "
                f"backbone groups unfrozen); the resumed run follows {self.strategy!r} from here, so those groups may be "
                f"frozen again; resume with strategy {saved!r} to keep them training",
                stacklevel=2,
            )
            self._restored = None
            return
        self._restored = int(state_dict.get("unfrozen", 0))
