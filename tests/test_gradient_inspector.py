"""GradientInspector: it diagnoses vanishing gradients and dead units, stays quiet on a healthy
network, and stops at a planted NaN before any checkpoint holds it."""

import csv
import warnings

import lightning.pytorch as pl
import pytest
import torch
from PIL import Image
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from callbacks import GradientInspector, NonFiniteGradientError
from datamodules import DigitsDataModule
from zoo.tasks import ClassificationTask


def _fit(model_kwargs, callbacks, max_epochs=2, logger=False, **task_kw):
    pl.seed_everything(0)
    dm = DigitsDataModule(batch_size=64)
    task = ClassificationTask(model="mlp", model_kwargs=model_kwargs, num_classes=10, input_shape=dm.input_shape,
                              preprocessing=dm.preprocessing, **task_kw)
    trainer = pl.Trainer(max_epochs=max_epochs, logger=logger, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
                         limit_val_batches=0, callbacks=callbacks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, dm)
    return trainer


def _kinds(inspector):
    return {(a["kind"], a["layer"]) for a in inspector.alerts}


def test_deep_sigmoid_mlp_reports_vanishing_gradients_in_the_first_layers():
    gi = GradientInspector(log_every_n_steps=5)
    _fit({"hidden": [32] * 10, "act": "sigmoid"}, [gi])
    vanishing = {layer for kind, layer in _kinds(gi) if kind == "vanishing"}
    # the first hidden layers vanish, the last ones near the loss do not
    assert {"net.features.1.0", "net.features.2.0", "net.features.3.0"} <= vanishing
    assert "net.head" not in vanishing and "net.features.10.0" not in vanishing
    m = gi.last_metrics
    assert m["grad/net.features.1.0"] < 1e-3 * m["grad/net.head"]
    # the global norm is the L2 norm of the layer norms
    layer = torch.tensor([v for k, v in m.items() if k.startswith("grad/") and k != "grad/global_norm"])
    assert m["grad/global_norm"] == pytest.approx(float(layer.norm()), rel=1e-4)


def test_relu_net_with_huge_learning_rate_reports_dead_units_and_healthy_one_reports_nothing():
    broken = GradientInspector(log_every_n_steps=5)
    _fit({"hidden": [64, 64]}, [broken], optimizer="sgd", lr=5.0)
    dead = {layer for kind, layer in _kinds(broken) if kind == "dead_units"}
    assert dead == {"net.features.1.1", "net.features.2.1"}
    assert broken.last_metrics["act/dead_frac/net.features.1.1"] > 0.5

    healthy = GradientInspector(log_every_n_steps=5)
    _fit({"hidden": [64, 64]}, [healthy], optimizer="adam", lr=1e-3)
    assert healthy.alerts == []
    assert healthy.last_metrics["act/dead_frac/net.features.1.1"] < 0.5
    # update-to-weight ratios are logged per layer, and small for a sane learning rate
    assert 0 < healthy.last_metrics["update_ratio/net.features.1.0"] < 0.05


class _PlantNaN(Callback):
    """Makes the output of one layer NaN from step k on."""

    def __init__(self, layer: str, k: int):
        self.layer, self.k = layer, k

    def on_fit_start(self, trainer, pl_module):
        mod = dict(pl_module.named_modules())[self.layer]
        mod.register_forward_hook(lambda m, i, o: o * float("nan") if trainer.global_step >= self.k and m.training else o)


def test_nan_planted_at_step_k_stops_at_k_naming_the_layer_and_no_checkpoint_is_non_finite(tmp_path):
    k = 7
    gi = GradientInspector(log_every_n_steps=50)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1, save_last=True)
    with pytest.raises(NonFiniteGradientError, match=rf"step {k}; first offending layer .*: net\.features\.2\.0"):
        _fit({"hidden": [32, 32, 32]}, [_PlantNaN("net.features.2.0", k), gi, ckpt], max_epochs=3)
    assert gi.alerts[-1] == {"step": k, "kind": "nonfinite", "layer": "net.features.2.0", "value": gi.alerts[-1]["value"]}
    files = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    assert files, "the steps before k were checkpointed"
    for f in files:
        state = torch.load(f, weights_only=True)
        assert state["global_step"] <= k
        assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()), f


def test_nan_in_weights_is_named_by_layer():
    class PlantWeight(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 3:
                with torch.no_grad():
                    pl_module.net.features[1][0].weight[0, 0] = float("inf")

    # The Inf weight sits behind a ReLU: the unit outputs 0 and every gradient stays finite, so the
    # per-step gradient check cannot see it; the parameter check at the epoch end names it.
    gi = GradientInspector()
    with pytest.raises(NonFiniteGradientError, match=r"non-finite parameter at step \d+; .*net\.features\.1\.0 \(non-finite parameters\)"):
        _fit({"hidden": [16, 16]}, [PlantWeight(), gi], max_epochs=3)
    assert gi.alerts[-1]["step"] == 19  # the end of the first epoch: 1,168 training digits in batches of 64


def test_logs_grouped_keys_to_any_logger_and_saves_gradient_flow_png(tmp_path):
    gi = GradientInspector(log_every_n_steps=10)
    trainer = _fit({"hidden": [16]}, [gi], max_epochs=2, logger=CSVLogger(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")))
    keys = set(rows[0])
    assert {"grad/global_norm", "grad/net.features.1.0", "update_ratio/net.head", "act/dead_frac/net.features.1.1"} <= keys
    steps = sorted({int(r["step"]) for r in rows if r.get("grad/global_norm")})
    assert steps == list(range(0, trainer.global_step, 10))
    pngs = sorted((tmp_path / "lightning_logs" / "version_0" / "gradient_flow").glob("*.png"))
    assert [p.name for p in pngs] == ["epoch_000.png", "epoch_001.png"]


class _ScaleWeights(Callback):
    """A bad initialisation: every Linear weight multiplied by ``k`` before training."""

    def __init__(self, k: float):
        self.k = k

    def on_fit_start(self, trainer, pl_module):
        with torch.no_grad():
            for m in pl_module.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.mul_(self.k)


def test_oversized_init_reports_exploding_gradients_and_saturated_tanh_units():
    # ReLU stack with every weight x8: the gradient grows several-fold per layer on the way back
    # (a tiny learning rate keeps the weights as they are, so the picture stays the same all epoch)
    relu = GradientInspector(log_every_n_steps=5, exploding_threshold=1e3)
    _fit({"hidden": [64] * 6}, [_ScaleWeights(8.0), relu], max_epochs=1, optimizer="sgd", lr=1e-9)
    exploding = [a for a in relu.alerts if a["kind"] == "exploding"]
    assert exploding and exploding[0]["step"] == 0 and exploding[0]["layer"] == "global"
    assert exploding[0]["value"] > 1e3

    # tanh stack with weights x16: pre-activations are large, the outputs sit at +-1
    tanh = GradientInspector(log_every_n_steps=5)
    _fit({"hidden": [64] * 3, "act": "tanh"}, [_ScaleWeights(16.0), tanh], max_epochs=1)
    saturated = {a["layer"] for a in tanh.alerts if a["kind"] == "saturated"}
    assert saturated == {"net.features.1.1", "net.features.2.1", "net.features.3.1"}
    assert tanh.last_metrics["act/saturated_frac/net.features.2.1"] > 0.5

    # the same tanh stack with its default (LeCun/Xavier-scaled) init: nothing saturates or explodes
    healthy = GradientInspector(log_every_n_steps=5)
    _fit({"hidden": [64] * 3, "act": "tanh"}, [healthy], max_epochs=1)
    assert healthy.alerts == []
    assert healthy.last_metrics["act/saturated_frac/net.features.2.1"] < 0.5


def test_a_layer_unfrozen_during_fine_tuning_is_inspected_from_then_on():
    class Unfreeze(Callback):  # frozen first layer for epoch 0, trained from epoch 1 (as BackboneFinetuning does)
        def setup(self, trainer, pl_module, stage):  # frozen before training starts, as a user would
            pl_module.net.features[1][0].requires_grad_(False)

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                pl_module.net.features[1][0].requires_grad_(True)  # already in the optimizer: it had no grad

    gi = GradientInspector(log_every_n_steps=5)
    trainer = _fit({"hidden": [16, 16]}, [Unfreeze(), gi], max_epochs=2)
    per_epoch = trainer.num_training_batches
    first = [h for h in gi.history if "grad/net.features.1.0" in h]
    assert first and min(h["step"] for h in first) >= per_epoch  # absent while frozen, present after
    assert all("grad/net.features.2.0" in h for h in gi.history)


def test_stop_action_ends_the_run_and_bad_arguments_are_named():
    gi = GradientInspector(log_every_n_steps=5, action="stop")
    trainer = _fit({"hidden": [32] * 10, "act": "sigmoid"}, [gi], max_epochs=5)
    assert trainer.global_step == 1  # stopped right after the first report (step 0), 5 epochs were allowed
    with pytest.raises(ValueError, match="action must be one of"):
        GradientInspector(action="explode")


def test_norms_are_taken_on_unscaled_gradients_under_a_grad_scaler():
    from lightning.pytorch.plugins import MixedPrecision

    def first_norm(**trainer_kw):
        pl.seed_everything(0)
        dm = DigitsDataModule(batch_size=64)
        task = ClassificationTask(model="mlp", model_kwargs={"hidden": [32]}, num_classes=10, input_shape=dm.input_shape,
                                  preprocessing=dm.preprocessing)
        gi = GradientInspector(log_every_n_steps=1, plot=False)
        trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                             enable_checkpointing=False, limit_val_batches=0, callbacks=[gi], **trainer_kw)
        trainer.fit(task, dm)
        return gi.last_metrics["grad/global_norm"], trainer

    plain, _ = first_norm()
    # fp16 AMP with a loss scale of 2**16: the loss is multiplied by 65536 before backward
    scaled, trainer = first_norm(plugins=[MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**16))])
    assert trainer.precision_plugin.scaler is not None
    assert scaled == pytest.approx(plain, rel=0.02)


def test_logging_steps_are_optimizer_steps_with_gradient_accumulation():
    gi = GradientInspector(log_every_n_steps=3, plot=False)
    pl.seed_everything(0)
    dm = DigitsDataModule(batch_size=64)
    task = ClassificationTask(model="mlp", model_kwargs={"hidden": [16]}, num_classes=10, input_shape=dm.input_shape,
                              preprocessing=dm.preprocessing)
    trainer = pl.Trainer(max_steps=10, accumulate_grad_batches=2, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0, callbacks=[gi])
    trainer.fit(task, dm)
    assert [h["step"] for h in gi.history] == [0, 3, 6, 9]
    assert all("act/dead_frac/net.features.1.1" in h and "update_ratio/net.head" in h for h in gi.history)


def test_a_weight_pushed_to_inf_with_finite_gradients_never_reaches_a_checkpoint(tmp_path):
    """The per-step check looks at gradients; a weight that becomes Inf after a finite step is caught
    when Lightning builds the checkpoint, before the file is written."""
    k = 4

    class InfAfterStep(Callback):  # runs before ModelCheckpoint's on_train_batch_end (Lightning puts it last)
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == k:
                with torch.no_grad():
                    pl_module.net.head.bias[3] = float("inf")

    gi = GradientInspector(log_every_n_steps=50)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1)
    with pytest.raises(NonFiniteGradientError, match=rf"non-finite parameter net\.head\.bias at step {k} .*NOT written"):
        _fit({"hidden": [16]}, [InfAfterStep(), gi, ckpt], max_epochs=1)
    steps = sorted(torch.load(f, weights_only=True)["global_step"] for f in (tmp_path / "ckpt").glob("*.ckpt"))
    assert steps == list(range(1, k))  # every step before k was saved, step k was refused
    for f in (tmp_path / "ckpt").glob("*.ckpt"):
        state = torch.load(f, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_gradient_flow_picture_bar_heights_follow_the_gradients():
    from callbacks.flow_picture import MAX_COLOR, MEAN_COLOR, render_gradient_flow

    maxes = [1e-8, 1e-4, 0.0, 1e-1]  # a vanishing layer, a middling one, a dead one and a healthy one
    img = render_gradient_flow(["a", "b", "dead", "d"], [m / 10 for m in maxes], maxes, "t")
    px = img.load()
    w, h = img.size

    # the row just above the x axis crosses every bar and nothing else
    base = max(r for r in range(h) for c in range(w) if px[c, r] == MEAN_COLOR)
    cols = [c for c in range(w) if px[c, base] in (MAX_COLOR, MEAN_COLOR)]
    bars = [[cols[0]]]
    for c in cols[1:]:
        if c == bars[-1][-1] + 1:
            bars[-1].append(c)
        else:
            bars.append([c])
    assert len(bars) == 3  # no bar for the dead layer

    def height(col, colors):
        return sum(px[col, r] in colors for r in range(h))

    tall = [height(b[1], (MAX_COLOR,)) for b in bars]  # the edge of a bar is max |grad| only
    inner = [height(b[len(b) // 2], (MEAN_COLOR,)) for b in bars]  # its middle shows mean |grad|
    assert tall[0] < tall[1] < tall[2]
    # log scale: one decade is the same number of pixels everywhere (1e-8 -> 1e-4 -> 1e-1: 4 then 3)
    per_decade = (tall[1] - tall[0]) / 4
    assert tall[2] - tall[1] == pytest.approx(3 * per_decade, abs=2)
    assert [t - m for t, m in zip(tall, inner)] == pytest.approx([per_decade] * 3, abs=2)  # mean = max / 10


def test_gradient_flow_png_is_a_palette_png_that_keeps_the_colours(tmp_path):
    from callbacks.flow_picture import render_gradient_flow, save_png

    img = render_gradient_flow([f"layer{i}" for i in range(6)], [1e-3] * 6, [1e-2] * 6, "t")
    save_png(img, tmp_path / "f.png")
    back = Image.open(tmp_path / "f.png")
    assert back.mode == "P" and back.size == img.size
    # the palette keeps the picture's colours exactly
    assert set(back.convert("RGB").getdata()) >= {(255, 255, 255), (120, 200, 230), (31, 90, 170)}


def test_two_ddp_processes_log_once_and_stop_together_at_a_planted_nan(tmp_path):
    """DDP on CPU (gloo, 2 processes): gradients are all-reduced, so the ranks see the NaN at the same
    step; the run ends with the error naming step and layer, and the metrics are written once."""
    pl.seed_everything(0)
    dm = DigitsDataModule(batch_size=64)
    task = ClassificationTask(model="mlp", model_kwargs={"hidden": [32, 32]}, num_classes=10, input_shape=dm.input_shape)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1,
                         logger=CSVLogger(tmp_path, flush_logs_every_n_steps=1), enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                         callbacks=[_PlantNaN("net.features.2.0", 5), GradientInspector(log_every_n_steps=2)])
    with pytest.raises(Exception, match=r"NonFiniteGradientError: GradientInspector: non-finite gradient at step 5; "
                                        r"first offending layer .*: net\.features\.2\.0"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(task, dm)
    rows = list(csv.DictReader(open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")))
    assert [int(r["step"]) for r in rows if r.get("grad/global_norm")] == [0, 2, 4]  # rank zero only, once each


class _ScaleFirstLinear(Callback):
    def __init__(self, factor):
        self.factor = factor

    def on_fit_start(self, trainer, pl_module):
        first = next(m for m in pl_module.net.modules() if isinstance(m, torch.nn.Linear))
        with torch.no_grad():
            first.weight.mul_(self.factor)


def test_finite_but_huge_weights_and_gradients_are_exploding_not_non_finite():
    # First layer x1e21: hidden activations ~1e20, so the next layer's gradients ~1e20, finite in
    # float32 but their squares (1e38+) are not: a float32 norm would call them non-finite.
    inspector = GradientInspector(log_every_n_steps=1, exploding_threshold=1e3)
    _fit({"hidden": [8]}, [_ScaleFirstLinear(1e21), inspector], max_epochs=1, optimizer="sgd", lr=1e-30)
    exploding = [a for a in inspector.alerts if a["kind"] == "exploding"]
    assert exploding and 1e15 < exploding[0]["value"] < float("inf")
