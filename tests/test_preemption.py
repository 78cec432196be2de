"""SIGTERM during `zoo fit` (a scheduler preempting): checkpoint at the current step, exit 143, resumable."""

import contextlib
import io
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
        first = torch.load(ckdir / "last.ckpt", weights_only=True)
        time.sleep(0.3)
        proc.send_signal(sig)  # lands anywhere: a training batch, the epoch's last one, validation
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err[-2000:]
    m = re.search(r"SIGTERM received: checkpoint of step (\d+) \(epoch (\d+)\) saved to (\S+); continue with --ckpt_path last", err)
    assert m, err[-2000:]
    ckpt = torch.load(m[3], weights_only=True)
    assert Path(m[3]) == ckdir / "last.ckpt"
    assert ckpt["global_step"] == int(m[1]) > first["global_step"]  # the signal's step, not the last epoch end
    assert not list(ckdir.glob(".*"))  # no temp file left

    # --ckpt_path last continues from it (in-process, to spare a second start-up) and trains the
    # rest of that epoch and one more: every batch once, none skipped or repeated.
    steps_per_epoch = first["global_step"] // (first["epoch"] + 1)  # an epoch-end checkpoint
    epoch = int(m[2])
    cli.main([*args[:4], str(epoch + 2), *args[5:], "--ckpt_path", "last"])
    final = torch.load(ckdir / "last.ckpt", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (epoch + 1, (epoch + 2) * steps_per_epoch)


def _fit_small(ckdir, epochs, *extra):
    with contextlib.redirect_stdout(io.StringIO()):
        cli.main(["fit", "--config", str(ROOT / "configs/mlp_digits.yaml"), "--trainer.enable_progress_bar", "false",
                  "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "1",
                  "--model.init_args.scheduler_kwargs", "{T_max: 4}", "--trainer.max_epochs", str(epochs),
                  "--data.init_args.augment", "false",  # augmentation drawn while prefetching: see the README
                  "--checkpoint.dirpath", str(ckdir), "--trainer.default_root_dir", str(ckdir), *extra])


def _state(ckdir):
    ckpt = torch.load(ckdir / "last.ckpt", weights_only=True)
    mc = ckpt["callbacks"][next(k for k in ckpt["callbacks"] if k.startswith("ModelCheckpoint"))]
    es = ckpt["callbacks"][next(k for k in ckpt["callbacks"] if k.startswith("EarlyStopping"))]
    return ckpt, (ckpt["epoch"], ckpt["global_step"], Path(mc["best_model_path"]).name, float(mc["best_model_score"]),
                  es["wait_count"], float(es["best_score"]))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    ckdir = tmp_path_factory.mktemp("whole")
    _fit_small(ckdir, 4)
    return _state(ckdir)


@pytest.mark.parametrize("signum, epoch, where, batch", [
    (signal.SIGUSR1, 1, "val", 0),  # inside validation: the resumed run used to fail (no val/loss for EarlyStopping)
    (signal.SIGTERM, 3, "train", -1),  # the last run's last batch: its validation and best checkpoint used to be skipped
    (signal.SIGTERM, 1, "train", 1),  # mid-epoch: the resumed epoch used to reshuffle (rows repeated, others missed)
], ids=["sigusr1-in-validation", "sigterm-at-the-last-batch", "sigterm-mid-epoch"])
def test_a_signal_stops_at_a_batch_or_epoch_end_and_the_resumed_run_is_identical(
        uninterrupted, tmp_path, signum, epoch, where, batch):
    whole, expected = uninterrupted

    plant = ["--trainer.callbacks+=tests._signal_plant.SendSignal", "--trainer.callbacks.init_args.signum", str(int(signum)),
             "--trainer.callbacks.init_args.epoch", str(epoch), "--trainer.callbacks.init_args.where", where,
             "--trainer.callbacks.init_args.batch", str(batch)]
    with pytest.raises(SystemExit) as exc:
        _fit_small(tmp_path / "cut", 4, *plant)
    assert exc.value.code == 128 + signum
    stopped = torch.load(tmp_path / "cut" / "last.ckpt", weights_only=True)
    # from the last batch on, after the epoch; before it, after the batch
    assert (stopped["epoch"], stopped["global_step"]) == (epoch, 4 * epoch + (4 if batch == -1 or where == "val" else batch + 1))
    _fit_small(tmp_path / "cut", 4, "--ckpt_path", "last")
    resumed, got = _state(tmp_path / "cut")
    assert got == expected  # epoch, step, best checkpoint and score, early-stopping count
    for k, v in whole["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k


def test_sigusr1_in_process_stops_at_the_next_batch_boundary_with_a_checkpoint(tmp_path):
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
    assert ckpt["global_step"] == steps_per_epoch + 3  # sent as the 4th batch of the 2nd epoch starts: before it
    assert signal.getsignal(signal.SIGUSR1) == before  # handlers given back


def test_the_resumable_sampler_draws_randomsamplers_order_and_resumes_part_way():
    from torch.utils.data import RandomSampler

    from datamodules.base import ResumableRandomSampler

    data = list(range(50))
    torch.manual_seed(3)
    expected = list(RandomSampler(data))
    after = torch.get_rng_state()
    torch.manual_seed(3)
    sampler = ResumableRandomSampler(data)
    assert list(sampler) == expected  # the same order from the same global RNG draw: runs unchanged
    assert torch.equal(torch.get_rng_state(), after)
    seed = sampler.seed
    torch.manual_seed(99)  # whatever the RNG holds now, the resumed epoch is the saved one
    sampler.resume_at(seed, 20)
    assert list(sampler) == expected[20:]
    assert list(sampler) != expected  # and the next epoch draws a new order
