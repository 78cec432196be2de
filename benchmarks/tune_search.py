"""Bars of ``zoo tune`` (issue 18) on ``mlp_digits``: TPE and random search side by side.

    uv run python benchmarks/tune_search.py [--n-trials 20] [--write-readme]

Runs, each as its own ``zoo tune`` process with a fresh SQLite study:
  * TPE (``configs/search/mlp_digits.yaml``: learning rate, width, dropout, weight decay; median pruning);
  * the same search file with ``sampler: random`` (same seed, same pruner);
and fits the default config once with the same trial machinery (its best validation accuracy).
Prints, and with ``--write-readme`` writes between ``<!-- tune-table:begin -->`` and
``<!-- tune-table:end -->`` in README.md: wall time, trials pruned, best val/acc and the trial that
first reached it, the default config's val/acc, and the refit of ``best.yaml`` against the trial.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "mlp_digits.yaml"
SEARCH = ROOT / "configs" / "search" / "mlp_digits.yaml"


OVERRIDES: list[str] = []


def default_value(work: Path) -> float:
    """Best val/acc of the unmodified config, through the same trial code as every search trial."""
    import optuna

    from zoo.tune import Tuner

    tuner = Tuner(["--config", str(CONFIG), "--search", str(SEARCH), "--n-trials", "1", "--output-dir", str(work / "default"), "--no-refit", *OVERRIDES])
    base = tuner.base
    params = {}
    for p in tuner.search.params:
        node = base
        for part in p.key.split("."):
            node = node[part]
        params[p.name] = node if p.type != "choice" or p.encoded else json.dumps(node)
    return tuner.objective(optuna.trial.FixedTrial(params, number=0))


def run_search(name: str, search: Path, n_trials: int, work: Path) -> dict:
    out = work / name
    cmd = [sys.executable, "-c", "import cli; cli.main()", "tune", "--config", str(CONFIG), "--search", str(search),
           "--n-trials", str(n_trials), "--output-dir", str(out), *OVERRIDES]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (work / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SystemExit(f"{name}: zoo tune failed ({proc.returncode}); see {work / f'{name}.log'}\n{proc.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    con = sqlite3.connect(out / "study.db")
    rows = con.execute(
        "SELECT t.number, t.state, v.value FROM trials t LEFT JOIN trial_values v ON v.trial_id = t.trial_id ORDER BY t.number"
    ).fetchall()
    best = summary["best_value"]
    first_best = next(n for n, s, v in rows if s == "COMPLETE" and v is not None and v >= best - 1e-12)
    pruned = sum(s == "PRUNED" for _, s, _ in rows)
    return {
        "name": name, "wall_s": wall, "trials": len(rows), "pruned": pruned, "complete": sum(s == "COMPLETE" for _, s, _ in rows),
        "best": best, "trials_to_best": first_best + 1, "refit": summary["refit"]["val_metric"],
        "test": summary["refit"]["test"].get("test/acc"), "params": summary["best_params"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-trials", type=int, default=20)
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("overrides", nargs="*", help="zoo fit overrides for a quick smoke run (after --), e.g. -- --trainer.max_epochs 2")
    args = ap.parse_args()
    OVERRIDES[:] = args.overrides
    sys.path.insert(0, str(ROOT))
    import torch

    with tempfile.TemporaryDirectory(prefix="zoo-tune-bench-") as tmp:
        work = Path(tmp)
        spec = yaml.safe_load(SEARCH.read_text())
        spec["sampler"]["name"] = "random"
        spec["sampler"].pop("n_startup_trials", None)
        random_search = work / "mlp_digits_random.yaml"
        random_search.write_text(yaml.safe_dump(spec))
        results = [run_search("tpe", SEARCH, args.n_trials, work), run_search("random", random_search, args.n_trials, work)]
        default = default_value(work)

    lines = [
        "| sampler (median pruning) | trials | wall s | pruned | best val/acc | trials to reach it | default config val/acc | refit val/acc | refit test/acc | bars |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        bars = [
            f"{'pass' if r['wall_s'] < 600 else 'FAIL'}: < 600 s",
            f"{'pass' if r['pruned'] >= 0.3 * r['trials'] else 'FAIL'}: pruned >= 30%",
            f"{'pass' if r['best'] >= default else 'FAIL'}: best >= default",
            f"{'pass' if abs(r['refit'] - r['best']) <= 0.01 else 'FAIL'}: refit within 0.01",
        ]
        lines.append(
            f"| {r['name']} | {r['trials']} | {r['wall_s']:.0f} | {r['pruned']} ({100 * r['pruned'] / r['trials']:.0f}%) | "
            f"{r['best']:.4f} | {r['trials_to_best']} | {default:.4f} | {r['refit']:.4f} | {r['test']:.4f} | {'; '.join(bars)} |"
        )
    for r in results:
        lines.append("")
        lines.append(f"Best {r['name']} parameters: `{json.dumps({k.rsplit('.', 1)[-1]: v for k, v in r['params'].items()})}`.")
    models = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
    cpu = (models[0] if models else platform.processor() or "CPU") + f", {os.cpu_count()} cores"
    lines.append("")
    lines.append(
        f"Measured on {cpu}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {date.today()}, by `uv run python benchmarks/tune_search.py {' '.join(sys.argv[1:])}`; "
        "wall s is the whole `zoo tune` process (start-up, trials, plots, refit and its test). CUDA: not measured."
    )
    table = "\n".join(lines)
    print(table)
    if args.write_readme:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from run_configs import write_readme_block

        write_readme_block("<!-- tune-table:begin -->", "<!-- tune-table:end -->", table)


if __name__ == "__main__":
    main()
