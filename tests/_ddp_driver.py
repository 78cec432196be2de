"""Runs several ``zoo`` commands one after another in the SAME processes (tests/test_ddp.py).

``python tests/_ddp_driver.py SPEC.json``: SPEC is ``{"runs": [{"name": ..., "argv": [...]}, ...]}``;
each ``argv`` is what a user would type after ``zoo`` (``fit --config ... --trainer.strategy ddp``).
Why a driver instead of one ``zoo`` process per command: importing Lightning costs ~11 s per process
on the 2-core test machine, and a DDP run starts two of them. Lightning supports several Trainers in
sequence: the first one starts the other ranks (which rerun this script with the same SPEC), later
ones reuse the process group. Each run is ``cli.ZooCLI(args=argv)``, exactly what ``cli.main`` does
for ``zoo``, and each rank also saves its own final weights to ``<default_root_dir>/rank<R>.pt`` so
the test can check that the replicas agree (files the zoo itself never writes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import cli  # noqa: E402


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    for run in spec["runs"]:
        if run.get("expect_error"):  # must stop every rank with an error: each rank writes the one it ended with
            try:
                cli.ZooCLI(args=run["argv"])
                ended = "finished"
            except (Exception, SystemExit) as e:  # noqa: BLE001 - recorded for the test, which asserts its type and text
                ended = f"{type(e).__name__}: {e}"
            root = Path(run["root"])
            root.mkdir(parents=True, exist_ok=True)
            (root / f"rank{torch.distributed.get_rank()}_ended.txt").write_text(ended)
            continue
        c = cli.ZooCLI(args=run["argv"])
        root = Path(c.trainer.default_root_dir)
        weights = {k: v.detach().cpu() for k, v in c.model.state_dict().items()}
        torch.save(weights, root / f"rank{c.trainer.global_rank}_{run['name']}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
