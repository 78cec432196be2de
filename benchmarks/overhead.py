"""What the zoo's training path costs against the loop a user would write by hand.

    uv run python benchmarks/overhead.py [--rounds 12] [--models mlp lenet5 resnet18] [--write-readme]

Four ways to train the SAME network (one ``nn.Sequential(preprocess, net)`` built by the zoo), on
the SAME training loader (the DataModule's), with the same optimizer (AdamW, lr 2e-3, weight decay
0.01), loss (cross-entropy, label smoothing 0.1) and batch size, each epoch followed by a pass over
the validation rows:

* ``raw``: the twenty-line PyTorch loop (zero_grad, forward, loss, backward, step; ``no_grad``
  validation with loss and accuracy summed on the device, one ``.item()`` per epoch).
* ``bare``: a minimal ``LightningModule`` doing the same, logging one training loss and the
  validation loss and accuracy per epoch (summed on the device, one ``self.log`` each per epoch),
  ``Trainer(logger=False)`` with no checkpointing, progress bar or summary, fed by the same
  DataModule as the zoo task (so ``zoo / bare`` is the task's own cost).
* ``zoo``: ``zoo.tasks.ClassificationTask`` under the same bare Trainer (no logger).
* ``zoo, as run``: the Trainer, logger (TensorBoard), checkpointing (best and last), early
  stopping and progress bar that ``zoo fit`` builds, through ``cli.ZooCLI`` itself. Its checkpoint
  writes run behind the training as in ``zoo fit`` (the write of epoch k during epoch k+1), held
  to its own turns by ``_WriterGate`` so that no other variant pays for them.

How it is measured. Two runs of the same thing differ by 10-20 % on a small shared CPU, so the
four are run in ONE process and their epochs interleaved: each runs in its own thread, and a turn
token lets exactly one of them run one epoch at a time, in an order shuffled every round
(threads never run together; torch's thread pool is theirs alone during the turn). An epoch is timed from its start to the start of the next (training, validation, checkpointing,
logging: all of it). The first round is warm-up. Each variant's epoch is divided by the raw
loop's epoch of the same round, and the table gives the median ratio over rounds with the
interquartile range. A second table times one pass over the training loader alone: the
DataModule's loader against a ``DataLoader`` over a ``TensorDataset`` (what the zoo used before).

Models: MLP (256, 128, ReLU, dropout) and LeNet-5 (resized to 32x32) on the bundled 8x8 digits at
batch 32; ResNet-18 on synthetic 3x32x32 data (2,048 training rows, 512 validation) at batch 128.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
BEGIN, END = "<!-- overhead-table:begin -->", "<!-- overhead-table:end -->"
VARIANTS = ("raw", "bare", "zoo", "zoo, as run")
SYNTHETIC_ROWS = 2048  # ResNet-18's training rows (--synthetic-rows)

MODELS = {
    # name: (zoo model, model_kwargs, data, batch size)
    "mlp": ("mlp", {"hidden": [256, 128], "act": "relu", "dropout": 0.2}, "digits", 32),
    "lenet5": ("lenet5", {"act": "tanh", "pool": "avg"}, "digits32", 32),
    "resnet18": ("resnet18", {}, "synthetic", 128),
}
# Measured rounds per model (--rounds overrides): many for the second-long epochs of the small
# models, whose per-round ratios spread most; ResNet-18's 14 s CPU epochs make 12 rounds ~13 min.
ROUNDS = {"mlp": 30, "lenet5": 30, "resnet18": 12}


def datamodule_args(data: str, batch: int) -> list[str]:
    """``zoo fit`` command-line arguments for the data of one benchmark model."""
    if data.startswith("digits"):
        args = ["--data", "datamodules.DigitsDataModule", f"--data.batch_size={batch}", "--data.seed=0"]
        return args + (["--data.resize=32"] if data == "digits32" else [])
    return ["--data", "overhead.SyntheticImages", f"--data.batch_size={batch}"]


def _synthetic_images():
    from datamodules import ArrayDataModule

    class SyntheticImages(ArrayDataModule):
        """Random 3x32x32 images in 10 classes (ResNet-18's speed does not care what they show)."""

        num_classes = 10
        input_shape = (3, 32, 32)

        def __init__(self, **kwargs) -> None:
            super().__init__(val_size=0.2, test_size=0.05, **kwargs)
            self.save_hyperparameters()

        def load_arrays(self):
            import numpy as np

            rng = np.random.default_rng(0)
            n = SYNTHETIC_ROWS * 4 // 3  # SYNTHETIC_ROWS training rows after the split
            return rng.standard_normal((n, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, n)

    return SyntheticImages


class _Turns:
    """A token passed between the variants' threads: one epoch each per round, in an order shuffled
    every round (seeded), so that no variant always runs right after the same neighbour."""

    def __init__(self, names, seed: int = 0) -> None:
        import random

        self.names, self.rng, self.cond = list(names), random.Random(seed), threading.Condition()
        self.times: dict[str, list[float]] = {n: [] for n in self.names}  # wall s per epoch
        self.cpu: dict[str, list[float]] = {n: [] for n in self.names}  # process CPU s per epoch
        self.done: set[str] = set()
        self._start: dict[str, tuple[float, float]] = {}
        self.order, self.pos = list(self.names), 0  # the first round (warm-up) in the listed order

    @property
    def current(self) -> str:
        return self.order[self.pos]

    def _advance(self) -> None:
        self.pos += 1
        while True:
            if self.pos >= len(self.order):  # a new round: the variants still running, shuffled
                self.order = [n for n in self.names if n not in self.done]
                if not self.order:
                    return
                self.rng.shuffle(self.order)
                self.pos = 0
            if self.order[self.pos] not in self.done:
                return
            self.pos += 1

    def _close(self, name: str) -> None:
        wall, cpu = self._start.pop(name)
        self.times[name].append(time.perf_counter() - wall)
        self.cpu[name].append(time.process_time() - cpu)

    def begin(self, name: str) -> None:
        """Called at the start of every epoch: closes the previous one, waits for the turn."""
        with self.cond:
            if name in self._start:
                self._close(name)
                self._advance()
                self.cond.notify_all()
            self.cond.wait_for(lambda: bool(self.order) and self.current == name)
            self._start[name] = (time.perf_counter(), time.process_time())

    def end(self, name: str) -> None:
        with self.cond:
            if name in self._start:
                self._close(name)
            self.done.add(name)
            self._advance()
            self.cond.notify_all()


class _WriterGate:
    """Keeps the as-run variant's background checkpoint writes inside its own turns, as in a real run.

    ``zoo fit`` writes its checkpoints behind the training (``AtomicCheckpointIO.write_behind``): the
    write queued at the end of epoch k runs while epoch k+1 trains. Here the other variants train
    between the two, so an ungated writer would run in their turns and its work would be charged to
    them. The gate lets a job queued in epoch k start only once the as-run's epoch k+1 has its turn,
    and at the end of each as-run turn waits for the job that is running, charging it to the as-run.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.epoch, self.is_open, self.running = -1.0, False, 0
        self.released = False  # set once no other variant is timed any more: nothing is held after

    def install(self, io) -> None:
        submit = getattr(io, "_submit", None)
        if submit is None:
            return  # not the zoo's checkpoint IO: its saves are synchronous

        def gated(fn, *args):
            queued_in = self.epoch

            def job(*a):
                with self.cond:
                    self.cond.wait_for(lambda: self.released or (self.is_open and self.epoch > queued_in))
                    self.running += 1
                try:
                    return fn(*a)
                finally:
                    with self.cond:
                        self.running -= 1
                        self.cond.notify_all()

            submit(job, *args)

        io._submit = gated

    def open(self, epoch: float) -> None:
        with self.cond:
            self.epoch, self.is_open = epoch, True
            self.cond.notify_all()

    def release(self) -> None:
        with self.cond:
            self.released = True
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.is_open = False
            self.cond.wait_for(lambda: self.running == 0)


def run_model(key: str, rounds: int) -> dict:
    import lightning.pytorch as pl
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from lightning.pytorch.callbacks import Callback

    import cli

    arch, kwargs, data, batch = MODELS[key]
    sys.modules.setdefault("overhead", sys.modules[__name__])
    globals()["SyntheticImages"] = _synthetic_images()
    epochs = rounds + 1  # the first round is warm-up
    common = ["--model", "zoo.tasks.ClassificationTask", f"--model.model={arch}",
              f"--model.model_kwargs={kwargs}", "--model.optimizer=adamw", "--model.lr=0.002",
              "--model.weight_decay=0.01", "--model.label_smoothing=0.1", *datamodule_args(data, batch),
              f"--trainer.max_epochs={epochs}", "--trainer.accelerator=cpu", "--trainer.devices=1",
              "--early_stopping.patience=1000", "--seed_everything=0"]
    turns = _Turns(VARIANTS)

    class Turn(Callback):
        def __init__(self, name: str, gate: "_WriterGate | None" = None) -> None:
            self.name, self.gate = name, gate

        def on_train_start(self, trainer, pl_module) -> None:
            if self.gate is not None:
                self.gate.install(trainer.strategy.checkpoint_io)

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if self.gate is not None:
                self.gate.close()  # the write running now finishes inside this variant's epoch
            turns.begin(self.name)
            if self.gate is not None:
                self.gate.open(trainer.current_epoch)

        def on_train_end(self, trainer, pl_module) -> None:
            if self.gate is not None:
                self.gate.close()
            turns.end(self.name)

    tmp = tempfile.mkdtemp(prefix="zoo-overhead-")
    bare_trainer = dict(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp)
    # "zoo, as run": exactly what `zoo fit` builds (logger, checkpoint, early stopping, progress bar).
    as_run = cli.ZooCLI(args=[*common, f"--trainer.default_root_dir={tmp}/as_run"], run=False)
    gate = _WriterGate()
    as_run.trainer.callbacks.append(Turn("zoo, as run", gate))
    # "zoo": the same task class and data, under the bare Trainer.
    zoo_cli = cli.ZooCLI(args=[*common, f"--trainer.default_root_dir={tmp}/zoo"], run=False)
    zoo_trainer = pl.Trainer(callbacks=[Turn("zoo")], **bare_trainer)
    # raw and bare share the network definition and the DataModule's loaders.
    dm = zoo_cli.datamodule.__class__(**{k: v for k, v in zoo_cli.datamodule.hparams.items() if not k.startswith("_")})
    dm.setup("fit")

    def network() -> nn.Module:
        import zoo
        from zoo.layers import InputTransform

        pre = InputTransform(dm.preprocessing)  # the statistics the DataModule fitted on training rows
        return nn.Sequential(pre, zoo.create_model(arch, input_shape=pre.output_shape, num_classes=10, **kwargs))

    def optimizer(params):
        return torch.optim.AdamW(params, lr=0.002, weight_decay=0.01)

    def raw_loop() -> None:
        model = network()
        opt = optimizer(model.parameters())
        train, val = dm.train_dataloader(), dm.val_dataloader()
        for _ in range(epochs):
            turns.begin("raw")
            model.train()
            total = torch.zeros(())
            for x, y in train:
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
                loss.backward()
                opt.step()
                total += loss.detach()
            model.eval()
            vloss, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
            with torch.no_grad():
                for x, y in val:
                    out = model(x)
                    vloss += F.cross_entropy(out, y, reduction="sum")
                    correct += (out.argmax(-1) == y).sum()
            float(total), float(vloss), int(correct)  # one host read each per epoch, as a user prints them
        turns.end("raw")

    class Bare(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = network()
            self.register_buffer("tr", torch.zeros(2), persistent=False)  # (loss sum, batches)
            self.register_buffer("va", torch.zeros(3), persistent=False)  # (loss sum, correct, rows)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.model(x), y, label_smoothing=0.1)
            self.tr += torch.stack([loss.detach(), torch.ones_like(loss)])
            return loss

        def on_train_epoch_end(self) -> None:
            self.log("train/loss", self.tr[0] / self.tr[1])
            self.tr.zero_()

        def validation_step(self, batch, batch_idx):
            x, y = batch
            out = self.model(x)
            self.va += torch.stack([F.cross_entropy(out, y, reduction="sum"), (out.argmax(-1) == y).sum().float(),
                                    torch.tensor(float(len(y)))])

        def on_validation_epoch_end(self) -> None:
            self.log_dict({"val/loss": self.va[0] / self.va[2], "val/acc": self.va[1] / self.va[2]})
            self.va.zero_()

        def configure_optimizers(self):
            return optimizer(self.parameters())

    bare_module = Bare()
    bare_pl_trainer = pl.Trainer(callbacks=[Turn("bare")], **bare_trainer)
    threads = [
        threading.Thread(target=raw_loop, name="raw"),
        threading.Thread(target=bare_pl_trainer.fit, args=(bare_module, dm)),
        threading.Thread(target=zoo_trainer.fit, args=(zoo_cli.model, zoo_cli.datamodule)),
        threading.Thread(target=as_run.trainer.fit, args=(as_run.model, as_run.datamodule)),
    ]
    for t in threads:
        t.start()
    for t in threads[:-1]:
        t.join()
    gate.release()  # the as-run's last writes, held until no other variant is timed
    threads[-1].join()
    steps = len(dm.train_dataloader())
    times = {k: v[1:] for k, v in turns.times.items()}  # drop the warm-up round
    cpu = {k: v[1:] for k, v in turns.cpu.items()}
    n = min(len(v) for v in times.values())
    out = {"model": key, "steps": steps, "batch": batch, "raw_ms_epoch": statistics.median(times["raw"][:n]) * 1e3}
    for name in VARIANTS:
        out[name] = _ratio(times[name][:n], times["raw"][:n])
        out[name + " cpu"] = _ratio(cpu[name][:n], cpu["raw"][:n])
        out[name + " ms/step"] = statistics.median(times[name][:n]) / steps * 1e3
    out["rounds"] = n
    out["loader"] = loader_pass(dm)
    return out


def _ratio(variant: list[float], raw: list[float]) -> tuple[float, float, float]:
    """Median and interquartile range of the per-round ratios variant / raw."""
    ratios = [v / r for v, r in zip(variant, raw)]
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return statistics.median(ratios), q[0], q[2]


def loader_pass(dm, repeats: int = 15) -> dict:
    """ms for one pass over the training loader: the DataModule's against DataLoader(TensorDataset)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.from_numpy(dm.raw_x[dm.split_indices["train"]])
    y = torch.from_numpy(dm.raw_y[dm.split_indices["train"]])
    old = DataLoader(TensorDataset(x, y), batch_size=dm.batch_size, shuffle=True)
    new = dm.train_dataloader()
    res: dict[str, list[float]] = {"TensorDataset": [], "DataModule": []}
    for _ in range(repeats):  # interleaved, like the epochs
        for name, loader in (("TensorDataset", old), ("DataModule", new)):
            t = time.perf_counter()
            for _batch in loader:
                pass
            res[name].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in res.items()}


def machine() -> str:
    from run_configs import machine as m

    return m()


def table(results: list[dict]) -> str:
    head = ("| model | batch | steps/epoch | raw loop ms/epoch | bare LightningModule | zoo task, no logger "
            "| zoo as users run it | zoo / bare |")
    lines = [head, "|" + " --- |" * 8]
    for r in results:
        cells = []
        for name in VARIANTS[1:]:
            med, lo, hi = r[name]
            cells.append(f"{med:.2f} ({lo:.2f}-{hi:.2f})")
        zoo_bare = r["zoo"][0] / r["bare"][0]
        lines.append(f"| {r['model']} | {r['batch']} | {r['steps']} | {r['raw_ms_epoch']:.0f} | " + " | ".join(cells)
                     + f" | {zoo_bare:.2f} |")
    lines += ["", "Process CPU time instead of wall time (less sensitive to other processes on the machine):", "",
              "| model | bare LightningModule | zoo task, no logger | zoo as users run it | zoo / bare |", "|" + " --- |" * 5]
    for r in results:
        cells = [f"{r[n + ' cpu'][0]:.2f} ({r[n + ' cpu'][1]:.2f}-{r[n + ' cpu'][2]:.2f})" for n in VARIANTS[1:]]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {r['zoo cpu'][0] / r['bare cpu'][0]:.2f} |")
    lines += ["", "| model | one pass over the training loader, ms: DataLoader(TensorDataset) | the DataModule's loader |",
              "| --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['model']} | {r['loader']['TensorDataset']:.2f} | {r['loader']['DataModule']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=None, help=f"measured epochs per variant after one warm-up (default {ROUNDS})")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--synthetic-rows", type=int, default=SYNTHETIC_ROWS, help="ResNet-18's training rows")
    p.add_argument("--write-readme", action="store_true")
    a = p.parse_args()
    globals()["SYNTHETIC_ROWS"] = a.synthetic_rows
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    results = []
    for key in a.models:
        t = time.perf_counter()
        results.append(run_model(key, a.rounds or ROUNDS[key]))
        print(f"{key}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    text = table(results)
    cmd = "uv run python benchmarks/overhead.py" + (f" --rounds {a.rounds}" if a.rounds else "")
    if a.models != list(MODELS):
        cmd += " --models " + " ".join(a.models)
    rounds = ", ".join(f"{r['model']} {r['rounds']}" for r in results)
    footer = (f"\nPer-epoch time relative to the raw loop (median over interleaved rounds, {rounds}; "
              f"interquartile range in brackets). Measured on {machine()}, {time.strftime('%Y-%m-%d')}, "
              f"by `{cmd} --write-readme`; CUDA: not measured (no GPU on this machine).\n")
    print(text + "\n" + footer)
    if a.write_readme:
        from run_configs import write_readme_block

        write_readme_block(BEGIN, END, f"{text}\n{footer}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
