"""Unsupervised representation learning: reconstruction (plain, denoising, sparse autoencoders),
variational (VAE: ELBO) and energy-based (Bernoulli RBM: CD-k / persistent CD) tasks, and the DBN
(greedy RBM pretraining, then supervised fine-tuning).

Labels from the DataModule are ignored by the unsupervised tasks: any labelled DataModule serves.
Every task works in the network's input units (after the fitted input transform); Bernoulli models
(VAE with ``likelihood='bernoulli'``, RBM, DBN) need pixels in [0, 1], i.e. the DataModule's
``scaling: unit`` (min and max fitted on training rows only), and refuse anything else in ``setup``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics

from .base import ZooTask
from .classification import ClassificationTask

CORRUPTIONS = ("gaussian", "masking")
EVAL_SEED = 20080705  # fixed noise for evaluation: every epoch (and every run) scores the same corrupted rows


def _inputs(batch) -> torch.Tensor:
    """The samples of a batch; labels, if any, are ignored."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def _row_mean(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(len(t), -1).mean(1)  # (N,)


def _row_sum(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(len(t), -1).sum(1)  # (N,)


def _eval_generator(batch_idx: int) -> torch.Generator:
    return torch.Generator().manual_seed(EVAL_SEED + batch_idx)


def _means(stage: str, names: tuple[str, ...]) -> torchmetrics.MetricCollection:
    """Row-weighted means (``MeanMetric``) logged as ``<stage>/<name>``; torchmetrics syncs them across ranks."""
    return torchmetrics.MetricCollection({n: torchmetrics.MeanMetric() for n in names}, prefix=f"{stage}/")


class _UnsupervisedTask(ZooTask):
    """Shared by the unsupervised tasks: no classifier head, and the [0, 1] check for Bernoulli models."""

    #: whether the model needs inputs in [0, 1] (a Bernoulli likelihood)
    needs_unit_range = False

    def net_kwargs(self, num_classes: int) -> dict[str, Any]:
        return {}  # autoencoders and RBMs have no head: the data's num_classes is not theirs

    def setup(self, stage: str) -> None:
        super().setup(stage)
        spec = self.hparams.get("preprocessing")
        if self.needs_unit_range and spec and spec.get("scaling") != "unit":
            raise ValueError(
                f"{self.range_owner()} needs inputs in [0, 1], but the DataModule standardises them (data.scaling="
                f"{spec.get('scaling', 'standard')!r}: mean 0, std 1, values outside [0, 1]); set data.init_args.scaling: unit"
                f"{self.range_fix()}"
            )

    def range_owner(self) -> str:
        return f"model {self.hparams.model!r}"

    def range_fix(self) -> str:
        return ""

    def clean(self, batch) -> torch.Tensor:
        """The batch in the network's units: the reconstruction target."""
        return self.preprocess(_inputs(batch))

    def to_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Network-unit images back in the raw units of the data (undoes the fitted scaling), so a
        picture can show them beside the raw inputs."""
        p = self.preprocess
        if getattr(p, "resize", None) is None and hasattr(p, "std"):
            return z * p.std + p.mean
        return z

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Raw samples -> their reconstructions in raw units (``callbacks.ImageSampler(mode="reconstruct")``)."""
        return self.to_raw(self.net(self.preprocess(x)).reshape(len(x), *self.net.input_shape))

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val", batch_idx)

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test", batch_idx)


class ReconstructionTask(_UnsupervisedTask):
    """Autoencoders: reconstruct the clean input from the (optionally corrupted) input.

    Logs ``train/loss``, ``train/mse``, ``<stage>/loss`` and ``<stage>/mse`` (mean squared error per
    input value, in the network's units: [0, 1] pixels with ``data.scaling: unit``); with
    ``eval_corruption`` also ``<stage>/noisy_mse`` (the corrupted input's own error). ``predict_step``
    returns ``codes`` and ``reconstructions``.

    Args (besides ``ZooTask``'s):
        corruption: ``None`` (plain autoencoder), ``"gaussian"`` (add N(0, level^2)) or ``"masking"``
            (set a random fraction ``level`` of the inputs to 0): the denoising autoencoder of Vincent
            et al. (2008). Applied to training inputs only; the target is always the clean input.
        corruption_level: the noise's standard deviation or the masked fraction.
        eval_corruption: also corrupt validation and test inputs (with noise from a fixed seed, the
            same every epoch), so ``val/mse`` and ``test/mse`` measure denoising: the reconstruction of
            noisy rows against the clean ones.
        code_l1: weight of the L1 penalty on the codes, mean over rows of ``sum |code|`` (the sparse
            autoencoder; the weights' L1 penalty is ``l1_penalty``).
        loss: ``"mse"`` or ``"bce"`` (binary cross-entropy, for [0, 1] inputs and a sigmoid output).
    """

    def __init__(
        self,
        corruption: str | None = None,
        corruption_level: float = 0.0,
        eval_corruption: bool = False,
        code_l1: float = 0.0,
        loss: str = "mse",
        **kwargs: Any,
    ) -> None:
        if corruption is not None and corruption not in CORRUPTIONS:
            raise ValueError(f"model.corruption must be one of {list(CORRUPTIONS)} or null, got {corruption!r}")
        if corruption == "masking" and not 0 <= corruption_level < 1:
            raise ValueError(f"model.corruption_level is the masked fraction for masking noise and must be in [0, 1), got {corruption_level}")
        if not corruption_level >= 0 or not code_l1 >= 0:
            raise ValueError(f"model.corruption_level and model.code_l1 must be >= 0, got {corruption_level} and {code_l1}")
        if corruption is not None and corruption_level == 0:
            raise ValueError(f"model.corruption {corruption!r} needs model.corruption_level > 0 (e.g. 0.25)")
        if eval_corruption and corruption is None:
            raise ValueError("model.eval_corruption needs model.corruption (the noise to evaluate denoising with)")
        if loss not in ("mse", "bce"):
            raise ValueError(f"model.loss must be 'mse' or 'bce', got {loss!r}")
        super().__init__(**kwargs)
        self.needs_unit_range = loss == "bce"
        names = ("mse", "noisy_mse") if eval_corruption else ("mse",)
        self.val_metrics, self.test_metrics = _means("val", names), _means("test", names)

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        kind, level = self.hparams.corruption, self.hparams.corruption_level
        if kind is None:
            return x
        # Noise drawn on the CPU when a generator is given (fixed evaluation noise), else on x's device.
        draw = (lambda f: f(x.shape, generator=generator).to(x.device)) if generator is not None else (lambda f: f(x.shape, device=x.device))
        if kind == "gaussian":
            return x + level * draw(torch.randn)
        return x * (draw(torch.rand) >= level)  # masking: each input zeroed with probability `level`

    def _loss(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.hparams.loss == "bce":
            return F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target)
        return F.mse_loss(recon, target)

    def _train_step(self, batch):
        target = self.clean(batch)  # (N, ...)
        code = self.net.encode(self.corrupt(self.add_input_noise(target)))  # (N, latent)
        recon = self.net.decode(code)  # (N, ...)
        loss = self._loss(recon, target)
        if self.hparams.code_l1 > 0:
            loss = loss + self.hparams.code_l1 * code.abs().sum(1).mean()
        return loss, len(target), {"mse": _row_mean((recon.detach() - target) ** 2).sum()}

    def _shared_step(self, batch, stage: str, batch_idx: int = 0) -> torch.Tensor:
        target = self.clean(batch)
        inp = self.corrupt(target, _eval_generator(batch_idx)) if self.hparams.eval_corruption else target
        recon = self.net(inp)
        loss = self._loss(recon, target)
        metrics = getattr(self, f"{stage}_metrics")
        metrics["mse"].update(_row_mean((recon - target) ** 2))
        if self.hparams.eval_corruption:
            metrics["noisy_mse"].update(_row_mean((inp - target) ** 2))
        self.track_eval(stage, loss, len(target))
        return loss

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        code = self.net.encode(self.clean(batch))
        return {"codes": code, "reconstructions": self.net.decode(code)}


class VariationalTask(_UnsupervisedTask):
    """VAE: minimise the negative ELBO, reconstruction + beta * KL(q(z|x) || N(0, I)).

    The reconstruction term is -log p(x|z), summed over the pixels and averaged over the batch (nats
    per image), with z one reparameterised sample; the KL term is the closed form of Kingma & Welling
    (2014, appendix B). ``beta`` weights the KL in the loss (Higgins et al., 2017, "beta-VAE"); the
    logged ``nelbo`` is always the true bound (beta = 1), so runs with different betas compare.

    Logs ``<stage>/loss`` (recon + beta KL), ``<stage>/nelbo``, ``<stage>/recon``, ``<stage>/kl`` (nats
    per image; validation and test draw their sample from a fixed seed). ``predict_step`` returns
    ``codes`` (posterior means) and ``reconstructions``; ``sample(n)`` draws from the prior.

    Args (besides ``ZooTask``'s):
        beta: weight of the KL term (1 is the ELBO).
    """

    def __init__(self, beta: float = 1.0, **kwargs: Any) -> None:
        if not beta >= 0:
            raise ValueError(f"model.beta must be >= 0 (1 is the ELBO), got {beta}")
        super().__init__(**kwargs)
        self.needs_unit_range = getattr(self.net, "likelihood", None) == "bernoulli"
        names = ("nelbo", "recon", "kl")
        self.val_metrics, self.test_metrics = _means("val", names), _means("test", names)

    def range_owner(self) -> str:
        return "a VAE with likelihood 'bernoulli'"

    def range_fix(self) -> str:
        return ", or model.model_kwargs.likelihood: gaussian"

    def elbo_terms(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, recon, kl)`` for network-unit inputs ``x``: loss is the batch mean of
        recon + beta * kl; recon and kl are per row ``(N,)`` in nats. ``eps`` fixes the posterior sample."""
        mu, logvar = self.net.posterior(self.add_input_noise(x))  # (N, latent) each
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + eps * (0.5 * logvar).exp()  # reparameterisation trick: the sample is differentiable
        params = self.net.decode_params(z)  # (N, ...) logits or means
        if self.net.likelihood == "bernoulli":
            recon = _row_sum(F.binary_cross_entropy_with_logits(params, x, reduction="none"))
        else:  # unit-variance Gaussian: 0.5 (x - mean)^2 + 0.5 log(2 pi) per value
            recon = _row_sum(0.5 * (x - params) ** 2 + 0.5 * math.log(2 * math.pi))
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)  # (N,)
        loss = (recon + self.hparams.beta * kl).mean()
        return loss, recon, kl

    def _train_step(self, batch):
        x = self.clean(batch)
        loss, recon, kl = self.elbo_terms(x)
        recon, kl = recon.detach(), kl.detach()
        return loss, len(x), {"nelbo": (recon + kl).sum(), "recon": recon.sum(), "kl": kl.sum()}

    def _shared_step(self, batch, stage: str, batch_idx: int = 0) -> torch.Tensor:
        x = self.clean(batch)
        eps = torch.randn((len(x), self.net.latent_dim), generator=_eval_generator(batch_idx)).to(x)
        loss, recon, kl = self.elbo_terms(x, eps)
        metrics = getattr(self, f"{stage}_metrics")
        for name, value in (("nelbo", recon + kl), ("recon", recon), ("kl", kl)):
            metrics[name].update(value)
        self.track_eval(stage, loss, len(x))
        return loss

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        mu = self.net.encode(self.clean(batch))
        return {"codes": mu, "reconstructions": self.net.decode(mu)}

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``n`` images from the prior, in the network's units (``[0, 1]`` pixels for Bernoulli)."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.net.latent_dim, generator=g).to(self.device)
        return self.net.decode(z)

    @torch.no_grad()
    def interpolate(self, a: torch.Tensor, b: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Decoded images along the straight line between the codes of raw samples ``a`` and ``b``:
        ``(steps, ...)``, the latent-space interpolation picture."""
        za, zb = self.net.encode(self.preprocess(torch.stack([a, b]).to(self.device))).unbind(0)
        t = torch.linspace(0, 1, steps, device=self.device)[:, None]  # (steps, 1)
        return self.net.decode((1 - t) * za + t * zb)


class EnergyTask(_UnsupervisedTask):
    """Bernoulli RBM trained by CD-k (Hinton, 2002) or persistent CD (Tieleman, 2008).

    The gradient comes from the surrogate mean F(data) - mean F(negatives) (``BernoulliRBM.cd_loss``),
    which is not a loss anyone should read: it is not logged. Logged instead:
    ``train/loss``, ``<stage>/loss``: squared error of one mean-field reconstruction per pixel;
    ``train/free_energy``, ``<stage>/free_energy``: mean free energy per row;
    ``<stage>/pseudo_likelihood``: mean log pseudo-likelihood per row, estimated as scikit-learn's
    ``BernoulliRBM.score_samples`` does (one flipped pixel per row; fixed seed in evaluation);
    ``val/free_energy_gap``: mean F(validation rows) - mean F(this epoch's training rows). Free energies
    of the model are only defined up to the partition function, but their gap is not: it grows when
    the RBM overfits (Hinton, 2010, "A Practical Guide to Training RBMs", sec. 6). The training rows'
    mean is the running mean over the epoch's batches (no extra pass over the data).

    Args (besides ``ZooTask``'s):
        k: Gibbs steps per update.
        persistent: PCD (the chain in the model's ``chain`` buffer continues across updates, epochs,
            checkpoints and resumes) rather than CD-k (chains start at the data).
    """

    needs_unit_range = True

    def __init__(self, k: int = 1, persistent: bool = True, **kwargs: Any) -> None:
        if k < 1:
            raise ValueError(f"model.k (Gibbs steps per update) must be >= 1, got {k}")
        super().__init__(**kwargs)
        if not hasattr(self.net, "cd_loss"):
            raise ValueError(f"EnergyTask needs an energy-based model (e.g. 'rbm'), got model {self.hparams.model!r}")
        names = ("pseudo_likelihood", "free_energy")
        self.val_metrics, self.test_metrics = _means("val", names), _means("test", names)
        self._train_fe: list[Any] = [None, 0]  # device sum of F(training rows) this epoch, rows (host int)

    def range_owner(self) -> str:
        return "an RBM (binary visible units)"

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._train_fe = [None, 0]

    def _visible(self, batch) -> torch.Tensor:
        # Noise (input_noise) keeps the inputs probabilities: clamped to [0, 1].
        v = self.clean(batch)
        return self.add_input_noise(v).clamp(0, 1) if self._regularisers[1] > 0 else v

    def training_step(self, batch, batch_idx):
        v = self._visible(batch).reshape(len(_inputs(batch)), -1)  # (N, V)
        surrogate, fe = self.net.cd_loss(v, self.hparams.k, self.hparams.persistent)
        with torch.no_grad():
            mse = ((self.net.mean_visibles(self.net.mean_hiddens(v)) - v) ** 2).mean()
            fe_sum = fe.detach().sum()
        prev = self._train_fe[0]
        self._train_fe = [fe_sum if prev is None else prev + fe_sum, self._train_fe[1] + len(v)]
        self.track_train(batch_idx, mse, len(v), {"free_energy": fe_sum})
        penalty = self.weight_penalty()
        return surrogate if penalty is None else surrogate + penalty

    def _shared_step(self, batch, stage: str, batch_idx: int = 0) -> torch.Tensor:
        v = self.clean(batch).reshape(len(_inputs(batch)), -1)  # (N, V)
        fe = self.net.free_energy(v)
        pl = self.net.pseudo_likelihood(v, _eval_generator(batch_idx))
        mse = ((self.net.mean_visibles(self.net.mean_hiddens(v)) - v) ** 2).mean()
        metrics = getattr(self, f"{stage}_metrics")
        metrics["pseudo_likelihood"].update(pl)
        metrics["free_energy"].update(fe)
        self.track_eval(stage, mse, len(v))
        return mse

    def on_validation_epoch_end(self) -> None:
        total, rows = self._train_fe
        if total is not None and rows:  # not in the sanity check, before any training row
            val_fe = self.val_metrics["free_energy"].compute()
            self.log("val/free_energy_gap", val_fe - total / rows, on_step=False, on_epoch=True, sync_dist=True)
        super().on_validation_epoch_end()

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        x = self.clean(batch)
        return {"codes": self.net.encode(x), "reconstructions": self.net(x)}

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """The persistent chain's current negative particles (visible probabilities), ``n`` of them at
        most: ``callbacks.ImageSampler(mode="generate")`` draws what the model believes in."""
        return self.net.chain_visibles()[:n]

    @torch.no_grad()
    def filters(self) -> torch.Tensor:
        """One image per hidden unit, its weights to the pixels: ``(n_hidden, *input_shape)``, as
        scikit-learn's RBM example draws ``components_``."""
        return self.net.weight.reshape(self.net.n_hidden, *self.net.input_shape)


class DBNTask(ClassificationTask):
    """Deep belief net: greedy layer-wise RBM pretraining, then supervised fine-tuning.

    When fitting starts, RBM l (l = 0, 1, ...) is trained for ``pretrain_epochs`` epochs over the
    training rows by CD-k / PCD on the hidden probabilities of the already trained layers below
    (Hinton, Osindero & Teh, 2006), then copied into layer l of the sigmoid network
    (``DeepBeliefNet.load_rbm``). The whole network with a softmax head is then fine-tuned with
    cross-entropy by the ordinary classification training. Pretraining is a plain loop before
    Lightning's first epoch (it is short: RBMs on the training rows), logged as
    ``pretrain/layer<l>_mse`` (mean-field reconstruction error); the ``pretrained`` buffer is saved
    in every checkpoint, so a resumed run does not pretrain again. With ``pretrain_epochs: 0`` this
    is the same network trained from random initialisation (the DBN benchmark's baseline).

    Args (besides ``ClassificationTask``'s):
        pretrain_epochs: epochs per RBM.
        pretrain_lr: SGD learning rate of the RBMs (scikit-learn's BernoulliRBM step).
        pretrain_k, pretrain_persistent: CD-k steps and PCD, as ``EnergyTask``'s ``k``/``persistent``.
        pretrain_momentum: SGD momentum of the RBMs (Hinton's practical guide, 2010, sec. 9, uses 0.5
            then 0.9).
    """

    def __init__(
        self,
        pretrain_epochs: int = 10,
        pretrain_lr: float = 0.05,
        pretrain_k: int = 1,
        pretrain_persistent: bool = True,
        pretrain_momentum: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if pretrain_epochs < 0 or pretrain_k < 1 or not pretrain_lr > 0:
            raise ValueError(
                f"model.pretrain_epochs must be >= 0, pretrain_k >= 1 and pretrain_lr > 0; got {pretrain_epochs}, {pretrain_k}, {pretrain_lr}"
            )
        if not 0 <= pretrain_momentum < 1:
            raise ValueError(f"model.pretrain_momentum must be in [0, 1), got {pretrain_momentum}")
        super().__init__(**kwargs)
        if not hasattr(self.net, "load_rbm"):
            raise ValueError(f"DBNTask needs a deep belief net (model 'dbn'), got model {self.hparams.model!r}")
        self.register_buffer("pretrained", torch.tensor(False))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        spec = self.hparams.get("preprocessing")
        if self.hparams.pretrain_epochs > 0 and spec and spec.get("scaling") != "unit":
            raise ValueError(
                "a DBN's RBMs need inputs in [0, 1], but the DataModule standardises them (data.scaling="
                f"{spec.get('scaling', 'standard')!r}); set data.init_args.scaling: unit"
            )

    def on_fit_start(self) -> None:
        if self.hparams.pretrain_epochs > 0 and not bool(self.pretrained):
            self.pretrain()

    def pretrain(self) -> None:
        """Greedy layer-wise pretraining over the DataModule's training loader (labels ignored)."""
        from zoo.rbm import BernoulliRBM

        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            raise ValueError("DBNTask pretrains from the DataModule's training rows: pass datamodule= to trainer.fit")
        hp, net = self.hparams, self.net
        loader = dm.train_dataloader()
        # fast_dev_run checks the wiring with one batch per RBM, as Lightning does for the epochs.
        quick = bool(self.trainer.fast_dev_run)
        epochs = 1 if quick else hp.pretrain_epochs
        for layer in range(len(net.layers)):
            n_vis, n_hid = net.rbm_shape(layer)
            rbm = BernoulliRBM((n_vis,), n_hidden=n_hid, n_chains=dm.batch_size).to(self.device)
            opt = torch.optim.SGD(rbm.parameters(), lr=hp.pretrain_lr, momentum=hp.get("pretrain_momentum", 0.0))
            for _ in range(epochs):
                total = torch.zeros((), device=self.device)
                rows = 0
                for i, batch in enumerate(loader):
                    if quick and i:
                        break
                    x = _inputs(batch).to(self.device)
                    with torch.no_grad():
                        v = net.up(self.preprocess(x).clamp(0, 1), layer)  # (N, n_vis): probabilities below
                    loss, _ = rbm.cd_loss(v, hp.pretrain_k, hp.pretrain_persistent)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        total += ((rbm.mean_visibles(rbm.mean_hiddens(v)) - v) ** 2).mean() * len(v)
                    rows += len(v)
            net.load_rbm(layer, rbm)
            for logger in self.loggers:  # once per layer: one host read
                logger.log_metrics({f"pretrain/layer{layer}_mse": float(total / max(rows, 1))}, step=0)
        self.pretrained.fill_(True)
