"""Issue 14: autoencoders (plain, denoising, sparse), VAE, RBM (CD-k / PCD), DBN, and the L1 weight
penalty and Gaussian input noise every task gains. Small data (digits, a few batches) throughout:
the quality bars live in benchmarks/representation.py."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

import zoo
from datamodules import DigitsDataModule
from zoo.tasks import ClassificationTask, DBNTask, EnergyTask, ReconstructionTask, VariationalTask

from test_lean_step import _HostReads


def _digits(batch_size=64, scaling="unit"):
    dm = DigitsDataModule(batch_size=batch_size, seed=0, scaling=scaling)
    dm.setup("fit")
    return dm


def _build(cls, dm, **kw):
    return cls(num_classes=10, input_shape=dm.input_shape, preprocessing=dm.preprocessing, **kw)


def _trainer(tmp_path, **kw):
    kw.setdefault("logger", False)
    kw.setdefault("enable_checkpointing", False)
    return pl.Trainer(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, deterministic=True, **kw)


def _batch(dm, n=64):
    x, y = dm.datasets["train"].tensors
    return x[:n], y[:n]


# ------------------------------------------------------------------------------------ data


def test_unit_scaling_is_fitted_on_training_rows_and_maps_them_into_0_1():
    dm = _digits()
    spec = dm.preprocessing
    assert spec["scaling"] == "unit"
    train = dm.raw_x[dm.split_indices["train"]]
    assert spec["mean"] == [float(train.min())] and spec["std"] == [float(train.max() - train.min())]
    task = _build(ReconstructionTask, dm, model="autoencoder")
    z = task.preprocess(torch.from_numpy(train))
    assert float(z.min()) == 0.0 and float(z.max()) == 1.0
    assert "scaling" not in DigitsDataModule(seed=0).preprocessing  # the default stays standardisation
    with pytest.raises(ValueError, match="data.scaling must be one of"):
        DigitsDataModule(scaling="minmax")


# ------------------------------------------------------------------------------ regularisers


def test_l1_penalty_is_added_to_the_backpropagated_loss_not_to_the_logged_one():
    dm = _digits(scaling="standard")
    torch.manual_seed(0)
    task = _build(ClassificationTask, dm, model="mlp", model_kwargs={"hidden": [16]}, l1_penalty=0.01)
    batch = _batch(dm)
    returned = task.training_step(batch, 0)
    data_loss = task._ledger.buf[0, 0]  # what train/loss averages
    weights = [p for p in task.net.parameters() if p.dim() > 1]
    expected = 0.01 * sum(float(w.detach().abs().sum()) for w in weights)
    assert float((returned - data_loss).detach()) == pytest.approx(expected, rel=1e-5) and expected > 0
    # The penalty's gradient is l1 * sign(w) on the weights, nothing on the biases.
    task.zero_grad()
    task.weight_penalty().backward()
    w = task.net.features[1][0].weight
    assert torch.allclose(w.grad, 0.01 * w.sign())
    assert task.net.features[1][0].bias.grad is None or float(task.net.features[1][0].bias.grad.abs().sum()) == 0
    with pytest.raises(ValueError, match="model.l1_penalty must be >= 0"):
        _build(ClassificationTask, dm, model="mlp", l1_penalty=-1.0)


def test_input_noise_only_in_training_mode():
    dm = _digits(scaling="standard")
    task = _build(ClassificationTask, dm, model="mlp", model_kwargs={"hidden": [16]}, input_noise=0.5)
    x = _batch(dm)[0]
    task.train()  # the fit loop's training batches
    assert not torch.equal(task(x), task(x))
    task.eval()  # validation, test and predict
    assert torch.equal(task(x), task.net(task.preprocess(x)))
    with pytest.raises(ValueError, match="model.input_noise must be >= 0"):
        _build(ClassificationTask, dm, model="mlp", input_noise=float("nan"))


def test_noise_reaches_training_batches_but_not_validation(tmp_path):
    """In a real fit: with lr = 0 the weights stay fixed, so val/loss must be the same with and
    without input noise, while train/loss (noisy inputs) must differ."""
    dm = _digits(scaling="standard")
    out = {}
    for sigma in (0.0, 2.0):
        torch.manual_seed(0)
        task = _build(ClassificationTask, dm, model="mlp", model_kwargs={"hidden": [16]}, optimizer="sgd", lr=1e-12,
                      input_noise=sigma)
        trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=4, limit_val_batches=2)
        trainer.fit(task, dm)
        out[sigma] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert out[0.0]["val/loss"] == pytest.approx(out[2.0]["val/loss"], abs=1e-6)
    assert out[2.0]["train/loss"] > out[0.0]["train/loss"] + 0.05


def test_l1_penalty_and_input_noise_reach_the_tasks_that_bypass_the_base_step(tmp_path):
    """PerceptronTask (the rule has no loss gradient: a proximal shrink) and GANTask (two optimizers:
    each network's penalty in its own loss) train without ZooTask.training_step; l1_penalty must still
    act there, and input_noise must reach their training inputs."""
    from datamodules import IrisDataModule
    from zoo.tasks import GANTask, PerceptronTask

    iris = IrisDataModule(setosa_vs_rest=True)
    iris.setup("fit")
    weights = {}
    for l1 in (0.0, 0.05, 100.0):
        pl.seed_everything(0)
        task = PerceptronTask(model="perceptron", num_classes=iris.num_classes, input_shape=iris.input_shape,
                              preprocessing=iris.preprocessing, lr=1.0, l1_penalty=l1)
        _trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(task, iris)
        weights[l1] = torch.cat([p.detach().flatten() for p in task.net.parameters() if p.dim() > 1])
    assert weights[0.0].abs().sum() > 0 and not torch.equal(weights[0.05], weights[0.0])
    assert float(weights[100.0].abs().max()) == 0.0  # a shrink larger than any update: exactly 0, not negative
    # One shrink: every weight moves lr * l1 towards 0 and stops there; the bias is not penalised.
    w, b = task.net.head.weight, task.net.head.bias
    with torch.no_grad():
        w.copy_(torch.tensor([[0.3, -0.3, 0.1, -2.0]])), b.fill_(0.5)
    task.l1_shrink()  # lr 1.0, l1 100.0
    assert float(w.abs().max()) == 0.0 and float(b) == 0.5
    task.hparams.lr, task._regularisers = 0.5, (0.4, 0.0)
    with torch.no_grad():
        w.copy_(torch.tensor([[0.3, -0.3, 0.1, -2.0]]))
    task.l1_shrink()
    assert torch.allclose(w, torch.tensor([[0.1, -0.1, 0.0, -1.8]]))
    task = PerceptronTask(model="perceptron", num_classes=iris.num_classes, input_shape=iris.input_shape,
                          preprocessing=iris.preprocessing, input_noise=0.5)
    x, y = iris.datasets["train"].tensors
    seen = []
    task.net.perceptron_update = lambda xs, ys, lr: (seen.append(xs), torch.zeros(len(ys), dtype=torch.bool))[1]
    task._trainer = None
    task.optimizers = lambda: type("Counter", (), {"step": lambda self: None})()
    task.train()
    task.training_step((x[:8], y[:8]), 0)
    assert not torch.allclose(seen[0], task.preprocess(x[:8]))  # noisy in training mode

    dm = _digits(batch_size=32, scaling="standard")
    norms = {}
    for l1 in (0.0, 0.05):
        torch.manual_seed(0)
        gan = GANTask(model="gan", input_shape=[1, 8, 8], l1_penalty=l1, lr=1e-3)
        _trainer(tmp_path, max_epochs=1, limit_train_batches=5, limit_val_batches=0).fit(gan, dm)
        norms[l1] = [sum(float(p.abs().sum()) for p in net.parameters() if p.dim() > 1) for net in (gan.generator, gan.discriminator)]
    assert norms[0.05][0] < norms[0.0][0] and norms[0.05][1] < norms[0.0][1]  # both networks shrink


def test_regularisers_and_new_tasks_read_nothing_back_per_step(tmp_path, monkeypatch):
    dm = _digits(batch_size=16)
    reads = _HostReads(monkeypatch)
    tasks = [
        _build(ClassificationTask, dm, model="mlp", model_kwargs={"hidden": [16]}, optimizer="sgd", l1_penalty=1e-3, input_noise=0.1),
        _build(ReconstructionTask, dm, model="autoencoder", optimizer="sgd", corruption="masking", corruption_level=0.3, code_l1=1e-3),
        _build(VariationalTask, dm, model="vae", optimizer="sgd", beta=2.0),
        _build(EnergyTask, dm, model="rbm", optimizer="sgd", lr=0.05, l1_penalty=1e-4),
    ]
    for task in tasks:
        reads.reads.clear()
        trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=12, limit_val_batches=0, callbacks=[reads],
                           logger=CSVLogger(tmp_path), log_every_n_steps=5)
        trainer.fit(task, dm)
        quiet = [s for s in range(11) if (s + 1) % 5]
        assert {s: reads.reads[s] for s in quiet if reads.reads.get(s)} == {}, type(task).__name__


# ----------------------------------------------------------------------------- autoencoders


def test_denoising_corrupts_training_inputs_only_and_targets_the_clean_input():
    dm = _digits()
    torch.manual_seed(0)
    task = _build(ReconstructionTask, dm, model="autoencoder", corruption="masking", corruption_level=0.5)
    batch = _batch(dm)
    clean = task.preprocess(batch[0])
    seen = []
    orig = task.net.encode
    task.net.encode = lambda z: (seen.append(z), orig(z))[1]
    task._train_step(batch)
    assert (seen[-1] == 0).float().mean() > (clean == 0).float().mean() + 0.2  # half the pixels masked
    loss = task._shared_step(batch, "val")
    assert torch.equal(seen[-1], clean)  # validation sees the clean input
    assert float(loss) == pytest.approx(float(((task.net(clean) - clean) ** 2).mean()), rel=1e-6)


def test_eval_corruption_is_fixed_and_scored_against_the_clean_rows():
    dm = _digits()
    task = _build(ReconstructionTask, dm, model="autoencoder", corruption="gaussian", corruption_level=0.25,
                  eval_corruption=True)
    batch = _batch(dm)
    task._shared_step(batch, "test", 3)
    task._shared_step(batch, "test", 3)
    m = task.test_metrics.compute()
    # The noisy input's error is sigma^2 = 0.0625 per pixel, the same both times (fixed seed).
    assert float(m["test/noisy_mse"]) == pytest.approx(0.0625, rel=0.1)


def test_sparse_code_penalty_enters_the_loss():
    dm = _digits()
    batch = _batch(dm)
    losses = []
    for code_l1 in (0.0, 0.1):
        torch.manual_seed(0)
        task = _build(ReconstructionTask, dm, model="autoencoder", code_l1=code_l1)
        losses.append(float(task._train_step(batch)[0]))
        code = task.net.encode(task.preprocess(batch[0]))
    assert losses[1] - losses[0] == pytest.approx(0.1 * float(code.abs().sum(1).mean()), rel=1e-4)


def test_autoencoder_learns_and_predicts_codes_and_reconstructions(tmp_path):
    dm = _digits(batch_size=32)
    torch.manual_seed(0)
    task = _build(ReconstructionTask, dm, model="conv_autoencoder", model_kwargs={"latent_dim": 8}, lr=3e-3)
    trainer = _trainer(tmp_path, max_epochs=2)
    clean = task.preprocess(dm.datasets["val"].tensors[0])
    with torch.no_grad():
        before = float(((task.net(clean) - clean) ** 2).mean())
    trainer.fit(task, dm)
    after = float(trainer.callback_metrics["val/mse"])
    assert after < 0.6 * before
    out = trainer.predict(task, dm)[0]
    n = len(out["codes"])
    assert out["codes"].shape == (n, 8) and out["reconstructions"].shape == (n, 1, 8, 8)
    assert float(out["reconstructions"].min()) >= 0 and float(out["reconstructions"].max()) <= 1


# -------------------------------------------------------------------------------------- VAE


def test_vae_beta_weights_the_kl_in_the_backpropagated_loss():
    """Bolts #328: a KL weight that never reached the loss. Same weights, same posterior sample:
    the training loss must move by exactly (beta' - beta) * KL, and KL must be positive."""
    dm = _digits()
    batch = _batch(dm)
    out = {}
    for beta in (0.0, 1.0, 4.0):
        torch.manual_seed(0)
        task = _build(VariationalTask, dm, model="vae", beta=beta)
        torch.manual_seed(1)  # the same eps for every beta
        loss, rows, sums = task._train_step(batch)
        out[beta] = (float(loss), float(sums["recon"]) / rows, float(sums["kl"]) / rows)
    kl = out[0.0][2]
    assert kl > 0
    for beta, (loss, recon, kl_b) in out.items():
        assert kl_b == pytest.approx(kl) and recon == pytest.approx(out[0.0][1])
        assert loss == pytest.approx(recon + beta * kl, rel=1e-5)


def test_vae_beta_changes_what_is_learned():
    """Trained briefly, a large beta must squeeze the posterior towards the prior (lower KL) far
    more than a small one."""
    dm = _digits()
    x = dm.datasets["train"].tensors[0][:256]
    kls = {}
    for beta in (0.1, 8.0):
        torch.manual_seed(0)
        task = _build(VariationalTask, dm, model="vae", beta=beta)
        opt = torch.optim.Adam(task.parameters(), lr=2e-3)
        for i in range(120):
            loss, rows, sums = task._train_step((x[(i % 4) * 64:(i % 4 + 1) * 64], None))
            opt.zero_grad()
            loss.backward()
            opt.step()
        kls[beta] = float(sums["kl"]) / rows
    assert kls[8.0] < 0.5 * kls[0.1]


def test_vae_samples_interpolates_and_predicts():
    dm = _digits()
    task = _build(VariationalTask, dm, model="vae", model_kwargs={"latent_dim": 4}).eval()
    s = task.sample(5, seed=0)
    assert s.shape == (5, 1, 8, 8) and torch.equal(s, task.sample(5, seed=0))
    x = _batch(dm)[0]
    grid = task.interpolate(x[0], x[1], steps=6)
    assert grid.shape == (6, 1, 8, 8)
    assert torch.allclose(grid[0], task.net.decode(task.net.encode(task.preprocess(x[:1])))[0], atol=1e-6)
    out = task.predict_step((x, None), 0)
    assert out["codes"].shape == (len(x), 4) and out["reconstructions"].shape == x.shape


# ------------------------------------------------------------------------------------- RBM


def test_rbm_surrogate_gradient_is_scikit_learns_update():
    """The CD surrogate's gradient must be minus scikit-learn's BernoulliRBM._fit update (same
    positive and negative particles), so plain SGD takes the reference step."""
    torch.manual_seed(0)
    rbm = zoo.create_model("rbm", n_hidden=7, input_shape=(5,), n_chains=4)
    v = torch.rand(6, 5)
    torch.manual_seed(3)
    rbm.cd_loss(v, k=1, persistent=True)[0].backward()
    torch.manual_seed(3)
    chain = torch.zeros(4, 7)
    v_neg = torch.bernoulli(torch.sigmoid(chain @ rbm.weight.detach() + rbm.vbias.detach()))
    with torch.no_grad():
        h_pos, h_neg = rbm.mean_hiddens(v), rbm.mean_hiddens(v_neg)
    update_w = h_pos.T @ v / 6 - h_neg.T @ v_neg / 4
    assert torch.allclose(rbm.weight.grad, -update_w, atol=1e-6)
    assert torch.allclose(rbm.vbias.grad, -(v.mean(0) - v_neg.mean(0)), atol=1e-6)
    assert torch.allclose(rbm.hbias.grad, -(h_pos.mean(0) - h_neg.mean(0)), atol=1e-6)
    assert not torch.equal(rbm.chain, torch.zeros(4, 7))  # the persistent chain advanced


def test_rbm_pseudo_likelihood_matches_scikit_learn_formula():
    from sklearn.neural_network import BernoulliRBM as SkRBM

    torch.manual_seed(0)
    rbm = zoo.create_model("rbm", n_hidden=6, input_shape=(9,)).double()
    v = torch.rand(12, 9, dtype=torch.float64)
    sk = SkRBM(n_components=6, random_state=0)
    sk.components_ = rbm.weight.detach().numpy()
    sk.intercept_hidden_, sk.intercept_visible_ = rbm.hbias.detach().numpy(), rbm.vbias.detach().numpy()
    sk.n_features_in_ = 9
    assert np.allclose(rbm.free_energy(v).detach().numpy(), sk._free_energy(v.numpy()))
    # The same flipped pixel: scikit-learn's draw reproduced through a generator whose draw we replace.
    idx = np.random.RandomState(0).randint(0, 9, 12)
    flipped = v.clone()
    flipped[torch.arange(12), torch.from_numpy(idx)] = 1 - flipped[torch.arange(12), torch.from_numpy(idx)]
    ours = 9 * torch.nn.functional.logsigmoid(rbm.free_energy(flipped) - rbm.free_energy(v))
    assert np.allclose(ours.detach().numpy(), sk.score_samples(v.numpy()))


def _rbm_fit(tmp_path, epochs, ckpt=None, callbacks=()):
    pl.seed_everything(0)
    dm = _digits(batch_size=32)
    task = _build(EnergyTask, dm, model="rbm", model_kwargs={"n_hidden": 16, "n_chains": 8}, optimizer="sgd", lr=0.05)
    trainer = _trainer(tmp_path, max_epochs=epochs, limit_train_batches=5, limit_val_batches=1,
                       enable_checkpointing=True, callbacks=list(callbacks))
    trainer.fit(task, dm, ckpt_path=ckpt)
    return task, trainer


def test_rbm_persistent_chain_survives_checkpoint_and_resume(tmp_path):
    """Two epochs in one go and one epoch + resume from its checkpoint + one epoch must end with the
    same chain and weights: the chain is saved with the model and the resumed run continues it."""
    full, _ = _rbm_fit(tmp_path / "full", 2)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    first, _ = _rbm_fit(tmp_path / "a", 1, callbacks=[cb])
    state = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(state["net.chain"], first.net.chain) and state["net.chain"].abs().sum() > 0
    resumed, _ = _rbm_fit(tmp_path / "b", 2, ckpt=str(tmp_path / "ck" / "last.ckpt"))
    assert not torch.equal(resumed.net.chain, state["net.chain"])  # it moved on ...
    assert torch.equal(resumed.net.chain, full.net.chain)  # ... exactly as the uninterrupted run's did
    assert torch.equal(resumed.net.weight, full.net.weight)
    loaded = EnergyTask.load_from_checkpoint(tmp_path / "ck" / "last.ckpt")
    assert torch.equal(loaded.net.chain, state["net.chain"])


def test_rbm_logs_pseudo_likelihood_and_free_energy_gap_not_the_surrogate(tmp_path):
    pl.seed_everything(0)
    dm = _digits(batch_size=10)
    task = _build(EnergyTask, dm, model="rbm", model_kwargs={"n_hidden": 32, "n_chains": 10}, optimizer="sgd", lr=0.06,
                  persistent=False, k=2)
    trainer = _trainer(tmp_path, max_epochs=1)
    with torch.no_grad():
        before = float(task.net.pseudo_likelihood(task.preprocess(dm.datasets["val"].tensors[0])).mean())
    trainer.fit(task, dm)
    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert {"val/pseudo_likelihood", "val/free_energy", "val/free_energy_gap", "train/free_energy", "train/loss"} <= set(m)
    assert m["val/pseudo_likelihood"] > before + 5  # CD-2 learned the digits (untrained: about -44)
    assert not any("surrogate" in k or "cd" in k for k in m)
    assert torch.equal(task.net.chain, torch.zeros_like(task.net.chain))  # CD-k never touches the PCD chain


# ------------------------------------------------------------------------------------- DBN


def test_dbn_pretrains_greedily_then_fine_tunes_and_does_not_pretrain_again(tmp_path):
    dm = _digits(batch_size=32)
    torch.manual_seed(0)
    task = _build(DBNTask, dm, model="dbn", model_kwargs={"hidden": [32, 16]}, pretrain_epochs=1, pretrain_lr=0.05, pretrain_momentum=0.5, lr=1e-2)
    calls = []
    orig = task.net.load_rbm
    task.net.load_rbm = lambda layer, rbm: (calls.append((layer, tuple(rbm.weight.shape))), orig(layer, rbm))[1]
    trainer = _trainer(tmp_path, max_epochs=3, limit_val_batches=2, enable_checkpointing=True,
                       callbacks=[ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)])
    trainer.fit(task, dm)
    assert calls == [(0, (32, 64)), (1, (16, 32))]  # layer by layer, each on the one below
    assert bool(task.pretrained) and float(task.net.vbias0.abs().sum()) > 0
    assert float(trainer.callback_metrics["val/acc"]) > 0.5
    resumed = _build(DBNTask, dm, model="dbn", model_kwargs={"hidden": [32, 16]}, pretrain_epochs=1)
    resumed.pretrain = lambda: pytest.fail("a resumed DBN must not pretrain again")
    _trainer(tmp_path, max_epochs=4, limit_train_batches=2, limit_val_batches=1).fit(resumed, dm, ckpt_path=str(tmp_path / "ck" / "last.ckpt"))


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_in_one_line_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"latent_dim must be >= 1, got 0; set model.model_kwargs.latent_dim"):
        zoo.create_model("autoencoder", latent_dim=0)
    with pytest.raises(ValueError, match=r"latent_dim must be >= 1, got 0"):
        zoo.create_model("vae", latent_dim=0)
    with pytest.raises(ValueError, match=r"DBN sizes \[100, 50\] do not chain with the input: it has 64 features"):
        zoo.create_model("dbn", sizes=[100, 50])
    standard = _digits(scaling="standard")
    for cls, kw, what in (
        (VariationalTask, {"model": "vae"}, "a VAE with likelihood 'bernoulli' needs inputs in"),
        (EnergyTask, {"model": "rbm"}, "an RBM .binary visible units. needs inputs in"),
        (DBNTask, {"model": "dbn"}, "a DBN's RBMs need inputs in"),
    ):
        task = _build(cls, standard, **kw)
        trainer = _trainer(tmp_path, max_epochs=1)
        with pytest.raises(ValueError, match=what + r".*set data.init_args.scaling: unit") as e:
            trainer.fit(task, standard)
        assert "\n" not in str(e.value) and trainer.global_step == 0
    # A Gaussian VAE takes standardised data.
    _build(VariationalTask, standard, model="vae", model_kwargs={"likelihood": "gaussian"}).setup("fit")
    with pytest.raises(ValueError, match=r"model.pretrain_momentum must be in \[0, 1\), got 1.0"):
        DBNTask(model="dbn", input_shape=[1, 8, 8], pretrain_momentum=1.0)
    with pytest.raises(ValueError, match="model.corruption 'gaussian' needs model.corruption_level > 0"):
        ReconstructionTask(model="autoencoder", corruption="gaussian")


# -------------------------------------------------------------------------------- pictures


def test_pictures_through_the_image_sampler(tmp_path):
    """Input vs reconstruction grids (raw units on both rows), VAE samples, RBM negative-chain
    samples and filters, each written by callbacks.ImageSampler at the epoch's end."""
    from PIL import Image

    from callbacks import ImageSampler

    dm = _digits(batch_size=32)
    x = dm.datasets["val"].tensors[0][:4]
    ae = _build(ReconstructionTask, dm, model="autoencoder")
    rec = ae.reconstruct(x)
    assert rec.shape == x.shape and float(rec.max()) > 1.5  # back in raw 0..16 units, beside the inputs
    for task, sampler in (
        (ae, ImageSampler(mode="reconstruct", n=4, normalize=False)),
        (_build(VariationalTask, dm, model="vae"), ImageSampler(mode="generate", n=6)),
        (_build(EnergyTask, dm, model="rbm", model_kwargs={"n_hidden": 20, "n_chains": 6}, optimizer="sgd", lr=0.05),
         ImageSampler(mode="generate", n=6)),
    ):
        trainer = _trainer(tmp_path / type(task).__name__, max_epochs=1, limit_train_batches=3, limit_val_batches=1,
                           callbacks=[sampler], logger=CSVLogger(tmp_path / type(task).__name__))
        trainer.fit(task, dm)
        assert sampler.last_path is not None and Image.open(sampler.last_path).size[0] > 8
    rbm = task
    assert rbm.sample(6).shape == (6, 1, 8, 8) and rbm.filters().shape == (20, 1, 8, 8)
    assert torch.equal(rbm.filters()[3].flatten(), rbm.net.weight[3])


def test_interpolation_and_filter_grids_have_the_right_shape_and_the_configs_draw_them(tmp_path):
    """ImageSampler's interpolate mode (VAE: each row walks between two validation codes) and filters
    mode (RBM: one image per hidden unit); the representation configs wire the pictures in, each
    sampler into its own folder."""
    import yaml

    from callbacks import ImageSampler
    from zoo.tasks import VariationalTask

    dm = _digits(batch_size=32)
    vae = _build(VariationalTask, dm, model="vae")
    rbm = _build(EnergyTask, dm, model="rbm", model_kwargs={"n_hidden": 12, "n_chains": 6}, optimizer="sgd", lr=0.05)
    inter = ImageSampler(mode="interpolate", n=12, nrow=6, folder="samples/interpolations")
    filt = ImageSampler(mode="filters", n=12, nrow=4, folder="samples/filters")
    for task, sampler in ((vae, inter), (rbm, filt)):
        trainer = _trainer(tmp_path / type(task).__name__, max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                           callbacks=[sampler], logger=CSVLogger(tmp_path / type(task).__name__))
        trainer.fit(task, dm)
        assert sampler.last_path.parent.name == sampler.folder.split("/")[-1]
    # 12 // 6 = 2 rows of 6 steps; 12 filters in rows of 4: 8x8 images with 2-pixel padding
    assert tuple(inter.last_grid.shape) == (3, 2 * 10 + 2, 6 * 10 + 2)
    assert tuple(filt.last_grid.shape) == (3, 3 * 10 + 2, 4 * 10 + 2)
    x = dm.datasets["val"].tensors[0]
    row = inter.images(vae.trainer, vae)[:6]
    assert torch.allclose(row[0], vae.net.decode(vae.net.encode(vae.preprocess(x[:1])))[0], atol=1e-5)  # starts at image 0's code
    assert torch.allclose(row[-1], vae.net.decode(vae.net.encode(vae.preprocess(x[1:2])))[0], atol=1e-5)  # ends at image 1's
    assert torch.equal(filt.images(rbm.trainer, rbm), rbm.filters())  # all 12 units, unit 3 its own weights
    with pytest.raises(AttributeError, match=r"needs a method `filters\(\)"):
        _trainer(tmp_path / "bad", max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                 callbacks=[ImageSampler(mode="filters")]).fit(vae, dm)

    modes = {}
    for name in ("autoencoder_digits", "denoising_autoencoder_digits", "vae_digits", "rbm_digits"):
        cbs = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml").read_text())["trainer"]["callbacks"]
        assert all(c["class_path"] == "callbacks.ImageSampler" for c in cbs)
        folders = [c["init_args"]["folder"] for c in cbs]
        assert len(set(folders)) == len(folders), name  # no sampler overwrites another's PNGs
        modes[name] = {c["init_args"]["mode"] for c in cbs}
    assert modes["vae_digits"] == {"reconstruct", "generate", "interpolate"}
    assert modes["rbm_digits"] == {"reconstruct", "generate", "filters"}
    assert modes["autoencoder_digits"] == modes["denoising_autoencoder_digits"] == {"reconstruct"}
    # Drawing leaves the global random stream where it was: pictures do not change what a run trains.
    gen = ImageSampler(mode="generate", n=4, folder="samples/prior")
    gen.on_validation_epoch_end(vae.trainer, vae)  # after fit: not sanity checking, epoch 0
    state = torch.get_rng_state()
    gen.on_validation_epoch_end(vae.trainer, vae)
    assert torch.equal(torch.get_rng_state(), state) and gen.last_path is not None
