"""Train vs inference behaviour, optimizer/init tables, schedules that need a horizon, the perceptron's
step counting through public API."""

import lightning.pytorch as pl
import pytest
import torch

import zoo
from datamodules import DigitsDataModule, XORDataModule
from zoo.tasks import OPTIMIZERS, ClassificationTask, PerceptronTask
from zoo.tasks.base import OPTIMIZER_TABLE


def _trainer(**kw):
    kw.setdefault("logger", False)
    kw.setdefault("enable_progress_bar", False)
    kw.setdefault("enable_model_summary", False)
    kw.setdefault("enable_checkpointing", False)
    return pl.Trainer(**kw)


class _TrainModeInValidation(ClassificationTask):
    """The planted fault: train mode forced in validation and test (dropout on, batch norm updating)."""

    def validation_step(self, batch, batch_idx):
        self.train()
        return super().validation_step(batch, batch_idx)

    def test_step(self, batch, batch_idx):
        self.train()
        return super().test_step(batch, batch_idx)

    def predict_step(self, *args, **kwargs):
        self.train()
        return super().predict_step(*args, **kwargs)


def _inference_faults(task_cls):
    """What validate/test/predict do wrong in ``task_cls``: train-mode modules or moved batch-norm statistics."""
    pl.seed_everything(0)
    dm = DigitsDataModule(batch_size=64)
    task = task_cls(model="mlp", model_kwargs={"hidden": [32], "batch_norm": True, "dropout": 0.5}, num_classes=10,
                    input_shape=dm.input_shape, preprocessing=dm.preprocessing)
    seen_training = []

    class Watch(pl.Callback):
        def _check(self, trainer, pl_module, *args):
            seen_training.append(any(m.training for m in pl_module.modules()))

        on_validation_batch_end = on_test_batch_end = on_predict_batch_end = _check

    trainer = _trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=3, limit_test_batches=3,
                       limit_predict_batches=3, num_sanity_val_steps=0, callbacks=[Watch()])
    trainer.fit(task, dm)
    faults = []
    for stage in ("validate", "test", "predict"):
        stats = {k: v.clone() for k, v in task.state_dict().items() if "running_" in k or "num_batches_tracked" in k}
        assert stats  # the model has batch norm
        seen_training.clear()
        getattr(trainer, stage)(task, datamodule=dm, verbose=False) if stage != "predict" else trainer.predict(task, datamodule=dm)
        if any(seen_training):
            faults.append(f"{stage}: train mode")
        after = task.state_dict()
        if any(not torch.equal(v, after[k]) for k, v in stats.items()):
            faults.append(f"{stage}: batch-norm statistics moved")
    return faults


def test_validation_test_and_predict_run_in_eval_mode_and_leave_batch_norm_alone():
    assert _inference_faults(ClassificationTask) == []


def test_the_eval_mode_check_catches_a_planted_train_call():
    faults = _inference_faults(_TrainModeInValidation)
    assert {"validate: train mode", "validate: batch-norm statistics moved", "test: train mode",
            "test: batch-norm statistics moved", "predict: train mode"} <= set(faults)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_name_builds_its_own_class(name):
    task = ClassificationTask(model="mlp", num_classes=2, input_shape=[2], optimizer=name)
    opt = task.configure_optimizers()
    assert type(opt) is OPTIMIZER_TABLE[name][0]


def test_init_schemes_are_one_table():
    assert set(zoo.INIT_SCHEMES) == {f"{a}_{b}" for a in ("lecun", "xavier", "he") for b in ("normal", "uniform")}
    with pytest.raises(ValueError, match="unknown init scheme"):
        zoo.init_weights(torch.nn.Linear(2, 2), "orthogonal")


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_a_schedule_without_a_horizon_is_an_error_and_max_steps_is_one(scheduler):
    dm = DigitsDataModule(batch_size=256)
    task = ClassificationTask(model="mlp", num_classes=10, input_shape=dm.input_shape, preprocessing=dm.preprocessing,
                              scheduler=scheduler)
    with pytest.raises(ValueError, match=f"model.scheduler '{scheduler}' needs the length of the run.*max_steps"):
        _trainer(max_epochs=-1, limit_val_batches=0).fit(task, dm)
    trainer = _trainer(max_epochs=-1, max_steps=6, limit_val_batches=0)
    trainer.fit(task, dm)
    assert trainer.global_step == 6
    config = trainer.lr_scheduler_configs[0]
    assert config.interval == "step"
    sched = config.scheduler
    assert (sched.T_max if scheduler == "cosine" else sched.total_steps) == 6
    assert sched.get_last_lr()[0] < task.hparams.lr  # annealed over the 6 steps, not stuck


def test_perceptron_counts_steps_through_its_optimizer_and_checkpoints(tmp_path):
    dm = XORDataModule(copies=10, batch_size=8)
    task = PerceptronTask(model="perceptron", num_classes=2, input_shape=dm.input_shape, preprocessing=dm.preprocessing,
                          model_kwargs={"zero_init": True})
    trainer = _trainer(max_epochs=2, limit_val_batches=0, enable_checkpointing=True, default_root_dir=tmp_path)
    trainer.fit(task, dm)
    assert trainer.global_step == 2 * trainer.num_training_batches
    assert list(tmp_path.rglob("*.ckpt"))
