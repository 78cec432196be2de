"""CLI data links and run folders: a CSV or image-folder config needs nothing the data knows, and a
run never writes over an earlier run's files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cli import ZooCLI
from tests._data_factories import write_csv, write_image_folder
from zoo.runs import RunExistsError

QUICK = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _csv_args(tmp_path: Path) -> list[str]:
    path = write_csv(tmp_path / "t.csv", n=60)
    return [
        "--model", "zoo.tasks.ClassificationTask", "--model.init_args.model", "mlp",
        "--data", "datamodules.CSVDataModule", "--data.init_args.path", str(path), "--data.init_args.target", "label",
        "--data.init_args.group_column", "person", "--data.init_args.time_column", "day", *QUICK,
    ]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_csv_config_leaving_num_classes_at_its_default_fits(tmp_path):
    # Lightning used to refuse: "Error while merging hparams: the keys ['num_classes'] are present in both ..."
    cli = ZooCLI(args=["fit", *_csv_args(tmp_path)])
    assert cli.model.hparams.num_classes == 3 and cli.datamodule.hparams.num_classes is None
    assert (Path(cli.trainer.log_dir) / "test_metrics.json").is_file()
    # A real disagreement is a one-line error naming both values, before training.
    with pytest.raises(ValueError, match=r"model.num_classes=3 but data.num_classes=4") as e:
        _align_with(tmp_path, model_k=3, data_k=4)
    assert "\n" not in str(e.value)
    _align_with(tmp_path, model_k=4, data_k=4)  # one value on both sides: fine


def _align_with(tmp_path, model_k, data_k):
    from datamodules import CSVDataModule
    from zoo.runs import align_shared_hparams
    from zoo.tasks import ClassificationTask

    dm = CSVDataModule(str(write_csv(tmp_path / "t.csv", n=60)), target="label", num_classes=data_k)
    model = ClassificationTask(model="mlp", num_classes=model_k, input_shape=list(dm.input_shape))
    align_shared_hparams(model, dm)


def test_image_folder_config_needs_no_num_classes_or_input_shape(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=6)
    cli = ZooCLI(args=[
        "fit", "--model", "zoo.tasks.ClassificationTask", "--model.init_args.model", "mlp",
        "--data", "datamodules.ImageFolderDataModule", "--data.init_args.root", str(root),
        "--data.init_args.image_size", "8", *QUICK,
    ])
    assert cli.model.hparams.num_classes == 3 and list(cli.model.hparams.input_shape) == [3, 8, 8]


def test_a_checkpoint_folder_holding_checkpoints_is_refused(tmp_path):
    folder = tmp_path / "ckpts"
    args = ["fit", *_csv_args(tmp_path), "--trainer.logger", "false", "--checkpoint.dirpath", str(folder)]
    ZooCLI(args=args)
    before = _digest(folder)
    assert "last.ckpt" in before
    with pytest.raises(RunExistsError, match=r"checkpoint.dirpath .*ckpts' already holds checkpoints of a run \(best-epoch=00.ckpt, last.ckpt\)"):
        ZooCLI(args=args)
    assert _digest(folder) == before


@pytest.mark.parametrize("logger", ["false", "pinned"])
def test_a_second_run_never_changes_the_first_runs_files(tmp_path, logger):
    extra = ["--trainer.logger", "false"] if logger == "false" else [
        "--trainer.logger", "CSVLogger", "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.logger.init_args.version", "3",
    ]
    args = ["fit", *_csv_args(tmp_path), "--trainer.default_root_dir", str(tmp_path), *extra]
    first = ZooCLI(args=args)
    first_dir = Path(first.trainer.log_dir)
    before = _digest(first_dir)
    assert {"config.yaml", "test_metrics.json"} <= set(before) and any(k.startswith("checkpoints/") for k in before)
    if logger == "false":
        second = ZooCLI(args=args)
        assert Path(second.trainer.log_dir) != first_dir and (Path(second.trainer.log_dir) / "test_metrics.json").is_file()
    else:
        with pytest.raises(RunExistsError, match=r"trainer.logger version 3: .*version_3 already holds a run .*--ckpt_path") as e:
            ZooCLI(args=args)
        assert "\n" not in str(e.value)
    assert _digest(first_dir) == before
    if logger == "pinned":  # asking to resume the pinned run is allowed
        ckpt = first_dir / "checkpoints" / "last.ckpt"
        resumed = ZooCLI(args=[*args, "--ckpt_path", str(ckpt), "--trainer.max_epochs", "2"])
        assert resumed.trainer.current_epoch == 2 and Path(resumed.trainer.log_dir) == first_dir


def test_one_value_held_as_a_tuple_and_a_list_is_logged_once():
    from lightning.pytorch import LightningDataModule

    from zoo.runs import align_shared_hparams
    from zoo.tasks import ClassificationTask

    class Data(LightningDataModule):
        def __init__(self, input_shape: tuple = (1, 8, 8), num_classes: int | None = None) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.num_classes = 10 if num_classes is None else num_classes

    dm = Data()
    model = ClassificationTask(model="mlp", num_classes=10, input_shape=[1, 8, 8])
    align_shared_hparams(model, dm)
    for key in ("input_shape", "num_classes"):  # Lightning's merge compares type and value
        assert type(dm.hparams_initial[key]) is type(model.hparams_initial[key])
        assert dm.hparams_initial[key] == model.hparams_initial[key]
    assert dm.hparams.num_classes is None  # the saved config keeps what the user wrote
