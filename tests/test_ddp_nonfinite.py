"""A loss that goes non-finite on one DDP rank only stops EVERY rank at that step with the same error,
instead of leaving the others waiting in validation's reductions (a hang under NCCL; a bare
"connection closed" error under gloo). The ranks agree on the first bad step (zoo/tasks/base.py,
``_check_finite_loss``)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "_ddp_nonfinite.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_rank_stops_at_the_step_where_one_rank_went_non_finite(tmp_path):
    bad_rank = 1  # not the launching process: rank 0 is the one the user sees, and it must name the step
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MASTER_PORT": str(_free_port())}
    r = subprocess.run([sys.executable, str(SCRIPT), str(bad_rank), str(tmp_path)], capture_output=True, text=True,
                       timeout=300, env=env, cwd=tmp_path)
    assert r.returncode != 0, r.stdout[-2000:] + r.stderr[-2000:]
    ends = {rank: (tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)}
    for rank, text in ends.items():
        assert text.startswith("NonFiniteLossError: "), (rank, text, r.stderr[-3000:])
    steps = {rank: re.search(r"at global step (\d+) \(epoch 0, batch (\d+)\)", text).groups() for rank, text in ends.items()}
    assert steps[0] == steps[1]  # the same step named on every rank
    assert ends[bad_rank].startswith("NonFiniteLossError: train/loss is nan")
    assert "went non-finite on another process" in ends[1 - bad_rank]
