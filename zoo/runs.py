"""What the ``zoo`` command checks once model, data and trainer exist, before anything runs.

* ``align_shared_hparams``: the CLI links ``num_classes``/``input_shape`` from the DataModule into the
  model, so both sides' ``save_hyperparameters`` may hold a key. Lightning refuses to log two
  different values of one key (``Error while merging hparams: the keys ['num_classes'] are present in
  both ...``), and a DataModule's argument left at ``None`` ("from the data") differs from the number
  the model received. Where the DataModule's resolved attribute equals the model's value, the
  DataModule's hyper-parameter is set to that value; a real disagreement is a one-line error.
* ``claim_run_dir``: a run never writes over an earlier run's files. With ``--trainer.logger false``
  (or ``fast_dev_run``, whose logger writes nothing) Lightning writes ``config.yaml``, ``test_metrics.json`` and the checkpoints straight into
  ``default_root_dir`` (every run the same place), so the run gets a fresh
  ``<default_root_dir>/lightning_logs/version_N`` (the numbering Lightning's loggers use). A logger
  with a pinned ``version`` whose folder already holds files, or a ``checkpoint.dirpath`` that holds
  checkpoints, is refused unless the run resumes it (``--ckpt_path``).

This module imports Lightning lazily: ``zoo``'s architectures stay importable without it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

# Rank 0 records the fresh folder of a logger-less run here; processes Lightning's launcher starts
# for the other ranks inherit the environment and so write into the same folder.
RUN_DIR_ENV = "ZOO_RUN_DIR"


class RunExistsError(FileExistsError):
    """A pinned logger version already holds a run, and the command does not resume it."""


def _launched_child() -> bool:
    # Lightning's subprocess launcher sets LOCAL_RANK for the processes it starts (ranks > 0 on a node).
    return int(os.environ.get("LOCAL_RANK", "0") or 0) > 0


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # arrays, tensors: not comparable as one bool
        return False


def align_shared_hparams(model: Any, datamodule: Any) -> None:
    """Make the DataModule's copy of a hyper-parameter the model also holds identical to the model's
    when the DataModule's resolved attribute (``dm.num_classes``, ...) is that same value; raise a
    one-line ``ValueError`` when the two really disagree (see the module docstring)."""
    mh, dh = getattr(model, "_hparams_initial", None), getattr(datamodule, "_hparams_initial", None)
    if not mh or not dh:
        return
    for key in sorted((set(mh) & set(dh)) - {"_class_path"}):
        mv, dv = mh[key], dh[key]
        if type(mv) is type(dv) and _same(mv, dv):
            continue  # Lightning's merge compares type and value
        resolved = getattr(datamodule, key, dv)
        # One value written twice (a list on one side, a tuple on the other), or None ("from the
        # data") on the DataModule's side and the very value the model got through the link.
        if _same(dv, mv) or (dv is None and _same(resolved, mv)):
            datamodule._hparams_initial[key] = mv  # what the loggers get; the saved config keeps the user's value
            continue
        given = f"the data gives {key}={resolved!r}" if dv is None else f"data.{key}={dv!r}"
        raise ValueError(
            f"model.{key}={mv!r} but {given}; the model and the data must agree: drop model.{key} from the "
            f"config (the CLI links it from the data) or fix data.init_args.{key}"
        )


# Hyper-parameters that usually decide the shapes of the weights, named when the shapes differ.
SHAPE_HPARAMS = ("model", "input_shape", "num_classes", "model_kwargs")


def check_checkpoint_fits(model: Any, ckpt_path: str | None) -> None:
    """Refuse, in one line and before anything runs, a checkpoint whose architecture or data shape
    differs from the model this command built (torch's own message is a multi-line "size mismatch
    for net.features.1.0.weight" raised mid-run)."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return  # "best"/"last" or a missing file: Lightning resolves or reports those
    import torch

    try:
        # mmap: only the small hyper-parameter dict is read, not every weight
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return  # unreadable files are reported where the checkpoint is loaded
    weights = ckpt.get("state_dict") or {}
    mine = model.state_dict()
    clash = [k for k, v in weights.items() if k in mine and tuple(v.shape) != tuple(mine[k].shape)]
    clash += [k for k in mine if k not in weights] if weights else []
    if not clash:
        return  # the weights fit (other settings, e.g. dropout, may differ freely)
    saved, ours = ckpt.get("hyper_parameters") or {}, getattr(model, "hparams", {})
    diff = [
        f"{k}={_plain(saved[k])!r} (this run: {_plain(ours[k])!r})"
        for k in SHAPE_HPARAMS if k in saved and k in ours and not _same(_plain(saved[k]), _plain(ours[k]))
    ]
    k = clash[0]
    what = "; ".join(diff) if diff else (
        f"{k} of shape {tuple(weights[k].shape)} (this run: {tuple(mine[k].shape)})" if k in weights else f"no weight {k}"
    )
    raise ValueError(
        f"--ckpt_path {ckpt_path}: the checkpoint's weights do not fit this run's model: it was trained with {what}; "
        "use the data and model settings of the checkpoint's run (its config.yaml), or train a new model for this data"
    )


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _next_version(root: Path) -> int:
    found = [int(m.group(1)) for p in root.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return max(found, default=-1) + 1


def claim_run_dir(trainer: Any, ckpt_path: str | None, fit: bool = True) -> Path | None:
    """Give this run a folder no earlier run wrote into (see the module docstring); returns it, or
    ``None`` where the logger picks a fresh folder itself. Raises ``RunExistsError`` (one line) for a
    pinned logger version that already holds files, or (``fit``: only training writes checkpoints) a
    ``checkpoint.dirpath`` that holds checkpoints, unless ``ckpt_path`` resumes a run."""
    from lightning.pytorch.loggers.logger import DummyLogger

    run_dir = None
    # No logger, or fast_dev_run's DummyLogger: Trainer.log_dir is then default_root_dir itself.
    if all(isinstance(lg, DummyLogger) for lg in trainer.loggers):
        if _launched_child() and os.environ.get(RUN_DIR_ENV):
            run_dir = Path(os.environ[RUN_DIR_ENV])
        else:
            root = Path(trainer.default_root_dir) / "lightning_logs"
            run_dir = root / f"version_{_next_version(root)}"
            os.environ[RUN_DIR_ENV] = str(run_dir)
        # Trainer.log_dir is default_root_dir when there is no logger: config.yaml, the checkpoints
        # (ModelCheckpoint resolves its folder at fit start) and test_metrics.json follow it.
        trainer._default_root_dir = str(run_dir)
    if _launched_child() or ckpt_path:
        return run_dir  # rank 0 makes the checks (its folders may exist by now); resuming may reuse them
    for logger in trainer.loggers:
        pinned = getattr(logger, "_version", None)
        if pinned is None:
            continue  # the logger numbers a fresh folder itself (log_dir is not asked: that would fix it early)
        log_dir = Path(getattr(logger, "log_dir", None) or "")
        if str(log_dir) not in ("", ".") and log_dir.is_dir() and any(log_dir.iterdir()):
            files = sorted(p.name for p in log_dir.iterdir())
            raise RunExistsError(
                f"trainer.logger version {pinned!r}: {log_dir} already holds a run ({', '.join(files[:4])}"
                f"{', ...' if len(files) > 4 else ''}); leave the version unset for a fresh folder, pick an unused one, "
                "or resume that run with --ckpt_path"
            )
    for cb in getattr(trainer, "checkpoint_callbacks", []) if fit else []:
        # An explicit checkpoint.dirpath is shared by every run that names it: Lightning would only
        # warn "exists and is not empty" and then replace last.ckpt and the best checkpoints.
        d = Path(cb.dirpath) if getattr(cb, "dirpath", None) else None
        if d is not None and d.is_dir() and any(d.glob("*.ckpt")):
            names = sorted(p.name for p in d.glob("*.ckpt"))
            raise RunExistsError(
                f"checkpoint.dirpath {str(d)!r} already holds checkpoints of a run ({', '.join(names[:3])}"
                f"{', ...' if len(names) > 3 else ''}); leave checkpoint.dirpath unset (each run gets its own folder), "
                "name an empty folder, or resume that run with --ckpt_path"
            )
    return run_dir
