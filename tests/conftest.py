import os
import warnings

import pytest

# Tests never reach W&B or any network service.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch, tmp_path):
    # Every test runs in its own folder, so lightning_logs/ and checkpoints never collide.
    monkeypatch.chdir(tmp_path)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    yield
