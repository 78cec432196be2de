"""GAN and DCGAN: Radford et al.'s architecture rules, the adversarial step (D on detached fakes, the
non-saturating G loss, clipping under manual optimisation), checkpoint/resume of both optimizers,
bf16 on CPU, the offline sample-quality metrics and the one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn as nn

import cli
import zoo
from datamodules import DigitsDataModule
from zoo.tasks import GANTask
from zoo.tasks import gan_metrics as gm

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- architectures


def _leaf_order(model: nn.Module, *args) -> list[nn.Module]:
    """Leaf modules in the order the forward pass runs them."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in model.modules() if not list(m.children())]
    model(*args)
    for h in hooks:
        h.remove()
    return order


WEIGHTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@pytest.mark.parametrize("family", ["gan", "dcgan"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_radford_batch_norm_rule_and_sizes_follow_the_data(family, shape):
    """No batch norm on the generator's output layer nor on the discriminator's input layer (Radford et
    al. section 3); the generator's images have the data's shape; DCGAN has BN elsewhere."""
    g = zoo.create_model(f"{family}_generator", output_shape=shape)
    d = zoo.create_model(f"{family}_discriminator", input_shape=shape)
    z = torch.randn(4, g.latent_dim)
    assert g(z).shape == (4, *shape)
    assert d(g(z)).shape == (4, 1)
    g_order = _leaf_order(g, z)
    last_weighted = max(i for i, m in enumerate(g_order) if isinstance(m, WEIGHTED))
    assert not any(isinstance(m, NORMS) for m in g_order[last_weighted:]), "batch norm after the generator's output layer"
    assert isinstance(g_order[-1], nn.Tanh)
    d_order = _leaf_order(d, torch.randn(4, *shape))
    weighted = [i for i, m in enumerate(d_order) if isinstance(m, WEIGHTED) or type(m).__name__ == "Maxout"]
    assert not any(isinstance(m, NORMS) for m in d_order[: weighted[1]]), "batch norm on the discriminator's input layer"
    if family == "dcgan":
        assert any(isinstance(m, NORMS) for m in g_order) and any(isinstance(m, NORMS) for m in d_order)
        assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in d_order), "strided convolutions, not pooling"
        assert any(isinstance(m, nn.LeakyReLU) for m in d_order) and any(isinstance(m, nn.ReLU) for m in g_order)
        w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, WEIGHTED)])
        assert abs(float(w.std()) - 0.02) < 0.002  # N(0, 0.02) init


def test_conditional_pair_uses_the_labels():
    g = zoo.create_model("dcgan_generator", cond_classes=10).eval()
    z = torch.randn(1, 100).repeat(2, 1)
    out = g(z, torch.tensor([1, 7]))
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="needs labels y"):
        g(z)


# --------------------------------------------------------------------------- the adversarial step


def test_generator_loss_is_non_saturating():
    task = GANTask(model="gan", input_shape=[1, 8, 8], pixel_range=[0, 16])
    logits = torch.full((8,), -10.0, requires_grad=True)  # D rejects every fake with confidence
    task.generator_loss(logits).backward()
    assert torch.allclose(logits.grad, torch.full((8,), -1 / 8), rtol=1e-3)  # log(1 - D) would give ~5e-6
    assert float(task.generator_loss(torch.zeros(4))) == pytest.approx(float(torch.log(torch.tensor(2.0))))


def _graph_params(loss: torch.Tensor) -> set[int]:
    """ids of the leaf tensors (parameters) the loss back-propagates into."""
    found, seen, stack = set(), set(), [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            found.add(id(fn.variable))
        stack.extend(f for f, _ in fn.next_functions)
    return found


def _trainer(tmp_path, **kw) -> pl.Trainer:
    kw = {"max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 0, "logger": False, "enable_checkpointing": False,
          "enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu", "default_root_dir": tmp_path, **kw}
    return pl.Trainer(**kw)


def test_discriminator_steps_on_detached_fakes_and_gradients_are_clipped(tmp_path, monkeypatch):
    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=32)
    task = GANTask(model="dcgan", input_shape=[1, 8, 8], gradient_clip_val=1e-3)
    losses, norms = [], {}
    real_backward = task.manual_backward
    monkeypatch.setattr(task, "manual_backward", lambda loss, *a, **k: (losses.append(loss), real_backward(loss, *a, **k)))

    class Norms(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads = [p.grad.norm() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            norms.setdefault(id(optimizer.param_groups[0]["params"][0]), []).append(float(torch.stack(grads).norm()))

    _trainer(tmp_path, limit_train_batches=2, callbacks=[Norms()]).fit(task, datamodule=dm)
    g_params = {id(p) for p in task.generator.parameters()}
    d_params = {id(p) for p in task.discriminator.parameters()}
    assert len(losses) == 4  # D, G, D, G
    for d_loss, g_loss in zip(losses[::2], losses[1::2]):
        assert _graph_params(d_loss) == d_params  # fakes detached: D's loss never reaches G
        assert _graph_params(g_loss) == g_params  # D frozen (toggled) during G's step
    assert len(norms) == 2 and all(len(v) == 2 for v in norms.values())
    assert max(max(v) for v in norms.values()) <= 1e-3 * 1.01
    m = task.trainer.callback_metrics
    for key in ("train/d_loss", "train/g_loss", "train/d_x", "train/d_g_z"):
        assert torch.isfinite(m[key]), key
    assert 0 < float(m["train/d_x"]) < 1 and 0 < float(m["train/d_g_z"]) < 1


def test_checkpoint_resumes_both_optimizers(tmp_path):
    torch.manual_seed(0)
    ckpt_cb = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    task = GANTask(model="gan", input_shape=[1, 8, 8], label_smoothing=0.1)
    _trainer(tmp_path, enable_checkpointing=True, callbacks=[ckpt_cb]).fit(task, datamodule=DigitsDataModule(batch_size=32))
    ck = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)
    states = ck["optimizer_states"]
    assert len(states) == 2
    counts = [len(list(task.discriminator.parameters())), len(list(task.generator.parameters()))]  # order: D, G
    for st, n in zip(states, counts):
        assert len(st["state"]) == n and all(float(s["step"]) == 3 for s in st["state"].values())
    assert ck["hyper_parameters"]["pixel_range"] == [0.0, 16.0]

    seen = {}

    class AtStart(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["steps"] = [float(next(iter(o.state.values()))["step"]) for o in pl_module.optimizers()]
            seen["same_weights"] = all(torch.equal(v, ck["state_dict"][k]) for k, v in pl_module.state_dict().items())

    resumed = GANTask(model="gan", input_shape=[1, 8, 8], label_smoothing=0.1)
    t = _trainer(tmp_path, max_epochs=2, callbacks=[AtStart()])
    t.fit(resumed, datamodule=DigitsDataModule(batch_size=32), ckpt_path=tmp_path / "ck" / "last.ckpt")
    assert seen == {"steps": [3.0, 3.0], "same_weights": True}
    assert t.global_step == 12  # 2 epochs x 3 batches x 2 optimizers
    assert [float(next(iter(o.state.values()))["step"]) for o in resumed.optimizers()] == [6.0, 6.0]
    loaded = GANTask.load_from_checkpoint(tmp_path / "ck" / "last.ckpt")
    imgs = loaded.eval().sample(5, seed=0)  # raw scale, raw shape, no DataModule
    assert imgs.shape == (5, 1, 8, 8) and 0 <= float(imgs.min()) and float(imgs.max()) <= 16


def test_bf16_mixed_trains_on_cpu(tmp_path):
    torch.manual_seed(0)
    task = GANTask(model="gan", input_shape=[1, 8, 8], gradient_clip_val=1.0)
    before = [p.detach().clone() for p in task.generator.parameters()]
    _trainer(tmp_path, precision="bf16-mixed", limit_train_batches=2).fit(task, datamodule=DigitsDataModule(batch_size=32))
    m = task.trainer.callback_metrics
    assert torch.isfinite(m["train/d_loss"]) and torch.isfinite(m["train/g_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, task.generator.parameters()))


# ------------------------------------------------------------------------------ sample quality


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory):
    """A quick classifier on the digits' training rows (3 epochs) and the raw train/test rows."""
    dm = DigitsDataModule()
    dm.setup("fit")
    idx = dm.split_indices
    x, y = torch.as_tensor(dm.raw_x), torch.as_tensor(dm.raw_y)
    path = tmp_path_factory.mktemp("fx") / "clf.ckpt"
    gm.train_classifier(path, x[idx["train"]], y[idx["train"]], (1, 8, 8), 10, dm.preprocessing, epochs=3)
    return gm.load_classifier(path, (1, 8, 8), 10), x[idx["train"]], x[idx["test"]], path


def test_sample_metrics_rank_real_data_above_noise(digits_classifier):
    clf, train, test, _ = digits_classifier
    torch.manual_seed(0)
    noise = torch.rand(len(train), 1, 8, 8) * 16
    blank = torch.zeros(200, 1, 8, 8)
    floor, bad = gm.frechet_distance(clf, test, train), gm.frechet_distance(clf, test, noise)
    assert 0 <= floor < bad / 10
    assert gm.kernel_distance(clf, test, train) < gm.kernel_distance(clf, test, noise)
    cover = gm.class_coverage(clf, test, 10)
    assert float(cover.sum()) == pytest.approx(1.0) and float(cover.min()) > 0.05
    assert float(gm.class_coverage(clf, blank, 10).max()) == 1.0  # one image repeated: one class
    assert gm.inception_score(clf, test) > 3 > gm.inception_score(clf, blank) == pytest.approx(1.0, abs=1e-3)
    same = test[:1].expand(5, 4, 1, 8, 8)
    assert gm.class_changes(clf, same).tolist() == [0.0] * 5
    changes = gm.class_changes(clf, torch.stack([test[:5], test[5:10]], 1))
    preds = gm.classify(clf, test[:10]).argmax(-1)
    assert changes.tolist() == (preds[:5] != preds[5:]).float().tolist()


def test_feature_extractor_of_another_shape_is_refused_before_training(tmp_path, capfd):
    bad = tmp_path / "small.ckpt"
    gm.train_classifier(bad, torch.rand(20, 1, 10, 10), torch.arange(20) % 2, (1, 10, 10), 2, None, epochs=1)
    with pytest.raises(SystemExit) as e:
        cli.main(["fit", "--config", str(ROOT / "configs/dcgan_digits.yaml"), "--model.init_args.feature_extractor", str(bad),
                  "--trainer.enable_progress_bar", "false"])
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert e.value.code == 2
    assert any(ln.startswith("error: ") and "takes samples of shape (1, 10, 10) but the data yields (1, 8, 8)" in ln for ln in err), err
    assert [p for p in tmp_path.rglob("*.ckpt") if p != bad] == []


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model.init_args.latent_dim", "0"], "model.latent_dim must be >= 1, got 0"),
        (["--data.init_args.resize", "7"], "cannot produce 7x7 images"),
        (["--model.init_args.model", "lenet5"], "GANTask trains a generator/discriminator pair"),
    ],
)
def test_bad_gan_config_gives_one_line(args, expected, capfd):
    with pytest.raises(SystemExit) as e:
        cli.main(["fit", "--config", str(ROOT / "configs/dcgan_digits.yaml"), "--trainer.fast_dev_run", "true", *args])
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert e.value.code == 2 and len(err) <= 3, err
    assert any(ln.startswith("error: ") and expected in ln for ln in err), err


def test_interpolation_paths_run_between_the_end_codes():
    from zoo.tasks.gan import slerp

    torch.manual_seed(0)
    a, b = torch.randn(2, 100)
    b = b / b.norm() * a.norm()
    path = slerp(a, b, torch.linspace(0, 1, 5))  # (5, 100)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path.norm(dim=1), a.norm().expand(5))  # equal norms stay on the sphere
    assert float(((a + b) / 2).norm()) < float(path[2].norm())  # where the straight line shrinks
    task = GANTask(model="dcgan", input_shape=[1, 8, 8], pixel_range=[0, 16]).eval()
    for spherical in (False, True):
        imgs = task.interpolation_paths(3, 6, seed=0, spherical=spherical)
        assert imgs.shape == (3, 6, 1, 8, 8) and 0 <= float(imgs.min()) and float(imgs.max()) <= 16
        gen = torch.Generator().manual_seed(0)
        ends = torch.randn(2, 3, 100, generator=gen)  # the same codes interpolation_paths draws
        with torch.no_grad():
            torch.testing.assert_close(imgs[:, 0], task(ends[0]), atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(imgs[:, -1], task(ends[1]), atol=1e-4, rtol=1e-4)
