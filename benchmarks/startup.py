"""Start-up cost of the `zoo` command: what importing the engine costs before any training, and a
`zoo fit` of one training batch, against the full LeNet-5 quick start (issue 10).

    uv run python benchmarks/startup.py [--repeats 3] [--write-readme]

Each command is a fresh process, run ``--repeats`` times in turn, wall time; the table gives the
range. ``--write-readme`` puts it between the startup-table markers in README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
BEGIN, END = "<!-- startup-table:begin -->", "<!-- startup-table:end -->"
FIT = ["uv", "run", "zoo", "fit", "--config", "configs/lenet5_digits.yaml"]
COMMANDS = {
    "`python -c \"import torch\"`": ["uv", "run", "--no-sync", "python", "-c", "import torch"],
    "`python -c \"import lightning.pytorch\"`": ["uv", "run", "--no-sync", "python", "-c", "import lightning.pytorch"],
    "`python -c \"import zoo.lightning_cli\"`": ["uv", "run", "--no-sync", "python", "-c", "import zoo.lightning_cli"],
    "`uv run zoo list`": ["uv", "run", "zoo", "list"],
    "`zoo fit` of one training batch (`--trainer.max_epochs 1 --trainer.limit_train_batches 1 "
    "--trainer.limit_val_batches 1`), then the full test": [*FIT, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                                                            "--trainer.limit_val_batches", "1"],
    "`uv run zoo fit --config configs/lenet5_digits.yaml`": FIT,
}


def run(cmd: list[str], workdir: Path) -> tuple[float, str]:
    extra = ["--trainer.default_root_dir", str(workdir)] if "fit" in cmd else []
    t = time.perf_counter()
    r = subprocess.run([*cmd, *extra], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    acc = re.findall(r"test/acc\s*│\s*([0-9.]+)", r.stdout + r.stderr)
    return wall, (f"test/acc {float(acc[-1]):.4f}" if acc else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--write-readme", action="store_true")
    a = p.parse_args()
    from run_configs import machine, write_readme_block

    load0 = os.getloadavg()[0]
    walls: dict[str, list[float]] = {k: [] for k in COMMANDS}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeats):
            for j, (name, cmd) in enumerate(COMMANDS.items()):
                wall, note = run(cmd, Path(tmp) / f"{i}_{j}")
                walls[name].append(wall)
                notes[name] = note or notes.get(name, "")
                print(f"{name}: {wall:.2f} s {note}", flush=True)
    lines = ["| command (a fresh process each time) | wall s | note |", "| --- | --- | --- |"]
    for name, w in walls.items():
        lines.append(f"| {name} | {min(w):.1f}-{max(w):.1f} | {notes[name]} |")
    cmd = "uv run python benchmarks/startup.py " + " ".join(sys.argv[1:])
    lines += ["", f"{a.repeats} runs of each, in turn. Measured on {machine()}, {time.strftime('%Y-%m-%d')}, by `{cmd.strip()}` "
                  f"(1-minute load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)."]
    table = "\n".join(lines)
    print("\n" + table)
    if a.write_readme:
        write_readme_block(BEGIN, END, table)


if __name__ == "__main__":
    main()
