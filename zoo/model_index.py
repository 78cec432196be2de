"""The model index: every registered model's card as plain JSON, for `zoo list`.

`zoo list` must answer in well under two seconds, and importing torch alone takes longer than that
on a small machine; so the cards (``zoo.model_info``) are also kept in ``_model_index.json`` beside
this file, and ``cli.print_models`` reads only that file (without importing this package).
``tests/test_registry.py`` rebuilds the index from the live registry and fails, naming the command
below, when a model was added or changed without it::

    uv run python -m zoo.model_index --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

INDEX_PATH = Path(__file__).with_name("_model_index.json")
WRITE_COMMAND = "uv run python -m zoo.model_index --write"


def build_index() -> list[dict[str, Any]]:
    """Every registered model's card, as stored in the index (lists instead of tuples)."""
    import zoo

    cards = [zoo.model_info(n) for n in zoo.list_models()]
    return [{**c, "input_shape": list(c["input_shape"]), "output_shape": list(c["output_shape"])} for c in cards]


def write_index(path: Path = INDEX_PATH) -> int:
    cards = build_index()
    path.write_text(json.dumps(cards, indent=1) + "\n")
    return len(cards)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit(f"usage: {WRITE_COMMAND}")
    print(f"wrote {INDEX_PATH} ({write_index()} models)")
