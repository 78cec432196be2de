"""Train configs exactly as a user would (`zoo fit --config ...`, one process each, wall time
includes start-up) and print a table of test metric, peer baseline on the same split, bar, wall
time and machine. `--write-readme` puts the table into README.md between the model-table markers.

    uv run python benchmarks/run_configs.py                       # every config
    uv run python benchmarks/run_configs.py lenet5_digits --seeds 0 1 2 3 4
    uv run python benchmarks/run_configs.py --write-readme
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import operator
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
BEGIN, END = "<!-- model-table:begin -->", "<!-- model-table:end -->"
# Configs whose bars are measured against their own baselines by a family benchmark (each regenerates
# its own README table); name one on the command line to train it here too.
MEASURED_ELSEWHERE = {
    **dict.fromkeys(("autoencoder_digits", "denoising_autoencoder_digits", "vae_digits", "rbm_digits", "dbn_digits"),
                    "benchmarks/representation.py"),
    **dict.fromkeys(("gan_digits", "dcgan_digits"), "benchmarks/gan_quality.py"),
    **dict.fromkeys(("siamese_digits", "triplet_digits"), "benchmarks/metric_learning.py"),
}
# Test metric read when the config has no baseline or bar naming one (first present wins).
METRIC_KEYS = ("test/acc", "test/oneshot_5way_acc", "test/nelbo", "test/pseudo_likelihood", "test/fd", "test/r2", "test/mse", "test/mae")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def write_readme_block(begin: str, end: str, table: str) -> None:
    """Replace what README.md holds between the markers ``begin`` and ``end`` with ``table`` (every
    benchmark regenerates its own table this way). Plain splitting, not ``re.sub``: a table's text
    is never read as a replacement template (a backslash in it stays a backslash)."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    if text.count(begin) != 1 or text.count(end) != 1:
        raise SystemExit(f"README.md needs exactly one {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{table.rstrip(chr(10))}\n{end}{tail}")
    print("README.md updated")


def load_tables() -> tuple[dict, dict]:
    baselines, bars = {}, {}
    for path in sorted((ROOT / "benchmarks").glob("baselines_*.py")):
        mod = importlib.import_module(path.stem)
        baselines.update(getattr(mod, "BASELINES", {}))
        bars.update(getattr(mod, "BARS", {}))
    return baselines, bars


def train(config: Path, seed: int | None, workdir: Path) -> dict:
    cmd = [sys.executable, "-c", "import cli; cli.main()", "fit", "--config", str(config), "--trainer.default_root_dir", str(workdir)]
    if seed is not None:
        cmd += ["--seed_everything", str(seed), "--data.init_args.seed", str(seed)]
    t0 = time.perf_counter()
    # Run inside the scratch folder: loggers that write relative to the working directory (W&B)
    # leave nothing in the repository.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{config.name} failed:\n{r.stderr[-3000:]}")
    summary = json.loads(next(workdir.rglob("test_metrics.json")).read_text())
    return {"wall": wall, **summary}


def baseline(stem: str, config: Path, seed: int | None, baselines: dict) -> dict | None:
    if stem not in baselines:
        return None
    from cli import ZooCLI
    from zoo._quiet import quiet_dependency_noise

    quiet_dependency_noise()  # the in-process CLI that rebuilds the split: the table is this script's output
    for name in ("lightning.pytorch", "lightning.fabric"):  # "Seed set", "GPU available": not this table's business
        logging.getLogger(name).setLevel(logging.WARNING)
    args = ["--config", str(config)] + (["--data.init_args.seed", str(seed)] if seed is not None else [])
    with warnings.catch_warnings():
        # LightningCLI notes that this script's own sys.argv differs from the args it is given: intended here
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        c = ZooCLI(args=args, run=False)
    c.datamodule.setup("fit")
    return baselines[stem](c.datamodule)


def check(bars, metrics: dict, base: dict | None) -> str:
    ok = []
    ops = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt, "==": operator.eq}
    for metric, op, target in bars:
        if target == "baseline":
            if base is None:
                continue
            target_v, label = base["value"], "baseline"
        elif isinstance(target, str) and target.startswith("baseline"):
            # "baseline*0.8", "baseline-0.02", "baseline+0.02": relative to the peer on the same split
            m = re.fullmatch(r"baseline([*+-])([0-9.]+)", target)
            k = float(m.group(2))
            target_v = {"*": base["value"] * k, "+": base["value"] + k, "-": base["value"] - k}[m.group(1)]
            label = target
        else:
            target_v, label = target, f"{target:g}"
        passed = ops[op](metrics[metric], target_v)
        ok.append(f"{'pass' if passed else 'FAIL'}: {metric.split('/')[-1]} {op} {label}")
    return "; ".join(ok) or "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="*", help="config stems (default: every configs/*.yaml)")
    p.add_argument("--seeds", nargs="*", type=int, default=None, help="split/training seeds (default: the config's own)")
    p.add_argument("--write-readme", action="store_true")
    args = p.parse_args()
    baselines, bars = load_tables()
    # "# needs:" configs train on files the user brings (photos, weights): benchmarks/transfer.py measures fine-tuning.
    paths = sorted(q for q in (ROOT / "configs").glob("*.yaml") if "\n# needs:" not in q.read_text())
    if args.configs:
        paths = [q for q in paths if q.stem in args.configs]
    else:  # the families' own benchmarks train these with their baselines and bars (README tables of their own)
        paths = [q for q in paths if q.stem not in MEASURED_ELSEWHERE]
    seeds = args.seeds or [None]
    rows = []
    for cfg in paths:
        stem = cfg.stem
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                res = train(cfg, seed, Path(tmp))
            base = baseline(stem, cfg, seed, baselines)
            metric = base["metric"] if base else next((b[0] for b in bars.get(stem, [])), None)
            if metric is None:
                metric = next((k for k in METRIC_KEYS if k in res["metrics"]), None)
            value = res["metrics"].get(metric, float("nan"))
            row = {
                "config": stem,
                "seed": "config" if seed is None else seed,
                "metric": metric,
                "value": value,
                "baseline": "; ".join(f"{b['baseline']}: {b['value']:.4f}" for b in [base, *base.get("also", [])]) if base else "-",
                "bar": check(bars.get(stem, []), {**res.get("fit_metrics", {}), **res["metrics"]}, base),
                "epochs": res["epochs"],
                "wall": res["wall"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = [
        "| config | seed | test metric | value | peer baseline (same split) | bars | epochs | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| `{r['config']}` | {r['seed']} | {r['metric']} | {r['value']:.4f} | {r['baseline']} | {r['bar']} | {r['epochs']} | {r['wall']:.1f} |"
        )
    if len(seeds) > 1:
        for stem in dict.fromkeys(r["config"] for r in rows):
            vals = [r["value"] for r in rows if r["config"] == stem]
            lines.append(f"| `{stem}` | mean ± sd over {len(vals)} | | {statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f} | | | | |")
    cmd = "uv run python benchmarks/run_configs.py " + " ".join(sys.argv[1:])
    elsewhere = ", ".join(f"`{b}` ({', '.join(f'`{c}`' for c in MEASURED_ELSEWHERE if MEASURED_ELSEWHERE[c] == b)})"
                          for b in dict.fromkeys(MEASURED_ELSEWHERE.values()))
    footer = (f"\nMeasured on {machine()}, {time.strftime('%Y-%m-%d')}, by `{cmd.strip()}`. Wall time is the whole `zoo fit` "
              f"process (start-up, training, testing the best checkpoint). Measured by their family's benchmark, with its "
              f"baselines, in the sections below: {elsewhere}.\n")
    table = "\n".join(lines) + "\n" + footer
    print("\n" + table)
    if args.write_readme:
        write_readme_block(BEGIN, END, table)


if __name__ == "__main__":
    main()
