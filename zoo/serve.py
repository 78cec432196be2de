"""``zoo serve``: a checkpoint behind an HTTP prediction API, on LitServe (Lightning's serving engine).

    zoo serve --ckpt_path CKPT [--host 127.0.0.1] [--port 8000] [--workers N] [--max-batch-size B]
              [--batch-timeout S] [--max-bytes BYTES] [--max-samples N] [--threads T] [--accelerator auto|cpu|cuda]

Routes (LitServe's, ``zoo.serve`` adds the request gate and the model logic):

* ``POST /predict``: the body is one of
    - an image file: raw PNG/JPEG bytes (``Content-Type: image/png``, ``image/jpeg`` or
      ``application/octet-stream``) or a multipart upload (``curl -F file=@digit.png``). It becomes a
      raw sample the way ``datamodules.vision.load_image`` reads a file for an ImageFolder model:
      converted to grey or RGB to match the checkpoint's channels, resized bilinearly to its raw
      ``H x W``, pixel values kept as they are (0..255; the digits data holds 0..16);
    - JSON ``{"input": <nested list>}`` (or the bare list): one raw sample of the checkpoint's input
      shape or a list of them, as the DataModule yields them.
  Classifiers answer ``{"probs": [[p per class] per sample], "labels": [class name per sample],
  "classes": [names]}``; other tasks answer their ``predict_step`` outputs by name (``{"output":
  ...}`` for a regressor; a reconstruction, an embedding or samples for the newer tasks). A task can
  define ``serve_step(x) -> {name: tensor (N, ...)}`` to choose what it answers.
* ``GET /health``: 200 ``ok`` once the model is loaded in every worker (503 before).
* ``GET /info``: model, task, classes, raw input shape, checkpoint path and SHA-256, what /predict accepts.

Bad requests are answered 4xx with ``{"detail": "<one line>"}`` before they reach the model (so one bad
request never fails the other requests batched with it): not JSON or not an image (400), wrong
shape or values (422), too large (413), a content type it does not read (415). A 5xx answers
``Internal server error`` only; the traceback stays in the server's log.

Dynamic batching is LitServe's: requests arriving within ``--batch-timeout`` seconds of each other
are run as one batch of up to ``--max-batch-size`` requests (``--max-batch-size 1`` turns it off).
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/webp", "image/bmp", "application/octet-stream")
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_SAMPLES = 256
_INTERNAL = "_zoo_tensor"  # key of the body the gate hands LitServe (float32 bytes + shape)


class RequestError(Exception):
    """A bad request: HTTP ``status`` and a one-line ``detail`` for the client."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class InputGate:
    """Turns a request body into raw samples ``(N, *input_shape)`` float32, or a ``RequestError``.

    Plain Python and numpy only (it runs in LitServe's HTTP processes, before the model)."""

    def __init__(self, input_shape: Sequence[int], max_bytes: int = DEFAULT_MAX_BYTES, max_samples: int = DEFAULT_MAX_SAMPLES) -> None:
        self.shape = tuple(int(s) for s in input_shape)
        self.max_bytes, self.max_samples = int(max_bytes), int(max_samples)

    @property
    def takes_images(self) -> bool:
        return len(self.shape) == 3 and self.shape[0] in (1, 3)

    def _shape_text(self) -> str:
        return "(" + ", ".join(map(str, self.shape)) + ")"

    def from_json(self, body: bytes):
        import numpy as np

        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(400, f"the body is not valid JSON ({e}); send {{\"input\": [...]}} with Content-Type application/json") from None
        if isinstance(obj, dict):
            if "input" not in obj:
                raise RequestError(400, f"the JSON object has no \"input\" key (keys: {sorted(obj)[:5]}); send {{\"input\": <raw samples>}}")
            obj = obj["input"]
        if not isinstance(obj, list):
            raise RequestError(422, f"\"input\" must be a nested list of numbers of shape {self._shape_text()} or (N, ...), got {type(obj).__name__}")
        try:
            arr = np.asarray(obj, dtype=np.float64)
        except (ValueError, TypeError):
            raise RequestError(422, f"\"input\" is not a rectangular array of numbers; send samples of shape {self._shape_text()}") from None
        return self.check(arr)

    def from_image(self, data: bytes):
        import numpy as np

        if not self.takes_images:
            raise RequestError(415, f"this model takes samples of shape {self._shape_text()}, not images; send JSON {{\"input\": [...]}}")
        from PIL import Image, UnidentifiedImageError

        c, h, w = self.shape
        try:
            # As datamodules.vision.load_image reads a file (same conversion, same bilinear resize).
            with Image.open(io.BytesIO(data)) as im:
                im = im.convert("RGB" if c == 3 else "L")
                if im.size != (w, h):
                    im = im.resize((w, h), Image.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise RequestError(400, f"the body is not an image PIL can read ({type(e).__name__}); send PNG or JPEG bytes") from None
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)
        return self.check(a.astype(np.float64))

    def check(self, arr):
        import numpy as np

        if arr.shape == self.shape:
            arr = arr[None]
        if arr.ndim != len(self.shape) + 1 or arr.shape[1:] != self.shape:
            raise RequestError(
                422, f"input has shape {tuple(arr.shape)}, this model takes one sample of shape {self._shape_text()} or a list of them"
            )
        if len(arr) == 0:
            raise RequestError(422, "input holds no samples; send at least one")
        if len(arr) > self.max_samples:
            raise RequestError(413, f"{len(arr)} samples in one request, the limit is {self.max_samples} (--max-samples); split the request")
        if not np.isfinite(arr).all():
            raise RequestError(422, "input holds NaN or infinite values; send finite numbers")
        return arr.astype(np.float32)


def encode_internal(arr) -> bytes:
    """The body LitServe receives after the gate: raw float32 bytes (base64) and the shape, as JSON."""
    return json.dumps({_INTERNAL: {"b64": base64.b64encode(arr.tobytes()).decode(), "shape": list(arr.shape)}}).encode()


def decode_internal(payload: dict[str, Any]):
    import numpy as np
    import torch

    z = payload[_INTERNAL]
    arr = np.frombuffer(base64.b64decode(z["b64"]), dtype=np.float32).reshape(z["shape"])
    return torch.from_numpy(arr.copy())  # (N, *input_shape)


class GateMiddleware:
    """ASGI middleware in front of ``POST /predict``: reads the body (refusing it past ``max_bytes``),
    turns it into raw samples with ``InputGate`` and hands LitServe one internal JSON body, or answers
    the 4xx itself. Why here and not in ``LitAPI.decode_request``: with dynamic batching LitServe
    decodes a whole batch in one try block, so one bad request raising there would fail every request
    batched with it; here it is refused alone, before it is queued."""

    def __init__(self, app, gate: InputGate, api_path: str = "/predict") -> None:
        self.app, self.gate, self.api_path = app, gate, api_path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.api_path or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read(headers, receive)
            arr = await self._parse(scope, headers, body)
        except RequestError as e:
            return await self._answer(send, e.status, e.detail)
        new = encode_internal(arr)
        kept = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-type", b"content-length")]
        scope = dict(scope, headers=[*kept, (b"content-type", b"application/json"), (b"content-length", str(len(new)).encode())])
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": new, "more_body": False}
            return await receive()  # after the body: wait for the client's disconnect as usual

        return await self.app(scope, replay, send)

    async def _read(self, headers: dict[str, str], receive) -> bytes:
        limit = self.gate.max_bytes
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"the body has {int(declared)} bytes, the limit is {limit} (--max-bytes); send a smaller request")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError(400, "the client disconnected before sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"the body has more than {limit} bytes (--max-bytes); send a smaller request")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _parse(self, scope, headers: dict[str, str], body: bytes):
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json" or (not ctype and body[:1] in (b"{", b"[")):
            return self.gate.from_json(body)
        if ctype in IMAGE_TYPES:
            return self.gate.from_image(body)
        if ctype == "multipart/form-data":
            from starlette.requests import Request

            async def once():
                return {"type": "http.request", "body": body, "more_body": False}

            try:
                form = await Request(scope, once).form()
            except Exception as e:  # noqa: BLE001 - a malformed multipart body is the client's error
                raise RequestError(400, f"the multipart body cannot be parsed ({type(e).__name__}); send one file field, e.g. curl -F file=@image.png") from None
            for key, value in form.multi_items():
                if hasattr(value, "read"):  # an uploaded file
                    return self.gate.from_image(await value.read())
            if "input" in form:
                return self.gate.from_json(str(form["input"]).encode())
            raise RequestError(400, "the multipart body holds no file; send the image as a file field, e.g. curl -F file=@image.png")
        raise RequestError(
            415, f"content type {ctype or '(none)'!r} is not read here; send application/json, image/png, image/jpeg or multipart/form-data"
        )

    @staticmethod
    async def _answer(send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- model side


def describe(ckpt_path: Any) -> dict[str, Any]:
    """What ``/info`` says about the checkpoint (read with ``weights_only=True``, no model built)."""
    from zoo.export import read_checkpoint
    from zoo.tasks import BinaryClassificationTask, ClassificationTask

    cls, hp, digest = read_checkpoint(ckpt_path)
    pre = hp.get("preprocessing") or {}
    shape = [int(s) for s in (pre.get("input_shape") or hp.get("input_shape") or [])]
    classifier = issubclass(cls, (ClassificationTask, BinaryClassificationTask))
    n = int(hp.get("num_classes", 0))
    names = hp.get("class_names") or [str(i) for i in range(n)]
    return {
        "model": hp["model"],
        "task": cls.__name__,
        "classes": [str(c) for c in names] if classifier else None,
        "input_shape": shape,
        "checkpoint": str(ckpt_path),
        "checkpoint_sha256": digest,
        "accepts": ["application/json {\"input\": raw samples}", *(["image/png", "image/jpeg", "multipart/form-data"] if len(shape) == 3 and shape[0] in (1, 3) else [])],
    }


def task_outputs(task, x) -> dict[str, Any]:
    """``{name: tensor (N, ...)}`` a task answers for raw input ``x``: its ``serve_step`` when it has
    one, else its ``predict_step`` (a dict of tensors, or one tensor named ``output``). Classifier
    probabilities become one list per sample (a binary task's ``p`` becomes ``[1 - p, p]``)."""
    import torch

    step = getattr(task, "serve_step", None)
    out = step(x) if step is not None else task.predict_step(x, 0)
    out = dict(out) if isinstance(out, dict) else {"output": out}
    if "probs" in out and out["probs"].dim() == 1:
        p = out["probs"]
        out["probs"] = torch.stack([1 - p, p], dim=-1)  # (N, 2)
    return out


try:  # LitServe is a dependency; the import stays here so `zoo export` does not need it
    import litserve as _ls

    _LitAPI = _ls.LitAPI
except ImportError:  # pragma: no cover
    _LitAPI = object


class ZooAPI(_LitAPI):
    """LitServe API of one zoo checkpoint: the gate's raw samples in, the task's outputs out.

    ``batch`` concatenates the requests' samples (each request may hold several) and remembers the
    split; ``predict`` runs the model once and hands back one answer per request."""

    def __init__(self, ckpt_path: str, classes: list[str] | None, max_batch_size: int = 8, batch_timeout: float = 0.005,
                 threads: int = 1) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "batch and unbatch implemented but max_batch_size not set" with batching off
            super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.ckpt_path, self.classes, self.threads = ckpt_path, classes, threads

    def setup(self, device) -> None:
        import torch

        from zoo.export import load_task

        # Intra-op threads per worker (--threads, default 1): a served request is a small batch, where
        # torch's thread pool costs more than it gains; on this shared 2-core machine LeNet-5 on one
        # sample took a median 244 ms with 2 threads and 0.84 ms with 1 (30 calls each, blocks alternated 2/1/2/1).
        # Parallelism across requests comes from --workers and batching instead.
        torch.set_num_threads(self.threads)
        self.task = load_task(self.ckpt_path).to(device)
        self.torch_device = device

    def decode_request(self, request, **kwargs):
        return decode_internal(request)  # (n_i, *input_shape)

    def batch(self, inputs):
        import torch

        return torch.cat(inputs), [len(x) for x in inputs]

    def predict(self, x, **kwargs):
        import torch

        batched = isinstance(x, tuple)
        x, sizes = x if batched else (x, [len(x)])
        with torch.inference_mode():
            out = task_outputs(self.task, x.to(self.torch_device))
        parts = {k: torch.split(v.detach().float().cpu(), sizes) for k, v in out.items()}
        answers = [{k: parts[k][i] for k in parts} for i in range(len(sizes))]
        return answers if batched else answers[0]

    def unbatch(self, output):
        return output  # predict already answers one dict per request

    def encode_response(self, output, **kwargs):
        reply = {k: v.tolist() for k, v in output.items()}
        if self.classes is not None and "probs" in output:
            reply["labels"] = [self.classes[i] for i in output["probs"].argmax(-1).tolist()]
            reply["classes"] = self.classes
            reply.pop("preds", None)  # the labels say it by name
        return reply


def _check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise _error(f"--port: {port} is not a port number, use 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise _error(f"--port: {host}:{port} is not free ({e.strerror}), choose another --port or stop what uses it") from None


def _error(msg: str) -> Exception:
    from zoo.cli_errors import ZooConfigError

    return ZooConfigError(msg)


def build_server(ckpt_path: str, workers: int = 1, max_batch_size: int = 8, batch_timeout: float = 0.005,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_samples: int = DEFAULT_MAX_SAMPLES, accelerator: str = "auto",
                 info: dict[str, Any] | None = None, threads: int = 1):
    import litserve as ls

    info = dict(info or describe(ckpt_path))  # one-line errors for a bad checkpoint, before any worker starts
    if workers < 1:
        raise _error(f"--workers: {workers}, give at least 1")
    if max_batch_size < 1:
        raise _error(f"--max-batch-size: {max_batch_size}, give at least 1 (1 turns batching off)")
    if threads < 1:
        raise _error(f"--threads: {threads}, give at least 1")
    if batch_timeout < 0:
        raise _error(f"--batch-timeout: {batch_timeout}, give seconds >= 0")
    info.update(max_batch_size=max_batch_size, batch_timeout=batch_timeout, max_bytes=max_bytes, max_samples=max_samples)
    api = ZooAPI(str(ckpt_path), info["classes"], max_batch_size=max_batch_size, batch_timeout=batch_timeout, threads=threads)
    gate = InputGate(info["input_shape"], max_bytes=max_bytes, max_samples=max_samples)
    server = ls.LitServer(
        api,
        accelerator=accelerator,
        devices=1,
        workers_per_device=workers,
        timeout=30,
        model_metadata=info,
        middlewares=[(GateMiddleware, {"gate": gate})],
    )
    return server, info


def main(argv: Sequence[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="zoo serve", description="Serve a zoo checkpoint over HTTP (LitServe).")
    p.add_argument("--ckpt_path", required=True, help="a .ckpt file written by zoo fit")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="inference worker processes")
    p.add_argument("--max-batch-size", type=int, default=8, help="requests run as one batch (1: no batching)")
    p.add_argument("--batch-timeout", type=float, default=0.005, help="seconds a batch waits to fill")
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="largest request body")
    p.add_argument("--max-samples", type=int, default=DEFAULT_MAX_SAMPLES, help="most samples in one request")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per inference worker")
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    a = p.parse_args(list(argv))
    info = describe(a.ckpt_path)  # a bad checkpoint, then a busy port: one line each, before anything starts
    _check_port(a.host, a.port)
    server, info = build_server(a.ckpt_path, a.workers, a.max_batch_size, a.batch_timeout, a.max_bytes, a.max_samples, a.accelerator, info, a.threads)
    print(
        f"serving {info['model']} ({info['task']}, input {tuple(info['input_shape'])}) from {a.ckpt_path} at "
        f"http://{a.host}:{a.port}: POST /predict, GET /health, GET /info",
        flush=True,
    )
    # SIGTERM (kill, a container stopping, a test's cleanup) shuts down like Ctrl-C: LitServe stops its
    # HTTP and inference worker processes only on KeyboardInterrupt; a plain SIGTERM would orphan them.
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGTERM, _interrupt)
    server.run(host=a.host, port=a.port, generate_client_file=False, log_level="warning")
    return 0


_MAIN_PID: int | None = None


def _interrupt(signum, frame):
    if os.getpid() != _MAIN_PID:
        # A forked HTTP worker inherits this handler; uvicorn re-raises the SIGTERM it caught when it has
        # shut down, and that worker should then just end (a KeyboardInterrupt there prints a traceback).
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt


if __name__ == "__main__":  # python -m zoo.serve
    from zoo import cli_errors

    sys.exit(cli_errors.run(main, sys.argv[1:]))
