"""``ZooTask``: what every task module shares (network from the registry, fitted input transform,
weight init, optimizer and schedule chosen in the config).

Every constructor argument is a plain value (str, number, list, dict), so ``save_hyperparameters``
makes a checkpoint that describes itself: ``Task.load_from_checkpoint(path, weights_only=True)``
rebuilds the network and its fitted input transform without any other file.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning.pytorch as pl
import torch
import torch.nn as nn

import zoo
from zoo.layers import InputTransform

from . import checkpointing

# One table from name to optimizer class and the plain hyper-parameters it takes besides lr and
# weight_decay; OPTIMIZERS is its keys, so no name can fall through to another optimizer.
OPTIMIZER_TABLE: dict[str, tuple[type[torch.optim.Optimizer], tuple[str, ...]]] = {
    "sgd": (torch.optim.SGD, ("momentum", "nesterov")),
    "adagrad": (torch.optim.Adagrad, ()),
    "adadelta": (torch.optim.Adadelta, ()),
    "rmsprop": (torch.optim.RMSprop, ("momentum",)),
    "adam": (torch.optim.Adam, ()),
    "adamw": (torch.optim.AdamW, ()),
}
OPTIMIZERS = tuple(OPTIMIZER_TABLE)
SCHEDULERS = ("step", "cosine", "onecycle")


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so hyper-parameters are YAML- and weights_only-friendly."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class ZooTask(pl.LightningModule):
    """Base task: wraps ``zoo.create_model(model, **model_kwargs)``.

    Args:
        model: registered architecture name (``zoo list``).
        model_kwargs: extra constructor arguments for the architecture (widths, activation, ...).
        input_shape: shape of one raw sample as the DataModule yields it (linked from the data).
        preprocessing: plain-dict spec of the input transform (resize, fitted mean/std); linked from
            the DataModule and refreshed with the statistics it fitted on the training rows in
            ``setup``. Stored in the hyper-parameters, so a checkpoint predicts on raw input.
        init: weight initialisation scheme (``zoo.INIT_SCHEMES``) or ``None`` for PyTorch's default.
        optimizer: sgd, adagrad, adadelta, rmsprop, adam or adamw.
        lr, weight_decay: learning rate and (decoupled for AdamW, L2 otherwise) weight decay.
        momentum, nesterov: for SGD (``nesterov`` needs ``momentum > 0``); ``momentum`` also for RMSprop.
        optimizer_kwargs: any further optimizer arguments (``betas``, ``eps``, ...).
        scheduler: ``None``, ``'step'``, ``'cosine'`` or ``'onecycle'``.
        scheduler_kwargs: ``step``: ``step_size`` (epochs, default 10), ``gamma`` (0.1);
            ``cosine``: ``T_max`` (epochs, default ``max_epochs``), ``eta_min``;
            ``onecycle``: ``max_lr`` (default ``lr``), ``pct_start``, ... (steps per batch).
    """

    def __init__(
        self,
        model: str = "lenet5",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 32, 32),
        preprocessing: dict[str, Any] | None = None,
        init: str | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        nesterov: bool = False,
        optimizer_kwargs: dict[str, Any] | None = None,
        scheduler: str | None = None,
        scheduler_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        optimizer = optimizer.lower()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"model.optimizer: unknown optimizer {optimizer!r}; choose one of {list(OPTIMIZERS)}")
        if scheduler is not None and scheduler.lower() not in SCHEDULERS:
            raise ValueError(f"model.scheduler: unknown scheduler {scheduler!r}; choose one of {list(SCHEDULERS)} or null")
        if init is not None and init not in zoo.INIT_SCHEMES:
            raise ValueError(f"model.init: unknown init scheme {init!r}; choose one of {list(zoo.INIT_SCHEMES)} or null")
        if lr <= 0:
            raise ValueError(f"model.lr must be positive, got {lr}")
        # Collected from the constructor frames (subclass arguments too), so LightningCLI records
        # `_class_path` and `zoo fit --ckpt_path` can rebuild the task; then made plain (lists, not
        # tuples) so hparams.yaml and weights_only loading take them.
        self.save_hyperparameters()
        for key, value in list(self.hparams.items()):
            self.hparams[key] = _plain(value)
        self.hparams["optimizer"] = optimizer
        self.hparams["scheduler"] = scheduler.lower() if scheduler else None
        for key in ("model_kwargs", "optimizer_kwargs", "scheduler_kwargs"):
            self.hparams[key] = self.hparams[key] or {}
        self.preprocess = InputTransform(preprocessing) if preprocessing else nn.Identity()
        net_shape = self.preprocess.output_shape if preprocessing else tuple(input_shape)
        self.net = zoo.create_model(model, input_shape=net_shape, **self.net_kwargs(num_classes), **(model_kwargs or {}))
        if init is not None:
            zoo.init_weights(self.net, init)

    def net_kwargs(self, num_classes: int) -> dict[str, Any]:
        """Task-specific constructor arguments for the network (classification: ``num_classes``)."""
        return {"num_classes": num_classes}

    # -------------------------------------------------------------------------------- data link

    def setup(self, stage: str) -> None:
        """Take the input transform the DataModule fitted on its training rows.

        Lightning calls the DataModule's ``setup`` first, so its statistics exist here; we copy them
        into the hyper-parameters (saved with every checkpoint) and rebuild the transform.
        """
        if self._trainer is not None:
            checkpointing.install(self.trainer)  # weights_only loads (URLs too), atomic saves
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        spec = getattr(dm, "preprocessing", None)
        if not spec:
            return
        spec = _plain(spec)
        old = self.hparams.get("preprocessing")
        if old and (old["input_shape"] != spec["input_shape"] or old.get("resize") != spec.get("resize")):
            raise ValueError(
                f"the DataModule yields samples of shape {spec['input_shape']} resized to {spec.get('resize')}, "
                f"but this model was built for {old['input_shape']} resized to {old.get('resize')}; "
                "build the model from the same data configuration (the CLI links it for you)"
            )
        self.hparams["preprocessing"] = spec
        self.preprocess = InputTransform(spec).to(self.device)

    # ------------------------------------------------------------------------------ checkpoints

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, weights_only=None, **kwargs):
        """Lightning's ``load_from_checkpoint``, always with ``weights_only=True``; a URL is downloaded to a
        cache first (Lightning would unpickle it with ``weights_only=False``). See ``checkpointing``."""
        path = checkpointing.safe_load_path(checkpoint_path, weights_only)
        return super().load_from_checkpoint(path, map_location, hparams_file, strict, weights_only=True, **kwargs)

    def configure_callbacks(self):
        """Every zoo task saves a checkpoint and exits 143 when preempted (SIGTERM/SIGUSR1), see ``checkpointing``."""
        if self._trainer is not None and any(isinstance(cb, checkpointing.PreemptionCheckpoint) for cb in self.trainer.callbacks):
            return []  # fit's, still there when `zoo fit` tests the best checkpoint
        return [checkpointing.PreemptionCheckpoint()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[checkpointing.RNG_KEY] = checkpointing.collect_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Only when fitting resumes: a test or a load_from_checkpoint must not reset the caller's RNGs.
        if self._trainer is not None and self.trainer.state.fn == "fit" and checkpointing.RNG_KEY in checkpoint:
            checkpointing.set_rng_states(checkpoint[checkpointing.RNG_KEY])

    # ------------------------------------------------------------------------------------ model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw input (as the DataModule yields it) -> network output."""
        return self.net(self.preprocess(x))

    # ------------------------------------------------------------------------------------ steps

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        """Loss of one batch at ``stage`` (train, val or test), logging ``<stage>/<metric>``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _shared_step(batch, stage)")

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")

    # ------------------------------------------------------------------------------- optimizers

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        cls, takes = OPTIMIZER_TABLE[hp.optimizer]
        extra = {k: hp[k] for k in takes}
        opt = cls(params, lr=hp.lr, weight_decay=hp.weight_decay, **extra, **hp.optimizer_kwargs)
        if hp.scheduler is None:
            return opt
        kw = dict(hp.scheduler_kwargs)
        if hp.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=kw.pop("step_size", 10), gamma=kw.pop("gamma", 0.1), **kw)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if hp.scheduler == "cosine":
            t_max, interval = (kw.pop("T_max"), "epoch") if kw.get("T_max") else self._horizon("cosine", "T_max")
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, **kw)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval}}
        # One-cycle (Smith & Topin, 2019, "Super-convergence") steps every batch over the whole run.
        if not kw.get("total_steps"):
            self._horizon("onecycle", "total_steps")
        total = kw.pop("total_steps", None) or int(self.trainer.estimated_stepping_batches)
        # Momentum cycling needs a momentum (SGD, RMSprop) or beta1 (Adam, AdamW); Adagrad and Adadelta have neither.
        d = opt.defaults
        kw.setdefault("cycle_momentum", "betas" in d or d.get("momentum", 0) > 0)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=kw.pop("max_lr", hp.lr), total_steps=total, **kw)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _horizon(self, scheduler: str, key: str) -> tuple[int, str]:
        """The run's length as ``(count, "epoch" | "step")``: ``trainer.max_epochs``, else ``trainer.max_steps``,
        else an error. A schedule over ``max_epochs: -1`` (train until stopped) would otherwise anneal
        over one epoch (or zero steps) and leave the learning rate at its minimum, silently."""
        max_epochs, max_steps = self.trainer.max_epochs, self.trainer.max_steps
        if max_epochs is not None and max_epochs > 0:
            return int(max_epochs), "epoch"
        if max_steps is not None and max_steps > 0:
            return int(max_steps), "step"
        raise ValueError(
            f"model.scheduler {scheduler!r} needs the length of the run, but trainer.max_epochs is {max_epochs} "
            f"(no limit) and trainer.max_steps is {max_steps}, set trainer.max_epochs or trainer.max_steps, "
            f"or model.scheduler_kwargs.{key}"
        )
