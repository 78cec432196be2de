"""Fine-tuning a pretrained backbone (torchvision, timm or a zoo checkpoint) on new classes.

The backbone's classifier is replaced for the data's classes; the preprocessing that came with the
pretrained weights (resize, crop, mean/std) becomes the model's input transform, so the checkpoint
predicts on raw images. Which layers train, and at what learning rate, is the job of
``callbacks.FinetuneStrategy`` (freeze, freeze then unfreeze, unfreeze at milestones); without it
every layer trains at ``lr``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from zoo import pretrained

from . import checkpointing
from .base import _plain
from .classification import ClassificationTask
from .distributed import PredictionWriter


class FinetuneTask(ClassificationTask):
    """Classification with a pretrained backbone and a new head.

    Args (besides ``ClassificationTask``'s; ``model`` is only a label and ``model_kwargs`` is not used):
        source: ``torchvision`` (``torchvision.models.get_model`` names), ``timm`` (``timm.list_models``)
            or ``zoo`` (a ``zoo fit`` checkpoint in ``weights_file``).
        backbone: the architecture's name in ``source`` (``resnet18``); ignored for ``zoo``.
        weights: torchvision weights name (``DEFAULT``, ``IMAGENET1K_V1``) or, for timm, anything
            but null for its pretrained_cfg weights; null trains from scratch (the data's fitted
            mean/std then standardise the input).
        weights_file: a local weights file (a state dict; ``.safetensors`` too), or the zoo checkpoint.
            Without it torchvision's weights are read from torch.hub's cache
            (``$TORCH_HOME/hub/checkpoints/<file of the weights' URL>``) and timm's from the Hugging Face cache.
        download: fetch missing weights (off by default: offline runs fail with the file's name instead).
        class_names: the classes' names, filled from the DataModule (``classes``); kept in the checkpoint.
        resolved: filled by the first build (architecture and preprocessing), so that loading the
            checkpoint rebuilds the network without the weights file. Leave it null.
        reinit_groups: re-initialise this many backbone layer groups next to the head as well (their
            modules' own ``reset_parameters``), keeping only the lower pretrained layers. The upper
            layers of a network are specific to the classes it was trained on and transfer worst
            (Yosinski et al., 2014, "How transferable are features in deep neural networks?"); on
            few digits the hidden layer of a SimpleConvNet trained on 0-4 serves 5-9 worse than a
            fresh one (``benchmarks/transfer.py``).
    """

    def __init__(
        self,
        source: str = "torchvision",
        backbone: str = "resnet18",
        weights: str | None = "DEFAULT",
        weights_file: str | None = None,
        download: bool = False,
        class_names: list[str] | None = None,
        resolved: dict[str, Any] | None = None,
        model: str = "finetune",
        reinit_groups: int = 0,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("init") is not None and (weights is not None or source == "zoo"):
            raise ValueError(
                f"model.init {kwargs['init']!r} would overwrite the pretrained weights; leave model.init null "
                "(the new head keeps PyTorch's default initialisation)"
            )
        self._backbone: pretrained.Backbone | None = None
        super().__init__(model=model, **kwargs)
        bb = self._backbone
        assert bb is not None
        self.hparams["resolved"] = _plain(bb.resolved)
        self.head_name = bb.head
        self._load_pretrained = bb.load_pretrained  # weights to download (download: true): when fitting starts
        backbone = self.layer_groups()[:-1]
        if not 0 <= reinit_groups <= len(backbone):
            raise ValueError(
                f"model.reinit_groups must be in [0, {len(backbone)}] (the backbone's layer groups), got {reinit_groups}"
            )
        self._reinit = backbone[len(backbone) - reinit_groups:]
        if self._load_pretrained is None:
            self._reset_reinit_groups()  # a checkpoint's state dict replaces these when it loads
        else:  # the weights arrive when fitting starts: re-initialise after them
            load, self._load_pretrained = self._load_pretrained, lambda: (load(), self._reset_reinit_groups())

    def _reset_reinit_groups(self) -> None:
        for group in self._reinit:
            for top in group:
                for m in top.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()

    # ----------------------------------------------------------------------------------- build

    def build_network(self, model, model_kwargs, num_classes, input_shape, preprocessing):
        hp = self.hparams
        raw_shape = list(preprocessing["input_shape"]) if preprocessing else list(input_shape)
        bb = pretrained.build_backbone(
            hp.source, hp.backbone, hp.weights, hp.weights_file, num_classes, raw_shape,
            download=hp.download, resolved=hp.resolved,
        )
        self._backbone = bb
        if bb.preprocessing is not None:
            spec = bb.preprocessing
            self.hparams["preprocessing"] = _plain(spec)
        else:  # from scratch: the data's fitted statistics (ZooTask's InputTransform), as any zoo task
            spec = preprocessing
        return (pretrained.make_transform(spec) if spec else nn.Identity()), bb.net

    def layer_groups(self) -> list[list[nn.Module]]:
        """The network's parameter groups, input to output; the last is the new head."""
        return pretrained.layer_groups(self.net, self.head_name)

    # ------------------------------------------------------------------------------------ data

    def setup(self, stage: str) -> None:
        uses_pretrained = self.hparams.resolved.get("preprocessing") is not None
        if not uses_pretrained:
            super().setup(stage)  # from scratch: take the DataModule's fitted statistics
        elif self._trainer is not None:
            checkpointing.install(self.trainer)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = getattr(dm, "classes", None)
        if names and stage == "fit":
            self.hparams["class_names"] = [str(n) for n in names]
        if stage == "fit" and self._load_pretrained is not None:
            self._load_pretrained()  # downloads, or names the file it could not get, before any step
            self._load_pretrained = None

    # ------------------------------------------------------------------------------ optimizer

    def optimizer_params(self) -> list:
        """One parameter group per layer group, every parameter included (frozen ones too): a frozen
        parameter has no gradient, so the optimizer skips it, and unfreezing needs no new group. The
        optimizer state therefore has the same groups from the first step on, so a resumed run
        restores it exactly (Lightning's BackboneFinetuning adds groups when it unfreezes, which its
        resume then has to replay: its issue #21901). The strategy callback sets each group's ``lr``."""
        from callbacks.finetuning import FinetuneStrategy

        groups = self.layer_groups()
        scales = [1.0] * len(groups)
        if self._trainer is not None:
            for cb in self.trainer.callbacks:
                if isinstance(cb, FinetuneStrategy):
                    scales = cb.lr_scales(len(groups))
        lr = self.hparams.lr
        return [
            {"params": [p for m in g for p in m.parameters()], "lr": lr * s, "name": f"group{i}"}
            for i, (g, s) in enumerate(zip(groups, scales))
        ]


# ------------------------------------------------------------------------ zoo predict on a folder


def prediction_writer(output: str | None) -> PredictionWriter:
    """``zoo predict --output FILE``: a CSV (``.csv``: one row per input file) or ``torch.save``'d tensors."""
    if output and str(output).lower().endswith(".csv"):
        return CSVPredictionWriter(output)
    return PredictionWriter(output)


class CSVPredictionWriter(PredictionWriter):
    """Writes ``file,class,probability`` (then every class's probability) per input, in input order.

    File names come from the DataModule's ``predict_files`` (``ImageFolderDataModule``), class names
    from the checkpoint (``class_names`` in its hyper-parameters), else the DataModule's ``classes``,
    else the class indices. Gathering across processes is ``PredictionWriter``'s: it writes
    ``predictions.pt`` in the run's folder, which this reads back."""

    def __init__(self, output: str) -> None:
        super().__init__(None)
        self.csv = Path(output)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        super().write_on_epoch_end(trainer, pl_module, predictions, batch_indices)
        if not trainer.is_global_zero or self.last_path is None:
            return
        out = torch.load(self.last_path, weights_only=True)
        probs = out["probs"]  # (N, C), input order
        dm = trainer.datamodule
        files = list(getattr(dm, "predict_files", None) or [])
        if len(files) != len(probs):
            files = [str(i) for i in range(len(probs))]
        names = pl_module.hparams.get("class_names") or getattr(dm, "classes", None) or [str(i) for i in range(probs.shape[1])]
        pred = probs.argmax(-1)  # (N,)
        self.csv.parent.mkdir(parents=True, exist_ok=True)
        with self.csv.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "class", "probability", *[f"p_{n}" for n in names]])
            for f, k, p in zip(files, pred.tolist(), probs.tolist()):
                w.writerow([f, names[k], f"{p[k]:.6f}", *[f"{v:.6f}" for v in p]])
        print(f"Wrote {len(files)} rows (file, class, probability) to {self.csv}")


def fill_classes_from_checkpoint(cfg: Any, ckpt_path: str | None) -> None:
    """``zoo predict --ckpt_path C`` with an image folder: the class names (and so ``num_classes``)
    come from the checkpoint unless ``data.init_args.classes`` is given, so a flat folder of new
    photos predicts with the classes the model was trained on."""
    if not ckpt_path or not Path(str(ckpt_path)).is_file():
        return
    data = cfg.get("data")
    if data is None or not str(data.get("class_path", "")).endswith("ImageFolderDataModule"):
        return
    if data.get("init_args") is not None and data["init_args"].get("classes"):
        return
    import torch

    try:
        hp = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters") or {}
    except Exception:  # noqa: BLE001 - unreadable checkpoints are reported by cli_errors.check_checkpoint
        return
    if hp.get("class_names"):
        cfg["data.init_args.classes"] = list(hp["class_names"])
