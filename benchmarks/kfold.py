"""Run every fold of a config's k-fold cross-validation and print the mean and std of a test metric.

    OMP_NUM_THREADS=1 uv run python benchmarks/kfold.py --config configs/mlp_digits.yaml --folds 5

The test part is held out first (the same rows for every fold); fold ``k`` of ``n_folds`` of the
remaining rows is the validation part (``data.n_folds`` / ``data.fold``, see docs/kfold.md).
Every fold trains a fresh model from the config through ``ZooCLI(args=[...], run=False)``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli import ZooCLI  # noqa: E402


def run_fold(config: str, n_folds: int, fold: int, extra: list[str], root: str) -> dict[str, float]:
    cli = ZooCLI(
        args=[
            "--config", config,
            "--data.init_args.n_folds", str(n_folds),
            "--data.init_args.fold", str(fold),
            "--trainer.default_root_dir", f"{root}/fold{fold}",
            "--trainer.enable_progress_bar", "false",
            *extra,
        ],
        run=False,
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    best = getattr(cli.trainer.checkpoint_callback, "best_model_path", "") or None
    (res,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False)
    return {k: float(v) for k, v in res.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/mlp_digits.yaml")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--metric", default="test/acc")
    p.add_argument("extra", nargs="*", help="further ZooCLI arguments, e.g. --trainer.max_epochs=5")
    a = p.parse_args()
    scores = []
    with tempfile.TemporaryDirectory() as root:
        for k in range(a.folds):
            res = run_fold(a.config, a.folds, k, a.extra, root)
            scores.append(res[a.metric])
            print(f"fold {k}: {a.metric} = {res[a.metric]:.4f}", flush=True)
    sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
    print(f"\n| config | folds | {a.metric} mean | std |\n|---|---|---|---|")
    print(f"| {a.config} | {a.folds} | {statistics.mean(scores):.4f} | {sd:.4f} |")


if __name__ == "__main__":
    main()
