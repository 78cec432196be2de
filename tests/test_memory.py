"""``zoo info``: the memory estimate of one training step (meta device) against a real CPU step."""

import subprocess
import sys

import pytest
import torch

import zoo
from zoo.memory import PRECISIONS, estimate_registered, main, measure_cpu_peak


def test_zoo_info_lenet5_prints_the_estimate_and_the_measured_cpu_peak_within_20_percent(capsys):
    pytest.importorskip("torch.distributed._tools.mem_tracker")  # the measurement (PyTorch >= 2.5)
    assert main(["lenet5", "--batch-size", "32", "--measure"]) == 0
    out = capsys.readouterr().out
    for row in ("parameters", "gradients", "optimizer state (adam)", "activations (batch 32)", "total: peak of the step"):
        assert row in out
    est = estimate_registered("lenet5", 32)
    measured = measure_cpu_peak(lambda: zoo.create_model("lenet5", num_classes=10), (1, 32, 32), 32)
    assert f"{measured:,} bytes" in out
    assert abs(est.total - measured) <= 0.2 * measured, (est.total, measured)
    # the parts are what they must be for LeNet-5 (61,706 float32 parameters, Adam: two moments)
    assert est.parameters == est.gradients == 61_706 * 4 and est.optimizer_state == 2 * 61_706 * 4


def test_activations_grow_with_the_batch_and_halve_in_bf16():
    small, big = estimate_registered("lenet5", 8), estimate_registered("lenet5", 64)
    assert big.activations == pytest.approx(8 * small.activations, rel=0.02)  # linear in the batch
    assert big.parameters == small.parameters
    half = estimate_registered("lenet5", 64, precision="bf16-mixed")
    assert half.activations == pytest.approx(big.activations / 2, rel=0.02)
    assert half.parameters == big.parameters and half.autocast_weights == big.parameters // 2
    sgd = estimate_registered("lenet5", 8, optimizer="sgd")
    assert sgd.optimizer_state == sgd.parameters  # one momentum buffer


def test_zoo_info_refuses_bad_input_in_one_line():
    with pytest.raises(SystemExit, match="unknown model 'nope'; `zoo list`"):
        main(["nope"])
    with pytest.raises(SystemExit, match="config 'missing.yaml' not found"):
        main(["missing.yaml"])
    with pytest.raises(ValueError, match="--batch-size must be >= 1, got 0"):
        estimate_registered("lenet5", 0)
    assert "bf16-mixed" in PRECISIONS and "16-mixed" in PRECISIONS


def test_memory_module_imports_without_lightning():
    code = "import sys, zoo.memory; sys.exit(any(m.startswith('lightning') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
