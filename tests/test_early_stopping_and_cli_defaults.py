"""Early-stopping presets of the CLI (task class attribute, config overrides) and the rich progress bar."""

from pathlib import Path

import pytest
from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar

from cli import EARLY_STOPPING_DEFAULTS, ZooCLI
from zoo.tasks import ClassificationTask

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--config", str(ROOT / "configs/mlp_digits.yaml"),
    "--model.init_args.model_kwargs", "{hidden: [16]}",
    "--data.init_args.batch_size", "256",
    "--trainer.max_epochs", "30",
    "--trainer.logger", "false",
]


def _es(cli):
    return next(cb for cb in cli.trainer.callbacks if isinstance(cb, EarlyStopping))


def test_task_preset_fills_unset_values_and_config_overrides_win(monkeypatch):
    preset = {"monitor": "val/acc", "mode": "max", "patience": 3, "min_delta": 0.01}
    monkeypatch.setattr(ClassificationTask, "early_stopping_preset", preset, raising=False)
    cli = ZooCLI(args=list(ARGS[:2]), run=False)  # mlp_digits.yaml sets patience 10 = generic default
    es = _es(cli)
    assert (es.monitor, es.mode, es.patience, es.min_delta) == ("val/acc", "max", 3, 0.01)
    ckpt = cli.trainer.checkpoint_callback  # the checkpoint follows the preset's monitor
    assert (ckpt.monitor, ckpt.mode) == ("val/acc", "max")
    cli = ZooCLI(args=[*ARGS[:2], "--early_stopping.patience", "7", "--early_stopping.monitor", "val/f1"], run=False)
    es = _es(cli)
    assert (es.monitor, es.patience, es.mode) == ("val/f1", 7, "max")


def test_without_preset_the_generic_defaults_apply():
    es = _es(ZooCLI(args=list(ARGS[:2]), run=False))
    assert (es.monitor, es.mode, es.patience) == (EARLY_STOPPING_DEFAULTS["monitor"], "min", 10)


def test_run_on_digits_stops_early(monkeypatch, tmp_path):
    # a demanding min_delta on val/acc: after two validation checks without a 5-point gain it stops
    monkeypatch.setattr(ClassificationTask, "early_stopping_preset",
                        {"monitor": "val/acc", "mode": "max", "patience": 2, "min_delta": 0.05}, raising=False)
    cli = ZooCLI(args=["fit", *ARGS, "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)])
    es = _es(cli)
    assert cli.trainer.current_epoch < 30 and 0 < es.stopped_epoch < 29
    assert es.wait_count == 2


def test_rich_progress_bar_is_the_default_and_redraws_ten_times_a_second():
    cli = ZooCLI(args=list(ARGS[:2]), run=False)
    assert isinstance(cli.trainer.progress_bar_callback, RichProgressBar)
    assert cli.trainer.progress_bar_callback.refresh_rate == 10  # Lightning's default is 100 a second


def test_a_progress_bar_the_user_chose_or_switched_off_is_respected():
    cli = ZooCLI(args=[*ARGS[:2], "--trainer.callbacks+=TQDMProgressBar"], run=False)
    assert type(cli.trainer.progress_bar_callback).__name__ == "TQDMProgressBar"
    cli = ZooCLI(args=[*ARGS[:2], "--trainer.enable_progress_bar=false"], run=False)
    assert cli.trainer.progress_bar_callback is None


def test_bad_preset_key_is_named(monkeypatch):
    monkeypatch.setattr(ClassificationTask, "early_stopping_preset", {"patiance": 3}, raising=False)
    with pytest.raises(ValueError, match=r"unknown keys \['patiance'\]"):
        ZooCLI(args=list(ARGS[:2]), run=False)
