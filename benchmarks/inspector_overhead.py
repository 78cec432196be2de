"""Step-time overhead of ``GradientInspector`` on LeNet-5 and digits (``configs/lenet5_digits.yaml``).

    OMP_NUM_THREADS=1 uv run python benchmarks/inspector_overhead.py [--epochs 3] [--repeats 3] [--accelerator cpu]

Trains the config's model and data (validation off) with and without the inspector logging every
``--every`` steps, in alternating order, and prints the mean step time (time between consecutive
``on_train_batch_start`` calls, so the inspector's hooks, norms and logging are all inside it; the
first epoch is warm-up and not counted) and the overhead. Bar: <= 5 % at every=50. Run it on a
quiet machine: with other processes on the cores the figures are noise.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callbacks import GradientInspector  # noqa: E402
from datamodules import DigitsDataModule  # noqa: E402
from zoo.tasks import ClassificationTask  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "lenet5_digits.yaml"


class StepTimer(Callback):
    """Wall and CPU time of every training epoch after the first, divided by its steps.

    Measured from the first batch of one epoch to the first batch of the next, so that the inspector's once-per-epoch picture is counted
    too. CPU time (``time.process_time``) is what a shared machine cannot inflate much, since
    other processes' time is not charged to ours; wall time is what a user waits on a quiet one.
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self._mark = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            now = (time.perf_counter(), time.process_time(), trainer.global_step)
            if self._mark is not None and trainer.current_epoch > 1:  # epoch 0 is warm-up
                steps = now[2] - self._mark[2]
                self.wall.append((now[0] - self._mark[0]) / steps)
                self.cpu.append((now[1] - self._mark[1]) / steps)
            self._mark = now


class TimedInspector(GradientInspector):
    """The inspector with a stopwatch around each of its hooks: the time it adds to training,
    measured directly (much less noisy on a shared machine than the difference of two runs)."""

    HOOKS = ("on_train_batch_start", "on_before_optimizer_step", "on_train_batch_end", "on_train_epoch_end")

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.spent = 0.0
        for name in self.HOOKS:
            setattr(self, name, self._timed(getattr(super(), name)))

    def _timed(self, fn):
        def wrapper(trainer, *a, **k):
            t = time.perf_counter()
            try:
                return fn(trainer, *a, **k)
            finally:
                if trainer.current_epoch > 0:  # epoch 0 is warm-up, as for StepTimer
                    self.spent += time.perf_counter() - t

        return wrapper


def run(inspect: dict | None, args, tmp: Path) -> tuple[float, float, float]:
    cfg = yaml.safe_load(CONFIG.read_text())
    pl.seed_everything(0, verbose=False)
    dm = DigitsDataModule(**cfg["data"]["init_args"])
    task = ClassificationTask(num_classes=dm.num_classes, input_shape=dm.input_shape, preprocessing=dm.preprocessing,
                              **cfg["model"]["init_args"])
    timer = StepTimer()
    insp = TimedInspector(log_every_n_steps=args.every, **inspect) if inspect is not None else None
    cbs = [timer] + ([insp] if insp is not None else [])
    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator=args.accelerator, devices=1, limit_val_batches=0,
        logger=CSVLogger(tmp), log_every_n_steps=cfg["trainer"]["log_every_n_steps"],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=cbs,
    )
    trainer.fit(task, dm)
    counted = trainer.global_step - trainer.num_training_batches  # steps after the warm-up epoch
    inside = insp.spent / counted if insp is not None else 0.0
    return statistics.fmean(timer.wall), statistics.fmean(timer.cpu), inside


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--accelerator", default="cpu")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    import logging
    import tempfile

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    settings = {
        "without inspector": None,
        "inspector (defaults)": {},
        "inspector, no picture": {"plot": False},
    }
    res: dict[str, list[tuple[float, float, float]]] = {k: [] for k in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = list(settings) if r % 2 == 0 else list(settings)[::-1]  # alternate to cancel drift
            for name in order:
                res[name].append(run(settings[name], args, Path(tmp)))
    print(f"\nGradientInspector overhead, LeNet-5 on digits ({CONFIG.name}), log_every_n_steps={args.every}")
    print(f"machine: {platform.node()} | {platform.processor() or platform.machine()} | {platform.platform()} | "
          f"torch {torch.__version__} | threads {torch.get_num_threads()} | accelerator {args.accelerator}")
    print(f"epochs {args.epochs} (first one is warm-up), repeats {args.repeats}; median over repeats of the mean time per step")
    print("(time from the first batch of an epoch to the first of the next: the per-epoch picture is included)\n")
    print(f"| {'setting':<22} | {'wall ms/step':>12} | {'wall overhead':>13} | {'CPU ms/step':>11} | {'CPU overhead':>12} | {'in inspector ms/step':>20} | {'direct overhead':>15} |")
    print(f"|{'-' * 24}|{'-' * 14}|{'-' * 15}|{'-' * 13}|{'-' * 14}|{'-' * 22}|{'-' * 17}|")
    med = {k: [statistics.median(x[i] for x in v) for i in (0, 1, 2)] for k, v in res.items()}
    base = med["without inspector"]
    for name, m in med.items():
        if settings[name] is None:
            over, inside, direct = ["-", "-"], "-", "-"
        else:
            over = [f"{(m[i] / base[i] - 1) * 100:.1f}%" for i in (0, 1)]
            inside, direct = f"{m[2] * 1e3:.3f}", f"{m[2] / base[0] * 100:.1f}%"
        print(f"| {name:<22} | {m[0] * 1e3:>12.3f} | {over[0]:>13} | {m[1] * 1e3:>11.3f} | {over[1]:>12} | {inside:>20} | {direct:>15} |")
    print("\ndirect overhead = wall time spent inside the inspector's hooks per step / step time without it")
    print("bar: <= 5 % of step time (on a quiet machine the wall column and the direct column agree)")

if __name__ == "__main__":
    main()
