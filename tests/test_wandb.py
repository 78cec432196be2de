"""ZooWandbLogger and WandbExtras, offline: the run files are read back with wandb's protobuf
records; with an unreachable server, fit still finishes on the CSV fallback.

Why these tests were flaky beside other files (issue 11): with wandb 0.31 in offline mode,
``finish()`` returns before wandb's service has written the end of the run's transaction log. On a
loaded machine the file read right after ``finish()`` lacked its last records (measured: 60 of 76
records, no ``exit`` record, ``test/acc`` missing, in 4 of 4 runs started side by side; complete 3 s
later). ``wandb.teardown()`` waits for the service to exit, which closes the log: the tests call it
before reading, and check the log ends with its ``exit`` record. Each test also ends with
``wandb.teardown()``, so no service, run or settings carry into the next one.
"""

import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest

from callbacks import GradientInspector, WandbExtras, ZooWandbLogger
from callbacks.wandb import offline_history, read_offline_run
from datamodules import DigitsDataModule
from zoo.tasks import ClassificationTask


@pytest.fixture(autouse=True)
def _fresh_wandb_service():
    yield
    import wandb

    wandb.teardown()  # no run, service or settings carried into the next test


def _wait_for_the_run_file():
    """finish() returns before the offline log is complete; teardown() waits for the service to close it."""
    import wandb

    wandb.teardown()


def _task(dm):
    return ClassificationTask(model="mlp", model_kwargs={"hidden": [16]}, num_classes=10, input_shape=dm.input_shape,
                              preprocessing=dm.preprocessing)


def test_offline_run_holds_hparams_metrics_images_tables_and_histograms(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    pl.seed_everything(0)
    dm = DigitsDataModule(batch_size=128)
    task = _task(dm)
    logger = ZooWandbLogger(save_dir=str(tmp_path), name="offline-test")
    assert logger.is_offline
    trainer = pl.Trainer(max_epochs=1, logger=logger, enable_progress_bar=False, log_every_n_steps=2,
                         callbacks=[WandbExtras(predictions=4, gradient_histograms_every_n_steps=5),
                                    GradientInspector(log_every_n_steps=5)])
    trainer.fit(task, dm)
    trainer.test(task, dm, verbose=False)
    logger.experiment.finish()
    _wait_for_the_run_file()

    files = list(Path(tmp_path, "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1  # syncable later with `wandb sync <that folder>`
    records = read_offline_run(files[0])
    assert records[-1].WhichOneof("record_type") == "exit"  # the whole log, not what was flushed so far
    config = {u.key for r in records if r.WhichOneof("record_type") == "config" for u in r.config.update}
    assert {"model", "lr", "optimizer", "batch_size"} <= config
    rows = offline_history(files[0])
    keys = set().union(*rows)
    assert {"train/loss_step", "val/loss", "val/acc", "test/acc", "grad/global_norm", "update_ratio/net.head"} <= keys
    val_acc = [r["val/acc"] for r in rows if "val/acc" in r]
    assert len(val_acc) == 1 and 0.0 <= val_acc[0] <= 1.0
    kinds = {k.split("/_type")[0]: r[k] for r in rows for k in r if k.endswith("/_type")}
    assert kinds["grad/flow"] == "images/separated"  # the gradient-flow picture
    assert kinds["val/predictions"] == "table-file"  # images + labels table
    assert kinds["test/confusion_matrix"] == "table-file"
    assert kinds["test/confusion_matrix_plot"] == "images/separated"
    assert kinds["grad_hist/net.head.weight"] == "histogram"
    media = list(files[0].parent.glob("files/media/**/*.*"))
    assert any(p.suffix == ".png" for p in media) and any(p.name.endswith(".table.json") for p in media)


def test_unreachable_wandb_server_falls_back_to_csv_and_fit_finishes(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    dm = DigitsDataModule(batch_size=256)
    logger = ZooWandbLogger(save_dir=str(tmp_path), init_timeout=5)
    assert not logger.is_offline
    trainer = pl.Trainer(max_epochs=1, logger=logger, enable_progress_bar=False, log_every_n_steps=1,
                         callbacks=[WandbExtras(predictions=4)], enable_model_summary=False)
    start = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="W&B server is unreachable .*127.0.0.1:9.* local CSVLogger") as record:
        logger.experiment  # what Lightning asks for first
    assert time.perf_counter() - start < 10  # the bar: the fallback adds at most 10 s
    assert len(record) == 1
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        trainer.fit(_task(dm), dm)
    assert not [w for w in later if "ZooWandbLogger" in str(w.message)]  # one warning line, not one per call
    assert trainer.state.finished and trainer.global_step == trainer.num_training_batches
    assert logger.fell_back
    metrics = Path(logger.fallback_logger.log_dir) / "metrics.csv"
    assert "val/loss" in metrics.read_text().splitlines()[0]


def test_zoo_fit_with_the_wandb_config_and_no_api_key_writes_an_offline_run(tmp_path, monkeypatch):
    import cli

    monkeypatch.delenv("WANDB_MODE", raising=False)  # decided by the preset: no key -> offline
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    root = Path(__file__).resolve().parents[1]
    cli.main([
        "fit", "--config", str(root / "configs/lenet5_digits_wandb.yaml"),
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.default_root_dir", str(tmp_path),
    ])
    import wandb

    wandb.finish()
    _wait_for_the_run_file()
    files = list(Path(tmp_path, "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    assert read_offline_run(files[0])[-1].WhichOneof("record_type") == "exit"
    rows = offline_history(files[0])
    keys = set().union(*rows)
    assert {"val/loss", "val/acc", "test/acc", "grad/global_norm"} <= keys
    kinds = {k.split("/_type")[0]: r[k] for r in rows for k in r if k.endswith("/_type")}
    assert kinds["grad/flow"] == "images/separated" and kinds["val/predictions"] == "table-file"
    assert kinds["test/confusion_matrix"] == "table-file"


def test_reachability_check_is_bounded_even_when_connecting_hangs(monkeypatch):
    import socket

    from callbacks.wandb import wandb_server_reachable

    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.invalid")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: time.sleep(30))  # a black-holed network
    start = time.perf_counter()
    ok, why = wandb_server_reachable(0.5)
    assert not ok and "no answer within 0.5 s" in why and "wandb.example.invalid:443" in why
    assert time.perf_counter() - start < 3
