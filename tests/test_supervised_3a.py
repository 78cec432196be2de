"""Linear models, the perceptron rule, the tabular and XOR DataModules and their tasks."""

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression

import zoo
from cli import ZooCLI
from datamodules import ArrayDataModule, BreastCancerDataModule, DiabetesDataModule, IrisDataModule, XORDataModule
from datamodules.sklearn_tabular import TargetScalingMixin
from zoo.linear import least_squares
from zoo.tasks import BinaryClassificationTask, PerceptronTask, RegressionTask

ROOT = Path(__file__).resolve().parents[1]


def _trainer(**kw):
    kw.setdefault("logger", False)
    kw.setdefault("enable_progress_bar", False)
    kw.setdefault("enable_model_summary", False)
    kw.setdefault("enable_checkpointing", False)
    return pl.Trainer(**kw)


def _link(task_cls, dm, **kw):
    return task_cls(num_classes=dm.num_classes, input_shape=dm.input_shape, preprocessing=dm.preprocessing, **kw)


def test_closed_form_equals_sklearn_linear_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = x @ rng.normal(size=(5, 2)) + 0.1 * rng.normal(size=(60, 2)) + 3.0
    w, b = least_squares(torch.from_numpy(x), torch.from_numpy(y))
    sk = LinearRegression().fit(x, y)
    np.testing.assert_allclose(w.numpy(), sk.coef_, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(b.numpy(), sk.intercept_, rtol=1e-8, atol=1e-8)
    # and the model loads it: its predictions are sklearn's
    model = zoo.create_model("linear_regression", input_shape=(5,), num_classes=2).double()
    model.fit_closed_form(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(model(torch.from_numpy(x)).detach().numpy(), sk.predict(x), atol=1e-8)


def test_perceptron_rule_matches_hand_computed_updates():
    p = zoo.create_model("perceptron", input_shape=(2,), zero_init=True)
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0], [1.0, 2.0]])
    y = torch.tensor([0, 1, 0])
    wrong = p.perceptron_update(x, y, lr=0.5)
    # sample 1: score 0 -> y_hat 1 (step is 1 at 0), y 0: w = 0 + 0.5*(0-1)*[1, 2] = [-0.5, -1], b = -0.5
    # sample 2: score -1.5 + 1 - 0.5 = -1 -> y_hat 0, y 1: w = [-0.5, -1] + 0.5*[3, -1] = [1, -1.5], b = 0
    # sample 3: score 1 - 3 + 0 = -2 -> y_hat 0 = y: no change
    torch.testing.assert_close(p.head.weight, torch.tensor([[1.0, -1.5]]))
    torch.testing.assert_close(p.head.bias, torch.tensor([0.0]))
    assert wrong.tolist() == [True, True, False]
    assert p.predict(x).squeeze(-1).tolist() == [0.0, 1.0, 0.0]


def test_perceptron_reaches_training_accuracy_one_on_setosa_and_fails_xor_where_mlp_succeeds():
    pl.seed_everything(0)
    iris = IrisDataModule(setosa_vs_rest=True)
    task = _link(PerceptronTask, iris, model="perceptron", model_kwargs={"zero_init": True}, lr=1.0)
    _trainer(max_epochs=5).fit(task, iris)
    iris_x, iris_y = iris.datasets["train"].tensors
    assert (task.net.predict(task.preprocess(iris_x)).squeeze(-1) == iris_y).all()  # training accuracy 1.0

    xor = XORDataModule(copies=40)
    perc = _link(PerceptronTask, xor, model="perceptron", model_kwargs={"zero_init": True}, lr=1.0)
    trainer = _trainer(max_epochs=10)
    trainer.fit(perc, xor)
    assert trainer.test(perc, xor, verbose=False)[0]["test/acc"] <= 0.75

    pl.seed_everything(0)
    mlp = _link(BinaryClassificationTask, xor, model="mlp", model_kwargs={"hidden": [8], "act": "tanh"}, lr=0.05)
    trainer = _trainer(max_epochs=40)
    trainer.fit(mlp, xor)
    assert trainer.test(mlp, xor, verbose=False)[0]["test/acc"] == 1.0


def test_xor_split_holds_every_corner_in_every_split():
    dm = XORDataModule(copies=20, noise=0.1)
    dm.setup("fit")
    for key in ("train", "val", "test"):
        x, _ = dm.datasets[key].tensors
        corners = (x > 0.5).long()  # noise 0.1 keeps each point by its corner
        counts = torch.bincount(corners[:, 0] * 2 + corners[:, 1], minlength=4)
        assert (counts > 0).all() and counts.max() == counts.min(), (key, counts)


def test_logistic_regression_learns_breast_cancer():
    pl.seed_everything(0)
    dm = BreastCancerDataModule(batch_size=32)
    task = _link(BinaryClassificationTask, dm, model="logistic_regression", lr=0.01)
    assert task.net.num_classes == 1  # one logit for two classes
    trainer = _trainer(max_epochs=3)
    trainer.fit(task, dm)
    assert trainer.test(task, dm, verbose=False)[0]["test/acc"] > 0.9


def test_regression_checkpoint_predicts_raw_units_from_raw_rows(tmp_path):
    pl.seed_everything(0)
    dm = DiabetesDataModule(batch_size=512)  # full batch: plain gradient descent
    task = _link(RegressionTask, dm, model="linear_regression", optimizer="sgd", lr=0.1)
    trainer = _trainer(max_epochs=120, default_root_dir=tmp_path, num_sanity_val_steps=0, check_val_every_n_epoch=200)
    trainer.fit(task, dm)
    res = trainer.test(task, dm, verbose=False)[0]
    # target statistics come from the training rows only
    ytr = dm.datasets["train"].tensors[1].numpy()
    assert task.hparams.preprocessing["target"]["mean"] == pytest.approx([ytr.mean()], rel=1e-5)
    # gradient descent gets near the closed-form fit on the same training rows
    xtr, _ = dm.datasets["train"].tensors
    xte, yte = dm.datasets["test"].tensors
    w, b = least_squares(task.preprocess(xtr).double(), torch.from_numpy(ytr).double())
    pred_cf = (task.preprocess(xte).double() @ w.T + b).squeeze(-1)
    r2_cf = 1 - ((pred_cf - yte) ** 2).sum() / ((yte - yte.mean()) ** 2).sum()
    assert res["test/r2"] > float(r2_cf) - 0.02
    ckpt = tmp_path / "reg.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = RegressionTask.load_from_checkpoint(ckpt, weights_only=True).eval()
    raw_x, raw_y = dm.load_arrays()
    x = torch.from_numpy(raw_x[:40])  # raw rows, original units, no DataModule
    task.eval()
    with torch.no_grad():
        pred = loaded(x)
        torch.testing.assert_close(pred, task(x))
    assert pred.shape == (40, 1)
    # raw target units (disease progression, 25..346), not standardised ones
    assert 100 < pred.mean() < 200
    assert float(torch.mean(torch.abs(pred.squeeze(-1) - torch.from_numpy(raw_y[:40])))) < 70


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="hidden widths must be positive"):
        ZooCLI(args=["--config", str(ROOT / "configs/mlp_xor.yaml"), "--model.init_args.model_kwargs", "{hidden: [-8]}"], run=False)
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        ZooCLI(args=["--config", str(ROOT / "configs/two_layer_net_digits.yaml"), "--model.init_args.model_kwargs", "{act: swishy}"], run=False)
    with pytest.raises(ValueError, match="data.copies"):
        XORDataModule(copies=2)
    with pytest.raises(ValueError, match="model.num_classes must be 2"):
        BinaryClassificationTask(num_classes=3)
    with pytest.raises(ValueError, match="model.num_classes is the number of regression targets"):
        RegressionTask(num_classes=0)
    with pytest.raises(ValueError, match="model.model: 'mlp' has no perceptron_update"):
        PerceptronTask(model="mlp", num_classes=2, input_shape=(4,))
    with pytest.raises(ValueError, match="model.scheduler: PerceptronTask has no optimizer"):
        PerceptronTask(model="perceptron", num_classes=2, input_shape=(4,), scheduler="cosine")


def test_cli_links_tabular_data_into_tasks():
    c = ZooCLI(args=["--config", str(ROOT / "configs/linear_regression_diabetes.yaml")], run=False)
    assert isinstance(c.model, RegressionTask) and c.model.hparams.num_classes == 1
    assert c.model.hparams.preprocessing["axis"] == -1 and "target" in c.model.hparams.preprocessing
    c = ZooCLI(args=["--config", str(ROOT / "configs/perceptron_iris.yaml")], run=False)
    assert isinstance(c.model, PerceptronTask) and c.datamodule.num_classes == 2


class _TwoTargets(TargetScalingMixin, ArrayDataModule):
    """Generated multi-output regression: two targets in very different units."""

    num_classes = 2  # output width = number of targets
    input_shape = (3,)
    task_type = "regression"
    scale_axis = -1

    def load_arrays(self):
        rng = np.random.default_rng(0)
        x = rng.normal(2.0, 3.0, size=(300, 3)).astype(np.float32)
        y = np.stack([100 + 40 * x[:, 0] - 10 * x[:, 1], -0.5 * x[:, 2] + 0.01], axis=1).astype(np.float32)
        return x, y  # (300, 3), (300, 2)


def test_multi_output_regression_uses_num_classes_as_width():
    pl.seed_everything(0)
    dm = _TwoTargets(batch_size=512)
    task = _link(RegressionTask, dm, model="linear_regression", optimizer="sgd", lr=0.1)
    trainer = _trainer(max_epochs=150, num_sanity_val_steps=0, check_val_every_n_epoch=1000)
    trainer.fit(task, dm)
    assert task.net.num_classes == 2 and len(task.hparams.preprocessing["target"]["mean"]) == 2
    assert trainer.test(task, dm, verbose=False)[0]["test/r2"] > 0.99  # noise-free linear targets
    x, y = dm.datasets["test"].tensors
    with torch.no_grad():
        pred = task.eval()(x)  # (N, 2) raw units
    assert pred.shape == (len(x), 2)
    torch.testing.assert_close(pred, y, atol=0.5, rtol=0.02)
