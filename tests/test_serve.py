"""``zoo serve`` (issue 19) as a real process on a free port: /health, /info, PNG bytes, a multipart
upload and JSON answered exactly as the checkpoint predicts on the same files; bad requests get a
4xx with a one-line reason and the server keeps serving; concurrent requests (batched by LitServe)
each get their own answer. The server's whole process group is killed in ``finally``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import cli
from tests._export_helpers import free_port, train_digits_checkpoint

ZOO = [sys.executable, "-c", "import cli; cli.main()"]
MAX_BYTES = 65536


def _request(url: str, data: bytes | None = None, ctype: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype} if ctype else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _multipart(field: str, filename: str, payload: bytes, ctype: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
        f"Content-Type: {ctype}\r\n\r\n"
    ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _stop(proc: subprocess.Popen) -> bool:
    """SIGTERM to ``zoo serve`` itself (as a container stop or ``kill`` sends it), which must stop its
    LitServe HTTP and inference worker processes; then SIGKILL whatever of its process group is left.
    Returns whether the group had emptied by itself."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True  # the whole group is gone
        time.sleep(0.25)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
    return False


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return train_digits_checkpoint(tmp_path_factory.mktemp("serve"))


def test_zoo_serve_answers_like_the_checkpoint_and_refuses_bad_requests(ckpt, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    from datamodules.vision import load_image
    from zoo.tasks import ClassificationTask

    # Real PNG files: digits with their raw values 0..16 as 8-bit grey pixels, one 24x24 RGB (converted and resized).
    digits = load_digits()
    files = []
    for i in range(4):
        p = tmp_path / f"digit{i}.png"
        Image.fromarray(digits.images[i].astype(np.uint8)).save(p)
        files.append(p)
    big = tmp_path / "rgb24.png"
    Image.fromarray(np.kron(digits.images[5], np.ones((3, 3))).astype(np.uint8)).convert("RGB").save(big)
    files.append(big)
    task = ClassificationTask.load_from_checkpoint(ckpt, weights_only=True).eval()
    raw = torch.from_numpy(np.stack([load_image(p, (8, 8), 1) for p in files]).astype(np.float32))  # (5, 1, 8, 8)
    with torch.no_grad():
        expected = task.predict_step(raw, 0)["probs"].numpy()  # (5, 10)

    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [*ZOO, "serve", "--ckpt_path", str(ckpt), "--port", str(port), "--max-bytes", str(MAX_BYTES), "--max-batch-size", "4"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its own process group, killed below
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240  # the inference worker imports torch and Lightning (slow on a busy 2-core box)
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if _request(url + "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "zoo serve did not become healthy"
            time.sleep(0.5)

        status, body = _request(url + "/info")
        info = json.loads(body)["model"]
        assert status == 200 and info["model"] == "lenet5" and info["input_shape"] == [1, 8, 8]
        assert info["classes"] == [str(i) for i in range(10)]
        assert info["checkpoint_sha256"] == hashlib.sha256(Path(ckpt).read_bytes()).hexdigest()

        # PNG bytes, then a multipart upload: the answer is predict on the same file.
        for i, p in enumerate(files):
            status, body = _request(url + "/predict", p.read_bytes(), "image/png")
            assert status == 200, body
            answer = json.loads(body)
            np.testing.assert_allclose(answer["probs"], expected[i : i + 1], rtol=1e-4, atol=1e-6)
            assert answer["labels"] == [str(int(expected[i].argmax()))]
        data, ctype = _multipart("file", "digit0.png", files[0].read_bytes(), "image/png")
        status, body = _request(url + "/predict", data, ctype)
        assert status == 200 and np.allclose(json.loads(body)["probs"], expected[:1], rtol=1e-4, atol=1e-6)

        # JSON raw samples, several in one request.
        status, body = _request(url + "/predict", json.dumps({"input": raw.tolist()}).encode(), "application/json")
        assert status == 200
        np.testing.assert_allclose(json.loads(body)["probs"], expected, rtol=1e-4, atol=1e-6)

        # Bad requests: 4xx, one line each, no traceback; then a good one still works.
        bad = [
            (b"hello", "text/plain", 415, "content type"),
            (b"\x89PNG but not really", "image/png", 400, "not an image"),
            (b"{not json", "application/json", 400, "not valid JSON"),
            (json.dumps({"input": [[1.0, 2.0]]}).encode(), "application/json", 422, "shape (1, 2)"),
            (json.dumps({"input": [[["a"] * 8] * 8]}).encode(), "application/json", 422, "numbers"),
            (json.dumps({"x": 1}).encode(), "application/json", 400, "\"input\""),
            (b"0" * (MAX_BYTES + 1), "application/json", 413, "limit"),
        ]
        for payload, ctype, code, words in bad:
            status, body = _request(url + "/predict", payload, ctype)
            detail = json.loads(body)["detail"]
            assert status == code and words in detail and "\n" not in detail and "Traceback" not in detail, (ctype, status, detail)
        assert proc.poll() is None
        status, body = _request(url + "/predict", files[1].read_bytes(), "image/png")
        assert status == 200 and np.allclose(json.loads(body)["probs"], expected[1:2], rtol=1e-4, atol=1e-6)

        # Concurrent clients (LitServe batches them, up to 4 requests a batch): each gets its own answer.
        def one(i: int):
            k = i % len(files)
            return k, _request(url + "/predict", files[k].read_bytes(), "image/png")

        with ThreadPoolExecutor(8) as pool:
            for k, (status, body) in pool.map(one, range(16)):
                assert status == 200
                np.testing.assert_allclose(json.loads(body)["probs"], expected[k : k + 1], rtol=1e-4, atol=1e-6)
    finally:
        clean = _stop(proc)
        log.close()
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of the server is left running
    assert clean, "zoo serve left worker processes behind after SIGTERM"
    assert proc.returncode == 0
    server_log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in server_log, server_log[-3000:]  # bad requests were refused cleanly; shutdown was quiet


def test_zoo_serve_bad_input_is_one_line(ckpt, tmp_path, capsys):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.ckpt")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = [
            (["--ckpt_path", str(tmp_path / "other.ckpt")], "is not a zoo checkpoint"),
            (["--ckpt_path", str(tmp_path / "none.ckpt")], "does not exist"),
            (["--ckpt_path", str(ckpt), "--port", str(port)], f"127.0.0.1:{port} is not free"),
        ]
        for args, words in cases:
            with pytest.raises(SystemExit) as e:
                cli.main(["serve", *args])
            err = capsys.readouterr().err.strip()
            assert e.value.code == 2 and err.startswith("error: ") and words in err and "\n" not in err, err
