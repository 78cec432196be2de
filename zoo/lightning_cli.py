"""The ``zoo fit|validate|test|predict`` commands: ``ZooCLI``, a LightningCLI with the zoo's
conventions, and ``zoo audit``.

Kept out of ``cli.py`` (the console script's entry) because it imports Lightning, which takes
seconds: ``zoo list`` and ``zoo --help`` answer without it. ``cli.ZooCLI`` still works (``cli``
loads this module on first use).
"""

from __future__ import annotations

import json
from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import LightningCLI

import datamodules  # noqa: F401  (registers the DataModules for class_path short names)
from zoo import cli_errors
from zoo.tasks import ZooTask
from zoo.tasks.checkpointing import ZooModelCheckpoint


# Generic early stopping; a task refines it with a class attribute ``early_stopping_preset``.
# ``patience`` counts VALIDATION CHECKS without improvement, not epochs: with
# ``trainer.check_val_every_n_epoch: 2`` a patience of 10 waits 20 epochs, with
# ``val_check_interval: 0.25`` it waits 2.5 epochs.
EARLY_STOPPING_DEFAULTS = {"monitor": "val/loss", "mode": "min", "patience": 10, "min_delta": 0.0}


def early_stopping_preset(class_path: str | None) -> dict[str, Any]:
    """The ``early_stopping_preset`` dict of the task class at ``class_path`` (empty if none)."""
    if not class_path:
        return {}
    import importlib

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module or "zoo.tasks"), name)
    except (ImportError, AttributeError):
        return {}  # jsonargparse reports a bad class_path itself, with the choices
    preset = dict(getattr(cls, "early_stopping_preset", None) or {})
    unknown = set(preset) - set(EARLY_STOPPING_DEFAULTS)
    if unknown:
        raise ValueError(f"{class_path}.early_stopping_preset: unknown keys {sorted(unknown)}; use {sorted(EARLY_STOPPING_DEFAULTS)}")
    return preset


class ZooCLI(LightningCLI):
    """LightningCLI with the zoo's conventions.

    * ``model`` is any ``ZooTask`` and ``data`` any LightningDataModule, chosen by ``class_path``.
    * What the data knows is linked into the model once the DataModule exists: ``num_classes``,
      ``input_shape`` and the ``preprocessing`` spec, so configs never repeat them.
    * EarlyStopping (``early_stopping.*``) and ModelCheckpoint (``checkpoint.*``) are always on and
      watch ``val/loss``, or what the task's ``early_stopping_preset`` says; ``early_stopping.patience``
      counts validation checks, not epochs. ``zoo fit`` ends by testing the best checkpoint.
    * The terminal progress bar is Lightning's ``RichProgressBar`` (``rich`` is a dependency, and
      Lightning picks it whenever ``rich`` is installed), so no config needs to ask for it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)  # tasks configure their own, from plain values
        super().__init__(ZooTask, LightningDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        for attr in ("num_classes", "input_shape", "preprocessing"):
            parser.link_arguments(f"data.{attr}", f"model.init_args.{attr}", apply_on="instantiate")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({f"early_stopping.{k}": v for k, v in EARLY_STOPPING_DEFAULTS.items()})
        parser.add_argument(
            "--output", type=str | None, default=None,
            help="zoo predict: file to write the predictions to (.csv: file, class, probability per image; else torch.save)",
        )
        parser.add_lightning_class_args(ZooModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.filename": "best-{epoch:02d}",
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": True,
            }
        )

    def parse_arguments(self, parser, args) -> None:
        """Parse, then check what can be checked before any data is loaded (``zoo.cli_errors``): the output
        directories are writable, ``--ckpt_path`` is a readable checkpoint of this model and data set."""
        super().parse_arguments(parser, args)
        cfg = self.config.get(self.config.get("subcommand")) if self.config.get("subcommand") else self.config
        import os

        cli_errors.check_output_dir(cfg.get("trainer.default_root_dir") or os.getcwd(), "trainer.default_root_dir")
        cli_errors.check_output_dir(cfg.get("checkpoint.dirpath"), "checkpoint.dirpath")
        cli_errors.check_checkpoint(cfg.get("ckpt_path"), cfg.get("model"), cfg.get("data"))
        self._given_linked = cli_errors.given_linked_values(cfg.get("model"))

    def after_instantiate_classes(self) -> None:
        # The data's num_classes/input_shape/preprocessing replaced any value the config gave; say so.
        cli_errors.check_linked_values(getattr(self, "_given_linked", {}), self.datamodule)

    def before_instantiate_classes(self) -> None:
        """Apply the task's early-stopping preset to every ``early_stopping.*`` value left at its default.

        A task class may define ``early_stopping_preset = {"monitor": ..., "mode": ..., "patience": ...,
        "min_delta": ...}`` (any subset). Values the user set in a config or on the command line win;
        a value equal to the generic default (``EARLY_STOPPING_DEFAULTS``) counts as not set. The
        checkpoint follows the preset's ``monitor``/``mode`` when those are left at their defaults too.
        ``patience`` counts validation checks, not epochs (see ``docs/callbacks.md``).
        """
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        if cfg is not None and self.subcommand == "predict":  # an image folder predicts with the checkpoint's classes
            from zoo.tasks.finetune import fill_classes_from_checkpoint

            fill_classes_from_checkpoint(cfg, cfg.get("ckpt_path"))
        if cfg is None or cfg.get("early_stopping") is None:
            return
        preset = early_stopping_preset(cfg.get("model.class_path"))
        for key, generic in EARLY_STOPPING_DEFAULTS.items():
            if key in preset and cfg.get(f"early_stopping.{key}") == generic:
                cfg[f"early_stopping.{key}"] = preset[key]
                if key in ("monitor", "mode") and cfg.get(f"checkpoint.{key}") == generic:
                    cfg[f"checkpoint.{key}"] = preset[key]

    def before_predict(self) -> None:
        """``zoo predict`` writes ``predictions.pt`` (input order, once, gathered from every rank), or ``--output``
        (a ``.csv`` gets one row per input: file, class name, probability)."""
        from lightning.pytorch.callbacks import BasePredictionWriter

        from zoo.tasks.finetune import prediction_writer

        if not any(isinstance(cb, BasePredictionWriter) for cb in self.trainer.callbacks):
            cfg = self.config.get(self.subcommand) if self.subcommand else self.config
            self.trainer.callbacks.append(prediction_writer(cfg.get("output") if cfg is not None else None))

    # Redraws of the terminal bar per second. Lightning's RichProgressBar defaults to 100: its refresh
    # thread then re-renders the bar after nearly every batch of a small network (each render holds
    # the GIL for a fraction of a millisecond, taken from training); ten redraws a second look the
    # same to a person. benchmarks/overhead.py measures the "zoo as users run it" column with it.
    PROGRESS_REFRESH_PER_SECOND = 10

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

        own = config.get("callbacks") or []
        defaults = self.trainer_defaults.get("callbacks") or []
        given = [*(own if isinstance(own, list) else [own]), *(defaults if isinstance(defaults, list) else [defaults]), *callbacks]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in given):
            callbacks = [*callbacks, RichProgressBar(refresh_rate=self.PROGRESS_REFRESH_PER_SECOND)]
        return super()._instantiate_trainer(config, callbacks)

    def instantiate_classes(self) -> None:
        """After building model, data and trainer (``zoo.runs``): a hyper-parameter both hold is
        logged once (never Lightning's merge crash), a ``--ckpt_path`` built for another input shape
        or architecture is refused in one line, and the run gets a folder no earlier run wrote into
        (a pinned logger version that holds a run is refused unless resumed)."""
        super().instantiate_classes()
        from zoo import runs

        runs.align_shared_hparams(self.model, self.datamodule)
        cfg = self.config.get(self.subcommand) if self.subcommand else None
        ckpt_path = cfg.get("ckpt_path") if cfg is not None else None
        runs.check_checkpoint_fits(self.model, ckpt_path)
        runs.claim_run_dir(self.trainer, ckpt_path, fit=self.subcommand in (None, "fit"))

    def after_fit(self) -> None:
        """Report the test metrics of the best checkpoint (the weights ModelCheckpoint kept)."""
        trainer = self.trainer
        if trainer.interrupted:
            return
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
        epochs = trainer.current_epoch
        # Last epoch's training metrics (e.g. the perceptron's train/acc), before testing replaces them.
        fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        if best:
            print(f"\nTesting the best checkpoint: {best}")
            results = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best)
        else:  # fast_dev_run and checkpointing off write no checkpoint: test the weights in memory
            print("\nNo checkpoint was written (fast_dev_run or checkpointing off); testing the final weights")
            results = trainer.test(self.model, datamodule=self.datamodule)
        if trainer.is_global_zero:
            # Machine-readable summary next to the logs, read by benchmarks/run_configs.py.
            from zoo.tasks.distributed import run_dir  # reads rank 0's folder without a collective

            out = run_dir(trainer)
            out.mkdir(parents=True, exist_ok=True)
            summary = {
                "best_checkpoint": best or None,
                "epochs": epochs,
                "fit_metrics": fit_metrics,
                "metrics": results[0] if results else {},
            }
            (out / "test_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")


def run_audit(argv: list[str]) -> int:
    """``zoo audit --config C [--mode warn|fail|drop] [other ZooCLI overrides]``: build the config's
    DataModule, split it as training would, and print the contamination report (exit 1 if it is
    contaminated and the mode is ``fail``)."""
    import argparse
    import warnings

    from datamodules.audit import ContaminationError

    p = argparse.ArgumentParser(prog="zoo audit", description=run_audit.__doc__)
    p.add_argument("--mode", choices=("warn", "fail", "drop"), default="warn")
    p.add_argument("--near-threshold", type=float, default=0.01, help="rms standardised distance per feature")
    a, rest = p.parse_known_args(argv)
    cli = ZooCLI(args=rest, run=False)
    dm = cli.datamodule
    if not hasattr(dm, "audit"):
        raise SystemExit(f"zoo audit: {type(dm).__name__} has no audit(); it needs an ArrayDataModule-based DataModule")
    dm.setup("fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report is printed below, not as a warning
        try:
            report = dm.audit(a.mode, near_threshold=a.near_threshold)
        except ContaminationError as e:
            print(e)
            return 1
    print(report)
    return 0
