"""``ZooTask``: what every task module shares (network from the registry, fitted input transform,
weight init, optimizer and schedule chosen in the config).

Every constructor argument is a plain value (str, number, list, dict), so ``save_hyperparameters``
makes a checkpoint that describes itself: ``Task.load_from_checkpoint(path, weights_only=True)``
rebuilds the network and its fitted input transform without any other file.
"""

from __future__ import annotations

import math
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


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and what to change."""


class _TrainLedger:
    """One epoch's training bookkeeping (see ``ZooTask``'s lean step): a plain object, because every
    attribute set on an ``nn.Module`` goes through its slow ``__setattr__``, once per step here."""

    __slots__ = ("buf", "keys", "rows", "steps", "finite_upto", "log_now", "every", "last_batch")

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None  # (capacity, 1 + k) on the device, reused across epochs
        self.keys: list[str] = []  # names of the task's sums, columns 1..k
        self.new_epoch(0, float("inf"))

    def new_epoch(self, every: int, last_batch: float) -> None:
        self.rows: list[int] = []  # rows of each batch (host ints)
        self.steps: list[tuple[int, int]] = []  # (batch_idx, global_step) of each batch
        self.finite_upto = 0  # buffer rows before this one were checked finite
        self.log_now = False  # whether the current batch is a logging step
        self.every, self.last_batch = every, last_batch  # trainer.log_every_n_steps, num_training_batches


def _check_regularisers(l1_penalty: float, input_noise: float) -> None:
    for name, value in (("l1_penalty", l1_penalty), ("input_noise", input_noise)):
        if not value >= 0:  # also refuses NaN
            raise ValueError(f"model.{name} must be >= 0 (0 turns it off), got {value}")


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
        l1_penalty: coefficient of the L1 weight penalty ``l1_penalty * sum |w|`` over the network's
            weight matrices and kernels (not biases or norm scales), added to the training loss only
            (``train/loss`` stays the data loss, comparable with ``val/loss``); L2 is ``weight_decay``.
        input_noise: standard deviation of Gaussian noise added to the network's input (after the
            fitted input transform, so in its units) on training batches only (noise robustness,
            Bishop 1995, "Training with noise is equivalent to Tikhonov regularization").
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
        l1_penalty: float = 0.0,
        input_noise: float = 0.0,
    ) -> None:
        super().__init__()
        _check_regularisers(l1_penalty, input_noise)
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
        self.preprocess, self.net = self.build_network(model, model_kwargs or {}, num_classes, input_shape, preprocessing)
        if init is not None:
            zoo.init_weights(self.net, init)
        # Training bookkeeping (see "lean training bookkeeping" below), kept off nn.Module's slow __setattr__.
        self._ledger = _TrainLedger()
        self._eval_sums: dict[str, torch.Tensor] = {}  # stage -> device sum of loss x rows
        self._eval_rows: dict[str, int] = {}
        self._regularisers = (float(l1_penalty), float(input_noise))  # plain floats: no host sync to test them

    def build_network(self, model, model_kwargs, num_classes, input_shape, preprocessing) -> tuple[nn.Module, nn.Module]:
        """``(input transform, network)``; tasks that bring their own network (fine-tuning) override it."""
        preprocess = InputTransform(preprocessing) if preprocessing else nn.Identity()
        net_shape = preprocess.output_shape if preprocessing else tuple(input_shape)
        return preprocess, self.build_net(model, net_shape, num_classes, model_kwargs)

    def optimizer_params(self) -> list:
        """What the optimizer trains: the trainable parameters, or parameter groups with their own ``lr``."""
        return [p for p in self.parameters() if p.requires_grad]

    def build_net(self, model: str, input_shape: tuple[int, ...], num_classes: int, model_kwargs: dict[str, Any]) -> nn.Module:
        """The network ``self.net``; tasks that train several registered networks (a GAN) override this."""
        return zoo.create_model(model, input_shape=input_shape, **self.net_kwargs(num_classes), **model_kwargs)

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
        """Every zoo task saves a checkpoint and exits 143 when preempted (SIGTERM/SIGUSR1) during fit, see ``checkpointing``."""
        if self._trainer is None:
            return [checkpointing.PreemptionCheckpoint()]
        callbacks = self.trainer.callbacks
        mine = [cb for cb in callbacks if isinstance(cb, checkpointing.PreemptionCheckpoint)]
        if self.trainer.state.fn != "fit":
            # fit's, still there when `zoo fit` tests the best checkpoint: a second "checkpoint"
            # callback would make Lightning warn on every test(ckpt_path="best").
            callbacks[:] = [cb for cb in callbacks if cb not in mine]
            return []
        return [] if mine else [checkpointing.PreemptionCheckpoint()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint written mid-epoch (every_n_train_steps, a signal) must not hold weights a
        # non-finite loss already ruined: refuse before Lightning writes the file (lean step, below).
        self._check_finite_loss()
        checkpoint[checkpointing.RNG_KEY] = checkpointing.collect_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Only when fitting resumes: a test or a load_from_checkpoint must not reset the caller's RNGs.
        if self._trainer is not None and self.trainer.state.fn == "fit" and checkpointing.RNG_KEY in checkpoint:
            checkpointing.set_rng_states(checkpoint[checkpointing.RNG_KEY])

    # ------------------------------------------------------------------------------------ model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw input (as the DataModule yields it) -> network output."""
        return self.net(self.add_input_noise(self.preprocess(x)))

    # ------------------------------------------------------------------------- regularisers

    def add_input_noise(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus N(0, input_noise^2) noise in training mode (the fit loop's training batches);
        unchanged in eval mode (validation, test, predict) or when ``input_noise`` is 0."""
        sigma = self._regularisers[1]
        if sigma > 0 and self.training:
            return x + sigma * torch.randn_like(x)
        return x

    def weight_penalty(self, module: nn.Module | None = None) -> torch.Tensor | None:
        """``l1_penalty * sum |w|`` over the weight tensors (``dim > 1``) of ``module`` (the network by
        default; a task with several optimizers penalises each part in its own loss), or ``None`` when off."""
        l1 = self._regularisers[0]
        if l1 <= 0:
            return None
        weights = [p for p in (module or self.net).parameters() if p.requires_grad and p.dim() > 1]
        return l1 * torch.stack([w.abs().sum() for w in weights]).sum()

    # ------------------------------------------------------------------------------------ steps

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        """Loss of one batch at ``stage`` (val or test): updates ``self.<stage>_metrics`` (a
        torchmetrics collection with the ``<stage>/`` prefix) and calls ``track_eval``; the epoch's
        ``<stage>/loss`` and metrics are logged once, at the epoch's end."""
        raise NotImplementedError(f"{type(self).__name__} must implement _shared_step(batch, stage)")

    def _train_step(self, batch) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
        """One training batch: ``(loss, rows, sums)``, where ``sums`` maps a metric name to a device
        scalar summed over the batch's rows (``{"acc": correct predictions}``); the epoch logs
        ``train/<name>`` = sum / rows. Nothing here may read a value back to the host."""
        raise NotImplementedError(f"{type(self).__name__} must implement _train_step(batch)")

    def training_step(self, batch, batch_idx):
        loss, rows, sums = self._train_step(batch)
        self.track_train(batch_idx, loss, rows, sums)
        penalty = self.weight_penalty()  # device tensor or None: no host sync
        return loss if penalty is None else loss + penalty

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")

    # ------------------------------------------------------------------ lean training bookkeeping
    #
    # Why not ``self.log(..., on_step=True, on_epoch=True)`` and a torchmetrics object per step, as
    # before: every ``self.log`` call costs Lightning ~0.1-0.3 ms of Python, a progress-bar value
    # forces a host sync every step (``.item()``), and a metric collection's update is several more
    # kernels plus Python. On small networks that was more than Lightning itself costs (issue 10).
    # Instead each training batch writes ONE row of device numbers (loss x rows, then the task's
    # sums) into a per-epoch buffer: no host sync, no logging call. The buffer gives the epoch means
    # (``train/loss``, ``train/acc``, ...) once per epoch, the batch loss ``train/loss_step`` on the
    # trainer's logging steps (``trainer.log_every_n_steps``; 0 logs per epoch only), and the exact
    # batch whose loss first went non-finite, checked on those same steps and before the epoch's
    # validation and checkpoint.

    #: names of ``_train_step`` sums logged as epoch totals rather than per-row means
    train_totals: tuple[str, ...] = ()
    #: True when every rank trains on the gathered global batch (the perceptron under DDP): its
    #: sums are global already, and reducing them across ranks would count every row once per rank
    train_batches_are_global: bool = False

    def on_train_epoch_start(self) -> None:
        led = self._ledger
        led.new_epoch(self.trainer.log_every_n_steps, self.trainer.num_training_batches)
        if led.buf is not None and led.buf.device != self.device:  # moved since the last fit
            led.buf = None

    def track_train(self, batch_idx: int, loss: torch.Tensor, rows: int, sums: dict[str, torch.Tensor] | None = None) -> None:
        """Record one training batch (device work only; see the note above)."""
        led = self._ledger
        # (1 + k,): the batch's mean loss, then the task's sums; stack promotes the integer counts.
        row = torch.stack([loss.detach(), *sums.values()]) if sums else loss.detach().reshape(1)
        i = len(led.steps)
        buf = led.buf
        if buf is None or i >= buf.shape[0]:  # grow by doubling: amortised O(1), no per-step allocation
            new = torch.zeros(max(64, 2 * i), row.numel(), device=row.device)
            if buf is not None:
                new[:i] = buf[:i]
            led.buf = buf = new
            led.keys = list(sums or {})
        buf[i] = row
        step = self.global_step  # before this batch's optimizer step
        led.rows.append(rows)  # host ints: the loss column is weighted by them at the epoch's end
        led.steps.append((batch_idx, step))
        led.log_now = self._is_log_step(step)
        if led.log_now:
            # One logging call per step at most, and only on the steps the logger writes; straight
            # to the loggers (their public log_metrics, which Lightning itself ends in), because
            # self.log builds a fresh result object per call (~1.5-4 ms of Python here, measured with
            # cProfile: benchmarks/overhead.py). Not on the progress bar: Lightning .item()s every
            # progress-bar value after EVERY batch, a host sync per step; the bar shows epoch means.
            metrics = {"train/loss_step": float(loss.detach()), "epoch": self.current_epoch}
            for logger in self.loggers:
                logger.log_metrics(metrics, step=step)

    def _is_log_step(self, step: int) -> bool:
        """Whether the logger writes step metrics after the batch that starts at global ``step``.
        Lightning writes them when (batches that stepped + 1) % log_every_n_steps == 0; with one
        optimizer step per batch that count is ``global_step`` (public). Tasks that step several
        optimizers per batch override this."""
        every = self._ledger.every
        return every > 0 and (step + 1) % every == 0

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        led = self._ledger
        if led.log_now or batch_idx + 1 >= led.last_batch:  # on the last batch: before validation and checkpoint
            self._check_finite_loss(agree=True)

    def _check_finite_loss(self, agree: bool = False) -> None:
        """Raise ``NonFiniteLossError`` naming the first batch whose loss went NaN or infinite.

        ``agree``: every process decides together (the batch-end and epoch-end checks, which every
        rank reaches at the same step). A bad row on one rank's shard makes only that rank's loss
        non-finite at that step (the all-reduced gradients spread the damage a step later); if that
        rank alone raised at an epoch's last batch, the others would enter validation's reductions
        and wait on it forever (NCCL) or fail with a bare connection error (gloo). So the ranks
        reduce the first bad position (min over ranks) and all raise at the same step: one scalar
        all-reduce on the steps that already read the device, none on a single process.
        ``on_save_checkpoint`` checks locally only: a save can come from code that runs on one rank
        alone (a user's own ``trainer.save_checkpoint`` under ``rank_zero_only``), and a collective
        there could never complete."""
        led = self._ledger
        if led.buf is None or not led.steps:
            return
        start, end = led.finite_upto, len(led.steps)
        bad = ~torch.isfinite(led.buf[start:end, 0])  # (end - start,): only rows not checked yet
        # position of the first bad row, or `end` when all are finite: one device scalar
        first_t = torch.where(bad, torch.arange(start, end, device=bad.device), end).min() if end > start else None
        ranks = self.trainer.world_size if self._trainer is not None else 1
        if agree and ranks > 1:
            if first_t is None:
                first_t = torch.tensor(end, device=led.buf.device)
            first_t = self.trainer.strategy.reduce(first_t.float(), reduce_op="min")
        if first_t is None:
            return
        first = int(first_t)  # the one host read, on logging steps and epoch ends
        if first >= end:
            led.finite_upto = end
            return
        batch_idx, step = led.steps[first]
        value = float(led.buf[first, 0])
        where = f"train/loss is {value}" if not math.isfinite(value) else "train/loss went non-finite on another process"
        raise NonFiniteLossError(
            f"{where} at global step {step} (epoch {self.current_epoch}, batch {batch_idx}); "
            "the weights are no longer usable and nothing after it was saved: lower model.lr, clip gradients "
            "(trainer.gradient_clip_val), or check the inputs for non-finite values "
            "(add callbacks.GradientInspector to name the first bad layer)"
        )

    def on_train_epoch_end(self) -> None:
        led = self._ledger
        if led.buf is None or not led.steps:
            return
        self._check_finite_loss(agree=True)
        buf, n = led.buf, len(led.steps)
        rows_at = torch.tensor(led.rows, dtype=buf.dtype, device=buf.device)  # (n,)
        sums = buf[:n].sum(0)  # (1 + k,) on the device
        sums[0] = (buf[:n, 0] * rows_at).sum()  # the loss column holds batch means: weight by rows
        rows = rows_at.sum()
        if not self.train_batches_are_global:
            # Exact weighted means over every rank's rows: the sums are reduced, not the per-rank means.
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            rows = self.trainer.strategy.reduce(rows, reduce_op="sum")
        means = sums / rows
        logged = {"train/loss": means[0]}
        logged.update({f"train/{k}": (sums if k in self.train_totals else means)[1 + j] for j, k in enumerate(led.keys)})
        self.log_dict(logged, prog_bar=True, on_step=False, on_epoch=True)

    # Validation and test: one logging call per EPOCH (not per batch, which cost ~0.5 ms a batch in
    # Lightning's result collection): the loss is summed on the device, the torchmetrics collection
    # accumulates its state, and both are logged when the epoch ends (torchmetrics syncs its state
    # across processes in compute(); the loss sums are reduced by the strategy).

    def track_eval(self, stage: str, loss: torch.Tensor, rows: int) -> None:
        """Add one validation/test batch's mean loss (``rows`` rows) to the epoch's device sum."""
        total = loss.detach().float() * rows
        prev = self._eval_sums.get(stage)
        self._eval_sums[stage] = total if prev is None else prev + total
        self._eval_rows[stage] = self._eval_rows.get(stage, 0) + rows

    def _log_eval_epoch(self, stage: str) -> None:
        total = self._eval_sums.pop(stage, None)
        rows = self._eval_rows.pop(stage, 0)
        if total is None:  # this rank had no batch (DDP shards may differ): still join the reduction
            total = torch.zeros((), device=self.device)
        strategy = self.trainer.strategy
        total = strategy.reduce(total, reduce_op="sum")
        rows = strategy.reduce(torch.tensor(float(rows), device=total.device), reduce_op="sum")
        if float(rows) == 0:  # no batch on any rank: nothing to log (the same answer on every rank)
            return
        logged = {f"{stage}/loss": total / rows}
        metrics = getattr(self, f"{stage}_metrics", None)
        if metrics is not None:
            logged.update(metrics.compute())  # torchmetrics syncs its state across ranks here
            metrics.reset()
        # Values are already global; sync_dist only keeps Lightning from warning under DDP.
        self.log_dict(logged, prog_bar=stage == "val", on_step=False, on_epoch=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._log_eval_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval_epoch("test")

    # ------------------------------------------------------------------------------- optimizers

    def configure_optimizers(self):
        hp = self.hparams
        params = self.optimizer_params()
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
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=kw.pop("max_lr", [g["lr"] for g in opt.param_groups]), total_steps=total, **kw)
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
