"""Every task kind under DDP on CPU (gloo, two processes): the run exits 0, writes one set of files,
and ends where a single-process run at the same global batch ends.

Why the runs are full-batch: with the whole training set in one batch the global gradient is the
same whatever the order of the rows, so a one-process run and a two-process run (each rank holding
half the rows, gradients averaged by DDP) take the same steps, and the weights can be compared. They
agree up to float summation order and one training row the distributed sampler repeats when the row
count is odd (it pads the shards to equal length); the tolerances below hold that.

Cost: Lightning takes ~11 s to import on the 2-core test machine, so all two-process commands of this
module run in ONE driver process pair (tests/_ddp_driver.py: several ``zoo`` commands in sequence,
which Lightning supports), shared by the tests through module-scoped fixtures; the one-process
references run inside pytest.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cli
from tests._export_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "_ddp_driver.py"
COMMON = ["--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu", "--checkpoint.monitor", "null"]
DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
# name: (config, overrides making it small and full-batch, test metric compared). Plain SGD where the
# config has Adam: Adam's first steps are ~lr * sign(gradient), so a gradient entry near zero flips
# with the summation order and the weights stop being comparable (measured: relative distance 5e-3
# to 1e-2 with Adam, against 2.5e-7 with SGD, same runs otherwise).
SGD = ["--model.init_args.optimizer", "sgd", "--model.init_args.lr", "0.1"]
KINDS = {
    "classification": ("lenet5_digits", ["--data.init_args.augment", "false", "--data.init_args.batch_size", "2048",
                                         "--trainer.max_epochs", "3", *SGD], "test/acc"),
    "regression": ("linear_regression_diabetes", ["--trainer.max_epochs", "5"], "test/r2"),
    "sequence": ("lstm_sunspots", ["--data.init_args.batch_size", "512", "--trainer.max_epochs", "3", *SGD], "test/r2"),
    "binary": ("logistic_regression_breast_cancer", ["--data.init_args.batch_size", "1024", "--trainer.max_epochs", "3", *SGD],
               "test/acc"),
    "perceptron": ("perceptron_iris", ["--trainer.max_epochs", "2"], "test/acc"),
}
# || w_two_processes - w_one_process || / || w_one_process - w_initial ||: how far apart the two runs
# ended, relative to how far training moved the weights. With an even number of training rows
# (diabetes: 286) the runs agree to float rounding (~1e-7); with an odd number (digits 1167, sunspots
# 207, breast cancer 369) the distributed sampler repeats one row to give both ranks equal shards,
# which moves each full-batch gradient by ~1/n (measured 3.5e-3 for digits). A DDP that summed
# instead of averaging, or did not synchronise at all, is off by O(1) or breaks the replica check.
UPDATE_RTOL = 1e-2


def _argv(cmd: str, kind: str, root: Path, *extra: str) -> list[str]:
    config, overrides, _ = KINDS[kind]
    return [cmd, "--config", str(ROOT / "configs" / f"{config}.yaml"), *overrides, *COMMON,
            "--trainer.default_root_dir", str(root), *extra]


def _files(root: Path, name: str) -> list[Path]:
    return sorted(root.rglob(name))


def _last_ckpt(root: Path) -> Path:
    (ckpt,) = _files(root, "last.ckpt")
    return ckpt


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def _rel_dist(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], ref: dict[str, torch.Tensor] | None = None) -> float:
    """||a - b|| / ||a - ref|| over the floating-point tensors (``ref`` None: ||a - b|| / ||a||)."""
    assert a.keys() == b.keys()
    keys = [k for k in a if a[k].is_floating_point()]
    num = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in keys)
    den = sum(float((a[k].double() - (ref[k].double() if ref else 0)).pow(2).sum()) for k in keys)
    return (num / max(den, 1e-30)) ** 0.5


def _initial(kind: str, root: Path) -> dict[str, torch.Tensor]:
    """The weights every run of ``kind`` starts from (the config seeds before building the model)."""
    return {k: v.clone() for k, v in cli.ZooCLI(args=_argv("fit", kind, root)[1:], run=False).model.state_dict().items()}


def _driver(runs: list[dict], spec_path: Path, launcher: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    spec_path.write_text(json.dumps({"runs": runs}))
    return subprocess.Popen([*launcher, str(DRIVER), str(spec_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=spec_path.parent, env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})


def _wait(procs: list[subprocess.Popen]) -> None:
    logs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), "\n".join(log[-3000:] for log in logs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of this module, started so that they overlap (see the module docstring):

    * ``ddp/``: one machine, two processes (Lightning's own launcher, ``--trainer.devices 2``):
      ``zoo fit`` of every kind, ``zoo test``, ``zoo validate`` and ``zoo predict`` from the fitted
      checkpoints;
    * ``single/``: the same fits in one process, inside pytest;
    * ``two_nodes/``: two "machines" on the loopback (``torchrun --nnodes 2 --nproc-per-node 1``
      twice, node ranks 0 and 1) resuming the ONE-process classification checkpoint for a 4th epoch.
    """
    base = tmp_path_factory.mktemp("runs")
    ddp, single = base / "ddp", base / "single"
    ddp.mkdir()
    ddp_runs = [{"name": kind, "argv": _argv("fit", kind, ddp / kind, *DDP)} for kind in KINDS]
    ckpt = lambda kind: str(ddp / kind / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")  # noqa: E731
    for cmd in ("test", "validate"):
        ddp_runs.append({"name": cmd, "argv": _argv(cmd, "classification", ddp / cmd, *DDP, "--ckpt_path", ckpt("classification"))})
    ddp_runs += [{"name": f"predict_{kind}", "argv": _argv("predict", kind, ddp / f"predict_{kind}", *DDP, "--ckpt_path", ckpt(kind))}
                 for kind in KINDS]
    # last, because they end both ranks' Trainer with an error or an exit (the driver records it and goes on)
    ddp_runs.append({"name": "nonfinite", "expect_error": True, "root": str(ddp / "nonfinite"),
                     "argv": _argv("fit", "classification", ddp / "nonfinite", *DDP,
                                   "--trainer.callbacks+=tests._ddp_plant.PlantNaNOnRankOne")})
    ddp_runs.append({"name": "preempt", "expect_error": True, "root": str(ddp / "preempt"),
                     "argv": _argv("fit", "classification", ddp / "preempt", *DDP, "--data.init_args.batch_size", "64",
                                   "--trainer.log_every_n_steps", "4", "--trainer.callbacks+=tests._ddp_plant.SigtermRankOne")})
    procs = [_driver(ddp_runs, ddp / "spec.json", [sys.executable], {"MASTER_PORT": str(free_port())})]
    try:
        for kind in KINDS:
            cli.ZooCLI(args=_argv("fit", kind, single / kind, "--trainer.devices", "1"))
        two = base / "two_nodes"
        two.mkdir()
        resume = [{"name": "resume", "argv": _argv("fit", "classification", two, "--trainer.strategy", "ddp", "--trainer.num_nodes", "2",
                                                   "--trainer.devices", "1", "--trainer.max_epochs", "4",
                                                   "--ckpt_path", str(_last_ckpt(single / "classification")))}]
        port = str(free_port())
        for node in (0, 1):
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                        "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", port]
            procs.append(_driver(resume, two / f"spec{node}.json", torchrun))
        _wait(procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return base


@pytest.mark.parametrize("kind", list(KINDS))
def test_two_processes_write_one_set_of_files_and_match_one_process(kind, runs, tmp_path):
    run, single = runs / "ddp" / kind, runs / "single" / kind
    # one run folder, one summary, one last checkpoint: rank 1 wrote nothing of its own
    (summary_path,) = _files(run, "test_metrics.json")
    assert len(_files(run, "config.yaml")) == 1 and len(_files(run, "last.ckpt")) == 1
    if kind == "classification":
        (cm_path,) = _files(run, "test_confusion_matrix.csv")
        cm = [r.split(",")[1:] for r in cm_path.read_text().splitlines()[1:]]
        assert sum(int(c) for r in cm for c in r) == 360  # every test row once (digits: 360 test rows)
    metric = KINDS[kind][2]
    got = json.loads(summary_path.read_text())["metrics"][metric]
    want = json.loads(_files(single, "test_metrics.json")[0].read_text())["metrics"][metric]
    assert abs(got - want) <= 0.01, (metric, got, want)
    # the replicas ended equal (DDP averages gradients; the perceptron gathers its batch) ...
    r0, r1 = torch.load(run / f"rank0_{kind}.pt"), torch.load(run / f"rank1_{kind}.pt")
    assert _rel_dist(r0, r1) == 0.0
    if kind == "perceptron":
        # The rule is sequential and the loader shuffles (differently in one process), so the
        # reference is the rule replayed here in the two-process order; see the test below.
        return
    # ... and equal the one-process weights at the same global batch
    w1, w2 = _weights(_last_ckpt(single)), _weights(_last_ckpt(run))
    assert _rel_dist(w1, w2, _initial(kind, tmp_path)) < UPDATE_RTOL


def test_zoo_test_under_ddp_writes_once_and_counts_every_test_row_once(runs):
    run = runs / "ddp" / "test"
    assert len(_files(run, "test_confusion_matrix.png")) == 1
    (cm_path,) = _files(run, "test_confusion_matrix.csv")
    # synchronised over ranks, and not padded: all 360 test rows, each once
    assert sum(int(c) for r in cm_path.read_text().splitlines()[1:] for c in r.split(",")[1:]) == 360
    assert not _files(run, "last.ckpt")  # testing writes no checkpoint


def test_zoo_validate_under_ddp_runs_and_writes_one_log(runs):
    run = runs / "ddp" / "validate"
    assert len(_files(run, "config.yaml")) == 1 and len(_files(run, "events.out.tfevents.*")) == 1
    assert not _files(run, "*.ckpt") and not _files(run, "test_*")


@pytest.mark.parametrize("kind", list(KINDS))
def test_zoo_predict_under_ddp_writes_predictions_once_in_input_order(kind, runs):
    ddp = runs / "ddp"
    (path,) = _files(ddp / f"predict_{kind}", "predictions.pt")
    got = torch.load(path, weights_only=True)
    n = len(got["index"])
    assert torch.equal(got["index"], torch.arange(n))
    # the same checkpoint in one process: row i must be sample i of the predict loader
    ckpt = str(_last_ckpt(ddp / kind))
    c = cli.ZooCLI(args=_argv("predict", kind, ddp / f"ref_{kind}", "--trainer.devices", "1")[1:], run=False)
    out = c.trainer.predict(c.model, datamodule=c.datamodule, ckpt_path=ckpt)
    want = {k: torch.cat([o[k] for o in out]) for k in out[0]} if isinstance(out[0], dict) else {"preds": torch.cat(out)}
    assert got.keys() == {"index", *want}
    for k, v in want.items():
        assert len(v) == n
        torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6)


def test_checkpoints_resume_across_process_counts_and_two_nodes_on_the_loopback(runs, tmp_path):
    """1 -> 2 processes (the two simulated machines) and 2 -> 1 (here): both continue at epoch 3
    with the saved optimizer and schedule state and take the same full-batch step."""
    two = runs / "two_nodes"
    assert len(_files(two, "test_metrics.json")) == 1 and len(_files(two, "last.ckpt")) == 1
    one_to_two = torch.load(_last_ckpt(two), map_location="cpu", weights_only=True)
    assert (one_to_two["epoch"], one_to_two["global_step"]) == (3, 4)
    assert _rel_dist(torch.load(two / "rank0_resume.pt"), torch.load(two / "rank1_resume.pt")) == 0.0
    cli.ZooCLI(args=_argv("fit", "classification", tmp_path / "r", "--trainer.devices", "1", "--trainer.max_epochs", "4",
                          "--ckpt_path", str(_last_ckpt(runs / "ddp" / "classification"))))
    two_to_one = torch.load(_last_ckpt(tmp_path / "r"), map_location="cpu", weights_only=True)
    assert (two_to_one["epoch"], two_to_one["global_step"]) == (3, 4)
    w0 = _initial("classification", tmp_path / "init")
    assert _rel_dist(one_to_two["state_dict"], two_to_one["state_dict"], w0) < UPDATE_RTOL


def test_two_process_perceptron_counts_each_training_row_once(runs):
    """Every rank trains on the gathered global batch, so its counts are global already: each
    epoch's train/mistakes must be the wrong fraction of the (padded) training rows, not twice it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mistakes, right = [], []
    for events in _files(runs / "ddp" / "perceptron", "events.out.tfevents.*"):  # fit's, then test's
        acc = EventAccumulator(str(events))
        acc.Reload()
        if "train/mistakes" in acc.Tags()["scalars"]:
            mistakes += [e.value for e in acc.Scalars("train/mistakes")]
            right += [e.value for e in acc.Scalars("train/acc")]
    c = cli.ZooCLI(args=_argv("fit", "perceptron", runs / "count")[1:], run=False)
    c.datamodule.setup("fit")
    rows = len(c.datamodule.datasets["train"])
    rows += rows % 2  # the DistributedSampler pads to a multiple of the two ranks
    assert len(mistakes) == 2 and mistakes[0] > 0  # epoch 0 makes mistakes: the check below can fail
    for m, a in zip(mistakes, right):
        assert m == pytest.approx((1 - a) * rows, abs=1e-3)


def test_two_process_perceptron_applies_the_rule_to_every_training_row_in_the_global_order(runs, tmp_path):
    """The two-process perceptron equals the rule replayed over ALL training rows in the order the
    two ranks hold them together: Lightning's DistributedSampler draws ``randperm(n)`` seeded with
    ``seed + epoch``, repeats its head to an even length and deals it out alternately, and the
    gathered batch interleaves the ranks back into that permutation. (Without the gather each rank
    would learn from its own half only.)"""
    from zoo.layers import InputTransform
    from zoo.tasks.base import _plain

    c = cli.ZooCLI(args=_argv("fit", "perceptron", tmp_path)[1:], run=False)
    dm, net = c.datamodule, c.model.net
    dm.setup("fit")
    x, y = dm.datasets["train"].tensors
    pre = InputTransform(_plain(dm.preprocessing))
    for epoch in range(2):  # the config's max_epochs override in KINDS
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0 + epoch)).tolist()
        order += order[: len(order) % 2]  # padded to a multiple of the two ranks
        with torch.no_grad():
            net.perceptron_update(pre(x[order]), y[order], lr=c.model.hparams.lr)
    got = _weights(_last_ckpt(runs / "ddp" / "perceptron"))
    for k, v in net.state_dict().items():
        torch.testing.assert_close(got[f"net.{k}"], v, rtol=0, atol=1e-6)


def test_a_loss_non_finite_on_one_rank_stops_every_rank_at_that_step(runs):
    """Rank 1's training loss alone goes NaN at the first epoch's last batch (tests/_ddp_plant.py). Every
    rank must stop there with the same NonFiniteLossError; before the ranks agreed on it, rank 0 went on
    into validation's reductions and died with gloo's "Connection closed by peer" (NCCL: waits forever)."""
    ends = {rank: (runs / "ddp" / "nonfinite" / f"rank{rank}_ended.txt").read_text() for rank in (0, 1)}
    for rank, text in ends.items():
        assert text.startswith("NonFiniteLossError: "), (rank, text[:500])
        assert "\n" not in text
    steps = {rank: re.search(r"at global step (\d+) \(epoch 0, batch (\d+)\)", text).groups() for rank, text in ends.items()}
    assert steps[0] == steps[1] == ("0", "0")  # full batch: the first step is the epoch's last batch
    assert ends[1].startswith("NonFiniteLossError: train/loss is nan")
    assert ends[0].startswith("NonFiniteLossError: train/loss went non-finite on another process")


def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step_with_one_checkpoint(runs):
    """Rank 1 alone gets SIGTERM after its second batch (tests/_ddp_plant.py), as when a scheduler's
    signal reaches the ranks at different times. Every rank must save together and exit 143 at the
    next logging step (every 4 optimizer steps here); a rank stopping alone would leave the other
    waiting in its next collective."""
    run = runs / "ddp" / "preempt"
    ends = {rank: (run / f"rank{rank}_ended.txt").read_text() for rank in (0, 1)}
    assert ends == {0: "SystemExit: 143", 1: "SystemExit: 143"}, ends
    ckpt = torch.load(_last_ckpt(run), weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (0, 4)  # signalled at step 2, agreed at step 4
