"""What fine-tuning buys: transfer beats scratch on few labelled images, and a frozen backbone trains faster.

    uv run python benchmarks/transfer.py [--seeds 0 1 2] [--write-readme]

1. Transfer: SimpleConvNet (padding 2) is trained on scikit-learn's digits 0-4 (the "pretrained"
   zoo checkpoint; its own seeded split, 20 epochs). The digits 5-9 are split once, stratified with
   seed 0, into a pool and a test half; each seed draws 5 (then 10) labelled images per class from
   the pool. On those 25 (50) images, with the same optimiser, learning rate and number of epochs
   (fixed in advance: there is no validation data in a 5-shot problem, and the test half is never
   used for a choice), we train
     * scratch: the same network, randomly initialised, its input standardised with the mean/std of
       those training images (``ClassificationTask``);
     * finetuned: the 0-4 checkpoint with a new 5-class head (``FinetuneTask(source="zoo")``), head
       only for the first half of the epochs, then everything with the backbone at a tenth of the
       head's learning rate (``FinetuneStrategy("freeze_unfreeze")``); this arm, fixed before any
       run, is the one the bar reads. Reported beside it: ``freeze`` (head only) and ``no_freeze``
       (every layer at the head's rate from the pretrained start).
   Reported: test accuracy on the 5-9 test half, mean and standard deviation over the seeds.
2. Speed: torchvision ResNet-18 (ImageNet preprocessing: 224x224 crops; random weights written to a
   temporary torch.hub cache, which is all the timing needs) fine-tuned on generated 64x64 photos,
   4 steps of batch 8 per epoch, ``freeze`` against ``no_freeze``: per-epoch wall and process CPU
   time, interleaved rounds, median.

The script ends with one line ``RESULT {json}``; ``--write-readme`` puts the tables into README.md
between the transfer-table markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
BEGIN, END = "<!-- transfer-table:begin -->", "<!-- transfer-table:end -->"

EPOCHS, LR = 60, 3e-3  # both arms; fixed before any run (no validation data to choose them on)


def _trainer(**kw):
    import lightning.pytorch as pl

    return pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0, **kw)


def _digits(classes):
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.isin(d.target, classes)
    return d.images[keep].astype(np.float32)[:, None], np.searchsorted(np.array(classes), d.target[keep])  # (N, 1, 8, 8)


def pretrain(seed: int, out: Path) -> float:
    """SimpleConvNet on digits 0-4; returns its test accuracy on the 0-4 test split."""
    import lightning.pytorch as pl

    from datamodules import InMemoryDataModule
    from zoo.tasks import ClassificationTask

    pl.seed_everything(seed, verbose=False)
    x, y = _digits([0, 1, 2, 3, 4])
    dm = InMemoryDataModule(x, y, scale_axis=0, batch_size=32, seed=seed)
    task = ClassificationTask(model="simple_convnet", model_kwargs={"padding": 2}, num_classes=5, input_shape=dm.input_shape,
                              preprocessing=dm.preprocessing, optimizer="adamw", lr=2e-3)
    trainer = pl.Trainer(max_epochs=20, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, dm)
    acc = trainer.test(task, dm, verbose=False)[0]["test/acc"]
    trainer.save_checkpoint(out)
    return float(acc)


def few_shot(seed: int, shots: int, ckpt: Path, pool, test) -> dict[str, float]:
    import lightning.pytorch as pl
    import numpy as np
    import torch
    from sklearn.preprocessing import StandardScaler
    from torch.utils.data import DataLoader, TensorDataset

    from callbacks import FinetuneStrategy
    from zoo.tasks import ClassificationTask, FinetuneTask

    (xp, yp), (xt, yt) = pool, test
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(yp == c), shots, replace=False) for c in range(5)])
    x, y = xp[idx], yp[idx]
    loader = lambda: DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=len(y), shuffle=True)  # noqa: E731
    sc = StandardScaler().fit(x.reshape(-1, 1))  # the training images' pixel mean/std (one channel)
    spec = {"input_shape": [1, 8, 8], "resize": None, "axis": 0, "mean": sc.mean_.tolist(), "std": sc.scale_.tolist()}
    out = {}
    strategies = {  # "finetuned" (the bar's arm) was fixed before any run; the other two are reported beside it
        "finetuned": FinetuneStrategy("freeze_unfreeze", unfreeze_at_epoch=EPOCHS // 2, backbone_lr_ratio=0.1),
        "freeze": FinetuneStrategy("freeze"),
        "no_freeze": FinetuneStrategy("no_freeze", backbone_lr_ratio=1.0),
    }
    for arm in ("scratch", *strategies):
        pl.seed_everything(seed, verbose=False)
        if arm == "scratch":
            task = ClassificationTask(model="simple_convnet", model_kwargs={"padding": 2}, num_classes=5, input_shape=[1, 8, 8],
                                      preprocessing=spec, optimizer="adamw", lr=LR)
            callbacks = []
        else:
            task = FinetuneTask(source="zoo", weights_file=str(ckpt), num_classes=5, input_shape=[1, 8, 8], optimizer="adamw", lr=LR)
            callbacks = [strategies[arm]]
        _trainer(max_epochs=EPOCHS, callbacks=callbacks).fit(task, train_dataloaders=loader())
        task.eval()
        with torch.no_grad():
            pred = task(torch.from_numpy(xt)).argmax(-1).numpy()
        out[arm] = float((pred == yt).mean())
    return out


def speed(rounds: int) -> dict[str, dict[str, float]]:
    """Per-epoch wall and CPU seconds of ResNet-18 fine-tuning, freeze vs no_freeze, interleaved."""
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    from callbacks import FinetuneStrategy
    from datamodules import ImageFolderDataModule
    from zoo.pretrained import hub_checkpoint_path
    from zoo.tasks import FinetuneTask

    tmp = Path(tempfile.mkdtemp())
    os.environ["TORCH_HOME"] = str(tmp / "torch")
    path = hub_checkpoint_path(torchvision.models.ResNet18_Weights.DEFAULT.url)
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp / "photos" / f"c{c}").mkdir(parents=True)
        for i in range(40):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp / "photos" / f"c{c}" / f"{i}.png")
    dm = ImageFolderDataModule(str(tmp / "photos"), image_size=64, batch_size=8)
    times: dict[str, dict[str, list[float]]] = {s: {"wall": [], "cpu": []} for s in ("freeze", "no_freeze")}
    for r in range(rounds):
        for strategy in (("freeze", "no_freeze") if r % 2 == 0 else ("no_freeze", "freeze")):
            torch.manual_seed(0)
            task = FinetuneTask(num_classes=2, input_shape=list(dm.input_shape), optimizer="adamw", lr=1e-3)
            trainer = _trainer(max_epochs=1, limit_train_batches=4, callbacks=[FinetuneStrategy(strategy)], default_root_dir=str(tmp))
            w, c = time.perf_counter(), time.process_time()
            trainer.fit(task, dm)
            times[strategy]["wall"].append(time.perf_counter() - w)
            times[strategy]["cpu"].append(time.process_time() - c)
    return {s: {k: statistics.median(v) for k, v in d.items()} for s, d in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the speed comparison")
    p.add_argument("--write-readme", action="store_true")
    p.add_argument("--transfer-rows", type=Path, default=None,
                   help="reuse the per-seed JSON rows an earlier run of this script printed (its stdout) instead of "
                        "training the transfer arms again; only the speed comparison runs")
    a = p.parse_args()
    warnings.filterwarnings("ignore")  # Lightning's tips on small loaders: a benchmark prints its table only
    import logging

    import lightning.pytorch  # noqa: F401 - its import sets its loggers' level; quiet them after it

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    import numpy as np
    from sklearn.model_selection import train_test_split

    from run_configs import machine

    x, y = _digits([5, 6, 7, 8, 9])
    xp, xt, yp, yt = train_test_split(x, y, test_size=0.5, stratify=y, random_state=0)
    res: dict[str, list[float]] = {}
    pre = []
    if a.transfer_rows is not None:
        for line in a.transfer_rows.read_text().splitlines():
            if line.startswith('{"seed"'):
                row = json.loads(line)
                if row.get("arm") == "pretrained_0_4":
                    pre.append(row["test_acc"])
                elif row["seed"] in a.seeds:
                    res.setdefault(f"{row['arm']}_{row['shots']}", []).append(row["test_acc"])
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds if a.transfer_rows is None else []:
            ckpt = Path(tmp) / f"digits04_{seed}.ckpt"
            pre.append(pretrain(seed, ckpt))
            print(json.dumps({"seed": seed, "arm": "pretrained_0_4", "test_acc": round(pre[-1], 4)}), flush=True)
            for shots in (5, 10):
                for arm, acc in few_shot(seed, shots, ckpt, (xp, yp), (xt, yt)).items():
                    res.setdefault(f"{arm}_{shots}", []).append(acc)
                    print(json.dumps({"seed": seed, "shots": shots, "arm": arm, "test_acc": round(acc, 4)}), flush=True)
    sp = speed(a.rounds)
    mean = {k: statistics.mean(v) for k, v in res.items()}
    sd = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in res.items()}
    gain5 = mean["finetuned_5"] - mean["scratch_5"]
    lines = [
        "| labelled images per class | scratch | fine-tuned (`freeze_unfreeze`) | fine-tuned - scratch | bar | `freeze` (head only) | `no_freeze` (pretrained init) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for shots in (5, 10):
        s, f = f"scratch_{shots}", f"finetuned_{shots}"
        bar = ("pass" if gain5 >= 0.15 else "FAIL") + ": >= +0.15" if shots == 5 else "-"
        fr, nf = f"freeze_{shots}", f"no_freeze_{shots}"
        lines.append(
            f"| {shots} | {mean[s]:.4f} ± {sd[s]:.4f} | {mean[f]:.4f} ± {sd[f]:.4f} | {mean[f] - mean[s]:+.4f} | {bar} "
            f"| {mean[fr]:.4f} ± {sd[fr]:.4f} | {mean[nf]:.4f} ± {sd[nf]:.4f} |"
        )
    lines += [
        "",
        "| ResNet-18, 4 steps of batch 8 (224x224 after the weights' transform) | wall s per epoch | process CPU s per epoch |",
        "| --- | --- | --- |",
        f"| `freeze` (head only, frozen BN in eval mode) | {sp['freeze']['wall']:.2f} | {sp['freeze']['cpu']:.2f} |",
        f"| `no_freeze` | {sp['no_freeze']['wall']:.2f} | {sp['no_freeze']['cpu']:.2f} |",
        f"| `no_freeze` / `freeze` | {sp['no_freeze']['wall'] / sp['freeze']['wall']:.2f} | {sp['no_freeze']['cpu'] / sp['freeze']['cpu']:.2f} |",
        "",
        f"Test accuracy on the digits 5-9 test half ({len(yt)} images), mean ± sd over seeds {a.seeds}; "
        + (f"the 0-4 checkpoints reached test accuracy {statistics.mean(pre):.4f} on digits 0-4. " if pre else "")
        + f"{EPOCHS} epochs (full batch), AdamW lr {LR}, every arm. Speed: median of "
        f"{a.rounds} interleaved rounds. Measured on {machine()}, {datetime.date.today().isoformat()}, by "
        f"`uv run python benchmarks/transfer.py {' '.join(sys.argv[1:])}`"
        + (f" (the accuracies: the per-seed rows printed by an earlier full run of this script, `{a.transfer_rows.name}`)"
           if a.transfer_rows is not None else "")
        + "; other processes shared the 2 cores, so the times are noisy (process CPU time less so); GPU: not measured.",
    ]
    table = "\n".join(lines)
    print(table)
    if a.write_readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
        print("README.md updated")
    result = {k: round(mean[k], 4) for k in ("scratch_5", "finetuned_5", "scratch_10", "finetuned_10")}
    result["speed_s_per_epoch"] = {s: {k: round(v, 3) for k, v in d.items()} for s, d in sp.items()}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
