"""Weights & Biases that never stops training: ``ZooWandbLogger`` and the ``WandbExtras`` callback.

``ZooWandbLogger`` is Lightning's ``WandbLogger`` with the zoo's safety rules:

* no API key (neither ``WANDB_API_KEY`` nor a ``~/.netrc`` entry) or ``WANDB_MODE=offline``: the run
  is written locally under ``<save_dir>/wandb/offline-run-*`` and can be uploaded later with
  ``wandb sync <that folder>``;
* with a key it runs online: first a TCP connection to the server (``WANDB_BASE_URL``, or the
  proxy) must open within 5 s (``wandb_server_reachable``), then ``wandb.init`` is bounded by
  ``init_timeout`` seconds (``wandb.Settings(init_timeout=...)``); if either fails (no network,
  server down, bad key) the logger warns once and falls back to a local ``CSVLogger`` in
  ``save_dir``: the run goes on.

From a LightningCLI config::

    trainer:
      logger:
        class_path: callbacks.ZooWandbLogger
        init_args: {project: lightning-zoo, init_timeout: 20}
"""

from __future__ import annotations

import netrc
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from zoo.tasks.distributed import run_dir


def wandb_api_key_available() -> bool:
    """True when wandb would find an API key (environment or ``~/.netrc``), without any network call."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0].split(":")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


CONNECT_TIMEOUT = 5.0  # seconds the reachability check may take (DNS included)


def wandb_server_reachable(timeout: float = CONNECT_TIMEOUT) -> tuple[bool, str]:
    """Can a TCP connection to the W&B server (``WANDB_BASE_URL``, or the HTTPS/HTTP proxy when one is
    set) open within ``timeout`` seconds? Returns ``(ok, reason)``. The connect runs in a thread so
    that name resolution, which socket timeouts do not bound, is bounded too."""
    import socket
    import threading
    import urllib.parse

    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    scheme = url.split("://")[0].lower()
    proxy = os.environ.get(f"{scheme}_proxy") or os.environ.get(f"{scheme.upper()}_PROXY")
    parts = urllib.parse.urlsplit(proxy or url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    result: list[str] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append("")
        except OSError as err:
            result.append(f"{host}:{port}: {err.strerror or err}")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        return False, f"{host}:{port}: no answer within {timeout:g} s"
    return result[0] == "", result[0]


class ZooWandbLogger(WandbLogger):
    """``WandbLogger`` preset: offline without a key, online with one, local CSV if W&B is unreachable.

    Args:
        project: W&B project (default ``lightning-zoo``).
        name: run name.
        save_dir: where the offline run (``wandb/``) or the fallback CSV logs go.
        offline: ``None`` decides from the environment (``WANDB_MODE``, API key); ``True``/``False`` forces.
        init_timeout: seconds ``wandb.init`` may take before the fallback (wandb's default is 90).
        log_model: upload checkpoints as artifacts (``True``: at the end, ``"all"``: each one); only
            when online; ignored offline (nothing can be uploaded).
        fallback: on a failed init, log to a ``CSVLogger`` instead of raising.
        **kwargs: passed to ``WandbLogger`` and on to ``wandb.init`` (``entity``, ``tags``, ...).
    """

    def __init__(
        self,
        project: str = "lightning-zoo",
        name: str | None = None,
        save_dir: str = ".",
        offline: bool | None = None,
        init_timeout: float = 30.0,
        log_model: Literal["all"] | bool = True,
        fallback: bool = True,
        **kwargs: Any,
    ) -> None:
        import wandb

        mode = os.environ.get("WANDB_MODE", "").lower()
        if offline is None:
            offline = mode in ("offline", "dryrun") or (mode != "disabled" and not wandb_api_key_available())
        if offline and log_model:
            log_model = False  # checkpoints cannot be uploaded offline; they stay on disk
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        settings = kwargs.pop("settings", None) or wandb.Settings(init_timeout=float(init_timeout))
        # The mode is always passed to wandb.init explicitly: wandb's settings singleton keeps the
        # WANDB_MODE it saw first in the process, and WandbLogger(offline=True) rewrites os.environ.
        user_mode = kwargs.pop("mode", None)
        wandb_mode = "offline" if offline else user_mode or ("disabled" if mode == "disabled" else "online")
        super().__init__(
            name=name, save_dir=save_dir, project=project, log_model=log_model, mode=wandb_mode, settings=settings, **kwargs,
        )
        self.is_offline = bool(offline)
        self._mode = wandb_mode
        self.fallback_logger: CSVLogger | None = None
        self._allow_fallback = fallback
        self._init_timeout = init_timeout

    # ------------------------------------------------------------------ bounded start, fallback

    @property
    def fell_back(self) -> bool:
        return self.fallback_logger is not None

    @property
    def experiment(self):
        if self.fallback_logger is not None:
            return self.fallback_logger.experiment
        if self._experiment is None and self._allow_fallback and self._mode == "online":
            # wandb.init waits up to init_timeout for a server it cannot reach; a TCP connect bounded
            # by CONNECT_TIMEOUT answers that in seconds (issue 11: +33 s on a 26 s run before).
            reachable, why = wandb_server_reachable(min(CONNECT_TIMEOUT, float(self._init_timeout)))
            if not reachable:
                return self._fall_back(f"the W&B server is unreachable ({why})")
        try:
            return WandbLogger.experiment.fget(self)
        except Exception as err:  # wandb raises CommError, UsageError, TimeoutError, ... by version
            if not self._allow_fallback:
                raise
            return self._fall_back(
                f"W&B could not start within {self._init_timeout:g} s ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
            )

    def _fall_back(self, why: str):
        self._experiment = None
        self.fallback_logger = CSVLogger(self._save_dir or ".", name="csv_fallback")
        warnings.warn(
            f"ZooWandbLogger: {why}; logging to a local CSVLogger in {self.fallback_logger.log_dir} instead, training goes on "
            "(check the network/API key, or set WANDB_MODE=offline for a local W&B run to `wandb sync` later)",
            RuntimeWarning,
            stacklevel=3,
        )
        return self.fallback_logger.experiment

    def _start(self) -> bool:
        """Start the run (or fall back); True when W&B is the one logging."""
        _ = self.experiment
        return self.fallback_logger is None

    @rank_zero_only
    def log_hyperparams(self, params) -> None:
        if self._start():
            super().log_hyperparams(params)
        else:
            self.fallback_logger.log_hyperparams(params)

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        if self._start():
            super().log_metrics(metrics, step)
        else:
            # the CSV file takes numbers only (histograms, images, tables are W&B objects)
            self.fallback_logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float, torch.Tensor))}, step)

    @rank_zero_only
    def log_image(self, key, images, step=None, **kwargs) -> None:
        if self._start():
            super().log_image(key, images, step, **kwargs)

    @rank_zero_only
    def log_table(self, *args, **kwargs) -> None:
        if self._start():
            super().log_table(*args, **kwargs)

    @property
    def save_dir(self) -> str | None:
        return self.fallback_logger.log_dir if self.fallback_logger is not None else self._save_dir

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        if self.fallback_logger is None:
            super().after_save_checkpoint(checkpoint_callback)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self.fallback_logger is not None:
            self.fallback_logger.finalize(status)
        else:
            super().finalize(status)


def wandb_loggers(trainer) -> list[WandbLogger]:
    """The trainer's W&B loggers that are really logging to W&B (not fallen back to CSV)."""
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger) and not getattr(lg, "fell_back", False)]


class WandbExtras(Callback):
    """What a W&B run shows besides the metrics (hyper-parameters are logged by Lightning itself).

    Args:
        predictions: number of validation samples logged at the end of fit as a ``wandb.Table``
            (image, true label, predicted label, confidence); 0 turns it off. Needs ``(x, y)`` batches.
        confusion_matrix: after ``trainer.test``, log ``pl_module.test_confusion_matrix``
            (``ClassificationTask`` stores it) as a table and a ``wandb.plot.confusion_matrix``-style heat map image.
        gradient_histograms_every_n_steps: log ``wandb.Histogram`` of each parameter's gradient every
            N steps (0: off; histograms are costly, keep N large).
    Image grids of generative models: ``callbacks.ImageSampler`` logs them to the W&B logger.
    Checkpoints as artifacts: ``ZooWandbLogger(log_model=True)`` when online.
    With no W&B logger (or after a fallback to CSV) the callback does nothing.
    """

    def __init__(self, predictions: int = 16, confusion_matrix: bool = True, gradient_histograms_every_n_steps: int = 0) -> None:
        super().__init__()
        self.predictions = int(predictions)
        self.confusion_matrix = confusion_matrix
        self.hist_every = int(gradient_histograms_every_n_steps)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.hist_every or trainer.global_step % self.hist_every or not trainer.is_global_zero:
            return
        loggers = wandb_loggers(trainer)
        if not loggers:
            return
        import wandb

        hists = {
            f"grad_hist/{n}": wandb.Histogram(p.grad.detach().float().cpu().numpy())
            for n, p in pl_module.named_parameters()
            if p.grad is not None
        }
        for lg in loggers:
            lg.log_metrics(hists, step=trainer.global_step)

    def on_fit_end(self, trainer, pl_module) -> None:
        loggers = wandb_loggers(trainer)
        if not self.predictions or not loggers or not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        if dm is None:
            return
        import wandb

        x, y = next(iter(dm.val_dataloader()))[:2]
        x, y = x[: self.predictions], y[: self.predictions]
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            probs = pl_module(x.to(pl_module.device)).softmax(-1).cpu()  # (n, classes)
        pl_module.train(was_training)
        conf, pred = probs.max(-1)
        rows = []
        for xi, yi, pi, ci in zip(x, y, pred, conf):
            img = xi.float()
            img = (img - img.min()) / (img.max() - img.min() + 1e-12)  # to [0, 1] for display
            rows.append([wandb.Image(img.numpy().transpose(1, 2, 0).squeeze()), int(yi), int(pi), float(ci)])
        for lg in loggers:
            lg.log_table(key="val/predictions", columns=["image", "true", "predicted", "confidence"], data=rows)

    def on_test_end(self, trainer, pl_module) -> None:
        cm = getattr(pl_module, "test_confusion_matrix", None)
        loggers = wandb_loggers(trainer)
        if not self.confusion_matrix or cm is None or not loggers or not trainer.is_global_zero:
            return
        cm = cm.cpu()
        cols = ["true\\pred", *map(str, range(cm.shape[1]))]
        data = [[str(i), *map(int, r.tolist())] for i, r in enumerate(cm)]
        png = run_dir(trainer) / "test_confusion_matrix.png"
        for lg in loggers:
            lg.log_table(key="test/confusion_matrix", columns=cols, data=data)
            if png.exists():  # the picture ClassificationTask saved
                lg.log_image(key="test/confusion_matrix_plot", images=[str(png)])


def read_offline_run(run_file: str | Path) -> list[Any]:
    """Records of a local ``run-*.wandb`` transaction log, as ``wandb.proto`` ``Record`` messages.

    wandb 0.31 reads these files only in its Go core, so the framing is decoded here (it is
    LevelDB's log format: 32 KiB blocks of chunks with a 7-byte header ``crc32c:4 length:2 type:1``,
    after wandb's 7-byte file header ``:W&B`` + version) and each record is parsed with wandb's own
    protobuf ``Record``. Used by the tests; also handy to inspect an offline run before ``wandb sync``.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(run_file).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{run_file}: not a W&B transaction log (header {data[:4]!r}, expected b':W&B')")
    block, pos, records, buf = 32768, 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]  # 1 full, 2 first, 3 middle, 4 last, 0 padding
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            records.append(rec)
            buf = b""
    return records


def offline_history(run_file: str | Path) -> list[dict[str, Any]]:
    """The ``history`` rows (what ``log``/``log_metrics`` wrote) of an offline run, JSON-decoded."""
    import json

    rows = []
    for rec in read_offline_run(run_file):
        if rec.WhichOneof("record_type") == "history":
            rows.append({(it.key or "/".join(it.nested_key)): json.loads(it.value_json) for it in rec.history.item})
    return rows
