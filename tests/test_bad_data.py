"""Bad data is never accepted silently: non-finite values for every task, typed CSV columns."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from datamodules import CSVDataModule, InMemoryDataModule
from datamodules.timeseries import TimeSeriesDataModule
from tests._data_factories import write_csv


def _regression(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, (x @ np.array([1.0, -2.0, 0.5])).astype(np.float32)


@pytest.mark.parametrize("where", ["inputs", "targets"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_regression_refuses_nonfinite_inputs_and_targets_naming_the_rows(where, value):
    x, y = _regression()
    if where == "inputs":
        x[[7, 31], 1] = value
    else:
        y[[7, 31]] = value
    dm = InMemoryDataModule(x, y, task="regression")
    with pytest.raises(ValueError, match=rf"NaN or inf in the {where} of rows \[7, 31\] \(2 of 60 rows\); .*nonfinite: drop") as e:
        dm.setup()
    assert "\n" not in str(e.value)


def test_classification_refuses_a_nan_label_before_it_becomes_an_integer():
    x, _ = _regression()
    y = (np.arange(60) % 3).astype(np.float64)
    y[5] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in the targets of rows \[5\]"):
        InMemoryDataModule(x, y, num_classes=3).setup()
    y[5] = 1.5
    with pytest.raises(ValueError, match=r"whole numbers; rows \[5\] have \[1.5\]"):
        InMemoryDataModule(x, y, num_classes=3).setup()


def test_nonfinite_drop_leaves_the_rows_out_and_reports_the_count():
    x, y = _regression()
    x[3, 0], y[40] = np.nan, np.inf
    dm = InMemoryDataModule(x, y, task="regression", nonfinite="drop")
    with pytest.warns(UserWarning, match=r"dropped 2 of 60 rows holding NaN or inf .*rows \[3, 40\]"):
        dm.setup()
    assert dm.dropped_nonfinite.tolist() == [3, 40]
    assert sum(len(v) for v in dm.split_indices.values()) == 58
    assert np.isfinite(dm.raw_x).all() and np.isfinite(dm.raw_y).all()
    assert np.isfinite(dm.scaler.mean_).all()
    with pytest.raises(ValueError, match="data.nonfinite must be one of"):
        InMemoryDataModule(x, y, task="regression", nonfinite="ignore")


def _edit(path, line: int, column: str, value: str, out):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    out.write_text("\n".join(lines) + "\n")
    return out


def test_a_bad_cell_in_a_numeric_column_is_an_error_even_in_a_test_row(tmp_path):
    path = write_csv(tmp_path / "t.csv", n=60)
    train = CSVDataModule(str(path), target="label")._train_rows()
    test_row = int(np.setdiff1d(np.arange(60), train)[0])  # a row the training split never sees
    bad = _edit(path, test_row + 2, "income", "12.5k", tmp_path / "bad.csv")
    with pytest.raises(ValueError, match=rf"column 'income' is numeric in the training rows but 1 cells are not numbers \(line {test_row + 2}: '12.5k'\)"):
        CSVDataModule(str(bad), target="label")
    with pytest.raises(ValueError, match=rf"column 'income' is declared numeric .*line {test_row + 2}: '12.5k'"):
        CSVDataModule(str(bad), target="label", numeric=["age", "income"])
    # Declared types win: listed as categorical, the column is read as categories without complaint.
    dm = CSVDataModule(str(bad), target="label", numeric=["age"], categorical=["income", "color"])
    assert dm.categorical == ["income", "color"]
    # A bad cell in a training row: still an error, not a categorical column with one value per row.
    bad = _edit(path, int(train[0]) + 2, "age", "forty", tmp_path / "bad2.csv")
    with pytest.raises(ValueError, match=rf"column 'age' is numeric in the training rows but 1 cells are not numbers \(line {int(train[0]) + 2}: 'forty'\)"):
        CSVDataModule(str(bad), target="label")


def test_column_types_come_from_the_training_rows_only(tmp_path):
    path = write_csv(tmp_path / "t.csv", n=60)
    dm = CSVDataModule(str(path), target="label", group_column="person", time_column="day")
    assert dm.numeric == ["age", "income"] and dm.categorical == ["color", "city"]
    # A column that is text in every training row and numbers in the held-out rows stays categorical.
    train = set(dm._train_rows().tolist())
    lines = path.read_text().splitlines()
    for i in range(60):
        cells = lines[i + 1].split(",")
        cells[2] = "red" if i in train else str(i)
        lines[i + 1] = ",".join(cells)
    (tmp_path / "mixed.csv").write_text("\n".join(lines) + "\n")
    dm = CSVDataModule(str(tmp_path / "mixed.csv"), target="label", group_column="person", time_column="day")
    assert "color" in dm.categorical


@pytest.mark.parametrize("column", ["label", "age"])
def test_inf_in_a_regression_csv_is_refused(tmp_path, column):
    path = write_csv(tmp_path / "t.csv", n=60, regression=True)
    bad = _edit(path, 9, column, "inf", tmp_path / "bad.csv")
    with pytest.raises(ValueError, match=rf"column '{column}' has 1 infinite values \(line 9: 'inf'\)"):
        CSVDataModule(str(bad), target="label", task="regression")
    with pytest.warns(UserWarning, match=r"dropped 1 of 60 rows .*lines \[9\]"):
        dm = CSVDataModule(str(bad), target="label", task="regression", nonfinite="drop")
    assert dm.dropped_lines == [9]
    dm.setup()
    assert sum(len(v) for v in dm.split_indices.values()) == 59 and np.isfinite(dm.raw_x).all()


def test_missing_cells_can_be_dropped_and_keep_their_line_numbers(tmp_path):
    path = write_csv(tmp_path / "t.csv", n=60)
    bad = _edit(path, 5, "income", "", tmp_path / "bad.csv")
    bad = _edit(bad, 12, "age", "-inf", bad)
    bad = _edit(bad, 20, "age", "12.5k", bad)
    with pytest.warns(UserWarning, match=r"dropped 2 of 60 rows .*lines \[5, 12\]"):
        with pytest.raises(ValueError, match=r"1 cells are not numbers \(line 20: '12.5k'\)"):  # line numbers survive the drop
            CSVDataModule(str(bad), target="label", nonfinite="drop")


def test_a_categorical_column_with_a_value_per_row_is_warned_about(tmp_path):
    path = write_csv(tmp_path / "t.csv", n=60)
    lines = path.read_text().splitlines()
    lines = [lines[0] + ",uid"] + [ln + f",u{i:03d}" for i, ln in enumerate(lines[1:])]
    (tmp_path / "id.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"categorical column 'uid' has a different value in each of the \d+ training rows"):
        CSVDataModule(str(tmp_path / "id.csv"), target="label", group_column="person", time_column="day")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CSVDataModule(str(path), target="label", group_column="person", time_column="day")


def test_timeseries_csv_nonfinite_refused_or_windows_dropped(tmp_path):
    s = np.sin(np.arange(200) / 5.0)
    rows = [f"{v:.5f}" for v in s]
    rows[50], rows[120] = "NA", "inf"
    (tmp_path / "s.csv").write_text("y\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"infinite values on lines \[52, 122\]"):
        TimeSeriesDataModule(csv=str(tmp_path / "s.csv"), column="y", window=10).setup()
    dm = TimeSeriesDataModule(csv=str(tmp_path / "s.csv"), column="y", window=10, nonfinite="drop")
    with pytest.warns(UserWarning, match=r"dropped 22 windows touching the 2 NaN or inf values"):
        dm.setup()
    assert np.isfinite(dm.raw_x).all() and np.isfinite(dm.raw_y).all() and np.isfinite(dm.scaler.mean_).all()


# --------------------------------------------------------------------------- the 16 bad inputs
# Each raises, before any training step, an exception whose message is one line naming the value.


def _csv_text(tmp_path, text: str, name: str = "t.csv") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _edited_csv(tmp_path, line: int, column: str, value: str, regression: bool = False) -> str:
    path = write_csv(tmp_path / "base.csv", n=60, regression=regression)
    return str(_edit(path, line, column, value, tmp_path / "bad.csv"))


def _nan_inputs(tmp_path):
    x, y = _regression()
    x[3, 2] = np.nan
    InMemoryDataModule(x, y, task="regression").setup()


def _corrupt_image(tmp_path):
    from datamodules import ImageFolderDataModule
    from tests._data_factories import write_image_folder

    root = write_image_folder(tmp_path / "imgs", per_class=4)
    (root / "cat" / "broken.png").write_bytes(b"not a png at all")
    ImageFolderDataModule(str(root), image_size=8).setup()


def _empty_class_folder(tmp_path):
    from datamodules import ImageFolderDataModule
    from tests._data_factories import write_image_folder

    root = write_image_folder(tmp_path / "imgs", per_class=4)
    (root / "zebra").mkdir()
    ImageFolderDataModule(str(root), image_size=8)


def _checkpoint_of_other_shape(tmp_path):
    import torch

    from zoo.runs import check_checkpoint_fits
    from zoo.tasks import ClassificationTask

    small = ClassificationTask(model="mlp", num_classes=10, input_shape=[1, 8, 8])
    path = tmp_path / "digits.ckpt"
    torch.save({"state_dict": small.state_dict(), "hyper_parameters": dict(small.hparams)}, path)
    check_checkpoint_fits(ClassificationTask(model="mlp", num_classes=10, input_shape=[1, 28, 28]), str(path))


def _wrong_model_name(tmp_path):
    from zoo.tasks import ClassificationTask

    ClassificationTask(model="lenet6", num_classes=10, input_shape=[1, 8, 8])


def _one_sample_class(tmp_path):
    CSVDataModule(_edited_csv(tmp_path, 6, "label", "9"), target="label")


def _missing_image_root(tmp_path):
    from datamodules import ImageFolderDataModule

    ImageFolderDataModule(str(tmp_path / "no_photos"))


BAD_INPUTS = {
    # name: (make it fail, exception type, a value the message must name)
    "nan_in_inputs": (_nan_inputs, ValueError, "rows [3]"),
    "missing_target_column": (lambda t: CSVDataModule(str(write_csv(t / "t.csv", n=30)), target="price"), KeyError, "'price'"),
    "empty_file": (lambda t: CSVDataModule(_csv_text(t, ""), target="label"), ValueError, "is empty"),
    "header_only": (lambda t: CSVDataModule(_csv_text(t, "a,b,label\n"), target="label"), ValueError, "no data rows"),
    "one_row_csv": (lambda t: CSVDataModule(_csv_text(t, "a,b,label\n1,2,0\n"), target="label"), ValueError, "1 row"),
    "class_with_one_sample": (_one_sample_class, ValueError, "class '9' has 1 row"),
    "corrupt_image": (_corrupt_image, ValueError, "broken.png"),
    "empty_class_folder": (_empty_class_folder, ValueError, "zebra"),
    "28x28_into_8x8_checkpoint": (_checkpoint_of_other_shape, ValueError, "input_shape=[1, 8, 8] (this run: [1, 28, 28])"),
    "wrong_model_name": (_wrong_model_name, KeyError, "'lenet6'"),
    "missing_csv_file": (lambda t: CSVDataModule(str(t / "nope.csv"), target="label"), FileNotFoundError, "nope.csv"),
    "text_in_numeric_column": (lambda t: CSVDataModule(_edited_csv(t, 9, "income", "12.5k"), target="label"), ValueError, "line 9: '12.5k'"),
    "inf_in_regression_target": (
        lambda t: CSVDataModule(_edited_csv(t, 9, "label", "inf", regression=True), target="label", task="regression"),
        ValueError, "line 9: 'inf'",
    ),
    "label_out_of_range": (lambda t: CSVDataModule(_edited_csv(t, 10, "label", "7"), target="label", num_classes=3), ValueError, "have [7]"),
    "missing_value": (lambda t: CSVDataModule(_edited_csv(t, 5, "age", "NA"), target="label"), ValueError, "lines [5]"),
    "missing_image_folder": (_missing_image_root, FileNotFoundError, "no_photos"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_naming_the_value(tmp_path, case):
    make, exc, value = BAD_INPUTS[case]
    with pytest.raises(exc) as e:
        make(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg.strip(), msg
    assert value in msg, msg


@pytest.mark.parametrize("value", ["inf", "1.5"])
def test_numeric_class_labels_must_be_whole_and_finite(tmp_path, value):
    bad = _edited_csv(tmp_path, 7, "label", value)
    with pytest.raises(ValueError, match=rf"column 'label' holds class labels, but 1 are not whole numbers \(line 7: '{value}'\)"):
        CSVDataModule(bad, target="label")
