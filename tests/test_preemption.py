"""SIGTERM during `zoo fit` (a scheduler preempting): checkpoint at the current step, exit 143, resumable."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cli

ROOT = Path(__file__).resolve().parents[1]


def test_sigterm_saves_at_the_current_step_exits_143_and_resumes(tmp_path):
    sig = signal.SIGTERM
    ckdir = tmp_path / "ckpts"
    args = ["fit", "--config", str(ROOT / "configs/mlp_digits.yaml"), "--trainer.max_epochs", "1000",
            "--trainer.enable_progress_bar", "false", "--checkpoint.dirpath", str(ckdir),
            "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "1",
            "--trainer.default_root_dir", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (ckdir / "last.ckpt").exists():  # one epoch done: training is under way
            assert proc.poll() is None and time.time() < deadline, "training did not start"
            time.sleep(0.2)
        first = torch.load(ckdir / "last.ckpt", weights_only=True)["global_step"]
        time.sleep(0.3)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err[-2000:]
    m = re.search(r"SIGTERM received: checkpoint of step (\d+) \(epoch (\d+)\) saved to (\S+); continue with --ckpt_path last", err)
    assert m, err[-2000:]
    ckpt = torch.load(m[3], weights_only=True)
    assert Path(m[3]) == ckdir / "last.ckpt"
    assert ckpt["global_step"] == int(m[1]) > first  # the signal's step, not the last epoch end
    assert not list(ckdir.glob(".*"))  # no temp file left

    # --ckpt_path last continues from it (in-process, to spare a second start-up).
    resumed_epoch = int(m[2])
    cli.main([*args[:4], str(resumed_epoch + 1), *args[5:], "--ckpt_path", "last"])
    final = torch.load(ckdir / "last.ckpt", weights_only=True)
    assert final["epoch"] == resumed_epoch
    assert final["global_step"] > ckpt["global_step"]


def test_sigusr1_in_process_stops_after_the_batch_with_a_checkpoint(tmp_path):
    import os

    import lightning.pytorch as pl

    from datamodules import DigitsDataModule
    from zoo.tasks import ClassificationTask

    class SendSignal(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 3:
                os.kill(os.getpid(), signal.SIGUSR1)

    before = signal.getsignal(signal.SIGUSR1)
    dm = DigitsDataModule(batch_size=64)
    task = ClassificationTask(model="mlp", num_classes=10, input_shape=dm.input_shape, preprocessing=dm.preprocessing)
    trainer = pl.Trainer(max_epochs=5, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, callbacks=[SendSignal()])
    with pytest.raises(SystemExit) as exc:
        trainer.fit(task, dm)
    assert exc.value.code == 128 + signal.SIGUSR1
    steps_per_epoch = trainer.num_training_batches
    ckpt = torch.load(Path(trainer.checkpoint_callback.dirpath) / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == steps_per_epoch + 4  # after the 4th batch of the 2nd epoch
    assert signal.getsignal(signal.SIGUSR1) == before  # handlers given back
