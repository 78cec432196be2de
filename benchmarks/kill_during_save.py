"""SIGKILL a process at random moments while it saves checkpoints; count truncated checkpoints and
leftover temporary files.

    uv run python benchmarks/kill_during_save.py                 # 20 kills, the zoo's AtomicCheckpointIO
    uv run python benchmarks/kill_during_save.py --io lightning  # the same with Lightning's TorchCheckpointIO

Each round forks a child that first does what a zoo run does at start (removes the temp files a
killed run left, ``remove_stale_temp_files``), then saves a ~``--mb`` MB checkpoint over and over
(``last.ckpt`` and a rotating ``step-K.ckpt``), with ``TMPDIR`` on another filesystem
(``--tmpdir``, default ``/dev/shm``). The parent kills it with SIGKILL after a random delay once it
has started saving. At the end every ``*.ckpt`` must load with ``weights_only=True`` and, after one
more start, no temporary file may remain (nor in ``TMPDIR``).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _saver(directory: Path, io_name: str, state: dict, tmp: str, ready) -> None:
    """The child: a run's start (stale temp files removed), then checkpoint saves until killed.

    A forked child must not run torch's parallel (OpenMP) kernels once the parent has used its thread
    pool: they can deadlock after fork (the 2M-element torch.randn the child used to make hung it in
    the full test suite). So the state is built in the parent and the child only serialises it.
    """
    from zoo.tasks.checkpointing import AtomicCheckpointIO, remove_stale_temp_files

    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = None  # forked: forget the parent's cached temp dir, read TMPDIR again
    if io_name == "zoo":
        remove_stale_temp_files(directory)  # what ZooTask.setup does at the next start
        io = AtomicCheckpointIO()
    else:
        from lightning.pytorch.plugins.io import TorchCheckpointIO

        io = TorchCheckpointIO()
    ready.set()
    step = 0
    while True:
        ckpt = {"state_dict": state, "step": step}
        io.save_checkpoint(ckpt, directory / "last.ckpt")
        io.save_checkpoint(ckpt, directory / f"step-{step % 3}.ckpt")
        step += 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--mb", type=float, default=32.0, help="checkpoint size in MB")
    p.add_argument("--io", choices=("zoo", "lightning"), default="zoo")
    p.add_argument("--tmpdir", default="/dev/shm", help="TMPDIR of the child (another filesystem)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    t0 = time.perf_counter()
    r = run(a.kills, a.mb, a.io, a.tmpdir, seed=a.seed)
    print(
        f"io={a.io} kills={r['kills']} TMPDIR={a.tmpdir} size={a.mb} MB: "
        f"truncated={r['truncated']} of {r['checked']} checkpoints, "
        f"kills that left a temp file={r['kills_leaving_temp']}, "
        f"temp files left after the next start={r['temp_left']} ({r['temp_left_bytes'] / 2**20:.0f} MB), "
        f"{time.perf_counter() - t0:.0f} s"
    )
    sys.exit(0 if r["truncated"] == 0 and r["temp_left"] == 0 else 1)


def run(kills: int, mb: float, io: str, tmpdir: str, directory: Path | None = None, seed: int = 0) -> dict:
    """Kill ``kills`` children mid-save; returns the counts (the test runs it with a few kills)."""
    import multiprocessing as mp
    import shutil

    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from zoo.tasks.checkpointing import remove_stale_temp_files

    # fork: the child has torch imported already, so a round costs the kill delay, not a start-up.
    ctx = mp.get_context("fork")
    rng = random.Random(seed)
    own_dir = directory is None
    directory = Path(tempfile.mkdtemp(prefix="kill_during_save-", dir=ROOT)) if own_dir else directory
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="kill_during_save-tmp-", dir=tmpdir))
    try:
        truncated = checked = leaving_temp = 0
        state = {"w": torch.from_numpy(np.random.default_rng(seed).standard_normal(int(mb * 2**20 / 4), dtype=np.float32))}
        for _ in range(kills):
            ready = ctx.Event()
            proc = ctx.Process(target=_saver, args=(directory, io, state, str(tmp), ready), daemon=True)
            proc.start()
            if not ready.wait(60):
                proc.kill()
                proc.join()
                raise RuntimeError("the saving child did not start")
            time.sleep(rng.uniform(0.05, 1.0))  # several saves take place in that window
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            leaving_temp += bool(_temp_files(directory, tmp))
        for f in sorted(directory.glob("*.ckpt")):
            checked += 1
            try:
                torch.load(f, weights_only=True)
            except Exception:
                truncated += 1
        if io == "zoo":
            remove_stale_temp_files(directory)  # the next start (ZooTask.setup)
        left = _temp_files(directory, tmp)
        result = {
            "kills": kills,
            "checked": checked,
            "truncated": truncated,
            "kills_leaving_temp": leaving_temp,
            "temp_left": len(left),
            "temp_left_bytes": sum(p.stat().st_size for p in left),
        }
    finally:  # also when a child fails to start: no directory left behind
        shutil.rmtree(tmp, ignore_errors=True)
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)
    return result


def _temp_files(directory: Path, tmp: Path) -> list[Path]:
    """Everything in the checkpoint directory that is not a finished checkpoint, plus anything in TMPDIR."""
    return [p for p in directory.iterdir() if p.suffix != ".ckpt" or p.name.startswith(".")] + [p for p in tmp.rglob("*") if p.is_file()]


if __name__ == "__main__":
    main()
