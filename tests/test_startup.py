"""Start-up: `zoo list` answers from the JSON index without torch or Lightning, and the index is
the live registry's (so it cannot go stale silently)."""

import json
import subprocess
import sys
from pathlib import Path

import zoo
from zoo.model_index import INDEX_PATH, WRITE_COMMAND, build_index

ROOT = Path(__file__).resolve().parents[1]


def test_index_matches_the_live_registry():
    stored = json.loads(INDEX_PATH.read_text())
    live = build_index()
    assert [c["name"] for c in stored] == zoo.list_models(), f"model index is stale: run `{WRITE_COMMAND}`"
    assert stored == live, f"model index is stale: run `{WRITE_COMMAND}`"


def test_zoo_list_imports_neither_torch_nor_lightning():
    code = (
        "import sys, cli; cli.main(['list']); "
        "print('HEAVY', sorted(m for m in ('torch', 'lightning', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY []"
    names = [line.split()[0] for line in out.splitlines()[2:-1]]
    assert names == zoo.list_models()
    resnet50 = next(line for line in out.splitlines() if line.startswith("resnet50 "))
    assert f"{zoo.model_info('resnet50')['num_params']:,}" in resnet50


def test_zoo_list_pattern_filters():
    out = subprocess.run([sys.executable, "-c", "import cli; cli.main(['list', 'vgg*'])"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert [line.split()[0] for line in out.splitlines()[2:]] == zoo.list_models("vgg*")


def test_top_level_help_without_lightning():
    code = "import sys, cli; cli.main(['--help']); print('HEAVY', sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY []"
    for command in ("fit", "validate", "test", "predict", "list", "audit"):
        assert f"\n  {command} " in out
