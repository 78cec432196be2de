"""ImageSampler with a tiny autoencoder and a tiny generator on digits."""

import lightning.pytorch as pl
import pytest
import torch
import torch.nn as nn
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from callbacks import ImageSampler
from datamodules import DigitsDataModule


class TinyAE(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU())
        self.dec = nn.Linear(8, 64)

    def reconstruct(self, x):
        return self.dec(self.enc(x / 16)).view_as(x) * 16  # (N, 1, 8, 8)

    def sample(self, n):
        return self.dec(torch.randn(n, 8, device=self.device)).view(n, 1, 8, 8)

    def training_step(self, batch, batch_idx):
        x, _ = batch
        return nn.functional.mse_loss(self.reconstruct(x), x)

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), 1e-2)


class ImageLogger(CSVLogger):
    """A logger that takes images (as WandbLogger does): records what it got."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.images = []

    def log_image(self, key, images, step=None):
        self.images.append((key, images, step))


def _fit(module, sampler, tmp_path, epochs=2):
    logger = ImageLogger(tmp_path)
    trainer = pl.Trainer(max_epochs=epochs, logger=logger, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, limit_train_batches=5, limit_val_batches=1, callbacks=[sampler])
    trainer.fit(module, DigitsDataModule(batch_size=32))
    return logger


def test_reconstruction_grid_is_written_as_png_and_sent_to_image_loggers(tmp_path):
    sampler = ImageSampler(mode="reconstruct", n=8, nrow=8, key="val/reconstructions")
    logger = _fit(TinyAE(), sampler, tmp_path)
    pngs = sorted(p.name for p in (tmp_path / "lightning_logs" / "version_0" / "samples").glob("*.png"))
    assert pngs == ["epoch_000.png", "epoch_001.png"]
    # 2 rows (8 originals above 8 reconstructions) of 8x8 images with 2-pixel padding
    w, h = Image.open(sampler.last_path).size
    assert (w, h) == (8 * 10 + 2, 2 * 10 + 2)
    assert [k for k, _, _ in logger.images] == ["val/reconstructions"] * 2
    assert 0.0 <= float(sampler.last_grid.min()) and float(sampler.last_grid.max()) <= 1.0


def test_generate_mode_uses_sample(tmp_path):
    sampler = ImageSampler(mode="generate", n=6, nrow=3)
    _fit(TinyAE(), sampler, tmp_path, epochs=1)
    assert tuple(sampler.last_grid.shape) == (3, 2 * 10 + 2, 3 * 10 + 2)  # 2 rows of 3


def test_missing_method_is_named(tmp_path):
    class NoSample(TinyAE):
        sample = None

    with pytest.raises(AttributeError, match=r"needs a method `sample\(n\).* NoSample has no `sample`"):
        _fit(NoSample(), ImageSampler(mode="generate"), tmp_path, epochs=1)
    with pytest.raises(ValueError, match="mode must be one of"):
        ImageSampler(mode="dream")


def test_tensorboard_gets_the_grid_and_the_gradient_flow_picture(tmp_path):
    """Both picture callbacks write into TensorBoard's event file; read back with TensorBoard's own reader."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from callbacks import GradientInspector

    logger = TensorBoardLogger(tmp_path, name="tb")
    sampler = ImageSampler(mode="reconstruct", n=8, nrow=8, key="val/reconstructions")
    trainer = pl.Trainer(max_epochs=2, logger=logger, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, limit_train_batches=5, limit_val_batches=1,
                         callbacks=[sampler, GradientInspector(log_every_n_steps=2)])
    trainer.fit(TinyAE(), DigitsDataModule(batch_size=32))
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"val/reconstructions", "grad/flow"} <= set(events.Tags()["images"])
    rec = events.Images("val/reconstructions")
    assert [e.step for e in rec] == [5, 10]  # once per validation epoch
    assert (rec[-1].width, rec[-1].height) == (8 * 10 + 2, 2 * 10 + 2)
    flow = events.Images("grad/flow")
    assert len(flow) == 2
    png = tmp_path / "tb" / "version_0" / "gradient_flow" / "epoch_001.png"
    assert (flow[-1].width, flow[-1].height) == Image.open(png).size
    # the gradient norms arrived as scalars next to the pictures
    assert {"grad/global_norm", "grad/enc.1", "grad/dec"} <= set(events.Tags()["scalars"])
