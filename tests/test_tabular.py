"""CSVDataModule: ColumnTransformer fitted on training rows, its torch replay, raw-row checkpoints, errors."""

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from datamodules import CSVDataModule
from zoo.layers import InputTransform
from zoo.tabular_transform import TabularTransform, encode_rows
from zoo.tasks import ClassificationTask, RegressionTask

from _data_factories import write_csv


@pytest.mark.parametrize("scaler", ["standard", "minmax"])
def test_torch_transform_equals_column_transformer(tmp_path, scaler):
    dm = CSVDataModule(str(write_csv(tmp_path / "t.csv", n=150)), target="label", numeric=["age", "income"],
                       categorical=["color", "city"], scaler=scaler, seed=2)
    # a category that only validation/test rows have must not enter the training vocabulary
    t = dm.table()
    t["color"] = t["color"].copy()
    t["color"][dm.split(dm._labels()[0])["test"][:3]] = "purple"
    dm.setup()
    spec = dm.preprocessing
    assert spec["kind"] == "tabular" and spec["categorical"]["categories"][0] == ["blue", "green", "red"]
    tf = InputTransform(spec)  # layers.py dispatches a tabular spec to the torch replay
    assert isinstance(tf, TabularTransform) and tf.output_shape == (2 + 3 + 2,)
    raw = dm.raw_frame(dm.raw_x[:, :2], dm.raw_categories)  # numeric values + category strings
    expected = dm.column_transformer.transform(raw)  # (N, 7), unknown "purple" -> all-zero one-hot
    got = tf(torch.from_numpy(dm.raw_x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    purple = np.flatnonzero(dm.raw_categories[:, 0] == "purple")
    assert len(purple) == 3 and (got[purple, 2:5] == 0).all()
    # encode_rows builds the same raw tensor from rows of strings
    rows = {c: list(dm.table()[c]) for c in ["age", "income", "color", "city"]}
    torch.testing.assert_close(encode_rows(spec, rows), torch.from_numpy(dm.raw_x))


def test_checkpoint_predicts_on_raw_rows_without_the_datamodule(tmp_path):
    pl.seed_everything(0)
    dm = CSVDataModule(str(write_csv(tmp_path / "t.csv", n=200)), target="label", numeric=["age", "income"],
                       categorical=["color", "city"], batch_size=32)
    task = ClassificationTask(model="mlp", model_kwargs={"hidden": [16]}, num_classes=dm.num_classes,
                              input_shape=dm.input_shape, preprocessing=dm.preprocessing)
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    trainer.fit(task, dm)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = ClassificationTask.load_from_checkpoint(ckpt, weights_only=True).eval()
    new_rows = [{"age": "31.5", "income": "25000", "color": "red", "city": "oslo"},
                {"age": 70, "income": 9e4, "color": "mauve", "city": "paris"}]  # an unseen colour
    x = encode_rows(loaded.hparams.preprocessing, new_rows)  # only the checkpoint's spec is used
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), task(x))
        torch.testing.assert_close(loaded(torch.from_numpy(dm.raw_x)), task(torch.from_numpy(dm.raw_x)))


def test_regression_target_is_scaled_on_training_rows_and_inverted(tmp_path):
    dm = CSVDataModule(str(write_csv(tmp_path / "r.csv", regression=True)), target="label", task="regression",
                       scale_target=True, numeric=["age"], categorical=["color"])
    dm.setup()
    y_train = dm.raw_y[dm.split_indices["train"]].astype(np.float64)
    spec = dm.preprocessing["target"]
    assert spec["mean"] == pytest.approx([y_train.mean()]) and spec["std"] == pytest.approx([y_train.std()])
    _, yb = dm.datasets["test"][:]  # raw targets: RegressionTask applies and inverts the scaling
    np.testing.assert_allclose(yb.numpy(), dm.raw_y[dm.split_indices["test"]], rtol=1e-6)
    task = RegressionTask(model="mlp", model_kwargs={"hidden": [8]}, num_classes=1, input_shape=dm.input_shape, preprocessing=dm.preprocessing)
    torch.testing.assert_close(task.target(task.target.scale(yb.view(-1, 1))), yb.view(-1, 1))
    assert dm.num_classes == 1


def test_bad_inputs_name_the_file_column_and_rows(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        CSVDataModule(str(tmp_path / "nope.csv"), target="label")
    path = write_csv(tmp_path / "t.csv", n=30)
    with pytest.raises(KeyError, match=r"'target'.*columns are \['age', 'income', 'color', 'city', 'person', 'day', 'label'\]"):
        CSVDataModule(str(path), target="target")
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace(lines[4].split(",")[1], "", 1)  # line 5: income missing
    lines[9] = ",".join(lines[9].split(",")[:-1] + ["7"])  # line 10: label 7 with 3 classes
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad.csv: column 'income' has missing values on lines \[5\]"):
        CSVDataModule(str(bad), target="label", numeric=["age", "income"], categorical=["color"], num_classes=3).setup()
    with pytest.raises(ValueError, match=r"bad.csv: column 'label' needs labels in \[0, 3\); lines \[10\] have \[7\]"):
        CSVDataModule(str(bad), target="label", numeric=["age"], categorical=["color"], num_classes=3).setup()
    lines[6] = lines[6].replace(lines[6].split(",")[0], "old", 1)
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"column 'age' is declared numeric but 1 cells are not numbers \(line 7: 'old'\)"):
        CSVDataModule(str(bad), target="label", numeric=["age"], categorical=["color"]).setup()


def test_resume_with_a_changed_file_or_split_fails_clearly(tmp_path):
    from datamodules import SplitMismatchError

    path = write_csv(tmp_path / "t.csv", n=60)
    dm = CSVDataModule(str(path), target="label", seed=0)
    dm.setup()
    state = dm.state_dict()
    assert state["split"]["strategy"] == "stratified" and state["preprocessing"]["kind"] == "tabular"
    same = CSVDataModule(str(path), target="label", seed=0)
    same.load_state_dict(state)
    same.setup()  # identical data and split: resumes
    other_seed = CSVDataModule(str(path), target="label", seed=1)
    other_seed.load_state_dict(state)
    with pytest.raises(SplitMismatchError, match="the split"):
        other_seed.setup()
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[0], "99.0", 1)
    path.write_text("\n".join(lines) + "\n")
    edited = CSVDataModule(str(path), target="label", seed=0)
    edited.load_state_dict(state)
    with pytest.raises(SplitMismatchError, match="the data differs"):
        edited.setup()
