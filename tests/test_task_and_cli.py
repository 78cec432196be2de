"""ClassificationTask, checkpoints that describe themselves, and the CLI with every config."""

import json
import math
import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

import cli
from cli import ZooCLI
from datamodules import DigitsDataModule
from zoo.tasks import OPTIMIZERS, ClassificationTask

ROOT = Path(__file__).resolve().parents[1]
# Configs whose header says "# needs:" run on files the user brings (photos, pretrained weights);
# their own tests write those files (tests/test_finetune.py).
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if "\n# needs:" not in p.read_text())


def _task(dm, **kw):
    return ClassificationTask(num_classes=dm.num_classes, input_shape=dm.input_shape, preprocessing=dm.preprocessing, **kw)


def _trainer(**kw):
    kw.setdefault("logger", False)
    kw.setdefault("enable_progress_bar", False)
    kw.setdefault("enable_model_summary", False)
    return pl.Trainer(**kw)


def test_learns_and_checkpoint_round_trip_predicts_on_raw_input(tmp_path):
    pl.seed_everything(0)
    dm = DigitsDataModule(resize=16, batch_size=64)
    task = _task(dm, model="lenet5", model_kwargs={"act": "relu", "pool": "max"}, lr=3e-3)
    trainer = _trainer(max_epochs=4, default_root_dir=tmp_path)
    trainer.fit(task, dm)
    acc = trainer.test(task, dm, verbose=False)[0]["test/acc"]
    assert acc > 0.85  # it learns (chance is 0.1)
    # fitted statistics reached the model's hyper-parameters
    assert task.hparams.preprocessing["mean"] == dm.preprocessing["mean"]
    assert task.test_confusion_matrix.sum() == len(dm.split_indices["test"])
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)

    loaded = ClassificationTask.load_from_checkpoint(ckpt, weights_only=True).eval()
    raw, _ = dm.load_arrays()
    x = torch.from_numpy(raw[:50])  # raw 8x8 digits, values 0..16, no DataModule involved
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), task(x))
    with pytest.raises(ValueError, match=r"expected raw input of shape \(N, 1, 8, 8\) but received \(2, 1, 32, 32\)"):
        loaded(torch.zeros(2, 1, 32, 32))


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("scheduler", [None, "step", "cosine", "onecycle"])
def test_every_optimizer_and_schedule_steps_and_checkpoints(optimizer, scheduler, tmp_path):
    dm = DigitsDataModule(batch_size=128)
    kw = {"lr": 0.05 if optimizer in ("sgd", "adagrad") else 1.0 if optimizer == "adadelta" else 1e-3}
    if optimizer == "sgd":
        kw["nesterov"] = True
    task = _task(dm, model="mlp", model_kwargs={"hidden": [32]}, optimizer=optimizer, scheduler=scheduler, init="xavier_uniform", **kw)
    before = [p.detach().clone() for p in task.parameters()]
    trainer = _trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=1, default_root_dir=tmp_path)
    trainer.fit(task, dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, task.parameters()))
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    ClassificationTask.load_from_checkpoint(tmp_path / "c.ckpt", weights_only=True)


def test_task_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="model.optimizer: unknown optimizer 'adamx'"):
        ClassificationTask(model="mlp", input_shape=(1, 8, 8), optimizer="adamx")
    with pytest.raises(ValueError, match="model.scheduler"):
        ClassificationTask(model="mlp", input_shape=(1, 8, 8), scheduler="linear")
    with pytest.raises(ValueError, match="model.label_smoothing"):
        ClassificationTask(model="mlp", input_shape=(1, 8, 8), label_smoothing=1.5)


def test_cli_links_data_into_model_without_running():
    c = ZooCLI(args=["--config", str(ROOT / "configs/lenet5_digits.yaml")], run=False)
    assert isinstance(c.model, ClassificationTask) and isinstance(c.datamodule, DigitsDataModule)
    assert c.model.hparams.num_classes == 10
    assert c.model.hparams.input_shape == [1, 8, 8]
    assert c.model.hparams.preprocessing["resize"] == [32, 32]
    assert c.model.net.input_shape == (1, 32, 32)
    monitors = {type(cb).__name__: cb.monitor for cb in c.trainer.callbacks if hasattr(cb, "monitor")}
    assert monitors["EarlyStopping"] == "val/loss" and monitors["ZooModelCheckpoint"] == "val/loss"


def test_cli_wrong_value_names_the_field():
    with pytest.raises(SystemExit):
        ZooCLI(args=["--config", str(ROOT / "configs/mlp_digits.yaml"), "--model.init_args.lr", "fast"], run=False)
    with pytest.raises(ValueError, match="hidden widths must be positive"):
        ZooCLI(
            args=["--config", str(ROOT / "configs/mlp_digits.yaml"), "--model.init_args.model_kwargs", "{hidden: [-4]}"],
            run=False,
        )


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_runs_fast_dev_run(config, tmp_path):
    cli.main(["fit", "--config", str(config), "--trainer.fast_dev_run", "true", "--trainer.default_root_dir", str(tmp_path)])
    # fit ends with a test pass whose metrics are written next to the logs (wherever the logger puts them)
    summary = json.loads(next(Path.cwd().rglob("test_metrics.json")).read_text())
    metrics = summary["metrics"]
    assert any(k.startswith("test/") for k in metrics), metrics
    assert all(math.isfinite(v) for v in metrics.values()), metrics


def test_fit_tests_the_best_checkpoint(capsys, tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    matplotlib.use("svg")  # stands for a user's own backend (a notebook's inline one)
    cli.main(
        [
            "fit", "--config", str(ROOT / "configs/mlp_digits.yaml"),
            "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert "Testing the best checkpoint" in out and "best-epoch=" in out and "test/acc" in out
    assert list(tmp_path.rglob("test_confusion_matrix.png"))
    assert matplotlib.get_backend() == "svg"  # drawing the confusion matrix left the user's backend alone
    matplotlib.use(backend)
    summary = json.loads(next(tmp_path.rglob("test_metrics.json")).read_text())
    assert "best-epoch=" in summary["best_checkpoint"] and 0.5 < summary["metrics"]["test/acc"] <= 1.0
    # The CLI's checkpoint (callbacks, loops, DataModule state included) loads with weights_only=True.
    ckpt = torch.load(summary["best_checkpoint"], weights_only=True)
    assert ckpt["DigitsDataModule"]["sizes"] == {"train": 1167, "val": 270, "test": 360}
    model = ClassificationTask.load_from_checkpoint(summary["best_checkpoint"], weights_only=True)
    assert model.hparams.preprocessing == ckpt["DigitsDataModule"]["preprocessing"]

    # Resuming on another split stops before training, naming what changed; the checkpoint survives.
    last = next(tmp_path.rglob("last.ckpt"))
    before = last.read_bytes()
    with pytest.raises(SystemExit) as exc:  # one line on stderr, exit 2 (zoo.cli_errors)
        cli.main(
            [
                "fit", "--config", str(ROOT / "configs/mlp_digits.yaml"), "--data.init_args.seed", "5",
                "--trainer.max_epochs", "3", "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(last),
            ]
        )
    assert exc.value.code == 2
    assert re.search(r"error: .*split .*differs from the checkpoint", capsys.readouterr().err)
    assert last.read_bytes() == before


def test_zoo_list_prints_the_registry(capsys):
    cli.main(["list"])
    out = capsys.readouterr().out
    assert "lenet5" in out and "61,706" in out and "LeCun" in out
