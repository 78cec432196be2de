"""How the ``zoo`` command answers bad input: one line ``error: <what>, <fix>`` on stderr, exit code 2.

``run(main, argv)`` wraps the command. It turns into one line:

* the zoo's own errors (an exception whose innermost cause was raised in the zoo's code: ``zoo/``,
  ``datamodules/``, ``callbacks/``, ``cli.py``), which jsonargparse otherwise buries in a traceback
  ending in a ``Given value: Namespace(...)`` dump;
* configuration errors jsonargparse names (a typo'd key, a config file that does not exist, a value
  of the wrong type): its line, without the usage dump (the parser runs with ``exit_on_error=False``,
  ``PARSER_KWARGS``);
* ``ZooConfigError``, raised by the checks below, before any data is loaded.

Anything else (a bug, a library failing) keeps its traceback. ``--debug`` or ``ZOO_DEBUG=1`` shows the
traceback of every error. A run stopped by SIGTERM exits 143 (``checkpointing.PreemptionCheckpoint``).

No Lightning or torch import at module level: ``zoo list`` stays fast.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

PARSER_KWARGS = {"exit_on_error": False}
EXIT_CODE = 2
_REPO = Path(__file__).resolve().parents[1]
_OWN = tuple(str(_REPO / d) + os.sep for d in ("zoo", "datamodules", "callbacks")) + (str(_REPO / "cli.py"),)


class ZooConfigError(ValueError):
    """A configuration the zoo refuses before starting work; the message says what and how to fix it."""


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("ZOO_DEBUG", "").strip() not in ("", "0")


def run(main: Callable[[list[str]], Any], argv: list[str]) -> Any:
    """Call ``main(argv)`` (``--debug`` removed) and answer the errors above in one line."""
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")  # LightningCLI reads sys.argv itself when it is the command line
    try:
        return main(argv)
    except SystemExit as e:
        if type(e).__name__ == "SIGTERMException":  # Lightning stopped on SIGTERM: a preemption, not success
            raise SystemExit(143) from None
        raise
    except Exception as e:
        line = one_line(e)
        if debug or line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        raise SystemExit(EXIT_CODE) from None


def _chain(e: BaseException) -> list[BaseException]:
    out, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        text = e.args[0]  # str(KeyError) adds quotes
    else:
        text = str(e)
    return " ".join(text.split())


def _raised_in_zoo(e: BaseException) -> bool:
    tb = e.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and (last.startswith(_OWN[:-1]) or last == _OWN[-1])


def one_line(e: BaseException) -> str | None:
    """The one-line report of ``e``, or ``None`` when it is not an error the zoo can name (keep the traceback)."""
    chain = _chain(e)
    leaf = chain[-1]
    if any(isinstance(c, ZooConfigError) for c in chain):
        return _message(next(c for c in chain if isinstance(c, ZooConfigError)))
    parser_error = next((c for c in chain if type(c).__name__ == "ArgumentError"), None)
    if parser_error is not None:
        m = re.match(r'Parser key "([^"]+)"', str(parser_error))
        what = _message(leaf)
        if leaf is parser_error:
            return what
        key = m[1] if m else None
        if "not accepted" in what or "Unrecognized" in what:
            fix = "check the spelling (`zoo fit --config C --print_config` lists every key)"
        elif "does not exist" in what:
            fix = "check the path"
        else:
            fix = "see `zoo fit --help` for the accepted values"
        return f"{key}: {what}, {fix}" if key else f"{what}, {fix}"
    # The outermost exception raised in the zoo's code: its message is the one written for the user
    # (inner ones are what it caught, e.g. the registry's KeyError behind UnknownModelError).
    own = next((c for c in chain if _raised_in_zoo(c)), None)
    if isinstance(own, (ValueError, TypeError, KeyError, RuntimeError, OSError)):
        what = _message(own)
        if isinstance(own, TypeError) and "unexpected keyword argument" in what:
            what += ", check model.init_args.model_kwargs against the model's constructor (`zoo list` names the models)"
        return what
    return None


# ----------------------------------------------------------------------------------- checks


def check_output_dir(path: Any, key: str) -> None:
    """Create ``path`` (the run's output directory) if needed and prove it is writable, before data is loaded."""
    if path is None:
        return
    p = Path(path)
    if "://" in str(path):
        return  # remote storage: its client reports its own errors
    for parent in [p, *p.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ZooConfigError(f"{key}: {p} is under {parent}, which is a file, not a directory, choose another directory")
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise ZooConfigError(f"{key}: cannot write to {p} ({e.strerror or e}), choose a writable directory") from None


def check_checkpoint(ckpt_path: Any, model_cfg: Any, data_cfg: Any) -> None:
    """``--ckpt_path`` must be a readable checkpoint of the configured task, model and data set.

    Runs before LightningCLI merges the checkpoint's hyper-parameters into the config (which would
    otherwise silently rebuild another model, or fail inside it with a message about that model).
    """
    if not ckpt_path or ckpt_path in ("last", "best", "hpc", "registry") or "://" in str(ckpt_path):
        return
    path = Path(ckpt_path)
    if not path.is_file():
        raise ZooConfigError(f"ckpt_path: {path} does not exist, give the path of a .ckpt file (or 'last')")
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        what = _message(e).split(". ")[0]
        raise ZooConfigError(
            f"ckpt_path: {path} cannot be read ({what}); it is truncated or not a checkpoint, use another checkpoint"
        ) from None
    hp = ckpt.get("hyper_parameters") or {}
    dhp = ckpt.get("datamodule_hyper_parameters") or {}

    def short(class_path: Any) -> str:
        return str(class_path or "?").rsplit(".", 1)[-1]

    def get(cfg: Any, key: str) -> Any:
        try:
            return cfg.get(key) if cfg is not None else None
        except (AttributeError, KeyError):
            return None

    theirs = (short(hp.get("_class_path")), hp.get("model"), short(dhp.get("_class_path")))
    ours = (short(get(model_cfg, "class_path")), get(model_cfg, "init_args.model"), short(get(data_cfg, "class_path")))
    differs = [i for i in range(3) if theirs[i] not in (None, "?") and ours[i] not in (None, "?") and theirs[i] != ours[i]]
    if differs:
        raise ZooConfigError(
            f"ckpt_path: {path} holds {theirs[0]}(model={theirs[1]!r}) trained on {theirs[2]}, but the config asks for "
            f"{ours[0]}(model={ours[1]!r}) on {ours[2]}, use the config it was trained with (config.yaml beside its checkpoints) "
            "or a checkpoint of this model and data"
        )


LINKED = ("num_classes", "input_shape", "preprocessing")


def given_linked_values(model_cfg: Any) -> dict[str, Any]:
    """The data-linked model values (``LINKED``) the config sets away from ``ZooTask``'s defaults."""
    import inspect

    from zoo.tasks import ZooTask

    params = inspect.signature(ZooTask.__init__).parameters
    out = {}
    for key in LINKED:
        try:
            value = model_cfg.get(f"init_args.{key}")
        except (AttributeError, KeyError):
            continue
        default = params[key].default
        if value is not None and _plain(value) != _plain(default):
            out[key] = value
    return out


def check_linked_values(given: dict[str, Any], datamodule: Any) -> None:
    """A value the model takes from the data, set in the config to something else, is an error (it would be ignored)."""
    for key, value in given.items():
        data_value = getattr(datamodule, key, None)
        if data_value is None:
            continue
        mine, theirs = _plain(value), _plain(data_value)
        if key == "preprocessing" and isinstance(mine, dict) and isinstance(theirs, dict):
            # fitted statistics (mean/std) are filled in at setup; a saved config.yaml carries them
            mine = {k: v for k, v in mine.items() if k not in ("mean", "std")}
            theirs = {k: v for k, v in theirs.items() if k not in ("mean", "std")}
        if mine != theirs:
            raise ZooConfigError(
                f"model.init_args.{key}: {value!r} is set in the config, but it comes from the data "
                f"({type(datamodule).__name__} gives {data_value!r}), remove it; change the data settings instead"
            )


def _plain(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if hasattr(v, "items") and callable(v.items):  # jsonargparse Namespace
        return {str(k): _plain(x) for k, x in vars(v).items()} if hasattr(v, "__dict__") else v
    return v
