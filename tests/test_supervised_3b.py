"""SimpleConvNet, VGG, ResNet, RNN/LSTM/GRU; SequenceRegressionTask (target scaling, TBPTT); the
sequence and time-series DataModules (time-ordered split, training-only statistics)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer, seed_everything

import zoo
from datamodules import AddingProblemDataModule, SequentialDigitsDataModule, TimeSeriesDataModule
from datamodules.sequences import adding_problem
from zoo.resnet import ZeroPadShortcut
from zoo.tasks import ClassificationTask, SequenceRegressionTask


def _trainer(**kw):
    kw.setdefault("max_epochs", 1)
    return Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **kw)


# ------------------------------------------------------------------------------------- models


def test_shapes_sizes_and_sequence_length():
    x = torch.randn(3, 1, 8, 8)
    assert zoo.create_model("simple_convnet", padding=2)(x).shape == (3, 10)
    assert zoo.create_model("simple_convnet", padding=2, num_classes=0)(x).shape == (3, 100)
    # VGG and ResNet pool globally: any size that survives the poolings.
    assert zoo.create_model("vgg_small")(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    assert zoo.create_model("vgg11", input_shape=(1, 64, 64), num_classes=3)(torch.randn(2, 1, 64, 64)).shape == (2, 3)
    assert zoo.create_model("resnet20", input_shape=(1, 8, 8))(x).shape == (3, 10)
    # Recurrent models take any length T, with F fixed.
    m = zoo.create_model("gru", input_shape=(50, 2), num_classes=1)
    assert m(torch.randn(4, 50, 2)).shape == m(torch.randn(4, 7, 2)).shape == (4, 1)


def test_resnet_option_a_vs_b_shortcuts():
    a = zoo.create_model("resnet20", shortcut="A")
    b = zoo.create_model("resnet20", shortcut="B")
    down = a.stages[1][0]  # first block of stage 2: 16 -> 32 channels, stride 2
    assert isinstance(down.shortcut, ZeroPadShortcut)
    assert sum(p.numel() for p in down.shortcut.parameters()) == 0
    assert isinstance(b.stages[1][0].shortcut, torch.nn.Sequential)
    x = torch.randn(2, 16, 32, 32)
    ya = down.shortcut(x)
    assert ya.shape == b.stages[1][0].shortcut(x).shape == (2, 32, 16, 16)
    # Option A: the first 16 channels are the subsampled input, the new 16 are zeros.
    torch.testing.assert_close(ya[:, :16], x[:, :, ::2, ::2])
    assert ya[:, 16:].abs().sum() == 0
    # Two projections (stage 2 and 3 entries) with conv + BN are all B adds: 16*32 + 2*32 + 32*64 + 2*64.
    extra = sum(p.numel() for p in b.parameters()) - sum(p.numel() for p in a.parameters())
    assert extra == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    # ImageNet ResNet-50 ends with 2048 bottleneck channels.
    assert zoo.create_model("resnet50", num_classes=0).num_features == 2048


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="shortcut must be 'A'"):
        zoo.create_model("resnet20", shortcut="C")
    with pytest.raises(ValueError, match="unknown cfg 'vgg12'"):
        zoo.vgg.VGG(cfg="vgg12")
    with pytest.raises(ValueError, match="width_mult must be positive"):
        zoo.create_model("vgg_small", width_mult=-1)
    with pytest.raises(ValueError, match="too small for cfg 'vgg16'"):
        zoo.create_model("vgg16", input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="filters must be positive"):
        zoo.create_model("simple_convnet", filters=-30)
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        zoo.create_model("simple_convnet", act="swishy")
    with pytest.raises(ValueError, match="hidden_size and num_layers must be positive"):
        zoo.create_model("lstm", hidden_size=0)
    with pytest.raises(ValueError, match="data.window"):
        TimeSeriesDataModule(window=0)
    with pytest.raises(ValueError, match="data.dataset: unknown series 'moonspots'"):
        TimeSeriesDataModule(dataset="moonspots")
    with pytest.raises(ValueError, match="data.seq_len"):
        AddingProblemDataModule(seq_len=1)
    with pytest.raises(ValueError, match="model.tbptt_steps needs a recurrent model"):
        SequenceRegressionTask(model="mlp", input_shape=(4,), tbptt_steps=2)
    with pytest.raises(ValueError, match="model.tbptt_steps must be a positive"):
        SequenceRegressionTask(tbptt_steps=0)


def test_models_learn_a_little_on_tiny_data():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:128] / 16.0, dtype=torch.float32)  # (128, 8, 8)
    y = torch.tensor(d.target[:128])
    for name, inp in [("simple_convnet", x[:, None]), ("vgg_small", x[:, None]), ("resnet20", x[:, None]), ("lstm", x), ("gru", x)]:
        torch.manual_seed(0)
        shape = tuple(inp.shape[1:])
        kw = {"padding": 2} if name == "simple_convnet" else {}
        m = zoo.create_model(name, input_shape=shape, **kw)
        opt = torch.optim.Adam(m.parameters(), lr=1e-2 if name in ("lstm", "gru") else 3e-3)
        first = F.cross_entropy(m(inp), y).item()
        for _ in range(30):
            opt.zero_grad()
            loss = F.cross_entropy(m(inp), y)
            loss.backward()
            opt.step()
        m.eval()
        assert F.cross_entropy(m(inp), y).item() < 0.5 * first, name


# -------------------------------------------------------------------------------- data modules


def test_time_split_windows_never_cross_a_boundary_and_honour_the_gap():
    dm = TimeSeriesDataModule(dataset="sunspots", window=12, horizon=3, gap=5)
    dm.setup("fit")
    b, t = dm.part_bounds, dm.window_times
    for k in ("train", "val", "test"):
        lo, hi = b[k]
        assert t[k][:, 0].min() >= lo and t[k][:, 1].max() < hi, k  # inputs and targets inside the part
        assert len(t[k]) == hi - lo - 12 - 3 + 1
    assert t["train"][:, 1].max() + 5 <= t["val"][:, 0].min() - 1
    assert t["val"][:, 1].max() + 5 <= t["test"][:, 0].min() - 1
    assert b["test"][1] == 309  # the most recent years are the test part
    # The windows really hold the series: input = s[start:start+12], target = s[target time].
    import statsmodels.api as sm

    s = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
    x, y = dm.datasets["test"].tensors
    i = 7
    start, target = t["test"][i]
    np.testing.assert_allclose(x[i, :, 0].numpy(), s[start : start + 12], rtol=1e-6)
    assert y[i].item() == pytest.approx(s[target], rel=1e-6)


def test_scalers_fitted_on_the_training_part_only(tmp_path):
    rng = np.random.default_rng(0)
    s = np.cumsum(rng.normal(size=200)) + 50
    n_train = 200 - 30 - 30  # val_size = test_size = 0.15
    shifted = s.copy()
    shifted[n_train:] += 1000.0  # change every val and test value
    import pandas as pd

    specs = []
    for series, name in [(s, "a.csv"), (shifted, "b.csv")]:
        pd.DataFrame({"t": np.arange(200), "y": series}).to_csv(tmp_path / name, index=False)
        dm = TimeSeriesDataModule(csv=str(tmp_path / name), column="y", window=5)
        dm.setup("fit")
        specs.append(dm.preprocessing)
    assert specs[0] == specs[1]
    assert specs[0]["mean"][0] == pytest.approx(s[:n_train].mean())
    assert specs[0]["target"]["mean"] is not None
    with pytest.raises(ValueError, match="data.column: 'z' is not a column"):
        TimeSeriesDataModule(csv=str(tmp_path / "a.csv"), column="z").setup("fit")


def test_adding_problem_and_its_baseline():
    x, y = adding_problem(20000, 50, seed=1)
    assert x.shape == (20000, 50, 2)
    marks = x[..., 1]
    assert (marks[:, :25].sum(1) == 1).all() and (marks[:, 25:].sum(1) == 1).all()
    np.testing.assert_allclose(y, (x[..., 0] * marks).sum(1), rtol=1e-5)
    assert np.mean((y - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.006)
    a, b = AddingProblemDataModule(num_samples=100, seq_len=60), AddingProblemDataModule(num_samples=100, seq_len=60)
    a.setup(), b.setup()
    torch.testing.assert_close(a.datasets["test"].tensors[0], b.datasets["test"].tensors[0])  # seeded
    assert a.input_shape == (60, 2)


def test_sequential_digits_are_rows_of_the_images():
    from sklearn.datasets import load_digits

    dm = SequentialDigitsDataModule()
    dm.setup("fit")
    x, y = dm.datasets["train"].tensors
    imgs = load_digits().images
    i = int(dm.split_indices["train"][3])
    np.testing.assert_array_equal(x[3].numpy(), imgs[i])
    assert dm.preprocessing["axis"] == -1 and len(dm.preprocessing["mean"]) == 8


# ------------------------------------------------------------------------------------- the task


def _grads(task, x, y):
    task.zero_grad()
    task.training_step((x, y), 0).backward()
    return [p.grad.clone() for p in task.net.parameters()]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_tbptt_matches_full_bptt_when_the_chunk_covers_the_sequence(cell):
    x, y = adding_problem(16, 12, seed=0)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    tasks = {}
    for k in (None, 12, 50, 4):
        seed_everything(0)
        tasks[k] = SequenceRegressionTask(model=cell, input_shape=(12, 2), model_kwargs={"hidden_size": 8}, tbptt_steps=k)
    full = _grads(tasks[None], x, y)
    for k in (12, 50):
        for g, h in zip(full, _grads(tasks[k], x, y)):
            torch.testing.assert_close(g, h)
    # Shorter chunks: same prediction (the state is carried across chunks), truncated gradient.
    t4 = tasks[4]
    torch.testing.assert_close(t4._tbptt_output(x, 4), tasks[None].forward_scaled(x))
    assert any(not torch.allclose(g, h) for g, h in zip(full, _grads(t4, x, y)))


def test_tbptt_and_clipping_train_in_the_trainer():
    dm = AddingProblemDataModule(num_samples=256, seq_len=20, batch_size=32)
    task = SequenceRegressionTask(model="lstm", input_shape=(20, 2), model_kwargs={"hidden_size": 8}, tbptt_steps=5)
    _trainer(max_epochs=1, gradient_clip_val=0.5, limit_val_batches=2).fit(task, datamodule=dm)
    assert torch.isfinite(torch.stack([p.sum() for p in task.parameters()])).all()


def test_checkpoint_round_trip_predicts_in_data_units_on_raw_input(tmp_path):
    seed_everything(0)
    dm = AddingProblemDataModule(num_samples=400, seq_len=10, batch_size=32)
    task = SequenceRegressionTask(model="gru", input_shape=(10, 2), model_kwargs={"hidden_size": 16}, lr=0.01)
    trainer = _trainer(max_epochs=3)
    trainer.fit(task, datamodule=dm)
    res = trainer.test(task, datamodule=dm, verbose=False)[0]
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = SequenceRegressionTask.load_from_checkpoint(ckpt, weights_only=True).eval()
    spec = loaded.hparams.preprocessing
    assert spec["target"]["mean"][0] == pytest.approx(float(dm.datasets["train"].tensors[1].mean()), rel=1e-4)
    x, y = dm.datasets["test"].tensors  # raw sequences, raw targets
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), task(x))
        pred = loaded(x)[:, 0]
    # Data units: predictions live around the targets (mean ~1.0), and beat the constant 1.0 baseline.
    mse = float(((pred - y) ** 2).mean())
    assert mse == pytest.approx(res["test/mse"], rel=1e-4)
    assert abs(float(pred.mean()) - 1.0) < 0.2
    assert mse < float(((y - 1.0) ** 2).mean())


def test_classification_task_on_sequential_digits_checkpoint(tmp_path):
    seed_everything(0)
    dm = SequentialDigitsDataModule(batch_size=64)
    dm.setup("fit")
    task = ClassificationTask(model="gru", input_shape=(8, 8), preprocessing=dm.preprocessing, model_kwargs={"hidden_size": 32}, lr=0.01)
    trainer = _trainer(max_epochs=2)
    trainer.fit(task, datamodule=dm)
    acc = trainer.test(task, datamodule=dm, verbose=False)[0]["test/acc"]
    assert acc > 0.6
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    loaded = ClassificationTask.load_from_checkpoint(tmp_path / "c.ckpt", weights_only=True).eval()
    x, _ = dm.datasets["test"].tensors
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), task(x))
