"""Adversarial training (Goodfellow et al., 2014) of a registered generator/discriminator pair, with
Lightning 2's manual optimisation (``optimizer_idx`` is gone since Lightning 2.0; one optimizer each).

Per batch (as in Goodfellow et al.'s Algorithm 1 with k = 1, and Lightning's GAN example):

1. discriminator step on real rows and on generated rows DETACHED from the generator's graph, so
   the discriminator's loss never back-propagates into the generator;
2. generator step with the non-saturating loss ``-log D(G(z))`` (Goodfellow et al. section 3: early
   in training ``log(1 - D(G(z)))`` saturates and gives the generator no gradient).

Optional one-sided label smoothing of the real targets (Salimans et al., 2016, "Improved Techniques
for Training GANs", section 3.4). Pixels are mapped to [-1, 1] (the generators' tanh range) from the
training rows' range; ``forward(z)`` and ``sample(n)`` return images in the data's raw scale and shape,
so a loaded checkpoint generates what the DataModule yields.

Sample quality (``zoo.tasks.gan_metrics``) uses a zoo classifier trained on the same DataModule's
training rows (``feature_extractor``; trained and kept at that path when the file does not exist).
Validation logs ``val/fd`` (samples vs validation rows), which checkpointing and early stopping watch.
The test logs ``test/fd`` (samples vs test rows), ``test/fd_floor`` (training rows vs test rows),
``test/fd_ceiling`` (an untrained generator of the same architecture and seed), ``test/kd``,
``test/class_coverage_min``, ``test/inception_score`` (and ``test/inception_score_real`` of the test
rows) and ``test/interp_changes`` (mean class changes along 100 linear latent paths).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

import zoo
from zoo.gan import PAIRS

from . import gan_metrics as gm
from .base import OPTIMIZER_TABLE, ZooTask
from .distributed import run_dir


class GANPair(nn.Module):
    """The two networks a GAN task trains (a plain container)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module) -> None:
        super().__init__()
        self.generator, self.discriminator = generator, discriminator


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between codes (White, 2016, "Sampling Generative Networks"): it keeps the
    norm a Gaussian code typically has, which linear interpolation shrinks mid-way. (D,), (D,), (S,) -> (S, D)."""
    omega = torch.arccos((F.normalize(a, dim=0) @ F.normalize(b, dim=0)).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    t = t[:, None]
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


class GANTask(ZooTask):
    """GAN or DCGAN on any image DataModule (``model``: ``gan`` or ``dcgan``).

    Args (besides ``ZooTask``'s; ``lr`` defaults to 2e-4 and ``optimizer_kwargs`` to
    ``{betas: [0.5, 0.999]}``, Radford et al. section 4):
        model: ``gan`` (MLP pair) or ``dcgan``.
        model_kwargs: ``{generator: {...}, discriminator: {...}}`` constructor arguments of the pair.
        latent_dim: size of the code z (>= 1).
        conditional: condition both networks on the class label (Mirza & Osindero, 2014).
        label_smoothing: one-sided: real targets are ``1 - label_smoothing``.
        gradient_clip_val: clip each network's gradient norm to this (``trainer.gradient_clip_val`` is
            not available under manual optimisation); ``None``: no clipping.
        pixel_range: ``[lo, hi]`` of the raw pixels; ``None``: the training rows' min and max.
        feature_extractor: path of a ``ClassificationTask`` checkpoint on this data (trained there first
            when missing); ``None``: no sample-quality metrics (val/fd is not logged then).
        eval_samples: generated samples per quality measurement.
        pictures_every_n_epochs: write the sample, interpolation and arithmetic grids every N epochs (0: never).
    """

    early_stopping_preset = {"monitor": "val/fd", "mode": "min", "patience": 10}

    def __init__(
        self,
        model: str = "dcgan",
        lr: float = 2e-4,
        latent_dim: int = 100,
        conditional: bool = False,
        label_smoothing: float = 0.0,
        gradient_clip_val: float | None = None,
        pixel_range: list[float] | None = None,
        feature_extractor: str | None = None,
        eval_samples: int = 1000,
        pictures_every_n_epochs: int = 1,
        **kwargs: Any,
    ) -> None:
        if model not in PAIRS:
            raise ValueError(f"model.model: GANTask trains a generator/discriminator pair; choose one of {sorted(PAIRS)}, got {model!r}")
        if int(latent_dim) < 1:
            raise ValueError(f"model.latent_dim must be >= 1, got {latent_dim}; use e.g. 100 (Radford et al.)")
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"model.label_smoothing must be in [0, 0.5), got {label_smoothing}")
        if gradient_clip_val is not None and gradient_clip_val <= 0:
            raise ValueError(f"model.gradient_clip_val must be positive or null, got {gradient_clip_val}")
        if pixel_range is not None and (len(pixel_range) != 2 or not pixel_range[0] < pixel_range[1]):
            raise ValueError(f"model.pixel_range must be [lo, hi] with lo < hi, or null, got {pixel_range}")
        if eval_samples < 10:
            raise ValueError(f"model.eval_samples must be >= 10, got {eval_samples}")
        if kwargs.get("scheduler"):
            raise ValueError(f"model.scheduler {kwargs['scheduler']!r} is not supported by GANTask (two optimizers); set it to null")
        kwargs.setdefault("optimizer_kwargs", {"betas": [0.5, 0.999]})
        super().__init__(model=model, lr=lr, **kwargs)
        self.automatic_optimization = False
        self.label_smoothing = float(label_smoothing)
        self._quality: dict[str, Any] = {}  # the classifier, kept off the module tree (not in the checkpoint)

    # ----------------------------------------------------------------------------- networks

    @property
    def _latent_dim(self) -> int:
        return int(self.hparams.latent_dim)

    @property
    def _conditional(self) -> bool:
        return bool(self.hparams.conditional)

    def build_net(self, model, input_shape, num_classes, model_kwargs) -> nn.Module:
        g_name, d_name = PAIRS[model]
        unknown = set(model_kwargs) - {"generator", "discriminator"}
        if unknown:
            raise ValueError(f"model.model_kwargs: GANTask takes {{generator: {{...}}, discriminator: {{...}}}}, got keys {sorted(unknown)}")
        cond = num_classes if self._conditional else 0
        self._image_shape = tuple(int(s) for s in input_shape)
        g = zoo.create_model(g_name, latent_dim=self._latent_dim, output_shape=self._image_shape, cond_classes=cond,
                             **model_kwargs.get("generator", {}))
        d = zoo.create_model(d_name, input_shape=self._image_shape, num_classes=1, cond_classes=cond,
                             **model_kwargs.get("discriminator", {}))
        return GANPair(g, d)

    @property
    def generator(self) -> nn.Module:
        return self.net.generator

    @property
    def discriminator(self) -> nn.Module:
        return self.net.discriminator

    # ------------------------------------------------------------------------- pixel scale

    def _range(self) -> tuple[float, float]:
        r = self.hparams.get("pixel_range")
        if r is None:
            raise RuntimeError("GANTask: pixel_range is not known yet; fit on a DataModule first or set model.pixel_range")
        return float(r[0]), float(r[1])

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Raw images (N, *raw shape) -> the generator's scale [-1, 1] and size."""
        lo, hi = self._range()
        u = (x.float() - lo) / (hi - lo) * 2 - 1
        if tuple(u.shape[2:]) != self._image_shape[1:]:  # data.resize
            u = F.interpolate(u, size=self._image_shape[1:], mode="bilinear", align_corners=False)
        return u

    def from_unit(self, u: torch.Tensor) -> torch.Tensor:
        """Generator output (N, C, H, W) in [-1, 1] -> raw scale and raw shape."""
        lo, hi = self._range()
        raw = tuple(self.hparams.input_shape)
        if tuple(u.shape[1:]) != raw:
            u = F.interpolate(u, size=raw[1:], mode="bilinear", align_corners=False, antialias=True)
        return ((u.clamp(-1, 1) + 1) / 2) * (hi - lo) + lo

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (N, latent_dim) [and labels (N,) when conditional] -> images in the data's raw scale."""
        return self.from_unit(self.generator(z, self._labels(len(z), y, z.device)))

    def _labels(self, n: int, y: torch.Tensor | None, device) -> torch.Tensor | None:
        if not self._conditional:
            return None
        return y if y is not None else torch.arange(n, device=device) % int(self.hparams.num_classes)

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None, seed: int | None = None) -> torch.Tensor:
        """``n`` raw-scale images from fresh codes (``seed``: reproducible codes); for ``callbacks.ImageSampler``."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self._latent_dim, generator=gen).to(self.device)
        return self(z, y)

    # ------------------------------------------------------------------------------- setup

    def setup(self, stage: str) -> None:
        super().setup(stage)  # refreshes the preprocessing spec (resize) from the DataModule
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.hparams.get("pixel_range") is None:
            x = self._train_rows(dm)[0] if dm is not None else None
            if x is None:
                raise ValueError("model.pixel_range is null and the DataModule has no training rows to measure it on; set model.pixel_range: [lo, hi]")
            self.hparams["pixel_range"] = [float(x.min()), float(x.max())]
        if self.hparams.get("feature_extractor") and "classifier" not in self._quality and dm is not None:
            self._load_feature_extractor(dm)

    _train_rows = staticmethod(gm.train_rows)

    def _load_feature_extractor(self, dm) -> None:
        path = Path(self.hparams.feature_extractor)
        if self.trainer.fast_dev_run and not path.exists():
            # A smoke run exercises the metrics with a one-epoch classifier it does not keep (a kept one
            # would be used by every later run at that path).
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                x, y = gm.train_rows(dm)
                if x is not None:
                    fx = gm.train_classifier(Path(tmp) / "fx.ckpt", x, y, tuple(dm.input_shape), int(dm.num_classes), dm.preprocessing, epochs=1)
                    self._quality["classifier"] = gm.load_classifier(fx, tuple(dm.input_shape), int(dm.num_classes)).to(self.device)
            return
        self._quality["classifier"] = gm.ensure_classifier(path, dm).to(self.device)

    def _classifier(self) -> nn.Module | None:
        clf = self._quality.get("classifier")
        if clf is not None and clf.device != self.device:
            clf = self._quality["classifier"] = clf.to(self.device)
        return clf

    # ---------------------------------------------------------------------------- training

    def configure_optimizers(self):
        hp = self.hparams
        cls, takes = OPTIMIZER_TABLE[hp.optimizer]
        extra = {k: hp[k] for k in takes}
        make = lambda net: cls(net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, **extra, **hp.optimizer_kwargs)  # noqa: E731
        return [make(self.discriminator), make(self.generator)]  # order: D, G

    def _clip(self, opt) -> None:
        if self.hparams.gradient_clip_val:
            # Lightning's clip_gradients unscales 16-mixed gradients first, as automatic clipping would.
            self.clip_gradients(opt, gradient_clip_val=self.hparams.gradient_clip_val, gradient_clip_algorithm="norm")

    def discriminator_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        """-log D(x) - log(1 - D(G(z))) from logits (N,), with one-sided smoothing of the real targets."""
        return F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, 1.0 - self.label_smoothing)) \
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))

    def generator_loss(self, d_gen: torch.Tensor) -> torch.Tensor:
        """Non-saturating -log D(G(z)) from logits (N,): its gradient stays near -1/N per sample when the
        discriminator rejects the fakes, where log(1 - D(G(z))) would give ~0 (Goodfellow et al. section 3)."""
        return F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))

    def training_step(self, batch, batch_idx):
        x, y = batch
        real = self.to_unit(x)  # (N, C, H, W) in [-1, 1]
        n = len(real)
        y = y if self._conditional else None
        opt_d, opt_g = self.optimizers()
        z = torch.randn(n, self._latent_dim, device=real.device)
        fake = self.generator(z, y)  # (N, C, H, W)

        # 1. Discriminator: real -> 1 (or 1 - smoothing), fake -> 0, on fakes detached from G's graph.
        self.toggle_optimizer(opt_d)
        # input_noise on the discriminator's inputs, real and fake alike: instance noise (Sonderby et
        # al., 2017, "Amortised MAP inference for image super-resolution", sec. 3.2), the GAN form of
        # noise robustness; l1_penalty on each network's weights in its own loss.
        d_real = self.discriminator(self.add_input_noise(real), y).squeeze(1)  # (N,) logits
        d_fake = self.discriminator(self.add_input_noise(fake.detach()), y).squeeze(1)
        d_loss = self.discriminator_loss(d_real, d_fake)
        penalty = self.weight_penalty(self.discriminator)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss if penalty is None else d_loss + penalty)
        self._clip(opt_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        # 2. Generator, non-saturating: minimise -log D(G(z)) = BCE(D(G(z)), 1).
        self.toggle_optimizer(opt_g)
        d_gen = self.discriminator(self.add_input_noise(fake), y).squeeze(1)
        g_loss = self.generator_loss(d_gen)
        penalty = self.weight_penalty(self.generator)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss if penalty is None else g_loss + penalty)
        self._clip(opt_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        sums = {
            "d_loss": d_loss.detach() * n,
            "g_loss": g_loss.detach() * n,
            "d_x": torch.sigmoid(d_real.detach().float()).sum(),  # D(x): mean belief that real rows are real
            "d_g_z": torch.sigmoid(d_fake.detach().float()).sum(),  # D(G(z)) before the D step
        }
        self.track_train(batch_idx, d_loss + g_loss, n, sums)

    def _is_log_step(self, step: int) -> bool:
        # Two optimizer steps per batch: global_step counts both, the logger counts batches.
        every = self._ledger.every
        return every > 0 and (step // 2 + 1) % every == 0

    # -------------------------------------------------------------------------- evaluation

    def on_validation_epoch_start(self) -> None:
        self._real: dict[str, list[torch.Tensor]] = {"val": []}

    def on_test_epoch_start(self) -> None:
        self._real = {"test": []}

    def _shared_step(self, batch, stage: str) -> None:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        self._real.setdefault(stage, []).append(x.detach())

    @torch.no_grad()
    def _samples(self, n: int, seed: int, generator: nn.Module | None = None) -> torch.Tensor:
        """``n`` raw-scale samples of ``generator`` (default: this task's) from codes seeded with ``seed``."""
        g = generator or self.generator
        was = g.training
        g.eval()
        z = torch.randn(n, self._latent_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        y = self._labels(n, None, self.device)
        out = torch.cat([self.from_unit(g(z[i : i + 500], None if y is None else y[i : i + 500])) for i in range(0, n, 500)])
        g.train(was)
        return out

    def on_validation_epoch_end(self) -> None:
        real = torch.cat(self._real.pop("val", []) or [torch.empty(0)])
        clf = self._classifier()
        if self.trainer.sanity_checking:
            return
        if clf is not None and len(real) > 1:
            fd = gm.frechet_distance(clf, real, self._samples(self.hparams.eval_samples, seed=1))
            self.log("val/fd", fd, prog_bar=True, on_epoch=True)
        every = self.hparams.pictures_every_n_epochs
        if every and self.current_epoch % every == 0 and self.trainer.is_global_zero and self.trainer.loggers:
            self.write_pictures()

    def on_test_epoch_end(self) -> None:
        real = torch.cat(self._real.pop("test", []))  # (N_test, *raw shape)
        clf = self._classifier()
        if clf is None:
            return
        hp = self.hparams
        n, k = int(hp.eval_samples), int(hp.num_classes)
        fake = self._samples(n, seed=2)
        train_x = self._train_rows(self.trainer.datamodule)[0] if self.trainer.datamodule is not None else None
        # The ceiling: a generator of the same architecture, initialised from the same seed, never trained.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(os.environ.get("PL_GLOBAL_SEED", 0)))  # the run's seed_everything
            untrained = self.build_net(hp.model, self._image_shape, k, hp.model_kwargs).generator.to(self.device)
        metrics = {
            "test/fd": gm.frechet_distance(clf, real, fake),
            "test/fd_ceiling": gm.frechet_distance(clf, real, self._samples(n, seed=2, generator=untrained)),
            "test/kd": gm.kernel_distance(clf, real, fake),
            "test/inception_score": gm.inception_score(clf, fake),
            "test/inception_score_real": gm.inception_score(clf, real),
            "test/class_coverage_min": float(gm.class_coverage(clf, fake, k).min()),
            "test/interp_changes": float(gm.class_changes(clf, self.interpolation_paths(100, 16, seed=3)).mean()),
        }
        if train_x is not None:
            metrics["test/fd_floor"] = gm.frechet_distance(clf, real, train_x.to(self.device))
        self.log_dict(metrics, on_epoch=True)

    # ---------------------------------------------------------------------------- pictures

    @torch.no_grad()
    def interpolation_paths(self, paths: int, steps: int, seed: int, spherical: bool = False) -> torch.Tensor:
        """Raw-scale images along ``paths`` latent paths of ``steps`` points between random code pairs:
        (paths, steps, *raw shape)."""
        gen = torch.Generator().manual_seed(seed)
        a, b = torch.randn(2, paths, self._latent_dim, generator=gen)
        t = torch.linspace(0, 1, steps)
        if spherical:
            z = torch.stack([slerp(a[i], b[i], t) for i in range(paths)])  # (P, S, D)
        else:
            z = a[:, None] + t[None, :, None] * (b - a)[:, None]  # (P, S, D)
        g = self.generator
        was = g.training
        g.eval()
        y = self._labels(paths * steps, None, self.device)
        imgs = self.from_unit(g(z.flatten(0, 1).to(self.device), y))
        g.train(was)
        return imgs.view(paths, steps, *imgs.shape[1:])

    @torch.no_grad()
    def arithmetic(self, a: int = 1, b: int = 7, per_group: int = 3, pool: int = 4000, seed: int = 4) -> torch.Tensor | None:
        """Radford et al. figure 7 on classes: mean code of samples the classifier reads as class ``a``
        with a thick stroke, minus ``a`` thin, plus ``b`` thin (stroke = total ink, quartiles within the
        class). Returns one grid row per group and the result: (4 + 4, *raw shape) -- the three group
        means' images, then the result's image and three noisy variants (uniform +-0.25 on the code, as in
        the paper) -- or None without a classifier or when a group is empty."""
        clf = self._classifier()
        if clf is None:
            return None
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(pool, self._latent_dim, generator=gen).to(self.device)
        g = self.generator
        was = g.training
        g.eval()
        y = self._labels(pool, None, self.device)
        imgs = torch.cat([self.from_unit(g(z[i : i + 500], None if y is None else y[i : i + 500])) for i in range(0, pool, 500)])
        pred = gm.classify(clf, imgs).argmax(-1)  # (pool,)
        ink = (imgs - self._range()[0]).flatten(1).sum(1)  # (pool,)

        def group(cls: int, thick: bool) -> torch.Tensor | None:
            idx = (pred == cls).nonzero().squeeze(1)
            if len(idx) < per_group:
                return None
            order = idx[ink[idx].argsort(descending=thick)]
            return z[order[:per_group]].mean(0)

        parts = [group(a, True), group(a, False), group(b, False)]
        if any(p is None for p in parts):
            g.train(was)
            return None
        result = parts[0] - parts[1] + parts[2]
        noise = (torch.rand(3, self._latent_dim, generator=gen) * 0.5 - 0.25).to(self.device)
        codes = torch.stack([*parts, result, *(result + noise)])  # (7, D)
        cy = None if y is None else torch.tensor([a, a, b, b, b, b, b], device=self.device)
        out = self.from_unit(g(codes, cy))
        g.train(was)
        return out

    def write_pictures(self) -> dict[str, Path]:
        """Sample grid (fixed codes), linear and spherical interpolation grids, and the latent-arithmetic
        row, as PNGs under ``<log_dir>/pictures/`` and to the loggers that take images."""
        from torchvision.utils import make_grid, save_image

        from callbacks._images import send_image

        lo, hi = self._range()
        grids: dict[str, torch.Tensor] = {
            "samples": self._samples(64, seed=0),
            "interpolation_linear": self.interpolation_paths(8, 10, seed=5).flatten(0, 1),
            "interpolation_spherical": self.interpolation_paths(8, 10, seed=5, spherical=True).flatten(0, 1),
        }
        arith = self.arithmetic()
        if arith is not None:
            grids["arithmetic"] = arith
        nrow = {"samples": 8, "interpolation_linear": 10, "interpolation_spherical": 10, "arithmetic": 7}
        out = run_dir(self.trainer) / "pictures"
        out.mkdir(parents=True, exist_ok=True)
        written = {}
        for key, imgs in grids.items():
            grid = make_grid(((imgs.float().cpu() - lo) / (hi - lo)).clamp(0, 1), nrow=nrow[key], pad_value=1.0)  # (3, H', W')
            path = out / f"{key}_epoch_{self.current_epoch:03d}.png"
            save_image(grid, path)
            send_image(self.trainer, f"pictures/{key}", path, grid)
            written[key] = path
        return written

    # ----------------------------------------------------------------------------- predict

    def on_predict_epoch_start(self) -> None:
        self._predicted: list[torch.Tensor] = []

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """One generated image per input row (the input only sets how many), from codes seeded by the batch
        index; ``zoo predict`` writes them to ``predictions.pt`` and, as a grid, to ``<log_dir>/samples.png``."""
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        out = self._samples(len(x), seed=10_000 + batch_idx)
        self._predicted.append(out.cpu())
        return {"samples": out}

    def on_predict_epoch_end(self) -> None:
        if not self._predicted or not self.trainer.is_global_zero:
            return
        from torchvision.utils import save_image

        lo, hi = self._range()
        imgs = torch.cat(self._predicted)  # (N, C, H, W), this rank's
        out = run_dir(self.trainer)
        out.mkdir(parents=True, exist_ok=True)
        save_image(((imgs - lo) / (hi - lo)).clamp(0, 1), out / "samples.png", nrow=int(math.ceil(math.sqrt(len(imgs)))), pad_value=1.0)
        self._predicted = []
