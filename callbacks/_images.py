"""Send one picture to every logger that takes images (shared by the inspector and the sampler)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def send_image(trainer, key: str, path: Path, image: Image.Image | torch.Tensor) -> None:
    """``path`` is the PNG already written; ``image`` is the same picture, a PIL image or a
    ``(C, H, W)`` float tensor in [0, 1].

    W&B's ``log_image`` takes the file (our ``ZooWandbLogger`` turns it into a no-op after falling
    back to a local logger); TensorBoard's ``SummaryWriter.add_image`` takes the pixels. Loggers
    without images (CSV) are skipped: the PNG on disk is the record there.
    """
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):  # WandbLogger
            logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoardLogger
            if isinstance(image, Image.Image):
                logger.experiment.add_image(key, np.asarray(image.convert("RGB")), global_step=trainer.global_step,
                                            dataformats="HWC")
            else:
                logger.experiment.add_image(key, image.clamp(0, 1), global_step=trainer.global_step)
