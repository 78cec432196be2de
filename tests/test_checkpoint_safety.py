"""Checkpoints cannot run code (local or URL) and are never half-written; resume is exact."""

import http.server
import os
import threading
from functools import partial
from pathlib import Path

import pytest
import torch

import cli
from zoo.tasks import ClassificationTask
from zoo.tasks import checkpointing

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: the stand-in for an attacker's code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def evil_server(tmp_path, monkeypatch):
    """A malicious checkpoint served over HTTP on 127.0.0.1; yields (url, marker path)."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "www"
    root.mkdir()
    marker = tmp_path / "PAYLOAD_RAN"
    good = ClassificationTask(model="mlp", num_classes=2, input_shape=[2], model_kwargs={"hidden": [4]})
    ckpt = {
        "state_dict": good.state_dict(),
        "hyper_parameters": dict(good.hparams),
        "pytorch-lightning_version": "2.6.0",
        "evil": _Payload(marker),
    }
    torch.save(ckpt, root / "evil.ckpt")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/evil.ckpt", marker, root / "evil.ckpt"
    finally:
        server.shutdown()
        server.server_close()


def test_the_planted_payload_is_live(evil_server):
    # Control: unpickled without weights_only, the file does run its payload (so the tests below can fail).
    _, marker, local = evil_server
    torch.load(local, weights_only=False)
    assert marker.exists()


def test_load_from_checkpoint_url_never_runs_the_payload(evil_server):
    url, marker, _ = evil_server
    with pytest.raises(Exception, match="(?i)weights_only|unpickl"):
        ClassificationTask.load_from_checkpoint(url)
    assert not marker.exists()
    with pytest.raises(ValueError, match="weights_only=False"):
        ClassificationTask.load_from_checkpoint(url, weights_only=False)
    assert not marker.exists()


def test_zoo_test_ckpt_path_url_never_runs_the_payload(evil_server, tmp_path):
    url, marker, _ = evil_server
    with pytest.raises((Exception, SystemExit)):
        cli.main(["test", "--config", str(ROOT / "configs/mlp_xor.yaml"), "--ckpt_path", url,
                  "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert not marker.exists()


def test_a_good_checkpoint_over_http_loads_from_the_cache(evil_server):
    url, _, local = evil_server
    ckpt = torch.load(local, weights_only=False)
    del ckpt["evil"]
    torch.save(ckpt, local.parent / "good.ckpt")
    loaded = ClassificationTask.load_from_checkpoint(url.replace("evil", "good"))
    for k, v in ckpt["state_dict"].items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    assert list(checkpointing.cache_dir().glob("*good.ckpt"))


def _load_benchmark(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sigkill_during_saves_leaves_no_truncated_checkpoint_nor_temp_file(tmp_path):
    # benchmarks/kill_during_save.py runs 20 kills; 5 here. TMPDIR on another filesystem when there is one.
    bench = _load_benchmark("kill_during_save")
    tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else str(tmp_path)
    r = bench.run(kills=5, mb=8, io="zoo", tmpdir=tmpdir, directory=tmp_path / "ckpts", seed=1)
    assert r["checked"] >= 1 and r["truncated"] == 0
    assert r["kills_leaving_temp"] >= 1  # kills did land mid-write...
    assert r["temp_left"] == 0  # ...and the next start removed what they left


def test_a_failed_save_keeps_the_old_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    io = checkpointing.AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, target)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_stale_temp_files_of_dead_writers_go_live_ones_stay(tmp_path):
    import socket
    import subprocess
    import sys

    host = socket.gethostname().replace(".", "_")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = tmp_path / f".last.ckpt.{host}-{int(dead.stdout)}.abc{checkpointing.TEMP_SUFFIX}"
    live = tmp_path / f".last.ckpt.{host}-{os.getpid()}.def{checkpointing.TEMP_SUFFIX}"
    other = tmp_path / ".hidden-user-file"
    for p in (stale, live, other):
        p.write_bytes(b"x")
    assert checkpointing.remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def _fit(*extra):
    cli.main(["fit", "--config", str(ROOT / "configs/mlp_digits.yaml"), "--trainer.enable_progress_bar", "false",
              "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "1",
              "--data.init_args.batch_size", "32", "--model.init_args.scheduler_kwargs", "{T_max: 4}", *extra])


def test_resume_at_an_epoch_boundary_is_bit_identical(tmp_path):
    # Uninterrupted: 4 epochs. Interrupted: 2 epochs (the process ends after the epoch-2 checkpoint),
    # then `--ckpt_path last` for the rest. Shuffle order and dropout draw from the global RNGs,
    # which the checkpoint carries.
    _fit("--trainer.max_epochs", "4", "--checkpoint.dirpath", str(tmp_path / "a"), "--trainer.default_root_dir", str(tmp_path / "a"))
    _fit("--trainer.max_epochs", "2", "--checkpoint.dirpath", str(tmp_path / "b"), "--trainer.default_root_dir", str(tmp_path / "b"))
    torch.manual_seed(123)  # whatever the process did meanwhile must not matter
    _fit("--trainer.max_epochs", "4", "--checkpoint.dirpath", str(tmp_path / "b"), "--trainer.default_root_dir", str(tmp_path / "b"),
         "--ckpt_path", "last")
    a = torch.load(tmp_path / "a" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def test_zoo_test_with_a_good_checkpoint_url_runs(evil_server, tmp_path):
    import shutil

    url, _, local = evil_server
    xor = str(ROOT / "configs/mlp_xor.yaml")
    cli.main(["fit", "--config", xor, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
              "--trainer.enable_progress_bar", "false", "--checkpoint.dirpath", str(tmp_path / "run"),
              "--trainer.default_root_dir", str(tmp_path / "run")])
    shutil.copy(tmp_path / "run" / "last.ckpt", local.parent / "xor.ckpt")
    cli.main(["test", "--config", xor, "--ckpt_path", url.replace("evil", "xor"), "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(tmp_path / "test")])
    assert list(checkpointing.cache_dir().glob("*xor.ckpt"))
