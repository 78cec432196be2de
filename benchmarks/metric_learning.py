"""Issue 16's bars for metric learning on unseen classes: train each config as a user would
(`zoo fit --config configs/<name>.yaml`, one process each; digits 0-4 train, 5-9 validate and test)
and compare its test scores with nearest neighbour in raw pixel space on the SAME test rows, the same
2000 seeded 5-way 1-shot episodes and the same seeded verification pairs.

Bars: 5-way 1-shot accuracy >= raw-pixel accuracy + 0.10; test EER < raw-pixel EER.
`--write-readme` puts the table into README.md between the metric-learning-table markers.

    uv run python benchmarks/metric_learning.py
    uv run python benchmarks/metric_learning.py --write-readme
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
BEGIN, END = "<!-- metric-learning-table:begin -->", "<!-- metric-learning-table:end -->"
CONFIGS = ("siamese_digits", "triplet_digits")


def raw_pixel_scores(config: Path) -> dict[str, float]:
    """Nearest neighbour on raw pixels, scored by the task's own code on the config's test split."""
    import numpy as np
    import torch

    from cli import ZooCLI
    from datamodules.metric import episode_accuracy, episode_indices
    from datamodules.pairs import sample_pairs
    from zoo.tasks.metric import equal_error

    c = ZooCLI(args=["--config", str(config)], run=False)
    dm, hp = c.datamodule, c.model.hparams
    dm.setup("fit")
    rows = dm.split_indices["test"]
    x = torch.from_numpy(dm.raw_x[rows]).flatten(1).double()  # (n, 64) raw pixels
    y = dm.split_labels("test")
    support, query = episode_indices(y, hp.n_way, hp.k_shot, hp.episodes, hp.eval_seed)
    pairs, same = sample_pairs(y, hp.verification_pairs, np.random.default_rng(hp.eval_seed))
    d = (x[pairs[:, 0]] - x[pairs[:, 1]]).norm(dim=1)
    auc, eer, _ = equal_error(d, torch.as_tensor(same))
    dist = torch.cdist(x, x).fill_diagonal_(float("inf"))
    p1 = float((torch.as_tensor(y)[dist.argmin(1)] == torch.as_tensor(y)).double().mean())
    return {"oneshot_5way_acc": float(episode_accuracy(x, support, query)), "roc_auc": auc, "eer": eer, "precision_at_1": p1}


def train(config: Path, workdir: Path) -> dict:
    cmd = [sys.executable, "-c", "import cli; cli.main()", "fit", "--config", str(config), "--trainer.default_root_dir", str(workdir),
           "--trainer.enable_progress_bar", "false"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{config.name} failed:\n{r.stderr[-3000:]}")
    summary = json.loads(next(workdir.rglob("test_metrics.json")).read_text())
    return {"wall": wall, **summary}


def main() -> None:
    from run_configs import machine, write_readme_block

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("configs", nargs="*", default=list(CONFIGS))
    p.add_argument("--write-readme", action="store_true")
    args = p.parse_args()
    lines = [
        "| config | 5-way 1-shot acc | raw pixels | bar: >= raw + 0.10 | ROC AUC (raw) | EER | raw pixels | bar: EER < raw | precision@1 (raw) | epochs | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    load0 = os.getloadavg()[0]  # the machine is shared with other jobs: say how busy it was
    for stem in args.configs:
        config = ROOT / "configs" / f"{stem}.yaml"
        base = raw_pixel_scores(config)
        with tempfile.TemporaryDirectory() as tmp:
            res = train(config, Path(tmp))
        m = {k.split("/", 1)[1]: v for k, v in res["metrics"].items()}
        acc_ok = m["oneshot_5way_acc"] >= base["oneshot_5way_acc"] + 0.10
        eer_ok = m["eer"] < base["eer"]
        print(json.dumps({"config": stem, "model": m, "raw_pixels": base, "epochs": res["epochs"], "wall": res["wall"]}), flush=True)
        lines.append(
            f"| `{stem}` | {m['oneshot_5way_acc']:.4f} | {base['oneshot_5way_acc']:.4f} | {'pass' if acc_ok else 'FAIL'} "
            f"| {m['roc_auc']:.4f} ({base['roc_auc']:.4f}) | {m['eer']:.4f} | {base['eer']:.4f} | {'pass' if eer_ok else 'FAIL'} "
            f"| {m['precision_at_1']:.4f} ({base['precision_at_1']:.4f}) | {res['epochs']} | {res['wall']:.1f} |"
        )
    cmd = "uv run python benchmarks/metric_learning.py " + " ".join(sys.argv[1:])
    footer = (
        f"\nTest split: digits 5-9 (never trained on), 2000 seeded 5-way 1-shot episodes and 2000 seeded verification "
        f"pairs, the same for the model and for nearest neighbour on raw pixels. Measured on {machine()}, "
        f"{time.strftime('%Y-%m-%d')}, by `{cmd.strip()}`; wall time is the whole `zoo fit` process, on a machine "
        f"shared with other jobs (1-minute load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end).\n"
    )
    table = "\n".join(lines) + "\n" + footer
    print("\n" + table)
    if args.write_readme:
        write_readme_block(BEGIN, END, table)


if __name__ == "__main__":
    main()
