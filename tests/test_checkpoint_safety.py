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
