"""``zoo``: the lightning-zoo command line (the console script's entry; kept thin and fast).

``zoo fit|validate|test|predict --config configs/<model>_<data>.yaml`` runs LightningCLI with
model, data and trainer built from the config (``zoo.lightning_cli.ZooCLI``); ``zoo list [PATTERN]``
prints the model registry; ``zoo info`` estimates memory; ``zoo audit`` reports contamination.
``ZooCLI(args=[...], run=False)`` builds the same objects from Python (tests use it).

Nothing heavy is imported at module level: ``zoo list`` and ``zoo --help`` must answer in well under
two seconds, and importing torch and Lightning takes several.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_LAZY = ("ZooCLI", "EARLY_STOPPING_DEFAULTS", "early_stopping_preset", "run_audit")


def __getattr__(name: str) -> Any:
    """``cli.ZooCLI`` and friends, imported from ``zoo.lightning_cli`` on first use (PEP 562)."""
    if name in _LAZY:
        from zoo import lightning_cli

        return getattr(lightning_cli, name)
    raise AttributeError(f"module 'cli' has no attribute {name!r}")


def print_models(pattern: str | None = None) -> None:
    """``zoo list [PATTERN]``: the model table, from the JSON index (``zoo/model_index.py``) so that
    neither torch nor Lightning is imported to print it."""
    import fnmatch
    import importlib.util

    # find_spec locates the package without importing it (importing zoo would import torch).
    index = Path(importlib.util.find_spec("zoo").submodule_search_locations[0]) / "_model_index.json"
    rows = [r for r in json.loads(index.read_text()) if not pattern or fnmatch.fnmatch(r["name"], pattern)]
    header = ("name", "task", "input", "output", "params", "config", "paper")
    table = [
        (r["name"], r["task"], "x".join(map(str, r["input_shape"])), _output(r), f"{r['num_params']:,}", r["default_config"] or "-", r["paper"])
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    for i, row in enumerate([header, *table]):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _output(card: dict) -> str:
    """What the model's forward returns: ``logits 10`` or ``reconstruction 1x8x8``."""
    kind = card.get("output", "logits")
    return f"{kind} {'x'.join(map(str, card.get('output_shape', [card['num_classes']])))}"


USAGE = """usage: zoo COMMAND [options]

Train, evaluate and inspect the lightning-zoo models (LightningCLI: every option of the model, the
data and the Trainer can be set in a YAML config or on the command line).

commands:
  fit        train, then test the best checkpoint:  zoo fit --config configs/lenet5_digits.yaml
  validate   evaluate on the validation split:       zoo validate --config C --ckpt_path P
  test       evaluate on the test split:             zoo test --config C --ckpt_path P
  predict    predict with a checkpoint:              zoo predict --config C --ckpt_path P [--output F.csv]
  list       the model registry:                     zoo list [PATTERN]
  audit      contamination report of a config's data: zoo audit --config C [--mode warn|fail|drop]
  export     checkpoint -> onnx | exported_program | safetensors: zoo export --ckpt_path P --format onnx
  serve      HTTP prediction API (LitServe):          zoo serve --ckpt_path P [--port 8000]
  tune       hyper-parameter search (Optuna):        zoo tune --config C --search S --n-trials N
  enrol      gallery of embeddings from a folder:    zoo enrol --ckpt_path P --folder DIR --out gallery.pt
  identify   nearest identity or unknown per image:  zoo identify --ckpt_path P --gallery gallery.pt IMAGES

`zoo COMMAND --help` lists a command's options; `zoo fit --config C --print_config` shows a resolved config.
"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):  # answered without importing torch or Lightning
        print(USAGE, end="")
        return
    if argv[0] == "list":
        try:
            print_models(argv[1] if len(argv) > 1 else None)
        except BrokenPipeError:  # `zoo list | head`: the reader left; nothing to report
            import os  # the Python docs' recipe: point stdout at devnull so the exit flush is quiet

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    from zoo._quiet import quiet_dependency_noise  # imports torch: after `zoo list`, which needs none

    quiet_dependency_noise()
    if argv[0] == "info":  # memory estimate; zoo/memory.py imports Lightning only for a config
        from zoo.memory import main as info_main

        raise SystemExit(info_main(argv[1:]))
    if argv[0] in ("enrol", "identify"):  # recognition by embeddings (zoo/gallery.py)
        import importlib

        code = importlib.import_module(f"zoo.{argv[0]}").main(argv[1:])
        if code:
            raise SystemExit(code)
        return
    if argv[0] == "audit":
        from zoo.lightning_cli import run_audit

        code = run_audit(argv[1:])
        if code:
            raise SystemExit(code)
        return
    from zoo import cli_errors

    if argv[0] in ("export", "serve"):  # zoo/export.py, zoo/serve.py (issue 19)
        import importlib

        command = importlib.import_module(f"zoo.{argv[0]}")
        raise SystemExit(cli_errors.run(command.main, argv[1:]))

    if argv[0] == "tune":  # Optuna search over a config (zoo/tune.py)
        from zoo import tune

        cli_errors.run(tune.main, argv[1:])
        return
    from zoo.lightning_cli import ZooCLI

    # Errors the zoo can name become one line `error: <what>, <fix>` with exit code 2 (--debug: traceback).
    cli_errors.run(lambda a: ZooCLI(args=a if a != sys.argv[1:] else None, parser_kwargs=cli_errors.PARSER_KWARGS), argv)


if __name__ == "__main__":
    main()
