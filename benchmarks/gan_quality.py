"""Sample quality of the GAN and DCGAN configs on digits, against issue 15's bars.

Trains `configs/gan_digits.yaml` and `configs/dcgan_digits.yaml` exactly as a user would (`zoo fit`,
one process each, side by side), plus a short `precision=bf16-mixed` DCGAN run on CPU, reads each
run's `test_metrics.json` and prints a table; `--write-readme` puts it into README.md between the
gan-table markers. The feature extractor (a SimpleConvNet on the digits' training rows, the path in
the configs) is trained first when missing, so both runs share it.

    uv run python benchmarks/gan_quality.py --write-readme
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
BEGIN, END = "<!-- gan-table:begin -->", "<!-- gan-table:end -->"
FX = "checkpoints/feature_extractors/digits_simple_convnet.ckpt"


def start(config: str, workdir: Path, extra: list[str]) -> tuple[subprocess.Popen, float]:
    cmd = [sys.executable, "-c", "import cli; cli.main()", "fit", "--config", str(ROOT / "configs" / f"{config}.yaml"),
           "--trainer.default_root_dir", str(workdir), "--trainer.enable_progress_bar", "false",
           "--model.init_args.feature_extractor", str(ROOT / FX), *extra]
    log = open(workdir / "log.txt", "w")
    # One intra-op thread per run: three runs share the cores, and more threads than cores thrash.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env), time.perf_counter()


def result(workdir: Path) -> dict:
    found = sorted(workdir.rglob("test_metrics.json"))
    if not found:
        tail = (workdir / "log.txt").read_text()[-3000:]
        raise SystemExit(f"no test_metrics.json under {workdir}; the run's log ends:\n{tail}")
    return json.loads(found[-1].read_text())


def ensure_feature_extractor() -> None:
    """Train the shared classifier once, before the runs (two runs training it at once would race)."""
    from datamodules import DigitsDataModule
    from zoo.tasks import gan_metrics as gm

    dm = DigitsDataModule(seed=0)
    dm.setup("fit")
    gm.ensure_classifier(ROOT / FX, dm)


def gap_closed(m: dict) -> float:
    """Share of the ceiling-to-floor gap the trained generator closes: 1 = as close to the test rows as
    the training rows are, 0 = no better than the untrained generator."""
    return (m["test/fd_ceiling"] - m["test/fd"]) / (m["test/fd_ceiling"] - m["test/fd_floor"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write-readme", action="store_true")
    p.add_argument("--bf16-epochs", type=int, default=2)
    a = p.parse_args()
    from run_configs import machine, write_readme_block

    ensure_feature_extractor()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "gan_digits": ("gan_digits", []),
            "dcgan_digits": ("dcgan_digits", []),
            "dcgan_digits bf16-mixed": ("dcgan_digits", ["--trainer.precision", "bf16-mixed", "--trainer.max_epochs", str(a.bf16_epochs),
                                                         "--trainer.limit_train_batches", "10"]),
        }
        procs = {}
        for name, (config, extra) in runs.items():
            work = Path(tmp) / name.replace(" ", "_")
            work.mkdir()
            procs[name] = (work, *start(config, work, extra))
        res = {}
        for name, (work, proc, t0) in procs.items():
            rc = proc.wait()
            wall = time.perf_counter() - t0
            if rc != 0:
                raise SystemExit(f"{name}: zoo fit exited {rc}; log:\n" + (work / "log.txt").read_text()[-3000:])
            res[name] = {**result(work), "wall": wall}

    rows = []
    for name, r in res.items():
        m, f = r["metrics"], r["fit_metrics"]
        rows.append(
            f"| `{name}` | {r['epochs']} | {m['test/fd']:.2f} | {m['test/fd_floor']:.2f} | {m['test/fd_ceiling']:.2f} | "
            f"{gap_closed(m):.3f} | {m['test/kd']:.4f} | {m['test/class_coverage_min']:.3f} | {m['test/inception_score']:.2f} "
            f"(real {m['test/inception_score_real']:.2f}) | {m['test/interp_changes']:.2f} | "
            f"{f.get('train/d_loss', float('nan')):.3f} / {f.get('train/g_loss', float('nan')):.3f} | {r['wall']:.0f} |"
        )
    d, g = res["dcgan_digits"]["metrics"], res["gan_digits"]["metrics"]
    bf = res["dcgan_digits bf16-mixed"]["fit_metrics"]
    bars = [
        (f"DCGAN closes >= 90% of the ceiling-floor gap: {gap_closed(d):.3f}", gap_closed(d) >= 0.9),
        (f"DCGAN FD below the MLP GAN's: {d['test/fd']:.2f} < {g['test/fd']:.2f}", d["test/fd"] < g["test/fd"]),
        (f"every digit >= 5% of 1000 DCGAN samples: smallest share {d['test/class_coverage_min']:.3f}", d["test/class_coverage_min"] >= 0.05),
        (f"class changes along 100 linear paths (16 points) <= 3 on average: {d['test/interp_changes']:.2f}", d["test/interp_changes"] <= 3),
        (f"bf16-mixed on CPU trains: final train/d_loss {bf.get('train/d_loss', float('nan')):.3f}, train/g_loss "
         f"{bf.get('train/g_loss', float('nan')):.3f} (finite)",
         all(abs(bf.get(k, float("nan"))) < float("inf") for k in ("train/d_loss", "train/g_loss"))),
    ]
    table = "\n".join(
        [
            "| run | epochs | test/fd | fd floor (train vs test) | fd ceiling (untrained G) | gap closed | test/kd | "
            "smallest class share | classifier IS | class changes per path | final D / G loss | wall s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            *[f"- {'pass' if ok else 'FAIL'}: {text}" for text, ok in bars],
            "",
            f"Measured on {machine()}, {date.today().isoformat()}, by `uv run python benchmarks/gan_quality.py --write-readme` "
            "(the three runs side by side, one thread each, on a machine shared with other jobs: wall times are noisy; "
            f"the bf16-mixed run is {a.bf16_epochs} epochs of 10 batches). Frechet and "
            "kernel distances use the penultimate features of a SimpleConvNet trained on the training rows; 1000 "
            "samples against the test rows. CUDA: not measured (no GPU on this machine).",
        ]
    )
    print(table)
    if a.write_readme:
        write_readme_block(BEGIN, END, table)


if __name__ == "__main__":  # pragma: no cover
    main()
