"""Every bad command line of issue 11 is answered with `error: <what>, <fix>` in at most 3 lines, exit 2."""

import os
from pathlib import Path

import pytest
import torch

import cli

ROOT = Path(__file__).resolve().parents[1]
XOR = str(ROOT / "configs/mlp_xor.yaml")
FIT = ["fit", "--config", XOR, "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A real checkpoint of mlp_xor (1 epoch, 2 batches), a truncated copy and one claiming another model."""
    d = tmp_path_factory.mktemp("ckpts")
    cwd = os.getcwd()
    os.chdir(d)
    try:
        cli.main(["fit", "--config", XOR, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                  "--trainer.enable_progress_bar", "false", "--checkpoint.dirpath", str(d / "run")])
    finally:
        os.chdir(cwd)
    xor = d / "run" / "last.ckpt"
    data = xor.read_bytes()
    (d / "trunc.ckpt").write_bytes(data[: len(data) // 2])
    other = torch.load(xor, weights_only=True)
    other["hyper_parameters"]["model"] = "lenet5"
    torch.save(other, d / "other_model.ckpt")
    (d / "afile").write_text("x")
    return d


def _read_only_dir(tmp_path):
    if os.geteuid() == 0:  # root writes through permission bits: use a read-only mount
        return "/sys/zoo-test-output"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return str(ro / "out")


CASES = {
    "unknown model": (FIT + ["--model.init_args.model", "nosuch"], "unknown model 'nosuch'"),
    "unknown model_kwargs key": (FIT + ["--model.init_args.model_kwargs", "{bogus: 1}"], "unexpected keyword argument 'bogus'"),
    "negative lr": (FIT + ["--model.init_args.lr", "-0.1"], "model.lr must be positive, got -0.1"),
    "batch size 0": (FIT + ["--data.init_args.batch_size", "0"], "batch_size must be >= 1"),
    "resize the model cannot take": (["fit", "--config", str(ROOT / "configs/lenet5_digits.yaml"), "--trainer.fast_dev_run", "true",
                                      "--data.init_args.resize", "2"], "too small for LeNet5"),
    "truncated checkpoint": (["test", "--config", XOR, "--ckpt_path", "{d}/trunc.ckpt"], "cannot be read"),
    "checkpoint of another model": (["test", "--config", XOR, "--ckpt_path", "{d}/other_model.ckpt"], "model='lenet5'"),
    "checkpoint of another data set": (["test", "--config", str(ROOT / "configs/mlp_digits.yaml"), "--ckpt_path", "{d}/run/last.ckpt"],
                                       "trained on XORDataModule, but the config asks for ClassificationTask(model='mlp') on DigitsDataModule"),
    "typo'd key": (FIT + ["--model.init_args.lrr", "0.1"], "'lrr' is not accepted"),
    "missing config file": (["fit", "--config", "nosuch.yaml"], "does not exist"),
    "output directory under a file": (FIT + ["--trainer.default_root_dir", "{d}/afile/sub"], "which is a file"),
    "output directory read-only": (FIT + ["--trainer.default_root_dir", "{ro}"], "cannot write to"),
    "input_shape given by the user": (FIT + ["--model.init_args.input_shape", "[3, 32, 32]"], "comes from the data"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_command_line_gives_one_line_and_exit_2(case, ckpts, tmp_path, capfd):
    args, expected = CASES[case]
    ro = _read_only_dir(tmp_path) if "{ro}" in " ".join(args) else ""
    args = [a.replace("{d}", str(ckpts)).replace("{ro}", ro) for a in args]
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert exc.value.code == 2, err
    assert len(lines) <= 3, err
    assert any(ln.startswith("error: ") and expected in ln for ln in lines), err


def test_debug_shows_the_traceback(capfd, monkeypatch):
    monkeypatch.setenv("ZOO_DEBUG", "1")
    with pytest.raises(Exception, match="model.lr must be positive"):
        cli.main(FIT + ["--model.init_args.lr", "-0.1"])
    monkeypatch.delenv("ZOO_DEBUG")
    with pytest.raises(Exception, match="model.lr must be positive"):
        cli.main(FIT + ["--model.init_args.lr", "-0.1", "--debug"])
