"""``zoo tune`` (zoo/tune.py): Optuna search over a config, stored in SQLite, chosen on validation only.

Tiny trials: a 16-unit MLP on the bundled digits for two or three epochs.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import cli
from zoo import tune

TINY = {
    "seed_everything": 0,
    "model": {
        "class_path": "zoo.tasks.ClassificationTask",
        "init_args": {"model": "mlp", "model_kwargs": {"hidden": [16], "dropout": 0.0}, "lr": 0.01, "optimizer": "adam"},
    },
    "data": {"class_path": "datamodules.DigitsDataModule", "init_args": {"batch_size": 64, "seed": 0}},
    "trainer": {"max_epochs": 2, "deterministic": True, "enable_model_summary": False, "log_every_n_steps": 5},
}


def write(path: Path, obj) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False))
    return path


def states(db: Path) -> list[tuple[int, str, float | None]]:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(
            "SELECT t.number, t.state, v.value FROM trials t LEFT JOIN trial_values v ON v.trial_id = t.trial_id ORDER BY t.number"
        ).fetchall()
    finally:
        con.close()


def run_tune(argv: list[str], capsys) -> tuple[int, str]:
    """``zoo tune`` in this process, as the console script runs it: (exit code, stderr)."""
    try:
        cli.main(["tune", *argv])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "search, extra, expected",
    [
        ({"space": {"model.init_args.no_such_key": {"type": "float", "low": 0.1, "high": 1}}}, [], "'model.init_args.no_such_key' is not a key of the config"),
        ({"space": {"model.init_args.lr": {"type": "float", "low": 0.1, "high": 0.01}}}, [], "low 0.1 > high 0.01, swap them"),
        ({"sampler": "annealing", "space": {"model.init_args.lr": {"type": "float", "low": 0.01, "high": 0.1}}}, [], "unknown sampler 'annealing'"),
        ({"space": {"model.init_args.lr": {"type": "float", "low": 0.01, "high": 0.1}}}, ["--storage", "nosuchdb://x/y"], "--storage nosuchdb://x/y: cannot be opened"),
        ({"metric": "test/acc", "space": {"model.init_args.lr": {"type": "float", "low": 0.01, "high": 0.1}}}, [], "validation only"),
    ],
)
def test_bad_input_is_one_line_before_any_trial(tmp_path, capsys, search, extra, expected):
    cfg, s = write(tmp_path / "tiny.yaml", TINY), write(tmp_path / "search.yaml", search)
    code, err = run_tune(["--config", str(cfg), "--search", str(s), "--n-trials", "2", "--output-dir", str(tmp_path / "out"), *extra], capsys)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert not (tmp_path / "out" / "trials").exists()  # no trial ran


# ------------------------------------------------------------------------------------ samplers


def _sequence(spec: dict, n: int = 8) -> list[dict]:
    import optuna

    search = tune.Search(spec)
    study = optuna.create_study(sampler=search.make_sampler(), direction="minimize")
    # A deterministic objective of the suggested values: TPE's later suggestions depend on it.
    study.optimize(lambda t: sum(abs(hash(str(v))) % 97 for v in search.suggest(t).values()), n_trials=n)
    return [t.params for t in study.trials]


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid"])
def test_same_seed_same_sampler_same_suggestions(sampler):
    space = {
        "model.init_args.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True} if sampler != "grid" else {"type": "choice", "choices": [1e-3, 1e-2]},
        "model.init_args.model_kwargs.hidden": {"type": "choice", "choices": [[16], [32, 16]]},
        "data.init_args.batch_size": {"type": "int", "low": 16, "high": 64, "step": 16},
    }
    extra = {"n_startup_trials": 3} if sampler == "tpe" else {}
    first = _sequence({"sampler": {"name": sampler, "seed": 3, **extra}, "space": space})
    again = _sequence({"sampler": {"name": sampler, "seed": 3, **extra}, "space": space})
    other = _sequence({"sampler": {"name": sampler, "seed": 4, **extra}, "space": space})
    assert first == again
    assert first != other
    assert {p["hidden"] for p in first} <= {"[16]", "[32, 16]"}  # lists are stored as their JSON text


# ------------------------------------------------------------------------------------ a whole search


def test_tune_sqlite_failed_trial_best_yaml_refit_and_test_split_untouched(tmp_path, capsys, monkeypatch):
    from datamodules.base import ArrayDataModule

    test_loaders: list[str] = []
    original = ArrayDataModule.test_dataloader

    def spy(self):  # who asks for the test split: the trial folders or the refit
        test_loaders.append(str(self.trainer.default_root_dir))
        return original(self)

    monkeypatch.setattr(ArrayDataModule, "test_dataloader", spy)
    cfg = write(tmp_path / "tiny.yaml", TINY)
    search = write(tmp_path / "search.yaml", {
        "metric": "val/acc", "direction": "maximize",
        "sampler": {"name": "grid", "seed": 0}, "pruner": "median",
        # dropout 1.0 is refused by the MLP: those grid points fail, and the search goes on
        "space": {"model.init_args.lr": {"type": "choice", "choices": [0.01, 0.003]},
                  "model.init_args.model_kwargs.dropout": {"type": "choice", "choices": [0.0, 1.0]}},
    })
    out = tmp_path / "out"
    code, err = run_tune(["--config", str(cfg), "--search", str(search), "--n-trials", "2", "--output-dir", str(out)], capsys)
    assert code == 0, err
    rows = states(out / "study.db")  # a real SQLite file
    assert sorted(s for _, s, _ in rows) == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    import optuna

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    for t in study.trials:
        assert (t.params["dropout"] == 1.0) == (t.state.name == "FAIL")
        if t.state.name == "FAIL":
            assert "dropout must be in [0, 1)" in t.user_attrs["error"]
        else:  # each trial's logs in its own folder, one value per epoch
            assert len(t.intermediate_values) == 2
            assert list((Path(t.user_attrs["dir"]) / "lightning_logs").glob("version_0/*"))
    assert "dropout must be in [0, 1)" in err  # the error is shown, too

    # best.yaml: the best trial's values in a config that zoo fit runs as it is
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    best_cfg = yaml.safe_load((out / "best.yaml").read_text())
    assert best_cfg["model"]["init_args"]["lr"] == best.params["lr"]
    assert best_cfg["model"]["init_args"]["model_kwargs"]["dropout"] == best.params["dropout"] == 0.0
    assert best_cfg["model"]["init_args"]["model_kwargs"]["hidden"] == [16]
    assert best_cfg["checkpoint"]["monitor"] == "val/acc" and best_cfg["checkpoint"]["mode"] == "max"

    # the refit reproduces the trial (same seed, deterministic) and is the only test of the search
    summary = yaml.safe_load((out / "summary.json").read_text())
    assert summary["best_trial"] == best.number
    assert abs(summary["refit"]["val_metric"] - best.value) <= 0.01
    assert 0.0 <= summary["refit"]["test"]["test/acc"] <= 1.0
    assert len(test_loaders) == 1 and Path(test_loaders[0]).is_relative_to(out / "refit"), test_loaders
    assert (out / "history.png").stat().st_size > 1000 and (out / "slice.png").is_file()


# ------------------------------------------------------------------------------------ kills and workers


def _popen(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "tune", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.timeout(900)  # three `zoo tune` processes; ~30 s on a quiet machine, minutes on a busy one
def test_killed_tune_resumes_and_two_processes_share_one_study(tmp_path):
    """Kill ``zoo tune`` during a trial; then two ``zoo tune`` processes resume the same SQLite study:
    the finished trials are kept, the study reaches --n-trials finished trials, no trial number twice."""
    n = 3
    cfg = write(tmp_path / "tiny.yaml", {**TINY, "trainer": {**TINY["trainer"], "max_epochs": 2}})
    search = write(tmp_path / "search.yaml", {"metric": "val/acc", "sampler": {"name": "random", "seed": 0},
                                               "space": {"model.init_args.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}})
    db = tmp_path / "study.db"
    args = ["--config", str(cfg), "--search", str(search), "--n-trials", str(n), "--storage", f"sqlite:///{db}",
            "--study-name", "s", "--no-refit"]
    first = _popen([*args, "--output-dir", str(tmp_path / "a")], tmp_path)
    try:
        deadline = time.time() + 400
        while time.time() < deadline and first.poll() is None:
            try:
                rows = states(db) if db.is_file() else []
            except sqlite3.OperationalError:  # Optuna is still creating its tables
                rows = []
            done = [r for r in rows if r[1] == "COMPLETE"]
            if done and any(r[1] == "RUNNING" and r[0] > done[-1][0] for r in rows):
                break  # one trial finished, the next one is training: kill now
            time.sleep(0.1)
        assert first.poll() is None, "zoo tune ended before it could be killed:\n" + first.stdout.read()
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    kept = [(num, v) for num, s, v in states(db) if s == "COMPLETE"]
    assert 1 <= len(kept) < n

    workers = [_popen([*args, "--output-dir", str(tmp_path / d)], tmp_path) for d in ("b", "c")]
    try:
        outs = [w.communicate(timeout=400)[0] for w in workers]
    finally:
        for w in workers:  # a failed assertion or timeout leaves no process behind
            if w.poll() is None:
                w.kill()
                w.wait()
    assert [w.returncode for w in workers] == [0, 0], outs
    rows = states(db)
    numbers = [num for num, _, _ in rows]
    assert numbers == list(range(len(numbers)))  # each number once
    complete = [(num, v) for num, s, v in rows if s == "COMPLETE"]
    assert n <= len(complete) <= n + 1  # two workers may each start the last trial
    assert set(kept) <= set(complete)  # the killed run's finished trials are kept, values unchanged
    # the killed trial was never completed: still RUNNING (heartbeat not yet stale) or marked FAIL
    killed = [num for num, s, _ in rows if s in ("RUNNING", "FAIL")]
    assert len(killed) == 1 and killed[0] == max(k for k, _ in kept) + 1
    assert all("s' in sqlite:///" in o and "of 3 trials finished" in o for o in outs)


# ------------------------------------------------------------------------------------ pruning callback


def test_pruning_callback_reports_each_validation_and_stops_the_fit_cleanly():
    """The callback is a lightning.pytorch callback (never the pytorch_lightning namespace), reports
    every validation run (not the sanity check), keeps the best value, and stops the fit by
    ``trainer.should_stop`` when the pruner says so; a metric the task does not log is a clear error."""
    from types import SimpleNamespace

    import lightning.pytorch as pl
    import optuna
    import torch

    assert issubclass(tune.PruningCallback, pl.Callback)
    assert "pytorch_lightning" not in sys.modules

    class PruneFromThirdReport(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return len(trial.intermediate_values) >= 3

    study = optuna.create_study(direction="maximize", pruner=PruneFromThirdReport())
    trial = study.ask()
    cb = tune.PruningCallback(trial, "val/acc", "maximize")
    trainer = SimpleNamespace(sanity_checking=True, should_stop=False, callback_metrics={"val/acc": torch.tensor(0.0)})
    cb.on_validation_end(trainer, None)  # sanity check: not reported
    trainer.sanity_checking = False
    for acc in (0.5, 0.7):
        trainer.callback_metrics = {"val/acc": torch.tensor(acc), "val/loss": torch.tensor(1.0)}
        cb.on_validation_end(trainer, None)
        assert not trainer.should_stop
    trainer.callback_metrics["val/acc"] = torch.tensor(0.6)
    cb.on_validation_end(trainer, None)
    assert trainer.should_stop and cb.pruned_at == 3
    assert study.trials[0].intermediate_values == pytest.approx({0: 0.5, 1: 0.7, 2: 0.6})
    assert cb.best == pytest.approx(0.7)

    missing = tune.PruningCallback(study.ask(), "val/accuracy", "maximize")
    with pytest.raises(tune.ZooConfigError, match=r"'val/accuracy' is not logged .*val/acc.*set metric"):
        missing.on_validation_end(trainer, None)


def test_metric_and_direction_default_to_the_configs_early_stopping(tmp_path):
    cfg = write(tmp_path / "tiny.yaml", TINY)
    search = write(tmp_path / "search.yaml", {"space": {"model.init_args.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}})
    base = ["--config", str(cfg), "--search", str(search), "--n-trials", "1", "--storage", f"sqlite:///{tmp_path / 's.db'}"]
    plain = tune.Tuner(base)
    assert (plain.metric, plain.direction) == ("val/loss", "minimize")
    acc = tune.Tuner([*base, "--early_stopping.monitor", "val/acc", "--early_stopping.mode", "max"])
    assert (acc.metric, acc.direction) == ("val/acc", "maximize")
    assert acc.base["early_stopping"]["monitor"] == "val/acc"  # the override reaches every trial's config
