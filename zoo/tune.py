"""``zoo tune``: hyper-parameter search over any config with Optuna, chosen on validation only.

    zoo tune --config configs/mlp_digits.yaml --search configs/search/mlp_digits.yaml --n-trials 30 \
        [--storage sqlite:///tune/mlp_digits/study.db] [--study-name mlp_digits] [--output-dir tune/mlp_digits] \
        [--seed S] [--no-refit] [any `zoo fit` override, applied to every trial: --trainer.max_epochs 3]

The search file (``configs/search/*.yaml``) names config keys and their spaces, the sampler, the
pruner and the metric::

    metric: val/acc          # default: the config's early_stopping.monitor
    direction: maximize      # default: from early_stopping.mode (min -> minimize)
    sampler: {name: tpe, seed: 0}          # grid | random | tpe (Bergstra et al., 2011); other keys go to Optuna
    pruner: {name: median, n_warmup_steps: 5}   # median | hyperband | none
    space:
      model.init_args.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      model.init_args.model_kwargs.hidden: {type: choice, choices: [[128, 64], [256, 128]]}
      data.init_args.batch_size: {type: int, low: 16, high: 64, step: 16}

How it keeps the data discipline and survives kills:

* Each trial is a full fit of the config with the trial's values, built by ``ZooCLI(run=False)`` (so
  every check of ``zoo fit`` applies) and fitted with ``trainer.fit`` only: no trial ever asks for
  the test dataloader. The trial's value is the best validation metric over its epochs; each epoch's
  value goes to the pruner (``PruningCallback``).
* The study lives in an Optuna RDB storage (SQLite file by default, or any SQLAlchemy URL such as
  PostgreSQL or MySQL). Several ``zoo tune`` processes may work on one study; each stops once the
  study holds ``--n-trials`` finished (complete or pruned) trials. A trial that raises is recorded as
  FAIL with its error (``user_attrs["error"]``) and the search goes on. Trials send a heartbeat; a
  trial whose process was killed is marked FAIL by the next process once its heartbeat is stale, and
  a restarted ``zoo tune`` keeps every finished trial and runs only what is missing.
* At the end the best trial's configuration is written as ``<output-dir>/best.yaml`` (a config
  ``zoo fit`` runs as it is, its checkpoint chosen by the search metric), refitted once, and only
  that refit is tested.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from zoo.cli_errors import ZooConfigError

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("median", "hyperband", "none")
SPACE_TYPES = ("float", "int", "choice")
SEARCH_KEYS = ("metric", "direction", "sampler", "pruner", "space")
FINISHED = ("COMPLETE", "PRUNED")
# Heartbeats (seconds): a trial whose process died stops beating and is marked FAIL by the next
# process that starts a trial, once GRACE_S has passed without a beat.
HEARTBEAT_S = 10
GRACE_S = 30


# ----------------------------------------------------------------------------------------- search file


def _primitive(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


class Param:
    """One searched config key: ``key`` (dotted path into the config), Optuna ``name``, its space."""

    def __init__(self, key: str, spec: Any, name: str) -> None:
        self.key, self.name = key, name
        where = f"search space {key!r}"
        if not isinstance(spec, dict):
            raise ZooConfigError(f"{where}: {spec!r} is not a mapping, write e.g. {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}")
        self.type = spec.get("type", "choice" if "choices" in spec else None)
        if self.type not in SPACE_TYPES:
            raise ZooConfigError(f"{where}: unknown type {self.type!r}, use one of {list(SPACE_TYPES)}")
        unknown = set(spec) - {"type", "low", "high", "log", "step", "choices"}
        if unknown:
            raise ZooConfigError(f"{where}: unknown fields {sorted(unknown)}, use type, low, high, log, step or choices")
        self.log = bool(spec.get("log", False))
        self.step = spec.get("step")
        if self.type == "choice":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ZooConfigError(f"{where}: choices must be a non-empty list, got {choices!r}")
            self.choices = choices
            # Optuna's categorical choices must be None, bool, int, float or str; lists (layer widths)
            # and mappings are stored as their JSON text and decoded when the trial uses them.
            self.encoded = all(_primitive(c) for c in choices)
            self.labels = choices if self.encoded else [json.dumps(c) for c in choices]
            return
        try:
            self.low, self.high = float(spec["low"]), float(spec["high"])
        except (KeyError, TypeError, ValueError):
            raise ZooConfigError(f"{where}: a {self.type} space needs numbers low and high, got {spec!r}") from None
        if self.low > self.high:
            raise ZooConfigError(f"{where}: low {spec['low']} > high {spec['high']}, swap them")
        if self.log and self.low <= 0:
            raise ZooConfigError(f"{where}: a log space needs low > 0, got {spec['low']}; drop log or raise low")
        if self.log and self.step is not None:
            raise ZooConfigError(f"{where}: step and log cannot be combined (Optuna), drop one")
        if self.type == "int":
            if self.low != int(self.low) or self.high != int(self.high):
                raise ZooConfigError(f"{where}: an int space needs whole low and high, got {spec['low']}, {spec['high']}")
            self.low, self.high = int(self.low), int(self.high)

    def grid(self) -> list[Any]:
        """The values a grid search visits (choices, every int step, or a float range with ``step``)."""
        if self.type == "choice":
            return list(self.labels)
        if self.type == "int":
            return list(range(self.low, self.high + 1, int(self.step or 1)))
        if self.step is None:
            raise ZooConfigError(f"search space {self.key!r}: a grid search needs a step (or choices) for a float space, add step")
        n = int(math.floor((self.high - self.low) / float(self.step) + 1e-9)) + 1
        return [round(self.low + i * float(self.step), 12) for i in range(n)]

    def suggest(self, trial: Any, grid: bool) -> Any:
        if grid:  # GridSampler hands out its grid values; a categorical over them is what it samples
            value = trial.suggest_categorical(self.name, self.grid())
        elif self.type == "choice":
            value = trial.suggest_categorical(self.name, self.labels)
        elif self.type == "int":
            value = trial.suggest_int(self.name, self.low, self.high, step=int(self.step or 1), log=self.log)
        else:
            value = trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        return self.decode(value)

    def decode(self, value: Any) -> Any:
        if self.type == "choice" and not self.encoded:
            return json.loads(value)
        return value


class Search:
    """A parsed, checked search file."""

    def __init__(self, spec: dict[str, Any], source: str = "search file") -> None:
        if not isinstance(spec, dict):
            raise ZooConfigError(f"{source}: expected a mapping with {list(SEARCH_KEYS)}, got {type(spec).__name__}")
        unknown = set(spec) - set(SEARCH_KEYS)
        if unknown:
            raise ZooConfigError(f"{source}: unknown keys {sorted(unknown)}, use {list(SEARCH_KEYS)}")
        self.metric = spec.get("metric")
        self.direction = spec.get("direction")
        if self.direction is not None and self.direction not in ("minimize", "maximize"):
            raise ZooConfigError(f"{source}: direction {self.direction!r} is unknown, use minimize or maximize")
        sampler = spec.get("sampler", {"name": "tpe"})
        sampler = {"name": sampler} if isinstance(sampler, str) else dict(sampler or {})
        self.sampler_name = str(sampler.pop("name", "tpe")).lower()
        if self.sampler_name not in SAMPLERS:
            raise ZooConfigError(f"{source}: unknown sampler {self.sampler_name!r}, use one of {list(SAMPLERS)}")
        self.seed = sampler.pop("seed", 0)
        self.sampler_kwargs = sampler
        pruner = spec.get("pruner", {"name": "none"})
        pruner = {"name": pruner} if isinstance(pruner, str) or pruner is None else dict(pruner)
        self.pruner_name = str(pruner.pop("name", "none")).lower()
        if self.pruner_name not in PRUNERS:
            raise ZooConfigError(f"{source}: unknown pruner {self.pruner_name!r}, use one of {list(PRUNERS)}")
        self.pruner_kwargs = pruner
        space = spec.get("space")
        if not isinstance(space, dict) or not space:
            raise ZooConfigError(f"{source}: space must map config keys to spaces, e.g. model.init_args.lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}")
        # Short names (lr, dropout) read better in tables and plots; the full key where two clash.
        last = [k.rsplit(".", 1)[-1] for k in space]
        self.params = [Param(k, v, n if last.count(n) == 1 else k) for (k, v), n in zip(space.items(), last)]
        if self.sampler_name == "grid":
            self.grid_space = {p.name: p.grid() for p in self.params}

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Search":
        p = Path(path)
        if not p.is_file():
            raise ZooConfigError(f"--search {p}: no such file, give a search file such as configs/search/mlp_digits.yaml")
        try:
            spec = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ZooConfigError(f"--search {p}: not valid YAML ({' '.join(str(e).split())[:120]}), fix the file") from None
        return cls(spec, source=f"--search {p}")

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid_space.values()) if self.sampler_name == "grid" else 0

    def make_sampler(self, seed: int | None = None) -> Any:
        import optuna

        seed = self.seed if seed is None else seed
        try:
            if self.sampler_name == "grid":
                return optuna.samplers.GridSampler(self.grid_space, seed=seed, **self.sampler_kwargs)
            if self.sampler_name == "random":
                return optuna.samplers.RandomSampler(seed=seed, **self.sampler_kwargs)
            return optuna.samplers.TPESampler(seed=seed, **self.sampler_kwargs)
        except TypeError as e:
            raise ZooConfigError(f"sampler {self.sampler_name}: {e}, see Optuna's sampler arguments") from None

    def make_pruner(self) -> Any:
        import optuna

        try:
            if self.pruner_name == "median":
                return optuna.pruners.MedianPruner(**self.pruner_kwargs)
            if self.pruner_name == "hyperband":
                return optuna.pruners.HyperbandPruner(**self.pruner_kwargs)
            return optuna.pruners.NopPruner()
        except TypeError as e:
            raise ZooConfigError(f"pruner {self.pruner_name}: {e}, see Optuna's pruner arguments") from None

    def suggest(self, trial: Any) -> dict[str, Any]:
        """``{config key: value}`` for this trial."""
        return {p.key: p.suggest(trial, self.sampler_name == "grid") for p in self.params}

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """A finished trial's Optuna params back to ``{config key: value}``."""
        return {p.key: p.decode(params[p.name]) for p in self.params if p.name in params}


# ----------------------------------------------------------------------------------------- config


def _has_key(cfg: dict, dotted: str) -> bool:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def set_key(cfg: dict, dotted: str, value: Any) -> None:
    node = cfg
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


class _own_argv:
    """``sys.argv`` without ``zoo tune``'s options while a ZooCLI is built from ``args``: LightningCLI
    warns when it sees both (it cannot tell the trial's arguments from the command line's)."""

    def __enter__(self) -> None:
        self.saved = sys.argv
        sys.argv = sys.argv[:1]

    def __exit__(self, *exc: Any) -> None:
        sys.argv = self.saved


def resolve_config(config_args: list[str]) -> dict[str, Any]:
    """The full config ``zoo fit`` would run for ``config_args`` (``--config C`` plus overrides), as a
    plain dict, parsed by ``ZooCLI``'s own parser (its checks and the task's early-stopping preset
    apply) without building the model or the data."""
    from zoo.lightning_cli import ZooCLI

    class _ParseOnly(ZooCLI):
        def instantiate_classes(self) -> None:
            pass

        def after_instantiate_classes(self) -> None:
            pass

    with _own_argv():
        cli = _ParseOnly(args=config_args, run=False, parser_kwargs={"exit_on_error": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jsonargparse's skip_none deprecation, raised by the dump LightningCLI also uses
        text = cli.parser.dump(cli.config, skip_none=False, skip_check=True)
    cfg = yaml.safe_load(text)
    cfg.pop("config", None)
    return cfg


# ----------------------------------------------------------------------------------------- pruning

try:
    from lightning.pytorch.callbacks import Callback as _Callback
except ImportError:  # pragma: no cover - Lightning is a dependency
    _Callback = object  # type: ignore[misc,assignment]


class PruningCallback(_Callback):
    """Reports the validation metric to an Optuna trial after every validation run, and stops the
    fit when the pruner says so.

    An equivalent of optuna-integration's ``PyTorchLightningPruningCallback`` (which also imports
    ``lightning.pytorch``), written here because: (1) that callback raises ``TrialPruned`` inside
    ``on_validation_end``, so Lightning ends the fit through its crash path (``on_exception`` hooks,
    loggers finalised as "failed"); this one sets ``trainer.should_stop`` and the fit ends normally,
    ``zoo tune`` marks the trial pruned afterwards; (2) it keeps the best value over the epochs, the
    trial's objective, in the same pass; (3) it counts validation runs as the step, so
    ``val_check_interval < 1`` never reports one epoch twice; (4) no further package, and none that
    imports Optuna's private storage modules. Single process only (trials are not run under DDP).
    """

    def __init__(self, trial: Any, monitor: str, direction: str) -> None:
        super().__init__()
        self.trial, self.monitor, self.direction = trial, monitor, direction
        self.best: float | None = None
        self.step = 0
        self.pruned_at: int | None = None
        self.history: list[float] = []

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:  # the sanity check runs validation on an untrained model
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            logged = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
            raise ZooConfigError(f"search metric {self.monitor!r} is not logged by this task (it logs {logged}), set metric: in the search file to one of them")
        value = float(value)
        self.history.append(value)
        if math.isfinite(value) and (
            self.best is None or (value > self.best if self.direction == "maximize" else value < self.best)
        ):
            self.best = value
        self.trial.report(value, step=self.step)
        self.step += 1
        if self.trial.should_prune():
            self.pruned_at = self.step
            trainer.should_stop = True


# ----------------------------------------------------------------------------------------- storage


def open_storage(url: str) -> Any:
    """An Optuna RDB storage with heartbeats, or a one-line error naming the URL."""
    import optuna

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several processes share one SQLite file: wait for a lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
        path = url.split("///", 1)[-1] if "///" in url else ""
        if path and path != ":memory:":
            parent = Path(path).parent
            if not parent.is_dir():
                try:
                    parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise ZooConfigError(f"--storage {url}: cannot create {parent} ({e.strerror}), give a writable path") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat is "experimental"
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except Exception as e:
        what = " ".join(str(e).split())[:160]
        raise ZooConfigError(
            f"--storage {url}: cannot be opened ({what}), give an SQLAlchemy URL Optuna can use, "
            "e.g. sqlite:///study.db or postgresql://user:password@host/db (its driver installed)"
        ) from None


def finished_count(study: Any) -> int:
    return sum(t.state.name in FINISHED for t in study.get_trials(deepcopy=False))


# ----------------------------------------------------------------------------------------- tune


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zoo tune",
        description="Hyper-parameter search over a config with Optuna; any further option is a `zoo fit` override applied to every trial.",
    )
    p.add_argument("--config", action="append", required=True, help="the config to tune (as for zoo fit; may repeat)")
    p.add_argument("--search", required=True, help="the search file (configs/search/*.yaml)")
    p.add_argument("--n-trials", type=int, required=True, help="finished (complete or pruned) trials the study should hold")
    p.add_argument("--storage", help="Optuna RDB URL (default sqlite:///<output-dir>/study.db)")
    p.add_argument("--study-name", help="default: the config's file name without .yaml")
    p.add_argument("--output-dir", help="default: tune/<study-name>")
    p.add_argument("--seed", type=int, help="sampler seed (default: the search file's, else 0)")
    p.add_argument("--no-refit", action="store_true", help="write best.yaml but do not refit and test it")
    return p


class Tuner:
    def __init__(self, argv: list[str]) -> None:
        args, overrides = _parser().parse_known_args(argv)
        if args.n_trials < 1:
            raise ZooConfigError(f"--n-trials {args.n_trials}: must be at least 1")
        self.args = args
        self.search = Search.load(args.search)
        self.study_name = args.study_name or Path(args.config[-1]).stem
        self.out = Path(args.output_dir or Path("tune") / self.study_name)
        self.storage_url = args.storage or f"sqlite:///{self.out / 'study.db'}"
        config_args = [x for c in args.config for x in ("--config", c)] + overrides
        self.base = resolve_config(config_args)
        missing = [p.key for p in self.search.params if not _has_key(self.base, p.key)]
        if missing:
            raise ZooConfigError(
                f"--search {args.search}: {missing[0]!r} is not a key of the config {args.config[-1]}, "
                "use a dotted key that `zoo fit --config C --print_config` shows (e.g. model.init_args.lr)"
            )
        es = self.base.get("early_stopping") or {}
        self.metric = self.search.metric or es.get("monitor") or "val/loss"
        if not str(self.metric).startswith("val/"):
            raise ZooConfigError(f"metric {self.metric!r}: a search is chosen on validation only, name a val/ metric (e.g. val/loss, val/acc)")
        self.direction = self.search.direction or ("maximize" if es.get("mode") == "max" else "minimize")
        self.storage = open_storage(self.storage_url)
        self._fatal: BaseException | None = None

    # one trial ---------------------------------------------------------------------------------

    def trial_config(self, values: dict[str, Any], root: Path | None) -> dict[str, Any]:
        cfg = copy.deepcopy(self.base)
        for key, value in values.items():
            set_key(cfg, key, value)
        if root is not None:
            cfg["trainer"]["default_root_dir"] = str(root)
        return cfg

    def objective(self, trial: Any) -> float:
        import optuna

        values = self.search.suggest(trial)
        root = self.out / "trials" / f"trial_{trial.number:04d}"
        root.mkdir(parents=True, exist_ok=True)
        cfg = self.trial_config(values, root)
        # A trial keeps its logs, not its weights: the search needs the metric, the refit makes the model.
        cfg["checkpoint"].update({"save_top_k": 0, "save_last": False})
        cfg["trainer"]["enable_progress_bar"] = False
        cfg["trainer"]["enable_model_summary"] = False
        path = root / "trial_config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        trial.set_user_attr("dir", str(root))
        t0 = time.perf_counter()
        try:
            from zoo.lightning_cli import ZooCLI

            with _own_argv():
                cli = ZooCLI(args=["--config", str(path)], run=False, parser_kwargs={"exit_on_error": False})
            cb = PruningCallback(trial, self.metric, self.direction)
            cli.trainer.callbacks.append(cb)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)  # fit only: train and validation splits
        except optuna.TrialPruned:
            raise
        except BaseException as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {' '.join(str(e).split())}"[:1000])
            if isinstance(e, ZooConfigError):  # the same for every trial: stop the search
                self._fatal = e
                trial.study.stop()
            print(f"trial {trial.number}: failed: {type(e).__name__}: {e}", file=sys.stderr)
            raise
        trial.set_user_attr("epochs", len(cb.history))
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 2))
        if cb.best is None:
            raise RuntimeError(f"trial {trial.number}: no validation ran, so {self.metric} was never measured")
        if cb.pruned_at is not None:
            print(f"trial {trial.number}: pruned after {cb.pruned_at} validation runs ({self.metric} {cb.history[-1]:.4f})")
            raise optuna.TrialPruned(f"pruned after {cb.pruned_at} validation runs")
        print(f"trial {trial.number}: {self.metric} {cb.best:.4f} in {len(cb.history)} epochs {values}")
        return cb.best

    # the study ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        import logging

        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # Lightning's per-Trainer banner ("GPU available ...") would repeat for every trial.
        # ("Seed set to 0" likewise, from lightning.fabric).
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            study = optuna.create_study(
                study_name=self.study_name, storage=self.storage, direction=self.direction,
                pruner=self.search.make_pruner(), load_if_exists=True,
            )
        except ValueError as e:  # e.g. an existing study of this name optimises the other direction
            raise ZooConfigError(f"--study-name {self.study_name}: {e}, choose another --study-name") from None
        seed = self.args.seed if self.args.seed is not None else self.search.seed
        existing = len(study.get_trials(deepcopy=False))
        if seed is not None and existing:
            # A resumed or second process must not replay the first process's suggestions.
            seed = int(seed) + existing
        study.sampler = self.search.make_sampler(seed)
        target = self.args.n_trials
        if self.search.sampler_name == "grid":
            target = min(target, self.search.grid_size())
        print(f"study {self.study_name!r} in {self.storage_url}: {finished_count(study)} of {target} trials finished; "
              f"{self.search.sampler_name} sampler, {self.search.pruner_name} pruner, {self.direction} {self.metric}")
        stalled = 0
        while finished_count(study) < target and self._fatal is None:
            before = finished_count(study)
            study.optimize(
                self.objective,
                n_trials=target - before,
                catch=(Exception,),
                callbacks=[optuna.study.MaxTrialsCallback(target, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))],
                gc_after_trial=False,
            )
            stalled = stalled + 1 if finished_count(study) == before else 0
            if stalled >= 2:  # two rounds in which every trial failed: say so instead of looping
                errors = [t.user_attrs.get("error") for t in study.trials if t.state.name == "FAIL"]
                raise RuntimeError(f"every trial failed; the last error: {errors[-1] if errors else 'unknown'}")
        if self._fatal is not None:
            raise self._fatal
        return self.finish(study)

    def finish(self, study: Any) -> dict[str, Any]:
        import optuna

        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        self.print_table(study)
        if not complete:
            raise RuntimeError("no trial completed, so there is no best configuration; see the errors above")
        best = study.best_trial
        values = self.search.decode(best.params)
        cfg = self.trial_config(values, None)
        cfg["trainer"]["default_root_dir"] = None
        # The refit keeps the checkpoint the search would have chosen: the best value of the metric.
        cfg["checkpoint"]["monitor"] = self.metric
        cfg["checkpoint"]["mode"] = "max" if self.direction == "maximize" else "min"
        best_yaml = self.out / "best.yaml"
        header = (f"# Best trial {best.number} of study {self.study_name!r} ({self.storage_url}): "
                  f"{self.metric} = {best.value:.6g}\n#   uv run zoo fit --config {best_yaml}\n")
        best_yaml.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
        print(f"\nbest trial {best.number}: {self.metric} = {best.value:.4f}; parameters: {values}\nwritten: {best_yaml}")
        summary: dict[str, Any] = {
            "study": self.study_name, "storage": self.storage_url, "metric": self.metric, "direction": self.direction,
            "best_trial": best.number, "best_value": best.value, "best_params": values,
            "trials": {s: sum(t.state.name == s for t in study.trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
        }
        summary["plots"] = self.plots(study)
        if not self.args.no_refit:
            summary["refit"] = self.refit(best_yaml)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        return summary

    def print_table(self, study: Any) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"study {self.study_name}: {self.direction} {self.metric}")
        for col in ("trial", "state", self.metric, "epochs", "s", *(p.name for p in self.search.params), "error"):
            table.add_column(col)
        for t in study.trials:
            values = self.search.decode(t.params)
            table.add_row(
                str(t.number), t.state.name, "" if t.value is None else f"{t.value:.4f}",
                str(t.user_attrs.get("epochs", len(t.intermediate_values) or "")), str(t.user_attrs.get("seconds", "")),
                *(_fmt(values.get(p.key)) for p in self.search.params), str(t.user_attrs.get("error", ""))[:60],
            )
        Console(width=max(120, len(self.search.params) * 16 + 70)).print(table)

    def plots(self, study: Any) -> list[str]:
        """Optimisation history, parameter importances and a slice plot as PNG (Optuna's matplotlib backend)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import optuna
        from optuna.visualization import matplotlib as ovm

        written = []
        for name, fn in (("history", ovm.plot_optimization_history), ("importances", ovm.plot_param_importances), ("slice", ovm.plot_slice)):
            try:
                with warnings.catch_warnings():
                    # Optuna marks its matplotlib plots "experimental", and matplotlib warns about axes
                    # of one value (a space the trials hit once); neither is the user's business.
                    warnings.simplefilter("ignore")
                    ax = fn(study)
                fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
                path = self.out / f"{name}.png"
                fig.savefig(path, dpi=100, bbox_inches="tight")
                plt.close(fig)
                written.append(str(path))
            except Exception as e:  # e.g. importances need two completed trials with different values
                print(f"plot {name}: skipped ({type(e).__name__}: {' '.join(str(e).split())[:100]})", file=sys.stderr)
        return written

    def refit(self, best_yaml: Path) -> dict[str, Any]:
        """``zoo fit --config best.yaml`` once: fit, then test its best checkpoint (the only test of the search)."""
        from zoo.lightning_cli import ZooCLI

        root = self.out / "refit"
        print(f"\nRefitting {best_yaml} in {root}")
        with _own_argv():
            cli = ZooCLI(args=["fit", "--config", str(best_yaml), "--trainer.default_root_dir", str(root)],
                         parser_kwargs={"fit": {"exit_on_error": False}})
        ckpt = cli.trainer.checkpoint_callback
        score = getattr(ckpt, "best_model_score", None)
        from zoo.tasks.distributed import run_dir

        metrics_file = run_dir(cli.trainer) / "test_metrics.json"
        test = json.loads(metrics_file.read_text())["metrics"] if metrics_file.is_file() else {}
        out = {"dir": str(run_dir(cli.trainer)), "val_metric": None if score is None else float(score), "test": test,
               "best_checkpoint": getattr(ckpt, "best_model_path", None)}
        self._log_plots_to_loggers(cli.trainer)
        print(f"refit: {self.metric} = {out['val_metric']}; test: {test}")
        return out

    def _log_plots_to_loggers(self, trainer: Any) -> None:
        """With the W&B preset on, the search's pictures go to the refit's W&B run."""
        for lg in trainer.loggers:
            if type(lg).__name__.lower().find("wandb") >= 0 and hasattr(lg, "log_image"):
                paths = [str(self.out / f"{n}.png") for n in ("history", "importances", "slice") if (self.out / f"{n}.png").is_file()]
                if paths:
                    try:
                        lg.log_image(key="tune", images=paths, caption=[Path(p).stem for p in paths])
                    except Exception as e:  # a finished or unreachable run: the PNGs are on disk anyway
                        print(f"W&B: search plots not logged ({type(e).__name__}: {e})", file=sys.stderr)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def main(argv: list[str]) -> dict[str, Any]:
    """``zoo tune ...`` (see the module docstring); returns the summary written to ``summary.json``."""
    return Tuner(argv).run()
