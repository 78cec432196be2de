"""Requests per second and p50/p99 latency of ``zoo serve`` for LeNet-5 at 1, 8 and 32 concurrent
clients, with LitServe's dynamic batching and without, and the same model in onnxruntime.

    uv run python benchmarks/serve_throughput.py [--ckpt_path CKPT] [--seconds 8] [--write-readme]

Each client is a thread that sends one 8x8 digit PNG per request (``POST /predict``, ``image/png``,
a kept-alive HTTP/1.1 connection) and waits for the answer, for ``--seconds`` after a warm-up. The
server runs as ``zoo serve`` in its own process group (1 inference worker; batching: ``--max-batch-size
32 --batch-timeout 0.005``; without: ``--max-batch-size 1``). The onnxruntime rows run the file that
``zoo export --format onnx`` writes, in this process, one sample per call from the same number of
threads: the model's cost without HTTP, decoding or queues. Clients and server share the machine's
cores, so the figures are a floor for a separate client machine. Without ``--ckpt_path`` a LeNet-5 is
trained for a few batches on the digits (throughput does not depend on the weights' quality).
``--write-readme`` puts the table into README.md between the serve-table markers.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
BEGIN, END = "<!-- serve-table:begin -->", "<!-- serve-table:end -->"
CLIENTS = (1, 8, 32)

from tests._export_helpers import free_port, train_digits_checkpoint  # noqa: E402 (ROOT on the path first)


def run_clients(n: int, seconds: float, call) -> tuple[float, float, float, int]:
    """``n`` threads calling ``call(state)`` back to back for ``seconds``; (rps, p50 ms, p99 ms, requests)."""
    stop = time.perf_counter() + seconds
    lat: list[list[float]] = [[] for _ in range(n)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        state: dict = {}
        try:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                call(state)
                lat[i].append(time.perf_counter() - t)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    all_lat = np.concatenate([np.asarray(x) for x in lat]) * 1000.0
    return len(all_lat) / elapsed, float(np.percentile(all_lat, 50)), float(np.percentile(all_lat, 99)), len(all_lat)


def http_call(port: int, png: bytes):
    def call(state: dict) -> None:
        conn = state.get("conn")
        if conn is None:
            conn = state["conn"] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/predict", body=png, headers={"Content-Type": "image/png"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {body[:200]!r}")

    return call


def serve(ckpt: Path, port: int, batch: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "import cli; cli.main()", "serve", "--ckpt_path", str(ckpt), "--port", str(port),
           "--max-batch-size", str(batch), "--batch-timeout", "0.005"]
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    deadline = time.time() + 300
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"zoo serve exited: {log.read_text()[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            pass
        if time.time() > deadline:
            stop(proc)
            raise RuntimeError("zoo serve did not become healthy in 300 s")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    try:
        proc.terminate()  # zoo serve stops its LitServe workers on SIGTERM
        proc.wait(timeout=60)
        time.sleep(2)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
    except ProcessLookupError:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt_path", default=None)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--write-readme", action="store_true")
    a = p.parse_args()

    import onnxruntime as ort
    from PIL import Image
    from sklearn.datasets import load_digits

    from run_configs import machine
    from zoo import export as zx

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = Path(a.ckpt_path) if a.ckpt_path else train_digits_checkpoint(tmp, resize=32)
        digit = load_digits().images[0].astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(digit).save(buf, format="PNG")
        png = buf.getvalue()

        for label, batch in (("zoo serve, batching (max 32 requests, 5 ms)", 32), ("zoo serve, no batching", 1)):
            port = free_port()
            proc = serve(ckpt, port, batch, tmp / f"serve{batch}.log")
            try:
                run_clients(4, 1.0, http_call(port, png))  # warm-up
                for n in CLIENTS:
                    rps, p50, p99, count = run_clients(n, a.seconds, http_call(port, png))
                    rows.append((label, n, rps, p50, p99, count))
                    print(rows[-1], flush=True)
            finally:
                stop(proc)

        task = zx.load_task(ckpt)
        module, shape = zx._export_module(task), zx.raw_input_shape(task)
        onnx_path = zx.export_onnx(module, shape, tmp / "lenet5.onnx")
        zx.check_onnx(onnx_path, module, shape)
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        x = digit.astype(np.float32)[None, None]  # (1, 1, 8, 8), what the server feeds the model

        def ort_call(state: dict) -> None:
            sess.run(None, {"input": x})

        run_clients(4, 1.0, ort_call)
        for n in CLIENTS:
            rps, p50, p99, count = run_clients(n, a.seconds, ort_call)
            rows.append(("onnxruntime in-process (no HTTP), 1 sample a call", n, rps, p50, p99, count))
            print(rows[-1], flush=True)

    lines = ["| LeNet-5 (digits, 1x8x8 -> 32x32) | clients | requests/s | p50 ms | p99 ms | requests |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]} |" for r in rows]
    lines.append("")
    lines.append(
        f"{a.seconds:g} s per row after a warm-up; clients are threads on the same machine as the server (1 inference "
        f"worker, CPU). Measured on {machine()}, onnxruntime {ort.__version__}, {datetime.date.today()}, by "
        f"`uv run python benchmarks/serve_throughput.py --write-readme`, while other jobs shared the 2 cores (noisy). "
        "GPU: not measured."
    )
    table = "\n".join(lines)
    print(table)
    if a.write_readme:
        from run_configs import write_readme_block

        write_readme_block(BEGIN, END, table)


if __name__ == "__main__":
    main()
