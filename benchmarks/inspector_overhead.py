"""Step-time overhead of ``GradientInspector`` on LeNet-5 and digits (``configs/lenet5_digits.yaml``).

    uv run python benchmarks/inspector_overhead.py [--epochs 31] [--repeats 6] [--every 50] [--write-docs]

Bar (issue 5): logging every 50 steps, the inspector costs <= 5 % of step time.

How it is measured. Comparing two separate training runs is mostly noise on a small shared CPU
(two runs of the same settings differ by 10-20 % in step time: allocation, cache and frequency
effects), so the comparison is made inside ONE run: the config's model and data train for
``--epochs`` epochs (validation off) and the inspector is switched on for the odd epochs only. Epoch
0 is warm-up; every later epoch's wall and CPU time (from its first batch to the next epoch's first
batch, so the once-per-epoch gradient-flow picture is inside) is divided by its steps. The overhead
of each "on" epoch is taken against the mean of the two "off" epochs around it (the machine's speed
drifts by up to 50 % within a run, so unpaired means mislead); the inspector's first epoch pays its
one-time costs (fonts, caches) and is counted. A second figure times the inspector's own hooks
directly (``in inspector``), which a busy neighbour on the machine cannot inflate. Each setting
runs ``--repeats`` times, in a fresh process each; the overhead pools the pairs of all runs (one
run's mean still moves by +-3 % on the 2-core machine, hence six runs), the other columns are
medians over runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "lenet5_digits.yaml"
DOC = ROOT / "docs" / "callbacks.md"
SETTINGS = {
    "defaults (picture every epoch)": {},
    "no picture (plot=False)": {"plot": False},
}


def one_run(inspect: dict, epochs: int, every: int) -> dict:
    """Train once, the inspector on in odd epochs; returns per-epoch times and the hook time."""
    import logging
    import tempfile

    import lightning.pytorch as pl
    import torch
    import yaml
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.loggers import CSVLogger

    sys.path.insert(0, str(ROOT))
    from callbacks import GradientInspector
    from datamodules import DigitsDataModule
    from zoo.tasks import ClassificationTask

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    hooks = ("on_fit_start", "on_train_epoch_start", "on_train_batch_start", "on_before_optimizer_step",
             "on_train_batch_end", "on_train_epoch_end", "on_save_checkpoint", "teardown")
    timed = hooks[1:6]

    class Alternate(Callback):
        """Forwards the inspector's hooks in odd epochs only, timing them; times every epoch."""

        def __init__(self, inner: GradientInspector) -> None:
            self.inner, self.on, self.spent, self.mark = inner, False, 0.0, None
            self.epochs: list[tuple[bool, float, float]] = []  # (on, wall per step, cpu per step)
            for name in hooks:
                setattr(self, name, self._forward(name))

        def _forward(self, name):
            fn = getattr(self.inner, name)

            def hook(trainer, *a, **k):
                if name == "on_train_epoch_start":
                    self.on = trainer.current_epoch % 2 == 1
                if name == "on_train_batch_start" and a[2] == 0:  # batch_idx 0: an epoch boundary
                    self._boundary(trainer)
                if name in ("on_fit_start", "teardown") or self.on:
                    t = time.perf_counter()
                    out = fn(trainer, *a, **k)
                    if name in timed and trainer.current_epoch > 0:
                        self.spent += time.perf_counter() - t
                    return out
                return None

            return hook

        def on_train_end(self, trainer, pl_module) -> None:
            self._boundary(trainer)  # closes the last epoch's window

        def _boundary(self, trainer) -> None:
            # the window from this epoch's first batch to the next one's belongs to this epoch
            now = (time.perf_counter(), time.process_time(), trainer.global_step, self.on)
            if self.mark is not None and trainer.current_epoch > 1:  # epoch 0 is warm-up
                steps = now[2] - self.mark[2]
                self.epochs.append((self.mark[3], (now[0] - self.mark[0]) / steps, (now[1] - self.mark[1]) / steps))
            self.mark = now

    cfg = yaml.safe_load(CONFIG.read_text())
    pl.seed_everything(0, verbose=False)
    dm = DigitsDataModule(**cfg["data"]["init_args"])
    task = ClassificationTask(num_classes=dm.num_classes, input_shape=dm.input_shape, preprocessing=dm.preprocessing,
                              **cfg["model"]["init_args"])
    alt = Alternate(GradientInspector(log_every_n_steps=every, **inspect))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            max_epochs=epochs + 1, accelerator="cpu", devices=1, limit_val_batches=0,
            logger=CSVLogger(tmp), log_every_n_steps=cfg["trainer"]["log_every_n_steps"],
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[alt],
        )
        trainer.fit(task, dm)
    per_epoch = trainer.num_training_batches
    on_epochs = [e for e in alt.epochs if e[0]]
    off_epochs = [e for e in alt.epochs if not e[0]]
    on_steps = per_epoch * len(on_epochs)
    # paired: each "on" epoch against the mean of the "off" epochs on either side of it, which
    # cancels the machine's drift (step time wanders by up to 50 % over a minute here)
    paired = {"wall": [], "cpu": []}
    for i in range(1, len(alt.epochs) - 1):
        if alt.epochs[i][0] and not alt.epochs[i - 1][0] and not alt.epochs[i + 1][0]:
            for j, k in ((1, "wall"), (2, "cpu")):
                paired[k].append(alt.epochs[i][j] / ((alt.epochs[i - 1][j] + alt.epochs[i + 1][j]) / 2) - 1)
    return {
        "paired_wall": paired["wall"], "paired_cpu": paired["cpu"],
        "off_wall": statistics.fmean(e[1] for e in off_epochs), "on_wall": statistics.fmean(e[1] for e in on_epochs),
        "off_cpu": statistics.fmean(e[2] for e in off_epochs), "on_cpu": statistics.fmean(e[2] for e in on_epochs),
        "inside": alt.spent / on_steps, "steps_per_epoch": per_epoch, "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def table(res: dict[str, list[dict]], args) -> str:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_configs import machine  # the same machine line as the README's model table

    first = next(iter(res.values()))[0]
    lines = [
        f"GradientInspector overhead, LeNet-5 on digits ({CONFIG.name}: batch 32, {first['steps_per_epoch']} steps an epoch), "
        f"log_every_n_steps={args.every}",
        f"machine: {machine()}, {first['threads']} torch threads, {platform.platform()}",
        f"{args.epochs} epochs after a warm-up one, inspector on in alternate epochs, {args.repeats} runs a setting;",
        "overhead = each 'on' epoch's time per step against the 'off' epochs either side, mean +- standard error over all pairs",
        "",
        "| inspector setting | ms/step off | ms/step on | wall overhead | CPU overhead | in inspector, ms/step | inspector / step |",
        "|---|---|---|---|---|---|---|",
    ]

    def mean_se(xs: list[float]) -> str:
        se = statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan")
        return f"{statistics.fmean(xs) * 100:+.1f}% +- {se * 100:.1f}"

    for name, runs in res.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("off_wall", "on_wall", "inside")}
        wall = mean_se([x for r in runs for x in r["paired_wall"]])
        cpu = mean_se([x for r in runs for x in r["paired_cpu"]])
        share = statistics.median(r["inside"] / r["off_wall"] for r in runs)
        lines.append(f"| {name} | {med['off_wall'] * 1e3:.2f} | {med['on_wall'] * 1e3:.2f} | {wall} | {cpu} | "
                     f"{med['inside'] * 1e3:.3f} | {share * 100:.1f}% |")
    lines += ["", "bar: <= 5 % of step time at log_every_n_steps=50 (wall overhead, defaults row)"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=31, help="epochs after the warm-up one (odd: on, even: off)")
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--write-docs", action="store_true", help="replace the table in docs/callbacks.md")
    p.add_argument("--_one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._one is not None:  # child process: one run, JSON on the last line
        print(json.dumps(one_run(json.loads(args._one), args.epochs, args.every)))
        return
    res: dict[str, list[dict]] = {k: [] for k in SETTINGS}
    for r in range(args.repeats):
        for name, inspect in SETTINGS.items():
            cmd = [sys.executable, __file__, "--epochs", str(args.epochs), "--every", str(args.every), "--_one", json.dumps(inspect)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"run {r + 1}/{args.repeats}: {name} done", file=sys.stderr)
    text = table(res, args)
    print(text)
    if args.write_docs:
        doc = DOC.read_text()
        block = f"<!-- inspector-overhead:begin -->\n```\n$ uv run python benchmarks/inspector_overhead.py --write-docs\n{text}\n```\n<!-- inspector-overhead:end -->"
        new, n = re.subn(r"<!-- inspector-overhead:begin -->.*?<!-- inspector-overhead:end -->", block, doc, flags=re.S)
        if n != 1:
            sys.exit(f"{DOC}: no <!-- inspector-overhead:begin/end --> markers; add them where the table goes")
        DOC.write_text(new)
        print(f"wrote the table into {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
