"""``ImageSampler``: a picture of what a generative or reconstruction model produces, every N epochs.

What it needs from the LightningModule (checked at fit start, with an error naming the method):

* ``mode="generate"``: a method ``sample(n: int) -> Tensor (n, C, H, W)``, e.g. a VAE or GAN decoding
  ``n`` latent draws;
* ``mode="reconstruct"``: a method ``reconstruct(x) -> Tensor`` of the shape of ``x`` (an autoencoder);
  the grid shows the first ``n`` validation images (top rows) above their reconstructions.
  ``reconstruct_with_forward=True`` uses ``forward`` instead, for modules whose output is the
  reconstruction.
* ``mode="interpolate"``: a method ``interpolate(a, b, steps) -> Tensor (steps, C, H, W)`` (a VAE
  decoding the line between two codes); each grid row walks from validation image ``2i`` to ``2i + 1``
  in ``nrow`` steps, ``max(1, n // nrow)`` rows.
* ``mode="filters"``: a method ``filters() -> Tensor (units, C, H, W)`` (an RBM's weights, one image
  per hidden unit, as scikit-learn's RBM example draws them); the first ``n``, each scaled to its own
  min and max.

The grid (``torchvision.utils.make_grid``) goes to every logger that takes images (W&B through
``log_image``, TensorBoard through ``experiment.add_image``) and, always, to
``<log_dir>/<folder>/epoch_XXX.png`` (``torchvision.utils.save_image``; ``folder`` defaults to
``samples``: give each sampler of one run its own).
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from zoo.tasks.distributed import run_dir

from ._images import send_image

MODES = ("generate", "reconstruct", "interpolate", "filters")


class ImageSampler(Callback):
    """Write an image grid of samples or reconstructions at the end of every ``every_n_epochs`` epochs.

    Args:
        mode: ``"generate"`` (needs ``pl_module.sample(n)``) or ``"reconstruct"`` (needs
            ``pl_module.reconstruct(x)``, or ``forward`` with ``reconstruct_with_forward=True``).
        n: number of images (generate) or of validation images (reconstruct).
        nrow: images per grid row.
        every_n_epochs: how often.
        normalize: rescale the grid to [0, 1] from its min and max (``make_grid(normalize=True)``);
            turn off when the model already outputs [0, 1].
        key: image key for the loggers.
        reconstruct_with_forward: see ``mode``.
        folder: the folder under the run's log directory the PNGs go to.
    """

    def __init__(
        self,
        mode: str = "generate",
        n: int = 16,
        nrow: int = 8,
        every_n_epochs: int = 1,
        normalize: bool = True,
        key: str = "samples",
        reconstruct_with_forward: bool = False,
        folder: str = "samples",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"ImageSampler: mode must be one of {list(MODES)}, got {mode!r}")
        if n < 1 or every_n_epochs < 1:
            raise ValueError(f"ImageSampler: n and every_n_epochs must be >= 1, got n={n}, every_n_epochs={every_n_epochs}")
        self.mode, self.n, self.nrow, self.every_n_epochs = mode, int(n), int(nrow), int(every_n_epochs)
        self.normalize, self.key, self.with_forward = normalize, key, reconstruct_with_forward
        self.folder = folder
        self.last_path: Path | None = None

    def _method(self) -> str:
        if self.mode == "reconstruct":
            return "forward" if self.with_forward else "reconstruct"
        return {"generate": "sample", "interpolate": "interpolate", "filters": "filters"}[self.mode]

    def setup(self, trainer, pl_module, stage: str) -> None:
        name = self._method()
        if not callable(getattr(pl_module, name, None)):
            need = {
                "sample": "a method `sample(n) -> Tensor (n, C, H, W)`",
                "reconstruct": "a method `reconstruct(x) -> Tensor` shaped like x (or pass reconstruct_with_forward=True)",
                "interpolate": "a method `interpolate(a, b, steps) -> Tensor (steps, C, H, W)`",
                "filters": "a method `filters() -> Tensor (units, C, H, W)`",
            }[name]
            raise AttributeError(
                f"ImageSampler(mode={self.mode!r}) needs {need} on the LightningModule, but "
                f"{type(pl_module).__name__} has no `{name}`; add it or remove the callback"
            )

    @torch.no_grad()
    def images(self, trainer, pl_module) -> torch.Tensor:
        """The images of the grid, (k, C, H, W)."""
        if self.mode == "generate":
            out = pl_module.sample(self.n)
            return self._check(out, "sample(n)")
        if self.mode == "filters":
            return self._check(pl_module.filters(), "filters()")[: self.n]
        dl = trainer.datamodule.val_dataloader() if trainer.datamodule is not None else trainer.val_dataloaders
        batch = next(iter(dl))
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        if self.mode == "interpolate":
            rows = max(1, self.n // self.nrow)
            if len(x) < 2 * rows:
                raise ValueError(f"ImageSampler(mode='interpolate'): {rows} rows need {2 * rows} validation images in the first batch, got {len(x)}")
            x = x[: 2 * rows].to(pl_module.device)
            return torch.cat([self._check(pl_module.interpolate(x[2 * i], x[2 * i + 1], self.nrow), "interpolate(a, b, steps)")
                              for i in range(rows)])  # (rows * nrow, C, H, W)
        x = x[: self.n].to(pl_module.device)
        rec = pl_module(x) if self.with_forward else pl_module.reconstruct(x)
        rec = self._check(rec, self._method() + "(x)")
        if rec.shape != x.shape:
            raise ValueError(f"ImageSampler: {self._method()}(x) returned shape {tuple(rec.shape)}, expected x's shape {tuple(x.shape)}")
        # originals in the first rows, their reconstructions below, column for column
        return torch.cat([x, rec])

    @staticmethod
    def _check(t, what: str) -> torch.Tensor:
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"ImageSampler: {what} must return a (N, C, H, W) tensor, got {shape}")
        return t

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs or not trainer.is_global_zero:
            return
        from torchvision.utils import make_grid, save_image

        was_training = pl_module.training
        pl_module.eval()
        # Drawing must not move the training's random stream (a VAE's samples draw from it): a run
        # with pictures trains exactly as the same run without them.
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            imgs = self.images(trainer, pl_module).detach().float().cpu()  # (k, C, H, W)
        pl_module.train(was_training)
        # reconstruct: n originals then n reconstructions, so each reconstruction sits under its original
        nrow = min(self.n, self.nrow) if self.mode == "reconstruct" else self.nrow
        # filters: each unit's weights scaled to its own range, else one weak unit is a grey square
        grid = make_grid(imgs, nrow=nrow, normalize=self.normalize, scale_each=self.mode == "filters", pad_value=1.0)  # (3, H', W')
        out = run_dir(trainer) / self.folder
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"epoch_{trainer.current_epoch:03d}.png"
        save_image(grid, path)
        self.last_path, self.last_grid = path, grid
        send_image(trainer, self.key, path, grid)
